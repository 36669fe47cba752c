//! Rotary position embedding with a table of cos/sin per position, grown on demand and kept
//! between calls (every forward re-rotates the whole pre-RoPE key cache, so recomputing the
//! trigonometry would dominate decoding).

use std::sync::{Arc, RwLock};

use rayon::prelude::*;

use crate::tensor::CpuTensor;

/// cos/sin of `position * inv_freq[i]` for positions `0..len`, row-major `[len, half]`.
#[derive(Default)]
struct Table {
    inv_freq: Vec<f32>,
    len: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Table {
    fn covers(&self, inv_freq: &[f32], positions: usize) -> bool {
        self.inv_freq == inv_freq && self.len >= positions
    }

    fn build(inv_freq: &[f32], len: usize) -> Table {
        let half = inv_freq.len();
        let mut cos = vec![0.0f32; len * half];
        let mut sin = vec![0.0f32; len * half];
        cos.par_chunks_mut(half.max(1)).zip(sin.par_chunks_mut(half.max(1))).enumerate().for_each(|(pos, (c, s))| {
            for i in 0..half {
                // The angle is rounded to f32 as transformers computes it, then cos/sin taken exactly.
                let angle = (pos as f32 * inv_freq[i]) as f64;
                c[i] = angle.cos() as f32;
                s[i] = angle.sin() as f32;
            }
        });
        Table { inv_freq: inv_freq.to_vec(), len, cos, sin }
    }
}

/// The cached table, shared by every call of one backend.
#[derive(Default)]
pub(crate) struct RopeCache(RwLock<Arc<Table>>);

impl RopeCache {
    fn table(&self, inv_freq: &[f32], positions: usize) -> Arc<Table> {
        if let Ok(t) = self.0.read() {
            if t.covers(inv_freq, positions) {
                return t.clone();
            }
        }
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        if !guard.covers(inv_freq, positions) {
            // Grow geometrically so a decode loop rebuilds the table rarely.
            let len = positions.max(guard.len.saturating_mul(2)).max(256);
            *guard = Arc::new(Table::build(inv_freq, len));
        }
        guard.clone()
    }

    /// Half-split rotation of every head of every row; row `r` is at `positions[r]`.
    pub(crate) fn apply(&self, x: &CpuTensor, positions: &[u32], inv_freq: &[f32], head_dim: usize) -> CpuTensor {
        let half = head_dim / 2;
        let max = positions.iter().copied().max().map_or(0, |p| p as usize + 1);
        let table = self.table(inv_freq, max);
        let mut out = x.data.clone();
        out.par_chunks_mut(x.cols.max(1)).zip(positions.par_iter()).for_each(|(row, &pos)| {
            let at = pos as usize * half;
            let (cos, sin) = (&table.cos[at..at + half], &table.sin[at..at + half]);
            for head in row.chunks_exact_mut(head_dim) {
                let (a, b) = head.split_at_mut(half);
                for i in 0..half {
                    let (x1, x2) = (a[i], b[i]);
                    a[i] = x1 * cos[i] - x2 * sin[i];
                    b[i] = x2 * cos[i] + x1 * sin[i];
                }
            }
        });
        CpuTensor::new(out, x.rows, x.cols)
    }
}
