// Matrix product for a few rows of x (decode steps): y[m, n_offset + n] = sum_k x[m, k] * w[n, k]
// (+ bias), for m < 4. A workgroup of 32x8 threads handles 8 output columns; the 32 lanes of a
// column stride over k (coalesced reads of the weight row, four elements a lane when k is a
// multiple of 4) and reduce in workgroup memory.
// `wt` and `weight` (element i of the weight part `w` as f32) come from the host's prelude.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n_offset: u32,
    out_stride: u32,
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<wt>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const MAX_M: u32 = 4u;
var<workgroup> red: array<f32, 1024>; // [MAX_M][8 columns][32 lanes]

@compute @workgroup_size(32, 8, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let group = wg.x + wg.y * nwg.x;
    let n = group * 8u + lid.y;
    var acc: array<f32, 4>;
    if (n < p.n && p.k % 4u == 0u) {
        // Four consecutive weights per lane per step (one scale and one word of quantised blocks).
        let row = n * p.k;
        for (var kk = lid.x * 4u; kk < p.k; kk += 128u) {
            let wv = weight4(row + kk);
            for (var mi = 0u; mi < p.m; mi++) {
                let xr = mi * p.k + kk;
                var a = acc[mi];
                a = fma(x[xr], wv.x, a);
                a = fma(x[xr + 1u], wv.y, a);
                a = fma(x[xr + 2u], wv.z, a);
                acc[mi] = fma(x[xr + 3u], wv.w, a);
            }
        }
    } else if (n < p.n) {
        let row = n * p.k;
        for (var kk = lid.x; kk < p.k; kk += 32u) {
            let wv = weight(row + kk);
            for (var mi = 0u; mi < p.m; mi++) {
                acc[mi] = fma(x[mi * p.k + kk], wv, acc[mi]);
            }
        }
    }
    let slot = lid.y * 32u + lid.x;
    for (var mi = 0u; mi < MAX_M; mi++) {
        red[mi * 256u + slot] = acc[mi];
    }
    workgroupBarrier();
    for (var off = 16u; off > 0u; off >>= 1u) {
        if (lid.x < off) {
            for (var mi = 0u; mi < MAX_M; mi++) {
                red[mi * 256u + slot] += red[mi * 256u + slot + off];
            }
        }
        workgroupBarrier();
    }
    if (lid.x == 0u && n < p.n) {
        var b = 0.0;
        if (p.has_bias != 0u) {
            b = bias[p.n_offset + n];
        }
        for (var mi = 0u; mi < p.m; mi++) {
            y[mi * p.out_stride + p.n_offset + n] = red[mi * 256u + slot] + b;
        }
    }
}
