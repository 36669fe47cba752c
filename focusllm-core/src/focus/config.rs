//! `FocusConfig`: the FocusLLM parameters (docs/algorithm.md) with the official defaults and validation.

use crate::error::{Error, Result};

/// How tokens are generated after a FocusLLM prefill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodeMode {
    /// As the official code: per token, every chunk runs `[prev, t]` over its raw cache for a fresh
    /// candidate, and the local context is recomputed from scratch over the fresh candidates.
    /// Cost per token: one 2-token forward per chunk plus a forward of `L + generated` tokens.
    #[default]
    Exact,
    /// The local keys/values are kept from prefill; per token the chunks refresh their candidates,
    /// which overwrite the candidate rows of the local cache, then one token is decoded.
    /// Cost per token: one 2-token forward per chunk plus one 1-token forward.
    CachedLocal,
    /// Candidates from prefill only, no per-chunk raw cache: memory stays bounded by one chunk
    /// batch however long the input. Cost per token: one 1-token forward.
    FrozenMemory,
    /// Training-free aggregation: every chunk (chunk ++ query ++ generated) and the local context
    /// decode in parallel with ordinary projections, and the next token comes from the context whose
    /// next-token distribution has the lowest entropy. Cost per token: one 1-token forward per chunk
    /// plus one for the local context.
    MinEntropy,
    /// Training-free reading by retrieval: every chunk runs `chunk ++ query` with the ordinary
    /// projections and is scored by how much it raises the query's log-likelihood over the query
    /// read alone; the first chunk and the best-scoring ones, in document order, are then read in
    /// full with plain attention together with the local context, within
    /// [`FocusConfig::read_budget`] tokens, and generation decodes plainly. Needs no adapter. Cost:
    /// the chunk forwards once, one plain forward of the read, then one 1-token forward per token.
    Retrieve,
}

impl DecodeMode {
    /// Every mode, in the order of the enum.
    pub const ALL: [DecodeMode; 5] = [
        DecodeMode::Exact,
        DecodeMode::CachedLocal,
        DecodeMode::FrozenMemory,
        DecodeMode::MinEntropy,
        DecodeMode::Retrieve,
    ];

    /// Parses the names used on command lines: `exact`, `cached-local` (or `cached`), `frozen`
    /// (or `frozen-memory`), `min-entropy` (or `entropy`), `retrieve`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "exact" => Ok(DecodeMode::Exact),
            "cached-local" | "cached" => Ok(DecodeMode::CachedLocal),
            "frozen" | "frozen-memory" => Ok(DecodeMode::FrozenMemory),
            "min-entropy" | "entropy" => Ok(DecodeMode::MinEntropy),
            "retrieve" => Ok(DecodeMode::Retrieve),
            _ => Err(Error::InvalidOption {
                name: "mode",
                value: text.to_string(),
                reason: "expected exact, cached-local, frozen, min-entropy or retrieve",
            }),
        }
    }

    /// The command-line name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            DecodeMode::Exact => "exact",
            DecodeMode::CachedLocal => "cached-local",
            DecodeMode::FrozenMemory => "frozen",
            DecodeMode::MinEntropy => "min-entropy",
            DecodeMode::Retrieve => "retrieve",
        }
    }

    /// Whether the mode keeps every chunk's raw keys/values after prefill.
    pub fn keeps_chunk_caches(self) -> bool {
        !matches!(self, DecodeMode::FrozenMemory | DecodeMode::Retrieve)
    }
}

/// The tokens put in front of the local context and of every chunk's query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Prefix {
    /// The model's BOS token if the input starts with it (i.e. the tokenizer adds one), else none.
    #[default]
    Auto,
    /// No prefix.
    None,
    /// The first `n` tokens of the input (e.g. a chat header).
    PromptHead(usize),
    /// These tokens.
    Tokens(Vec<u32>),
}

/// Where the candidates go in the local forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CandidateOrder {
    /// As the official code: candidates at positions `0..n`, then the prefix and the local tokens.
    #[default]
    CandidatesFirst,
    /// The prefix alone at `0..h` (it stays the attention sink), then the candidates, then the local
    /// body. Meant for copied (untrained) candidate projections.
    SinkFirst,
}

