// Elementwise kernels over n values, one thread each: the residual sum and the SwiGLU gate.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
    _pad5: u32,
    _pad6: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * 256u + lid;
}

// y = a + b
@compute @workgroup_size(256, 1, 1)
fn add(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = a[i] + b[i];
    }
}

// y = silu(a) * b, with a the gate and b the up projection
@compute @workgroup_size(256, 1, 1)
fn swiglu(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = index(wg, nwg, lid);
    if (i < p.n) {
        let g = a[i];
        y[i] = g / (1.0 + exp(-g)) * b[i];
    }
}
