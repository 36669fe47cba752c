//! Row-wise RMS normalisation.

use focusllm_core::Result;

use super::{Shader, WeightType};
use crate::context::{err, Context, Dispatch};
use crate::tensor::{WgpuTensor, WgpuWeight};

pub(crate) fn rms_norm(ctx: &Context, x: &WgpuTensor, weight: &WgpuWeight, eps: f32) -> Result<WgpuTensor> {
    let w = weight.vector("rms_norm weight", x.cols)?;
    if x.cols == 0 {
        return Err(err("rms_norm: zero-width rows"));
    }
    let out = ctx.alloc(x.bytes(), "rms_norm output")?;
    let kernel = ctx.kernel(Shader::RmsNorm, "main", WeightType::F32)?;
    ctx.run(&[Dispatch {
        kernel: &kernel,
        params: [x.rows as u32, x.cols as u32, eps.to_bits(), 0, 0, 0, 0, 0],
        buffers: vec![&x.buf, w, &out],
        groups: ctx.grid(x.rows as u64)?,
    }])?;
    Ok(WgpuTensor::new(out, x.rows, x.cols))
}
