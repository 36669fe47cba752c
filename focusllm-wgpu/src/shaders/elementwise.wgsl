// Elementwise kernels over n values, one thread each: the residual sum, the gated activations
// (SwiGLU, GeGLU) and the scaling by a constant.

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

// y = gelu_tanh(a) * b, with a the gate and b the up projection
@compute @workgroup_size(256, 1, 1)
fn geglu(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = index(wg, nwg, lid);
    if (i < p.n) {
        let g = a[i];
        // Clamped: tanh is +-1 to f32 precision past 9, and some drivers' tanh overflows beyond.
        let u = clamp(0.7978846 * (g + 0.044715 * g * g * g), -15.0, 15.0);
        y[i] = 0.5 * g * (1.0 + tanh(u)) * b[i];
    }
}

// y = a * b[0]: every value times one factor
@compute @workgroup_size(256, 1, 1)
fn scale(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = a[i] * b[0];
    }
}
