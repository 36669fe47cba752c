// Tiled matrix product y[m, n_offset + n] = sum_k x[m, k] * w[n, k] (+ bias[n_offset + n]).
// One workgroup (16x16 threads) computes a (16 RM) x 64 output tile; each thread an RM x 4 block
// strided by 16 in both directions. Tiles of x (16 RM rows x 16 k) and w (64 rows x 16 k) are
// staged in workgroup memory. The host's prelude defines `wt` (the weight buffer's element type),
// `weight(i)` (element i of the part `w` as f32: f32, f16 or quantised blocks) and `RM` (4 for
// many rows, 1 for a few, so short prompts do not compute 64-row tiles).

struct Params {
    m: u32,          // rows of x and y
    n: u32,          // rows of this weight part
    k: u32,          // reduction length
    n_offset: u32,   // first output column of this part
    out_stride: u32, // columns of y
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<wt>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const TM: u32 = 16u * RM;
const TN: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> xs: array<f32, TM * TK>; // [TK][TM]
var<workgroup> ws: array<f32, 1024>; // [TK][TN]

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n0 = wg.x * TN;
    let m0 = wg.y * TM;
    var acc: array<array<f32, 4>, RM>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var l = 0u; l < RM; l++) {
            let idx = li + 256u * l;
            let r = idx / TK;
            let c = idx % TK;
            let gk = k0 + c;
            let gm = m0 + r;
            var xv = 0.0;
            if (gm < p.m && gk < p.k) {
                xv = x[gm * p.k + gk];
            }
            xs[c * TM + r] = xv;
        }
        // The weight tile: each thread reads four consecutive k of one row (with one scale and
        // one word of quantised blocks when k is a multiple of 4).
        {
            let r = li / 4u;
            let c = (li % 4u) * 4u;
            let gk = k0 + c;
            let gn = n0 + r;
            var wv = vec4<f32>(0.0);
            if (gn < p.n && gk < p.k) {
                if (p.k % 4u == 0u) {
                    wv = weight4(gn * p.k + gk);
                } else {
                    for (var e = 0u; e < 4u && gk + e < p.k; e++) {
                        wv[e] = weight(gn * p.k + gk + e);
                    }
                }
            }
            ws[c * TN + r] = wv.x;
            ws[(c + 1u) * TN + r] = wv.y;
            ws[(c + 2u) * TN + r] = wv.z;
            ws[(c + 3u) * TN + r] = wv.w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, RM>;
            var b: array<f32, 4>;
            for (var i = 0u; i < RM; i++) {
                a[i] = xs[kk * TM + lid.y + 16u * i];
            }
            for (var j = 0u; j < 4u; j++) {
                b[j] = ws[kk * TN + lid.x + 16u * j];
            }
            for (var i = 0u; i < RM; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < RM; i++) {
        let m = m0 + lid.y + 16u * i;
        if (m >= p.m) {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + 16u * j;
            if (n < p.n) {
                var v = acc[i][j];
                if (p.has_bias != 0u) {
                    v += bias[p.n_offset + n];
                }
                y[m * p.out_stride + p.n_offset + n] = v;
            }
        }
    }
}
