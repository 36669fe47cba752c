//! Training-free reading by retrieval ([`DecodeMode::Retrieve`](super::DecodeMode::Retrieve)):
//! the chunks are scored by what their own forwards already compute, and the best ones are read in
//! full with plain attention (docs/algorithm.md, "Reading by retrieval").

use crate::backend::Backend;
use crate::control::{Control, Progress};
use crate::decode::PlainDecoder;
use crate::error::{Error, Result};
use crate::model::{KvCache, LogitsFor, Model, SeqInput};

use super::config::{FocusConfig, ANSWER_ROOM};
use super::decoder::distinct_chunks;
use super::memory::raw_caches;
use super::schedule::Plan;

/// `log softmax(logits)[target]`, in f64.
fn log_prob(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits[target as usize] as f64 - max - z.ln()
}

/// Log-probabilities of `query[1..]`, each given what precedes it, from logits whose last
/// `query.len()` rows are the query's positions.
fn query_log_probs(logits: &[f32], vocab: usize, query: &[u32]) -> Vec<f64> {
    let q0 = logits.len() / vocab - query.len();
    let row = |r: usize| &logits[r * vocab..(r + 1) * vocab];
    (1..query.len()).map(|i| log_prob(row(q0 + i - 1), query[i])).collect()
}

/// Every chunk's relevance to `query`: the log-likelihood of the query's tokens (all but its first)
/// after `chunk ++ query[..i]`, less their log-likelihood after the query alone, summed. A chunk
/// that holds what the query asks about makes the query's words predictable (the model copies
/// them from the chunk); a chunk about something else leaves them as the query alone does.
/// The forwards use the ordinary projections, so no adapter is needed. With the model's chunk
/// cache on, the query runs over copies of the chunks' raw caches taken from it (or computed and
/// offered to it).
pub fn score_chunks<B: Backend>(
    model: &Model<B>,
    chunks: &[&[u32]],
    query: &[u32],
    batch: usize,
    control: &Control,
) -> Result<Vec<f64>> {
    if query.len() < 2 {
        return Err(Error::InvalidOption {
            name: "query_len",
            value: query.len().to_string(),
            reason: "scoring chunks needs a query of at least 2 tokens",
        });
    }
    model.check_tokens(query)?;
    for chunk in chunks {
        model.check_tokens(chunk)?;
    }
    let vocab = model.config().vocab_size;
    let mut alone = model.new_cache();
    let base = query_log_probs(&model.forward_one(query, &mut alone, LogitsFor::All)?.data, vocab, query);
    drop(alone);
    let batch = batch.max(1);
    // Progress: the chunks computed for the chunk cache (if on), then every chunk's query.
    let (kept, before) = if model.chunk_store.enabled() {
        let computed = chunks.iter().filter(|c| !model.chunk_store.contains(c)).count();
        (Some(raw_caches(model, chunks, batch, (0, computed + chunks.len() + 1), control)?), computed)
    } else {
        (None, 0)
    };
    let total = before + chunks.len() + 1;
    let mut scores = Vec::with_capacity(chunks.len());
    for start in (0..chunks.len()).step_by(batch) {
        if control.cancelled() {
            return Err(Error::Cancelled);
        }
        let end = (start + batch).min(chunks.len());
        let (inputs, mut caches): (Vec<Vec<u32>>, Vec<KvCache<B>>) = match &kept {
            None => chunks[start..end].iter().map(|c| ([*c, query].concat(), model.new_cache())).unzip(),
            Some(kept) => kept[start..end].iter().map(|c| (query.to_vec(), KvCache::clone(c))).unzip(),
        };
        let mut seqs: Vec<SeqInput<'_, B>> = inputs
            .iter()
            .zip(caches.iter_mut())
            .map(|(tokens, cache)| SeqInput { tokens, cache, candidates: 0, logits: LogitsFor::Tail(query.len()) })
            .collect();
        for logits in model.forward(&mut seqs)? {
            let with = query_log_probs(&logits.data, vocab, query);
            scores.push(with.iter().zip(&base).map(|(w, b)| w - b).sum());
        }
        control.report(Progress::Prefill { done: before + end, total });
    }
    Ok(scores)
}

