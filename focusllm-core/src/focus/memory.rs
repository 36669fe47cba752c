//! Dynamic condensing: every chunk runs `chunk ++ query` in batched forwards; the candidate
//! token's keys/values become the chunk's memory. The chunk's part is computed here from its
//! tokens, or taken from a kept raw cache of the chunk (a [`super::Document`]'s, or the model's
//! chunk cache's): one path for both.

use std::sync::Arc;

use crate::backend::Backend;
use crate::budget::cache_bytes;
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
    Kept(&'p [Arc<KvCache<B>>]),
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
    /// The progress reported: `(before, total)` reports `before + chunks done` of `total`.
    pub progress: (usize, usize),
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
            Chunks::Kept(kept) => kept[start..end].iter().map(|c| (spec.query.to_vec(), KvCache::clone(c))).unzip(),
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
        let (before, of) = spec.progress;
        control.report(Progress::Prefill { done: before + ((b + 1) * spec.batch).min(total), total: of });
    }
    Ok(out)
}

/// The raw caches (the chunk's tokens alone, keys rotated at their positions in the chunk) of
/// `chunks`: taken from the model's chunk cache where it holds them, the others computed `batch`
/// at a time and offered to it. Progress is reported as `progress` says, over the computed chunks.
pub(crate) fn raw_caches<B: Backend>(
    model: &Model<B>,
    chunks: &[&[u32]],
    batch: usize,
    progress: (usize, usize),
    control: &Control,
) -> Result<Vec<Arc<KvCache<B>>>> {
    let store = &model.chunk_store;
    let found: Vec<Option<Arc<KvCache<B>>>> = chunks.iter().map(|c| store.get(c)).collect();
    let missing: Vec<&[u32]> = chunks.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(c, _)| *c).collect();
    let spec = CondenseSpec {
        chunks: Chunks::Tokens(missing),
        query: &[],
        candidates: 0,
        keep_caches: true,
        logits: false,
        batch,
        progress,
    };
    let mut computed = condense(model, &spec, control)?.chunk_caches.into_iter();
    let mut out = Vec::with_capacity(chunks.len());
    for (tokens, hit) in chunks.iter().zip(found) {
        let cache = match hit {
            Some(cache) => cache,
            None => {
                let cache = Arc::new(computed.next().ok_or_else(|| Error::Backend {
                    backend: model.backend().name(),
                    message: "condensing returned fewer chunk caches than chunks".into(),
                })?);
                store.insert(tokens, Arc::clone(&cache), cache_bytes(model, cache.len()));
                cache
            }
        };
        out.push(cache);
    }
    Ok(out)
}
