//! Dynamic condensing: every chunk runs `chunk ++ query` in batched forwards; the candidate
//! token's keys/values become the chunk's memory.

use crate::backend::Backend;
use crate::control::{Control, Progress};
use crate::error::{Error, Result};
use crate::model::{KvCache, LogitsFor, Model, SeqInput};

/// What condensing keeps of the chunks.
pub(crate) struct Condensed<B: Backend> {
    /// Per chunk, the candidates' keys/values (empty when condensing without candidates).
    pub candidates: Vec<KvCache<B>>,
    /// Per chunk, the raw keys/values of the other tokens (only when asked to keep them).
    pub chunk_caches: Vec<KvCache<B>>,
    /// Per chunk, the logits at its last position (only when asked for).
    pub last_logits: Vec<Vec<f32>>,
}

/// What to run and keep while condensing.
pub(crate) struct CondenseSpec<'p> {
    /// The chunks' tokens.
    pub chunks: Vec<&'p [u32]>,
    /// Appended to every chunk.
    pub query: &'p [u32],
    /// Trailing candidate tokens per chunk (0: ordinary forwards, as the min-entropy mode runs them).
    pub candidates: usize,
    /// Whether each chunk's raw cache is kept.
    pub keep_caches: bool,
    /// Whether each chunk's last-position logits are returned.
    pub logits: bool,
    /// Chunks per batched forward.
    pub batch: usize,
}

pub(crate) fn condense<B: Backend>(
    model: &Model<B>,
    spec: &CondenseSpec<'_>,
    control: &Control,
) -> Result<Condensed<B>> {
    let total = spec.chunks.len();
    let mut out = Condensed { candidates: Vec::new(), chunk_caches: Vec::new(), last_logits: Vec::new() };
    let inputs: Vec<Vec<u32>> = spec.chunks.iter().map(|c| [*c, spec.query].concat()).collect();
    for (b, group) in inputs.chunks(spec.batch).enumerate() {
        if control.cancelled() {
            return Err(Error::Cancelled);
        }
        let mut caches: Vec<KvCache<B>> = group.iter().map(|_| model.new_cache()).collect();
        let logits_for = if spec.logits { LogitsFor::Last } else { LogitsFor::None };
        let mut batch: Vec<SeqInput<'_, B>> = group
            .iter()
            .zip(caches.iter_mut())
            .map(|(tokens, cache)| SeqInput { tokens, cache, candidates: spec.candidates, logits: logits_for })
            .collect();
        let logits = model.forward(&mut batch)?;
        drop(batch);
        for (mut cache, logits) in caches.into_iter().zip(logits) {
            if spec.candidates > 0 {
                out.candidates.push(cache.split_off_last(model.backend(), spec.candidates)?);
            }
            if spec.keep_caches {
                out.chunk_caches.push(cache);
            }
            if spec.logits {
                out.last_logits.push(logits.data);
            }
        }
        control.report(Progress::Prefill { done: ((b + 1) * spec.batch).min(total), total: total + 1 });
    }
    Ok(out)
}
