//! `linear`: `x @ W^T + bias`, one dispatch per weight part. Up to four rows (decode steps) go
//! through a matrix-vector kernel; up to 32 rows (short prompts, FocusLLM's two-token chunk steps)
//! through the tiled kernel with 16x64 tiles; more through 64x64 tiles.

use focusllm_core::Result;

use super::Shader;
use crate::context::{err, Context, Dispatch};
use crate::tensor::{WgpuTensor, WgpuWeight};

/// Rows up to which the matrix-vector kernel is used.
pub(crate) const MATVEC_MAX_ROWS: usize = 4;
/// Rows up to which the tiled kernel uses 16-row tiles.
const NARROW_MAX_ROWS: usize = 32;
const TILE_N: u64 = 64;
const MATVEC_COLS: u64 = 8;

pub(crate) fn linear(ctx: &Context, x: &WgpuTensor, w: &WgpuWeight, bias: Option<&WgpuWeight>) -> Result<WgpuTensor> {
    let bias_buf = bias.map(|b| b.vector("linear bias", w.rows)).transpose()?;
    let (m, n, k) = (x.rows, w.rows, w.cols);
    let out = ctx.alloc((m * n * 4) as u64, "linear output")?;
    if m == 0 || n == 0 {
        return Ok(WgpuTensor::new(out, m, n));
    }
    let small = m <= MATVEC_MAX_ROWS;
    let rows_per_thread: u64 = if m <= NARROW_MAX_ROWS { 1 } else { 4 };
    let kernel = if small {
        ctx.kernel(Shader::Matvec, "main", w.dtype)?
    } else {
        ctx.kernel_with(Shader::Matmul, "main", w.dtype, &format!("const RM: u32 = {rows_per_thread}u;"))?
    };
    let mut dispatches = Vec::with_capacity(w.parts.len());
    for part in &w.parts {
        let groups = if small {
            ctx.grid((part.rows as u64).div_ceil(MATVEC_COLS))?
        } else {
            let gx = (part.rows as u64).div_ceil(TILE_N);
            let gy = (m as u64).div_ceil(16 * rows_per_thread);
            let max = u64::from(ctx.limits.max_compute_workgroups_per_dimension);
            if gx > max || gy > max {
                return Err(err(format!("linear: [{m}, {k}] x [{n}, {k}]^T exceeds the adapter's dispatch limits")));
            }
            [gx as u32, gy as u32, 1]
        };
        dispatches.push(Dispatch {
            kernel: &kernel,
            params: [
                m as u32,
                part.rows as u32,
                k as u32,
                part.start as u32,
                n as u32,
                u32::from(bias.is_some()),
                0,
                0,
            ],
            buffers: vec![&x.buf, &part.buffer, bias_buf.unwrap_or(&ctx.dummy), &out],
            groups,
        });
    }
    ctx.run(&dispatches)?;
    Ok(WgpuTensor::new(out, m, n))
}
