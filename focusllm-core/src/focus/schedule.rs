//! The chunk scheduler: how an input is split into memory chunks, a query and a local context.

use std::ops::Range;

use super::config::{FocusConfig, Prefix};

/// How one input is processed by FocusLLM (docs/algorithm.md, "Prefill").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Tokens in front of the local context and of the query.
    pub prefix: Vec<u32>,
    /// The memory chunks, as ranges of the input (consecutive, `chunk_size` long, the last may be shorter).
    pub chunks: Vec<Range<usize>>,
    /// The local context, the last `local_window` tokens of the input.
    pub local: Range<usize>,
    /// What every chunk is followed by: the prefix (unless already there) then the last `query_len`
    /// local tokens. Its last token is the candidate.
    pub query: Vec<u32>,
    /// The local forward's tokens: the prefix (unless the local context starts with it) then the local context.
    pub local_tokens: Vec<u32>,
    /// Length of the prefix inside `local_tokens` (0 when the local context already started with it).
    pub local_prefix_len: usize,
}

/// `prefix ++ body`, unless `body` already starts with `prefix`; returns the tokens and the prefix length used.
fn with_prefix(prefix: &[u32], body: &[u32]) -> (Vec<u32>, usize) {
    if body.starts_with(prefix) {
        (body.to_vec(), 0)
    } else {
        let mut out = Vec::with_capacity(prefix.len() + body.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(body);
        (out, prefix.len())
    }
}

/// The prefix the configuration asks for, resolved against the input.
pub fn resolve_prefix(prefix: &Prefix, tokens: &[u32], bos: Option<u32>) -> Vec<u32> {
    match prefix {
        Prefix::Auto => match (bos, tokens.first()) {
            (Some(b), Some(&first)) if first == b => vec![b],
            _ => Vec::new(),
        },
        Prefix::None => Vec::new(),
        Prefix::PromptHead(n) => tokens[..(*n).min(tokens.len())].to_vec(),
        Prefix::Tokens(t) => t.clone(),
    }
}

/// Plans the prefill of `tokens`; `None` means plain attention (the input is below the threshold,
/// or no longer than the local window so there is no memory).
pub fn plan(tokens: &[u32], config: &FocusConfig, bos: Option<u32>) -> Option<Plan> {
    let n = tokens.len();
    let l = config.local_window;
    if n < config.threshold() || n <= l {
        return None;
    }
    let prefix = resolve_prefix(&config.prefix, tokens, bos);
    let memory_len = n - l;
    let s = config.chunk_size;
    let chunks = (0..memory_len).step_by(s).map(|start| start..(start + s).min(memory_len)).collect();
    let local = memory_len..n;
    let q = config.query_len();
    let (query, _) = with_prefix(&prefix, &tokens[n - q..]);
    let (local_tokens, local_prefix_len) = with_prefix(&prefix, &tokens[local.clone()]);
    Some(Plan { prefix, chunks, local, query, local_tokens, local_prefix_len })
}

/// Plans the read of a document followed by a question, with a split that does not depend on the
/// question (docs/algorithm.md, "Read once, ask many"). `tokens` is the document's `doc_len` ids
/// followed by the question's *tail* (the question, the end of the turn and the assistant's header);
/// a `doc_len` past the end of `tokens` is taken as the whole of it.
///
/// The memory is the document less its last [`FocusConfig::document_keep`] tokens, cut into
/// `chunk_size` chunks from the start; the local context is those kept tokens followed by the
/// tail; the query is the last `query_len` tokens of `tokens`. The prefix is resolved against the
/// document alone. `None` (plain attention) when the document is shorter than the threshold or
/// leaves no memory: both decided by the document, never by the question.
pub fn plan_document(doc_len: usize, tokens: &[u32], config: &FocusConfig, bos: Option<u32>) -> Option<Plan> {
    let n = tokens.len();
    let doc_len = doc_len.min(n);
    let keep = config.document_keep();
    if doc_len < config.threshold() || doc_len <= keep {
        return None;
    }
    let prefix = resolve_prefix(&config.prefix, &tokens[..doc_len], bos);
    let memory_len = doc_len - keep;
    let s = config.chunk_size;
    let chunks = (0..memory_len).step_by(s).map(|start| start..(start + s).min(memory_len)).collect();
    let local = memory_len..n;
    let q = config.query_len().min(n);
    let (query, _) = with_prefix(&prefix, &tokens[n - q..]);
    let (local_tokens, local_prefix_len) = with_prefix(&prefix, &tokens[local.clone()]);
    Some(Plan { prefix, chunks, local, query, local_tokens, local_prefix_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(l: usize, s: usize, q: usize) -> FocusConfig {
        FocusConfig { local_window: l, chunk_size: s, query_len: Some(q), ..FocusConfig::default() }
    }

    #[test]
    fn below_threshold_or_window_is_plain() {
        let tokens: Vec<u32> = (0..15).collect();
        assert!(plan(&tokens, &cfg(8, 8, 4), None).is_none()); // 15 < 16
        let c = FocusConfig { threshold: Some(4), ..cfg(20, 8, 4) };
        assert!(plan(&tokens, &c, None).is_none()); // threshold <= n <= L
    }

    #[test]
    fn splits_memory_and_builds_query() {
        let tokens: Vec<u32> = (100..125).collect(); // 25 tokens, L = 8, S = 6 -> memory 17 = 6+6+5
        let p = plan(&tokens, &cfg(8, 6, 3), None).unwrap();
        assert_eq!(p.chunks, vec![0..6, 6..12, 12..17]);
        assert_eq!(p.local, 17..25);
        assert_eq!(p.query, vec![122, 123, 124]);
        assert_eq!(p.local_tokens, (117..125).collect::<Vec<_>>());
        // Auto prefix: BOS only when the input starts with it.
        let mut with_bos = tokens.clone();
        with_bos[0] = 1;
        let p = plan(&with_bos, &cfg(8, 6, 3), Some(1)).unwrap();
        assert_eq!(p.query, vec![1, 122, 123, 124]);
        assert_eq!((p.local_tokens[0], p.local_prefix_len, p.local_tokens.len()), (1, 1, 9));
        let p = plan(&tokens, &cfg(8, 6, 3), Some(1)).unwrap();
        assert!(p.prefix.is_empty());
        // A chat-header prefix taken from the prompt.
        let c = FocusConfig { prefix: Prefix::PromptHead(2), ..cfg(8, 6, 3) };
        assert_eq!(plan(&tokens, &c, None).unwrap().query, vec![100, 101, 122, 123, 124]);
    }

    #[test]
    fn document_chunks_do_not_depend_on_the_question() {
        // L = 8, Q = 3: the document keeps its last 5 tokens in the local context.
        let c = FocusConfig { threshold: Some(10), ..cfg(8, 6, 3) };
        let doc: Vec<u32> = (100..125).collect(); // 25 tokens -> memory 20 = 6+6+6+2
        let short = [doc.clone(), vec![7, 8]].concat();
        let long = [doc.clone(), (0..11).collect()].concat();
        let (a, b) = (plan_document(25, &short, &c, None).unwrap(), plan_document(25, &long, &c, None).unwrap());
        assert_eq!(a.chunks, vec![0..6, 6..12, 12..18, 18..20]);
        assert_eq!(a.chunks, b.chunks);
        assert_eq!((a.local.clone(), b.local.clone()), (20..27, 20..36));
        assert_eq!(a.query, vec![124, 7, 8]);
        assert_eq!(b.query, vec![8, 9, 10]);
        // Decided by the document: too short a document is plain whatever the question.
        assert!(plan_document(9, &long, &c, None).is_none());
        assert!(plan_document(5, &[doc.clone(), vec![0; 40]].concat(), &FocusConfig { threshold: Some(1), ..c }, None)
            .is_none());
    }
}
