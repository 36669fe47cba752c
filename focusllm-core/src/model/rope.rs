//! The model's rotary-embedding table, owned by the model and resident on its backend: cos/sin
//! of every position's angles, built once and grown when a forward reaches a later position; and
//! the tables of angle differences that move cached (rotated) keys to other positions.

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

/// Host rows of a table that moves rotated keys from positions `from[r]` to `to[r]`: row `r` is
/// the cosines, then the sines, of `a_i(to[r]) - a_i(from[r])`, each angle rounded to f32 as in
/// [`rope_table_rows`] and their difference taken exactly in f64, so that rotating a key at
/// `from[r]` by it is rotating the raw key at `to[r]`, up to f32 rounding.
pub fn rope_shift_rows(inv_freq: &[f32], from: &[usize], to: &[usize]) -> Vec<f32> {
    let half = inv_freq.len();
    let mut out = Vec::with_capacity(from.len() * 2 * half);
    for (&f, &t) in from.iter().zip(to) {
        let angles = inv_freq.iter().map(|&w| (t as f32 * w) as f64 - (f as f32 * w) as f64);
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

    /// The inverse frequencies, `head_dim / 2` of them.
    pub(crate) fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
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

#[cfg(test)]
mod tests {
    use super::{rope_shift_rows, rope_table_rows};

    /// Rotates one half-split head by a table row, in f64.
    fn rotate(x: &[f64], row: &[f32]) -> Vec<f64> {
        let half = x.len() / 2;
        let (cos, sin) = row.split_at(half);
        let mut out = x.to_vec();
        for i in 0..half {
            out[i] = x[i] * cos[i] as f64 - x[i + half] * sin[i] as f64;
            out[i + half] = x[i + half] * cos[i] as f64 + x[i] * sin[i] as f64;
        }
        out
    }

    #[test]
    fn shifting_a_rotated_key_equals_rotating_it_at_the_new_position() {
        let inv_freq: Vec<f32> = (0..32).map(|i| 10000f32.powf(-(2 * i) as f32 / 64.0)).collect();
        let key: Vec<f64> = (0..64).map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0).collect();
        let table = rope_table_rows(&inv_freq, 140_000);
        let row = |p: usize| &table[p * 64..(p + 1) * 64];
        for (from, to) in [(512, 0), (767, 3), (0, 130_000), (131_071, 17), (5, 5)] {
            let shift = rope_shift_rows(&inv_freq, &[from], &[to]);
            let moved = rotate(&rotate(&key, row(from)), &shift);
            let direct = rotate(&key, row(to));
            let worst = moved.iter().zip(&direct).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-6, "{from} -> {to}: max |diff| {worst}");
        }
    }
}
