// Embedding lookup from one row-range part of a (possibly split) table: y[r, c] = table[id - start, c]
// for every requested id that falls in this part's rows. One thread per output value.
// `wt` and `weight` (element i of the table part `w` as f32) come from the host's prelude.

struct Params {
    n_ids: u32,
    cols: u32,
    row_start: u32,
    part_rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<wt>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wg.x + wg.y * nwg.x) * 256u + lid;
    if (i >= p.n_ids * p.cols) {
        return;
    }
    let r = i / p.cols;
    let c = i % p.cols;
    let id = ids[r];
    if (id >= p.row_start && id - p.row_start < p.part_rows) {
        y[i] = weight((id - p.row_start) * p.cols + c);
    }
}
