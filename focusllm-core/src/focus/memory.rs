//! Dynamic condensing: every chunk runs `chunk ++ query` in batched forwards; the candidate
//! token's keys/values become the chunk's memory. The chunk's part is computed here from its
//! tokens, or taken from a kept raw cache of the chunk (a [`super::Document`]'s): one path for both.

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

/// Where the chunks' part of every `chunk ++ query` forward comes from.
pub(crate) enum Chunks<'p, B: Backend> {
    /// The chunks' tokens: each forward runs `chunk ++ query` from an empty cache.
    Tokens(Vec<&'p [u32]>),
    /// The chunks' raw caches (keys/values of the chunk tokens alone, keys rotated at their
    /// positions in the chunk): each forward runs the query over a copy of one, which stays as it is.
    Kept(&'p [KvCache<B>]),
}

impl<B: Backend> Chunks<'_, B> {
    /// How many chunks there are.
    pub fn len(&self) -> usize {
        match self {
            Chunks::Tokens(t) => t.len(),
            Chunks::Kept(k) => k.len(),
        }
    }
}

/// What to run and keep while condensing.
pub(crate) struct CondenseSpec<'p, B: Backend> {
    /// The chunks.
    pub chunks: Chunks<'p, B>,
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

/// Runs every chunk's `chunk ++ query` forward, `batch` chunks at a time, with cancellation
/// between batches and a progress report after each, and keeps what `spec` asks for.
pub(crate) fn condense<B: Backend>(
    model: &Model<B>,
    spec: &CondenseSpec<'_, B>,
    control: &Control,
) -> Result<Condensed<B>> {
    let total = spec.chunks.len();
    let mut out = Condensed { candidates: Vec::new(), chunk_caches: Vec::new(), last_logits: Vec::new() };
    let starts: Vec<usize> = (0..total).step_by(spec.batch).collect();
    for (b, &start) in starts.iter().enumerate() {
        if control.cancelled() {
            return Err(Error::Cancelled);
        }
        let end = (start + spec.batch).min(total);
        let (group, mut caches): (Vec<Vec<u32>>, Vec<KvCache<B>>) = match &spec.chunks {
            Chunks::Tokens(chunks) => {
                chunks[start..end].iter().map(|c| ([*c, spec.query].concat(), model.new_cache())).unzip()
            }
            Chunks::Kept(kept) => kept[start..end].iter().map(|c| (spec.query.to_vec(), c.clone())).unzip(),
        };
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
                out.candidates.push(cache.split_off_last(model, spec.candidates)?);
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
