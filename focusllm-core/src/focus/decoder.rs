//! The FocusLLM prefill's local forward and [`FocusDecoder`], the [`Decoder`] of every mode but
//! `Retrieve` (which decodes plainly).

use std::ops::Range;
use std::sync::Arc;

use crate::backend::Backend;
use crate::budget::ensure_fits;
use crate::control::{Control, Progress};
use crate::decode::Decoder;
use crate::error::{Error, Result};
use crate::model::{KvCache, LogitsFor, MassProbe, Model, SeqInput};

use super::config::{CandidateOrder, DecodeMode, FocusConfig};
use super::memory::{condense, raw_caches, Chunks, CondenseSpec, Condensed};
use super::schedule::Plan;

/// What the local forward gives.
struct Local<B: Backend> {
    /// The local cache.
    cache: KvCache<B>,
    /// The last position's logits.
    logits: Vec<f32>,
    /// Where the candidates sit in the cache.
    candidates_at: usize,
    /// When probed, the attention mass the last position puts on each candidate row.
    mass: Option<Vec<f64>>,
}

/// The local forward over the candidates, probing the attention mass on them when `probe` is set.
fn local_forward<B: Backend>(
    model: &Model<B>,
    candidates: &[KvCache<B>],
    local_tokens: &[u32],
    prefix_len: usize,
    order: CandidateOrder,
    probe: bool,
) -> Result<Local<B>> {
    let memory = KvCache::concat(model, &candidates.iter().collect::<Vec<_>>())?;
    let (mut cache, at, tail) = match order {
        CandidateOrder::SinkFirst if prefix_len > 0 => {
            let mut cache = model.new_cache();
            model.forward_one(&local_tokens[..prefix_len], &mut cache, LogitsFor::None)?;
            cache.extend(model, &memory)?;
            (cache, prefix_len, &local_tokens[prefix_len..])
        }
        _ => (memory, 0, local_tokens),
    };
    let rows = at..at + candidates.iter().map(KvCache::len).sum::<usize>();
    let (logits, mass) = last_logits(model, tail, &mut cache, probe.then_some(rows))?;
    Ok(Local { cache, logits, candidates_at: at, mass })
}

/// Runs `tokens` over `cache` for the last position's logits and, when `rows` is given, the
/// attention mass that position puts on each of those cached rows.
fn last_logits<B: Backend>(
    model: &Model<B>,
    tokens: &[u32],
    cache: &mut KvCache<B>,
    rows: Option<Range<usize>>,
) -> Result<(Vec<f32>, Option<Vec<f64>>)> {
    match rows {
        None => Ok((model.forward_one(tokens, cache, LogitsFor::Last)?.data, None)),
        Some(rows) => {
            let mut probe = MassProbe::new(rows);
            let logits = model.forward_one_probed(tokens, cache, LogitsFor::Last, &mut probe)?;
            Ok((logits.data, Some(probe.mass)))
        }
    }
}

/// Runs each `(cache, tokens)` through the chunk's raw cache (the last token the candidate) and
/// returns the fresh candidates in the same order; the other tokens join the raw cache as ordinary
/// tokens.
fn refresh_candidates<B: Backend>(
    model: &Model<B>,
    mut work: Vec<(&mut KvCache<B>, Vec<u32>)>,
    batch: usize,
    control: &Control,
) -> Result<Vec<KvCache<B>>> {
    let mut fresh = Vec::with_capacity(work.len());
    for group in work.chunks_mut(batch) {
        if control.cancelled() {
            return Err(Error::Cancelled);
        }
        let mut inputs: Vec<SeqInput<'_, B>> = group
            .iter_mut()
            .map(|(cache, tokens)| SeqInput { tokens, cache: &mut **cache, candidates: 1, logits: LogitsFor::None })
            .collect();
        model.forward(&mut inputs)?;
        drop(inputs);
        for (cache, _) in group.iter_mut() {
            fresh.push(cache.split_off_last(model, 1)?);
        }
    }
    Ok(fresh)
}

/// The distinct chunks whose candidates a cached-local step refreshes, in order: all of them, or
/// the `k` with the most attention mass (a distinct chunk's mass summed over the chunks that share
/// it; ties to the earlier chunk).
fn chosen_chunks(mass: Option<&[f64]>, of: &[usize], distinct: usize, k: Option<usize>) -> Vec<usize> {
    let (Some(mass), Some(k)) = (mass, k) else { return (0..distinct).collect() };
    if k >= distinct {
        return (0..distinct).collect();
    }
    let mut total = vec![0.0f64; distinct];
    for (&d, &m) in of.iter().zip(mass) {
        total[d] += m;
    }
    let mut order: Vec<usize> = (0..distinct).collect();
    order.sort_by(|&a, &b| total[b].total_cmp(&total[a]).then(a.cmp(&b)));
    order.truncate(k);
    order.sort_unstable();
    order
}

