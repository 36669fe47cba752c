// Fused causal attention with online softmax over a packed batch of sequences, with GQA.
// One workgroup of 64 threads per (query row, head). Keys are visited in blocks of 64: each thread
// scores one key, the block's max and sum are reduced in workgroup memory, and each thread keeps
// the running output of head dimensions lid, lid+64, ... (head_dim <= 256).
// rows[r] = (first key row of r's sequence, number of keys r sees).

struct Params {
    rows: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    scale: f32,
    q_stride: u32,
    kv_stride: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> rows: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
const PER: u32 = 4u; // head dimensions per thread: head_dim <= WG * PER
const NEG: f32 = -3.0e38;

var<workgroup> qs: array<f32, 256>;
var<workgroup> red: array<f32, 64>;
var<workgroup> ps: array<f32, 64>;
var<workgroup> info: vec2<u32>;

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let head = wg.x;
    let row = wg.y + wg.z * nwg.y;
    if (row >= p.rows) {
        return;
    }
    let hd = p.head_dim;
    let kv_col = (head / (p.heads / p.kv_heads)) * hd;
    let q_off = row * p.q_stride + head * hd;
    if (lid == 0u) {
        info = rows[row];
    }
    for (var d = lid; d < hd; d += WG) {
        qs[d] = q[q_off + d] * p.scale;
    }
    let seq_info = workgroupUniformLoad(&info); // also a barrier: qs is visible after it
    let kv_start = seq_info.x;
    let visible = seq_info.y;

    var m_run = NEG;
    var l_run = 0.0;
    var acc: array<f32, 4>;
    for (var base = 0u; base < visible; base += WG) {
        let j = base + lid;
        var s = NEG;
        if (j < visible) {
            let k_off = (kv_start + j) * p.kv_stride + kv_col;
            var dot = 0.0;
            for (var d = 0u; d < hd; d++) {
                dot = fma(qs[d], k[k_off + d], dot);
            }
            s = dot;
        }
        red[lid] = s;
        workgroupBarrier();
        for (var off = WG / 2u; off > 0u; off >>= 1u) {
            if (lid < off) {
                red[lid] = max(red[lid], red[lid + off]);
            }
            workgroupBarrier();
        }
        let m_new = max(m_run, red[0]);
        workgroupBarrier();
        var pj = 0.0;
        if (j < visible) {
            pj = exp(s - m_new);
        }
        ps[lid] = pj;
        red[lid] = pj;
        workgroupBarrier();
        for (var off = WG / 2u; off > 0u; off >>= 1u) {
            if (lid < off) {
                red[lid] += red[lid + off];
            }
            workgroupBarrier();
        }
        let alpha = exp(m_run - m_new);
        l_run = l_run * alpha + red[0];
        let count = min(WG, visible - base);
        for (var t = 0u; t < PER; t++) {
            let d = lid + t * WG;
            if (d < hd) {
                var a = acc[t] * alpha;
                for (var jj = 0u; jj < count; jj++) {
                    a = fma(ps[jj], v[(kv_start + base + jj) * p.kv_stride + kv_col + d], a);
                }
                acc[t] = a;
            }
        }
        m_run = m_new;
        workgroupBarrier();
    }
    let inv = 1.0 / l_run;
    for (var t = 0u; t < PER; t++) {
        let d = lid + t * WG;
        if (d < hd) {
            out[q_off + d] = acc[t] * inv;
        }
    }
}
