//! Rotary position embedding at given positions (half-split layout).
//!
//! The kernel reads a (cos, sin) table computed on the host in f64 from the f32 angle
//! `f32(pos) * inv_freq[i]` (bit-for-bit the CPU backend's values). A forward calls RoPE with the
//! same positions in every layer, so recent tables stay on the device and are reused.

use std::sync::{Arc, Mutex};

use focusllm_core::Result;

use super::{Shader, WeightType};
use crate::context::{err, Context, Dispatch};
use crate::pool::PooledBuffer;
use crate::tensor::WgpuTensor;

/// Tables kept on the device (a batched forward uses two: query and key positions).
const CACHED_TABLES: usize = 8;

/// A table on the device and the (positions, frequencies) it was computed from.
type Entry = (Vec<u32>, Vec<f32>, Arc<PooledBuffer>);

/// Recently used tables, most recent last.
#[derive(Default)]
pub(crate) struct RopeTables {
    entries: Mutex<Vec<Entry>>,
}

impl RopeTables {
    fn get(&self, ctx: &Context, positions: &[u32], inv_freq: &[f32]) -> Result<Arc<PooledBuffer>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = entries.iter().position(|(p, f, _)| p == positions && f == inv_freq) {
            let entry = entries.remove(i);
            let table = Arc::clone(&entry.2);
            entries.push(entry);
            return Ok(table);
        }
        let mut data = Vec::with_capacity(positions.len() * inv_freq.len() * 2);
        for &pos in positions {
            for &f in inv_freq {
                let (s, c) = ((pos as f32 * f) as f64).sin_cos();
                data.extend([c as f32, s as f32]);
            }
        }
        let table = Arc::new(ctx.upload(&data, "rope table")?);
        if entries.len() == CACHED_TABLES {
            entries.remove(0);
        }
        entries.push((positions.to_vec(), inv_freq.to_vec(), Arc::clone(&table)));
        Ok(table)
    }
}

pub(crate) fn rope(
    ctx: &Context,
    x: &WgpuTensor,
    positions: &[u32],
    inv_freq: &[f32],
    head_dim: usize,
) -> Result<WgpuTensor> {
    if positions.len() != x.rows {
        return Err(err(format!("rope: {} positions for {} rows", positions.len(), x.rows)));
    }
    if head_dim == 0 || head_dim % 2 != 0 || x.cols % head_dim != 0 || inv_freq.len() != head_dim / 2 {
        return Err(err(format!("rope: width {} with head_dim {head_dim} and {} frequencies", x.cols, inv_freq.len())));
    }
    let out = ctx.alloc(x.bytes(), "rope output")?;
    let pairs = (x.rows * x.cols / 2) as u64;
    if pairs == 0 {
        return Ok(WgpuTensor::new(out, x.rows, x.cols));
    }
    let table = ctx.rope_tables.get(ctx, positions, inv_freq)?;
    let kernel = ctx.kernel(Shader::Rope, "main", WeightType::F32)?;
    ctx.run(&[Dispatch {
        kernel: &kernel,
        params: [x.rows as u32, x.cols as u32, head_dim as u32, 0, 0, 0, 0, 0],
        buffers: vec![&x.buf, &table, &out],
        groups: ctx.grid(pairs.div_ceil(256))?,
    }])?;
    Ok(WgpuTensor::new(out, x.rows, x.cols))
}
