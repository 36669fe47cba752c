//! The attention mass a sequence's last query row puts on some of its cached keys, summed over
//! heads and layers: how FocusLLM's cached-local decoding ranks the chunks whose candidates it
//! refreshes (docs/algorithm.md, "Refreshing only the chunks read").

use std::ops::Range;

use crate::backend::HeadLayout;

/// What a forward records for [`super::Model::forward_probed`]: the mass on key rows `rows`.
#[derive(Debug, Clone)]
pub(crate) struct MassProbe {
    /// The key rows (positions) whose mass is summed.
    pub rows: Range<usize>,
    /// Per row of `rows`, the softmax probability the last query row gives it, summed over every
    /// head of every layer (so the total over all keys is `layers * heads`).
    pub mass: Vec<f64>,
}

impl MassProbe {
    /// A probe of key rows `rows`, nothing recorded yet.
    pub fn new(rows: Range<usize>) -> Self {
        let mass = vec![0.0; rows.len()];
        MassProbe { rows, mass }
    }

    /// Adds one layer: `q` is the last query row `[heads * head_dim]` and `keys` the `len` cached
    /// keys `[len, kv_heads * head_dim]`, both rotated, the query at position `len - 1`.
    pub fn add_layer(&mut self, q: &[f32], keys: &[f32], h: HeadLayout) {
        let (hd, kv_dim) = (h.head_dim, h.num_kv_heads * h.head_dim);
        let group = h.num_heads / h.num_kv_heads.max(1);
        let len = keys.len() / kv_dim.max(1);
        let scale = h.scale;
        // Keys before the query's window get no mass: scored as -inf.
        let first = h.first_key(len.saturating_sub(1));
        let mut scores = vec![0.0f32; len];
        for head in 0..h.num_heads {
            let qh = &q[head * hd..(head + 1) * hd];
            let col = (head / group) * hd;
            for (j, s) in scores.iter_mut().enumerate() {
                let k = &keys[j * kv_dim + col..j * kv_dim + col + hd];
                *s = if j < first {
                    f32::NEG_INFINITY
                } else {
                    qh.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale
                };
            }
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f64 = scores.iter().map(|&s| ((s - max) as f64).exp()).sum();
            for (m, &s) in self.mass.iter_mut().zip(&scores[self.rows.start.min(len)..self.rows.end.min(len)]) {
                *m += ((s - max) as f64).exp() / total;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mass_is_the_softmax_of_the_scores() {
        // One head of width 2, three keys; the query picks out the second.
        let h = HeadLayout::new(1, 1, 2);
        let mut probe = MassProbe::new(1..3);
        probe.add_layer(&[2.0, 0.0], &[0.0, 0.0, 1.0, 0.0, -1.0, 0.0], h);
        let s = 2.0f64 / 2f64.sqrt();
        let z = 1.0 + s.exp() + (-s).exp();
        assert!((probe.mass[0] - s.exp() / z).abs() < 1e-6 && (probe.mass[1] - (-s).exp() / z).abs() < 1e-6);
        // Two query heads sharing one kv head add up.
        let h2 = HeadLayout::new(2, 1, 2);
        let mut both = MassProbe::new(0..3);
        both.add_layer(&[2.0, 0.0, 2.0, 0.0], &[0.0, 0.0, 1.0, 0.0, -1.0, 0.0], h2);
        assert!((both.mass.iter().sum::<f64>() - 2.0).abs() < 1e-9);
    }
}
