//! The FocusLLM flags, named as [`FocusConfig`]'s fields, shared by every subcommand: each one
//! given overrides the size or setting the command's policy starts from.

use focusllm::{CandidateOrder, DecodeMode, FocusConfig, Prefix};

use crate::error::CliError;

/// FocusLLM options over a command's defaults; what is not given keeps the default.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "FocusLLM options")]
pub struct FocusArgs {
    /// L: the last L tokens form the local context.
    #[arg(long, value_name = "N", alias = "local")]
    pub local_window: Option<usize>,

    /// S: the tokens before the local context are split into chunks of S tokens.
    #[arg(long, value_name = "N", alias = "chunk")]
    pub chunk_size: Option<usize>,

    /// Q: the last Q local tokens are appended to every chunk.
    #[arg(long, value_name = "N", alias = "query")]
    pub query_len: Option<usize>,

    /// Prompts of at least N tokens are read with FocusLLM, shorter ones with plain attention.
    #[arg(long, value_name = "N")]
    pub threshold: Option<usize>,

    /// Candidate tokens per chunk (more than one needs --decode frozen).
    #[arg(long, value_name = "N")]
    pub candidates_per_chunk: Option<usize>,

    /// How tokens are generated after a FocusLLM read: exact, cached-local, frozen, min-entropy
    /// or retrieve.
    #[arg(long, value_name = "MODE", alias = "mode", value_parser = parse_decode)]
    pub decode: Option<DecodeMode>,

    /// Chunks condensed in one batched forward.
    #[arg(long, value_name = "N")]
    pub chunk_batch: Option<usize>,

    /// What goes in front of the local context and of every chunk's query.
    #[arg(long, value_enum, value_name = "PREFIX")]
    pub prefix: Option<PrefixArg>,

    /// Where the candidates go in the local forward.
    #[arg(long, value_enum, value_name = "ORDER")]
    pub order: Option<OrderArg>,

    /// Compute chunks with identical tokens once (pays on periodic synthetic text).
    #[arg(long, alias = "share-chunks", overrides_with = "no_share_identical_chunks")]
    pub share_identical_chunks: bool,

    /// Compute every chunk, even identical ones.
    #[arg(long, alias = "no-share-chunks", overrides_with = "share_identical_chunks")]
    pub no_share_identical_chunks: bool,

    /// Retrieval: the most tokens its plain read may hold (chunks read in full plus the local context).
    #[arg(long, value_name = "N")]
    pub read_budget: Option<usize>,

    /// Retrieval: tokens of the neighbouring chunks read on each side of a chosen chunk.
    #[arg(long, value_name = "N")]
    pub read_margin: Option<usize>,

    /// Cached-local decoding only: chunks whose candidate is refreshed per generated token (those
    /// the answer attends to most), or `all` [default with the adapter in `ask`, `chat` and
    /// `serve`: 8].
    #[arg(long, value_name = "N|all", value_parser = parse_refresh)]
    pub refresh_chunks: Option<Refresh>,

    /// Never read with FocusLLM: plain attention only (a prompt past the window is refused).
    #[arg(long)]
    pub plain: bool,
}

/// `--prefix`: [`Prefix`] as a command line names it.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixArg {
    /// The model's BOS token if the prompt starts with it.
    Auto,
    /// No prefix.
    None,
    /// The chat template's header (everything before the user's text).
    Header,
}

/// `--order`: [`CandidateOrder`] as a command line names it.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderArg {
    /// Candidates first, then the prefix and the local tokens (the official order).
    CandidatesFirst,
    /// The prefix first (it stays the attention sink), then the candidates and the local body.
    SinkFirst,
}

/// `--refresh-chunks`: a count, or every chunk (`all`, as `None` in [`FocusConfig::refresh_chunks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refresh(pub Option<usize>);

/// Parses `--refresh-chunks`: a positive count or `all`.
pub fn parse_refresh(text: &str) -> Result<Refresh, String> {
    match text {
        "all" => Ok(Refresh(None)),
        _ => match text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Refresh(Some(n))),
            _ => Err("expected a positive number of chunks or `all`".to_string()),
        },
    }
}

/// Parses `--decode` with the library's own names.
pub fn parse_decode(text: &str) -> Result<DecodeMode, String> {
    DecodeMode::parse(text).map_err(|_| "expected exact, cached-local, frozen, min-entropy or retrieve".to_string())
}

impl FocusArgs {
    /// `base` with every flag given applied; `header_len` is the prompt's chat header, which
    /// `--prefix header` puts in front of each chunk's query.
    pub fn over(&self, base: FocusConfig, header_len: usize) -> FocusConfig {
        let decode = self.decode.unwrap_or(base.decode);
        // Only cached-local decoding refreshes some chunks (commands that read in several modes
        // apply the flag to their cached-local ones).
        let refresh_chunks = match (decode, self.refresh_chunks) {
            (DecodeMode::CachedLocal, Some(Refresh(n))) => n,
            (DecodeMode::CachedLocal, None) => base.refresh_chunks,
            _ => None,
        };
        FocusConfig {
            local_window: self.local_window.unwrap_or(base.local_window),
            chunk_size: self.chunk_size.unwrap_or(base.chunk_size),
            query_len: self.query_len.or(base.query_len),
            threshold: self.threshold.or(base.threshold),
            candidates_per_chunk: self.candidates_per_chunk.unwrap_or(base.candidates_per_chunk),
            decode,
            chunk_batch: self.chunk_batch.unwrap_or(base.chunk_batch),
            prefix: match self.prefix {
                None => base.prefix,
                Some(PrefixArg::Auto) => Prefix::Auto,
                Some(PrefixArg::None) => Prefix::None,
                Some(PrefixArg::Header) => Prefix::PromptHead(header_len),
            },
            order: match self.order {
                None => base.order,
                Some(OrderArg::CandidatesFirst) => CandidateOrder::CandidatesFirst,
                Some(OrderArg::SinkFirst) => CandidateOrder::SinkFirst,
            },
            share_identical_chunks: (self.share_identical_chunks || base.share_identical_chunks)
                && !self.no_share_identical_chunks,
            read_budget: self.read_budget.or(base.read_budget),
            read_margin: self.read_margin.unwrap_or(base.read_margin),
            refresh_chunks,
        }
    }

    /// Refuses the reading flags that a command with a list of reading modes does not use
    /// (`--decode` and `--plain`: its `--modes` say how each row reads), rather than ignore them.
    pub fn refuse_reading_flags(&self, command: &str, instead: &str) -> Result<(), CliError> {
        let given = match (self.decode.is_some(), self.plain) {
            (true, _) => "--decode",
            (false, true) => "--plain",
            (false, false) => return Ok(()),
        };
        Err(CliError::Usage(format!("{command} does not take {given}: {instead}")))
    }
}