/// FocusLLM parameters. `Default` gives the official values: local window 2048, chunk size 2048,
/// query length min(512, S, L), threshold L + S, one candidate per chunk, exact decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FocusConfig {
    /// `L`: the last `L` tokens form the local context.
    pub local_window: usize,
    /// `S`: memory is split into chunks of `S` tokens (the official "memory_stride").
    pub chunk_size: usize,
    /// `Q`: the last `Q` local tokens are appended to every chunk; `None` = min(512, S, L).
    pub query_len: Option<usize>,
    /// Inputs shorter than this run plain attention; `None` = L + S.
    pub threshold: Option<usize>,
    /// Candidate tokens per chunk (the last ones of `chunk ++ query`). Only `FrozenMemory` takes more than 1.
    pub candidates_per_chunk: usize,
    /// How tokens are generated after prefill.
    pub decode: DecodeMode,
    /// How many chunks run in one batched forward (each weight read once per batch).
    pub chunk_batch: usize,
    /// What goes in front of the local context and of each query.
    pub prefix: Prefix,
    /// Where the candidates go in the local forward.
    pub order: CandidateOrder,
    /// Computes chunks with identical tokens once and shares the result (exact: identical chunks
    /// give identical candidates). Off by default: ordinary text never repeats a whole chunk; it
    /// pays on synthetic inputs with periodic filler, such as the passkey evaluation.
    pub share_identical_chunks: bool,
    /// [`DecodeMode::Retrieve`]: the most tokens its plain read may hold (the chunks read in full
    /// plus the local context); `None` = the model's window less [`ANSWER_ROOM`] tokens for the answer.
    pub read_budget: Option<usize>,
    /// [`DecodeMode::Retrieve`]: tokens of the neighbouring chunks read on each side of a chosen
    /// chunk that is not next to another chosen one, so that a fact cut by a chunk boundary is read
    /// whole; counted in the budget.
    pub read_margin: usize,
    /// [`DecodeMode::CachedLocal`]: how many chunks refresh their candidate per generated token,
    /// those the local context's last token attended to most (attention mass over every head and
    /// layer); the others keep the candidate they had, and run the tokens they missed when they
    /// are next chosen, so a chosen chunk's candidate is the one refreshing every chunk gives.
    /// Decoding then costs `k` chunk forwards per token however long the input. `None`: every
    /// chunk, every token.
    pub refresh_chunks: Option<usize>,
}

/// Tokens of the model's window that [`DecodeMode::Retrieve`] leaves free for the answer when
/// [`FocusConfig::read_budget`] is not set.
pub const ANSWER_ROOM: usize = 512;

impl Default for FocusConfig {
    fn default() -> Self {
        FocusConfig {
            local_window: 2048,
            chunk_size: 2048,
            query_len: None,
            threshold: None,
            candidates_per_chunk: 1,
            decode: DecodeMode::Exact,
            chunk_batch: 4,
            prefix: Prefix::Auto,
            order: CandidateOrder::CandidatesFirst,
            share_identical_chunks: false,
            read_budget: None,
            read_margin: 0,
            refresh_chunks: None,
        }
    }
}

impl FocusConfig {
    /// `Q` after defaults.
    pub fn query_len(&self) -> usize {
        self.query_len.unwrap_or_else(|| 512.min(self.chunk_size).min(self.local_window))
    }

    /// How many of a document's last tokens a reusable document memory keeps in the local context
    /// (docs/algorithm.md, "Read once, ask many"): `L - Q`, so that a question of at most `Q`
    /// tokens after them fills the local window as the official split does, and the document's
    /// chunks never move whatever the question.
    pub fn document_keep(&self) -> usize {
        self.local_window.saturating_sub(self.query_len())
    }

    /// `T` after defaults.
    pub fn threshold(&self) -> usize {
        self.threshold.unwrap_or(self.local_window + self.chunk_size)
    }

    /// The configuration a long-context reader should start from on a model whose native window
    /// is `window` tokens: these parameters with the threshold set past the window, so that every
    /// input the model can read whole is read with plain attention, and FocusLLM only takes over
    /// where plain attention runs out of window (docs/algorithm.md, "When FocusLLM takes over").
    pub fn past_window(self, window: usize) -> Self {
        FocusConfig { threshold: Some((window + 1).max(self.local_window + 1)), ..self }
    }

    /// Checks the parameters are usable together.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: usize, reason| Err(Error::InvalidOption { name, value: value.to_string(), reason });
        if self.local_window == 0 {
            return bad("local_window", 0, "must be at least 1");
        }
        if self.chunk_size == 0 {
            return bad("chunk_size", 0, "must be at least 1");
        }
        if self.chunk_batch == 0 {
            return bad("chunk_batch", 0, "must be at least 1");
        }
        let q = self.query_len();
        if q == 0 {
            return bad("query_len", q, "must be at least 1");
        }
        if q > self.local_window {
            return bad("query_len", q, "must not exceed the local window");
        }
        if self.candidates_per_chunk == 0 || self.candidates_per_chunk > q {
            return bad("candidates_per_chunk", self.candidates_per_chunk, "must be between 1 and query_len");
        }
        if let Some(k) = self.refresh_chunks {
            if k == 0 {
                return bad("refresh_chunks", k, "must be at least 1 (or None: every chunk)");
            }
            if self.decode != DecodeMode::CachedLocal {
                return bad("refresh_chunks", k, "only cached-local decoding refreshes some chunks");
            }
        }
        if self.candidates_per_chunk > 1 && self.decode != DecodeMode::FrozenMemory {
            return bad(
                "candidates_per_chunk",
                self.candidates_per_chunk,
                "more than one candidate needs the frozen decode mode",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip() {
        for mode in DecodeMode::ALL {
            assert_eq!(DecodeMode::parse(mode.name()).unwrap(), mode);
        }
        assert_eq!(DecodeMode::parse("cached").unwrap(), DecodeMode::CachedLocal);
        assert!(DecodeMode::parse("fast").is_err());
    }
}
