//! Embedding lookup, one dispatch per part of a split table.

use focusllm_core::Result;

use super::Shader;
use crate::context::{Context, Dispatch};
use crate::tensor::{WgpuTensor, WgpuWeight};

pub(crate) fn embedding(ctx: &Context, table: &WgpuWeight, ids: &[u32]) -> Result<WgpuTensor> {
    let cols = table.cols;
    let out = ctx.alloc((ids.len() * cols * 4) as u64, "embedding output")?;
    let n = (ids.len() * cols) as u64;
    if n == 0 {
        return Ok(WgpuTensor::new(out, ids.len(), cols));
    }
    let ids_buf = ctx.upload(ids, "token ids")?;
    let kernel = ctx.kernel(Shader::Embedding, "main", table.dtype)?;
    let groups = ctx.grid(n.div_ceil(256))?;
    let dispatches: Vec<Dispatch<'_>> = table
        .parts
        .iter()
        .filter(|part| ids.iter().any(|&id| (part.start..part.start + part.rows).contains(&(id as usize))))
        .map(|part| Dispatch {
            kernel: &kernel,
            params: [ids.len() as u32, cols as u32, part.start as u32, part.rows as u32, 0, 0, 0, 0],
            buffers: vec![&ids_buf, &part.buffer, &out],
            groups,
        })
        .collect();
    ctx.run(&dispatches)?;
    Ok(WgpuTensor::new(out, ids.len(), cols))
}
