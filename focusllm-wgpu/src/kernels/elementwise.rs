//! Elementwise operations: the residual sum, the gated activations and scaling.

use focusllm_core::{Activation, Result};

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

/// `act(gate) * up`.
pub(crate) fn glu(ctx: &Context, gate: &WgpuTensor, up: &WgpuTensor, act: Activation) -> Result<WgpuTensor> {
    let entry = match act {
        Activation::Silu => "swiglu",
        Activation::GeluTanh => "geglu",
    };
    binary(ctx, entry, gate, up)
}

/// `x * factor`: the factor travels as a one-value buffer read by every thread.
pub(crate) fn scale(ctx: &Context, x: &WgpuTensor, factor: f32) -> Result<WgpuTensor> {
    let out = ctx.alloc(x.bytes(), "scale")?;
    let n = (x.rows * x.cols) as u64;
    if n > 0 {
        let factor = ctx.upload(&[factor], "scale factor")?;
        let kernel = ctx.kernel(Shader::Elementwise, "scale", WeightType::F32)?;
        ctx.run(&[Dispatch {
            kernel: &kernel,
            params: [n as u32, 0, 0, 0, 0, 0, 0, 0],
            buffers: vec![&x.buf, &factor, &out],
            groups: ctx.grid(n.div_ceil(256))?,
        }])?;
    }
    Ok(WgpuTensor::new(out, x.rows, x.cols))
}