/// The chunks to read: the first one (the start of the prompt: its system turn and the attention
/// sink) and then the best-scoring others while their tokens fit in `budget` beside `local_len`
/// local tokens; returned in document order. A chunk that would overflow the budget is passed
/// over for smaller ones after it.
pub fn select_chunks(lengths: &[usize], scores: &[f64], local_len: usize, budget: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (1..lengths.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut used = local_len;
    let mut chosen = Vec::new();
    for c in std::iter::once(0).chain(order) {
        if c < lengths.len() && used + lengths[c] <= budget {
            used += lengths[c];
            chosen.push(c);
        }
    }
    chosen.sort_unstable();
    chosen
}

/// The ranges of the input that the read holds: each chosen chunk widened by `margin` tokens on
/// both sides (not before the input, not into the local context that starts at `end`), with
/// overlapping or touching ranges merged.
fn margined(
    chunks: &[std::ops::Range<usize>],
    chosen: &[usize],
    margin: usize,
    end: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for &c in chosen {
        let r = chunks[c].start.saturating_sub(margin)..(chunks[c].end + margin).min(end);
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Scores the plan's chunks, reads the chosen ones and the local context with plain attention, and
/// returns the plain decoder with the last position's logits.
pub(crate) fn prefill<'a, B: Backend>(
    model: &'a Model<B>,
    tokens: &[u32],
    plan: &Plan,
    config: &FocusConfig,
    control: &Control,
) -> Result<(PlainDecoder<'a, B>, Vec<f32>)> {
    let budget =
        config.read_budget.unwrap_or_else(|| model.config().max_position_embeddings.saturating_sub(ANSWER_ROOM));
    if tokens.len() <= budget {
        // Everything fits: the read is the whole input, and scoring would choose nothing away.
        return PlainDecoder::prefill(model, tokens, control);
    }
    let all: Vec<&[u32]> = plan.chunks.iter().map(|r| &tokens[r.clone()]).collect();
    let (distinct, of) = distinct_chunks(&all, config.share_identical_chunks);
    let run: Vec<&[u32]> = distinct.iter().map(|&c| all[c]).collect();
    let distinct_scores = score_chunks(model, &run, &plan.query, config.chunk_batch, control)?;
    let scores: Vec<f64> = of.iter().map(|&d| distinct_scores[d]).collect();
    let margin = config.read_margin;
    let lengths: Vec<usize> =
        all.iter().enumerate().map(|(c, r)| r.len() + if c > 0 { 2 * margin } else { margin }).collect();
    let local = &tokens[plan.local.clone()];
    let chosen = select_chunks(&lengths, &scores, local.len(), budget);
    let read: Vec<u32> = margined(&plan.chunks, &chosen, margin, plan.local.start)
        .into_iter()
        .flat_map(|r| tokens[r].iter().copied())
        .chain(local.iter().copied())
        .collect();
    if control.cancelled() {
        return Err(Error::Cancelled);
    }
    let (decoder, logits) = PlainDecoder::prefill(model, &read, &Control { progress: None, ..control.clone() })?;
    let total = plan.chunks.len() + 1;
    control.report(Progress::Prefill { done: total, total });
    Ok((decoder, logits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_keeps_the_first_chunk_and_document_order() {
        let lengths = [4, 4, 4, 4, 2];
        let scores = [-9.0, 1.0, 5.0, 3.0, 4.0];
        // Budget 12 with 2 local tokens: chunk 0 (4), then 2 (4), then 4 (2); 3 would overflow.
        assert_eq!(select_chunks(&lengths, &scores, 2, 12), vec![0, 2, 4]);
        assert_eq!(select_chunks(&lengths, &scores, 2, 16), vec![0, 2, 3, 4]);
        // The first chunk does not fit, a smaller one does; then nothing but the local context.
        assert_eq!(select_chunks(&lengths, &scores, 2, 5), vec![4]);
        assert!(select_chunks(&lengths, &scores, 2, 3).is_empty());
        // A budget past everything reads everything.
        assert_eq!(select_chunks(&lengths, &scores, 2, 100), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn margins_widen_and_merge_the_chosen_chunks() {
        let chunks = [0..10, 10..20, 20..30, 30..40];
        assert_eq!(margined(&chunks, &[0, 2], 0, 40), vec![0..10, 20..30]);
        assert_eq!(margined(&chunks, &[0, 2], 3, 40), vec![0..13, 17..33]);
        // Touching ranges merge; nothing runs into the local context at 40.
        assert_eq!(margined(&chunks, &[1, 3], 5, 40), vec![5..40]);
    }

    #[test]
    fn query_log_probs_read_the_rows_before_each_token() {
        // Vocabulary 2; three rows of which the last two are the query's positions.
        let logits = [0.0, 0.0, 0.0, 5.0, 5.0, 0.0];
        let lp = query_log_probs(&logits, 2, &[0, 0]);
        // query[1] = 0 is predicted by the row of query[0], the second row: [0, 5].
        assert_eq!(lp.len(), 1);
        assert!((lp[0] - (-5.0 - (1.0 + (-5.0f64).exp()).ln())).abs() < 1e-9);
    }
}
