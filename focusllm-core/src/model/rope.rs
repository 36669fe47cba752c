//! The model's rotary-embedding table, owned by the model and resident on its backend: cos/sin
//! of every position's angles, built once and grown when a forward reaches a later position
//! (every forward re-rotates the whole pre-RoPE key cache, so the trigonometry is never redone).

use std::sync::{Arc, RwLock};

use crate::backend::Backend;
use crate::check::Checked;
use crate::error::Result;

/// Host rows of a RoPE table for positions `0..len`: row `p` is `cos(a_0..a_{h-1})` then
/// `sin(a_0..a_{h-1})` with `a_i = f32(p) * inv_freq[i]`, the angle rounded to f32 as transformers
/// computes it and its cosine and sine taken in f64. The layout [`Backend::rope`] reads.
pub fn rope_table_rows(inv_freq: &[f32], len: usize) -> Vec<f32> {
    let half = inv_freq.len();
    let mut out = Vec::with_capacity(len * 2 * half);
    for pos in 0..len {
        let angles = inv_freq.iter().map(|&f| (pos as f32 * f) as f64);
        out.extend(angles.clone().map(|a| a.cos() as f32));
        out.extend(angles.map(|a| a.sin() as f32));
    }
    out
}

/// A built table: the device tensor `[len, head_dim]` and how many positions it covers.
pub(crate) struct Built<B: Backend> {
    pub(crate) table: B::Tensor,
    pub(crate) len: usize,
}

/// The RoPE table of one model: built on first use, regrown geometrically when a later position
/// is needed, shared by every thread that runs the model.
pub struct RopeTable<B: Backend> {
    inv_freq: Vec<f32>,
    built: RwLock<Option<Arc<Built<B>>>>,
}

/// Positions a table is first built for.
const MIN_POSITIONS: usize = 256;

impl<B: Backend> RopeTable<B> {
    /// An empty table for these inverse frequencies (`head_dim / 2` of them).
    pub fn new(inv_freq: Vec<f32>) -> Self {
        RopeTable { inv_freq, built: RwLock::new(None) }
    }

    /// The device table covering at least positions `0..positions`.
    pub(crate) fn covering(&self, backend: Checked<'_, B>, positions: usize) -> Result<Arc<Built<B>>> {
        let covers = |b: &Option<Arc<Built<B>>>| b.as_ref().filter(|b| b.len >= positions).cloned();
        if let Some(b) = covers(&self.built.read().unwrap_or_else(|e| e.into_inner())) {
            return Ok(b);
        }
        let mut guard = self.built.write().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = covers(&guard) {
            return Ok(b);
        }
        let len = positions.max(guard.as_ref().map_or(0, |b| b.len.saturating_mul(2))).max(MIN_POSITIONS);
        let head_dim = 2 * self.inv_freq.len();
        let table = backend.from_host(&rope_table_rows(&self.inv_freq, len), len, head_dim)?;
        let built = Arc::new(Built { table, len });
        *guard = Some(Arc::clone(&built));
        Ok(built)
    }
}
