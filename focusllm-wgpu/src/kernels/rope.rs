//! Rotary position embedding at given positions (half-split layout), reading the model's table of
//! cosines and sines per position.

use focusllm_core::Result;

use super::{Shader, WeightType};
use crate::context::{Context, Dispatch};
use crate::tensor::WgpuTensor;

pub(crate) fn rope(
    ctx: &Context,
    x: &WgpuTensor,
    positions: &[u32],
    table: &WgpuTensor,
    head_dim: usize,
) -> Result<WgpuTensor> {
    let out = ctx.alloc(x.bytes(), "rope output")?;
    let pairs = (x.rows * x.cols / 2) as u64;
    if pairs == 0 {
        return Ok(WgpuTensor::new(out, x.rows, x.cols));
    }
    let positions = ctx.upload(positions, "rope positions")?;
    let kernel = ctx.kernel(Shader::Rope, "main", WeightType::F32)?;
    ctx.run(&[Dispatch {
        kernel: &kernel,
        params: [x.rows as u32, x.cols as u32, head_dim as u32, 0, 0, 0, 0, 0],
        buffers: vec![&x.buf, &positions, &table.buf, &out],
        groups: ctx.grid(pairs.div_ceil(256))?,
    }])?;
    Ok(WgpuTensor::new(out, x.rows, x.cols))
}
