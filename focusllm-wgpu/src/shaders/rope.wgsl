// Rotary position embedding, half-split ("rotate_half") layout, on every head of every row:
// for i < head_dim/2, (a, b) = (x[i], x[i + half]) becomes (a cos - b sin, b cos + a sin).
// Row `pos` of the model's table holds the cosines of that position's angles, then their sines,
// computed on the host in f64: GPU sin/cos builtins are only required to be accurate to 2^-11 and
// need a range reduction for the large angles of long contexts.
// One thread per (row, rotated pair).

struct Params {
    rows: u32,
    cols: u32,
    head_dim: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> table: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let half = p.head_dim / 2u;
    let pairs = p.cols / 2u;
    let id = (wg.x + wg.y * nwg.x) * 256u + lid;
    if (id >= p.rows * pairs) {
        return;
    }
    let row = id / pairs;
    let pair = id % pairs;
    let head = pair / half;
    let i = pair % half;
    let a_idx = row * p.cols + head * p.head_dim + i;
    let b_idx = a_idx + half;
    let at = positions[row] * p.head_dim + i;
    let c = table[at];
    let s = table[at + half];
    let a = x[a_idx];
    let b = x[b_idx];
    y[a_idx] = a * c - b * s;
    y[b_idx] = b * c + a * s;
}