/// Cached-local decoding's per-chunk progress: the tokens generated so far that join every raw
/// chunk cache (the input's last token first), and how many of them each distinct chunk has run.
struct Lag {
    history: Vec<u32>,
    done: Vec<usize>,
}

/// Shannon entropy (nats) of softmax(logits).
fn entropy(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut z = 0.0f64;
    let mut weighted = 0.0f64;
    for &l in logits {
        let x = l as f64 - max;
        let e = x.exp();
        z += e;
        weighted += e * x;
    }
    z.ln() - weighted / z
}

/// The logits of the lowest-entropy distribution (the first on ties).
fn min_entropy(candidates: Vec<Vec<f32>>) -> Vec<f32> {
    let mut best: Option<(f64, Vec<f32>)> = None;
    for logits in candidates {
        let h = entropy(&logits);
        if best.as_ref().is_none_or(|(bh, _)| h < *bh) {
            best = Some((h, logits));
        }
    }
    best.map(|(_, l)| l).unwrap_or_default()
}

/// Which chunks are computed: `(distinct, of)` where `distinct` lists the chunks that run and
/// `of[c]` is the index into `distinct` whose result chunk `c` takes. Without sharing every chunk runs.
pub(super) fn distinct_chunks(chunks: &[&[u32]], share: bool) -> (Vec<usize>, Vec<usize>) {
    if !share {
        return ((0..chunks.len()).collect(), (0..chunks.len()).collect());
    }
    let mut first: std::collections::HashMap<&[u32], usize> = std::collections::HashMap::new();
    let mut distinct = Vec::new();
    let of = chunks
        .iter()
        .enumerate()
        .map(|(c, tokens)| {
            *first.entry(*tokens).or_insert_with(|| {
                distinct.push(c);
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, of)
}

/// Every chunk's candidates, in chunk order, from the distinct chunks' ones.
fn per_chunk<B: Backend>(distinct: Vec<KvCache<B>>, of: &[usize]) -> Vec<KvCache<B>> {
    if distinct.is_empty() || (of.len() == distinct.len() && of.iter().enumerate().all(|(c, &d)| c == d)) {
        return distinct;
    }
    of.iter().map(|&d| distinct[d].clone()).collect()
}

/// Refuses, with a typed error, a FocusLLM prefill whose caches cannot fit in the backend's free
/// memory or `control`'s budget: the kept raw caches of the distinct chunks (`chunk_lens` tokens
/// each, plus the query; only in modes that keep them), the local window with every chunk's
/// candidates, and the `control.reserve_tokens` still to generate.
pub(super) fn check_memory<B: Backend>(
    model: &Model<B>,
    chunk_lens: &[usize],
    plan: &Plan,
    config: &FocusConfig,
    mode: DecodeMode,
    control: &Control,
) -> Result<()> {
    let kept = if mode.keeps_chunk_caches() { chunk_lens.iter().map(|n| n + plan.query.len()).sum() } else { 0 };
    let local = plan.local_tokens.len() + plan.chunks.len() * config.candidates_per_chunk + control.reserve_tokens;
    ensure_fits(model, kept + local, control, || {
        format!(
            "the key/value caches of {} chunks and the local window ({} decoding keeps {} of the chunks' raw tokens)",
            chunk_lens.len(),
            mode.name(),
            kept
        )
    })
}

/// Per decode mode, what generation keeps. `chunk_caches` holds the distinct chunks' raw caches;
/// `of` maps every chunk to its distinct one.
enum State<B: Backend> {
    Exact {
        candidates: Vec<KvCache<B>>,
        chunk_caches: Vec<KvCache<B>>,
        of: Vec<usize>,
        local_tokens: Vec<u32>,
    },
    CachedLocal {
        chunk_caches: Vec<KvCache<B>>,
        of: Vec<usize>,
        local: KvCache<B>,
        candidates_at: usize,
        lag: Lag,
        /// Per chunk, the attention mass of the last local forward on its candidate (only when
        /// refreshing some chunks).
        mass: Option<Vec<f64>>,
    },
    Frozen {
        local: KvCache<B>,
    },
    MinEntropy {
        chunk_caches: Vec<KvCache<B>>,
        local: KvCache<B>,
    },
}

/// Generation after a FocusLLM prefill, in the configured [`DecodeMode`].
pub(crate) struct FocusDecoder<'a, B: Backend> {
    model: &'a Model<B>,
    config: FocusConfig,
    prefix_len: usize,
    control: Control,
    /// The last token fed (the current candidate position of every chunk).
    prev: u32,
    state: State<B>,
}

impl<'a, B: Backend> FocusDecoder<'a, B> {
    /// Condenses the memory chunks and runs the local forward; returns the decoder and the logits
    /// of the input's last position. With the model's chunk cache on, the chunks' raw caches are
    /// taken from it (or computed and offered to it) and the query runs over copies of them, as
    /// [`FocusDecoder::from_kept`] does.
    pub(crate) fn prefill(
        model: &'a Model<B>,
        tokens: &[u32],
        plan: &Plan,
        config: &FocusConfig,
        control: Control,
    ) -> Result<(Self, Vec<f32>)> {
        let all: Vec<&[u32]> = plan.chunks.iter().map(|r| &tokens[r.clone()]).collect();
        let (distinct, of) = distinct_chunks(&all, config.share_identical_chunks);
        let chunks: Vec<&[u32]> = distinct.iter().map(|&c| all[c]).collect();
        let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        check_memory(model, &lens, plan, config, config.decode, &control)?;
        let prev = *tokens.last().ok_or(Error::EmptyInput { what: "the prompt" })?;
        if !model.chunk_store.enabled() {
            return Self::condense_and_finish(model, Chunks::Tokens(chunks), of, plan, config, control, prev, 0);
        }
        // Progress: the chunks computed, then every chunk's query, then the local forward.
        let computed = chunks.iter().filter(|c| !model.chunk_store.contains(c)).count();
        let total = computed + chunks.len() + 1;
        let kept = raw_caches(model, &chunks, config.chunk_batch, (0, total), &control)?;
        Self::condense_and_finish(model, Chunks::Kept(&kept), of, plan, config, control, prev, computed)
    }

    /// [`FocusDecoder::prefill`] over the kept raw caches of the distinct chunks (`of` maps every
    /// chunk to its distinct one): the query runs over a copy of each, the kept caches stay as
    /// they are. `prev` is the input's last token.
    pub(super) fn from_kept(
        model: &'a Model<B>,
        kept: &[Arc<KvCache<B>>],
        of: Vec<usize>,
        plan: &Plan,
        config: &FocusConfig,
        control: Control,
        prev: u32,
    ) -> Result<(Self, Vec<f32>)> {
        Self::condense_and_finish(model, Chunks::Kept(kept), of, plan, config, control, prev, 0)
    }

    /// The shared part of both: condensing, then the local forward and the mode's state;
    /// `before` chunks were already reported done (computed for the chunk cache).
    #[allow(clippy::too_many_arguments)]
    fn condense_and_finish(
        model: &'a Model<B>,
        chunks: Chunks<'_, B>,
        of: Vec<usize>,
        plan: &Plan,
        config: &FocusConfig,
        control: Control,
        prev: u32,
        before: usize,
    ) -> Result<(Self, Vec<f32>)> {
        let mode = config.decode;
        let total = before + chunks.len() + 1;
        let min_entropy_mode = mode == DecodeMode::MinEntropy;
        let spec = CondenseSpec {
            chunks,
            query: &plan.query,
            candidates: if min_entropy_mode { 0 } else { config.candidates_per_chunk },
            keep_caches: mode.keeps_chunk_caches(),
            logits: min_entropy_mode,
            batch: config.chunk_batch,
            progress: (before, total),
        };
        let Condensed { candidates, chunk_caches, last_logits } = condense(model, &spec, &control)?;
        let candidates = per_chunk(candidates, &of);
        if control.cancelled() {
            return Err(Error::Cancelled);
        }
        let prefix_len = plan.local_prefix_len;
        let (state, logits) = match mode {
            DecodeMode::MinEntropy => {
                let mut local = model.new_cache();
                let own = model.forward_one(&plan.local_tokens, &mut local, LogitsFor::Last)?.data;
                let mut all = last_logits;
                all.push(own);
                (State::MinEntropy { chunk_caches, local }, min_entropy(all))
            }
            DecodeMode::Exact => {
                let logits =
                    local_forward(model, &candidates, &plan.local_tokens, prefix_len, config.order, false)?.logits;
                (State::Exact { candidates, chunk_caches, of, local_tokens: plan.local_tokens.clone() }, logits)
            }
            DecodeMode::CachedLocal => {
                let probe = config.refresh_chunks.is_some();
                let Local { cache: local, logits, candidates_at: at, mass } =
                    local_forward(model, &candidates, &plan.local_tokens, prefix_len, config.order, probe)?;
                let lag = Lag { history: vec![prev], done: vec![0; chunk_caches.len()] };
                (State::CachedLocal { chunk_caches, of, local, candidates_at: at, lag, mass }, logits)
            }
            DecodeMode::FrozenMemory => {
                let Local { cache: local, logits, .. } =
                    local_forward(model, &candidates, &plan.local_tokens, prefix_len, config.order, false)?;
                (State::Frozen { local }, logits)
            }
            DecodeMode::Retrieve => {
                return Err(Error::InvalidOption {
                    name: "decode",
                    value: mode.name().to_string(),
                    reason: "reading by retrieval decodes plainly; start it with prefill",
                })
            }
        };
        control.report(Progress::Prefill { done: total, total });
        Ok((FocusDecoder { model, config: config.clone(), prefix_len, control, prev, state }, logits))
    }
}

impl<B: Backend> Decoder for FocusDecoder<'_, B> {
    fn step(&mut self, token: u32) -> Result<Vec<f32>> {
        let model = self.model;
        model.check_tokens(&[token])?;
        let batch = self.config.chunk_batch;
        let prev = std::mem::replace(&mut self.prev, token);
        match &mut self.state {
            State::Exact { candidates, chunk_caches, of, local_tokens } => {
                let work = chunk_caches.iter_mut().map(|cache| (cache, vec![prev, token])).collect();
                *candidates = per_chunk(refresh_candidates(model, work, batch, &self.control)?, of);
                local_tokens.push(token);
                let order = self.config.order;
                Ok(local_forward(model, candidates, local_tokens, self.prefix_len, order, false)?.logits)
            }
            State::CachedLocal { chunk_caches, of, local, candidates_at, lag, mass } => {
                let distinct = chunk_caches.len();
                let chosen = chosen_chunks(mass.as_deref(), of, distinct, self.config.refresh_chunks);
                // Each chosen chunk runs the tokens it missed, then the new one as its candidate.
                let mut slot = vec![None; chunk_caches.len()];
                let mut work = Vec::with_capacity(chosen.len());
                let mut caches: Vec<Option<&mut KvCache<B>>> = chunk_caches.iter_mut().map(Some).collect();
                for (i, &d) in chosen.iter().enumerate() {
                    let tokens = [&lag.history[lag.done[d]..], &[token]].concat();
                    work.push((caches[d].take().expect("distinct chunks are chosen once"), tokens));
                    lag.done[d] = lag.history.len();
                    slot[d] = Some(i);
                }
                // When only some chunks are chosen they run in one forward: each brings a couple of
                // rows, so one pass over the weights serves them all. (All of them keep the
                // batches of refreshing every chunk, which they then are, to the last bit.)
                let together = if chosen.len() < distinct { batch.max(work.len()) } else { batch };
                let fresh = refresh_candidates(model, work, together, &self.control)?;
                lag.history.push(token);
                // Every chunk taking a refreshed distinct chunk's candidate gets it in the local cache.
                let (rows, parts): (Vec<usize>, Vec<&KvCache<B>>) = of
                    .iter()
                    .enumerate()
                    .filter_map(|(c, &d)| slot[d].map(|i| (*candidates_at + c, &fresh[i])))
                    .unzip();
                local.overwrite(model, &rows, &KvCache::concat(model, &parts)?)?;
                let probe = mass.is_some().then(|| *candidates_at..*candidates_at + of.len());
                let (logits, new_mass) = last_logits(model, &[token], local, probe)?;
                *mass = new_mass;
                Ok(logits)
            }
            State::Frozen { local } => Ok(model.forward_one(&[token], local, LogitsFor::Last)?.data),
            State::MinEntropy { chunk_caches, local } => {
                let tokens = [token];
                let mut all = Vec::with_capacity(chunk_caches.len() + 1);
                let mut caches: Vec<&mut KvCache<B>> = chunk_caches.iter_mut().chain(std::iter::once(local)).collect();
                for group in caches.chunks_mut(batch) {
                    if self.control.cancelled() {
                        return Err(Error::Cancelled);
                    }
                    let mut inputs: Vec<SeqInput<'_, B>> = group
                        .iter_mut()
                        .map(|cache| SeqInput {
                            tokens: &tokens,
                            cache: &mut **cache,
                            candidates: 0,
                            logits: LogitsFor::Last,
                        })
                        .collect();
                    all.extend(model.forward(&mut inputs)?.into_iter().map(|l| l.data));
                }
                Ok(min_entropy(all))
            }
        }
    }
}
