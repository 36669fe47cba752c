//! Elementwise operations: the residual sum and the SwiGLU gate.

use focusllm_core::Result;

use super::{Shader, WeightType};
use crate::context::{Context, Dispatch};
use crate::tensor::WgpuTensor;

fn binary(ctx: &Context, entry: &str, a: &WgpuTensor, b: &WgpuTensor) -> Result<WgpuTensor> {
    let out = ctx.alloc(a.bytes(), entry)?;
    let n = (a.rows * a.cols) as u64;
    if n > 0 {
        let kernel = ctx.kernel(Shader::Elementwise, entry, WeightType::F32)?;
        ctx.run(&[Dispatch {
            kernel: &kernel,
            params: [n as u32, 0, 0, 0, 0, 0, 0, 0],
            buffers: vec![&a.buf, &b.buf, &out],
            groups: ctx.grid(n.div_ceil(256))?,
        }])?;
    }
    Ok(WgpuTensor::new(out, a.rows, a.cols))
}

/// `a + b`.
pub(crate) fn add(ctx: &Context, a: &WgpuTensor, b: &WgpuTensor) -> Result<WgpuTensor> {
    binary(ctx, "add", a, b)
}

/// `silu(gate) * up`.
pub(crate) fn swiglu(ctx: &Context, gate: &WgpuTensor, up: &WgpuTensor) -> Result<WgpuTensor> {
    binary(ctx, "swiglu", gate, up)
}
