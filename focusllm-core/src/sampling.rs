//! Choosing the next token from logits: greedy, temperature, top-k, top-p, repetition penalty.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// How the next token is chosen. The default is greedy decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 means greedy (arg-max).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p`; 1 disables.
    pub top_p: f32,
    /// Penalty (> 1 discourages) on tokens already in the prompt or output, as in transformers; 1 disables.
    pub repetition_penalty: f32,
    /// Seed of the random generator, for reproducible sampling.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 0.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, seed: 0 }
    }
}

impl Sampling {
    /// Greedy decoding (the default).
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Checks every field is in range.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: f32, reason| Err(Error::InvalidOption { name, value: value.to_string(), reason });
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature", self.temperature, "must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "must be in (0, 1]");
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            return bad("repetition_penalty", self.repetition_penalty, "must be a finite number > 0");
        }
        Ok(())
    }
}

/// Index of the largest value (the first one on ties, as `torch.argmax`).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// A [`Sampling`] policy with its random state.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: Sampling,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded from `config.seed`.
    pub fn new(config: Sampling) -> Result<Self> {
        config.validate()?;
        let rng = StdRng::seed_from_u64(config.seed);
        Ok(Sampler { config, rng })
    }

    /// Picks the next token from `logits` (modified in place); `history` is the prompt and output so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let c = &self.config;
        if c.repetition_penalty != 1.0 {
            for &id in history {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l < 0.0 { *l * c.repetition_penalty } else { *l / c.repetition_penalty };
                }
            }
        }
        if c.temperature == 0.0 {
            return argmax(logits) as u32;
        }
        let mut candidates: Vec<(u32, f32)> =
            logits.iter().enumerate().map(|(i, &l)| (i as u32, l / c.temperature)).collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        if c.top_k > 0 {
            candidates.truncate(c.top_k);
        }
        let max = candidates[0].1;
        let mut total = 0.0f64;
        for cand in candidates.iter_mut() {
            cand.1 = (cand.1 - max).exp();
            total += cand.1 as f64;
        }
        if c.top_p < 1.0 {
            let mut mass = 0.0f64;
            let mut keep = candidates.len();
            for (i, cand) in candidates.iter().enumerate() {
                mass += cand.1 as f64 / total;
                if mass >= c.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            candidates.truncate(keep);
            total = candidates.iter().map(|c| c.1 as f64).sum();
        }
        let mut r = self.rng.random::<f64>() * total;
        for &(id, p) in &candidates {
            r -= p as f64;
            if r <= 0.0 {
                return id;
            }
        }
        candidates.last().map_or(0, |c| c.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_max_and_penalty_applies() {
        let mut s = Sampler::new(Sampling::greedy()).unwrap();
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, -1.0], &[]), 1);
        let mut s = Sampler::new(Sampling { repetition_penalty: 2.0, ..Sampling::greedy() }).unwrap();
        assert_eq!(s.sample(&mut [1.0, 3.0, 2.0], &[1]), 2);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproduces() {
        let cfg = Sampling { temperature: 1.0, top_k: 1, ..Sampling::default() };
        let mut s = Sampler::new(cfg).unwrap();
        assert_eq!(s.sample(&mut [0.1, 0.5, 0.2], &[]), 1);
        let cfg = Sampling { temperature: 1.0, seed: 7, ..Sampling::default() };
        let logits = [0.3f32, 0.2, 0.1, 0.4, 0.0];
        let run = |cfg: &Sampling| {
            let mut s = Sampler::new(cfg.clone()).unwrap();
            (0..20).map(|_| s.sample(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(&cfg), run(&cfg));
        assert!(run(&cfg).iter().any(|&t| t != 3), "sampling at temperature 1 should not be constant");
    }

    #[test]
    fn rejects_bad_options() {
        assert!(Sampler::new(Sampling { top_p: 0.0, ..Sampling::default() }).is_err());
        assert!(Sampler::new(Sampling { temperature: -1.0, ..Sampling::default() }).is_err());
        assert!(Sampler::new(Sampling { temperature: f32::NAN, ..Sampling::default() }).is_err());
    }
}
