//! The FocusLLM sizes the commands start from, where `ask` switches to FocusLLM on the default
//! model (docs/evaluation.md says how they were chosen), and the chunk cache's default size.

use focusllm::{DecodeMode, FocusConfig};

/// The sizes the built-in adapter was trained with (L = S = 512, Q = 256), over the official
/// defaults for everything else.
pub fn adapter_sizes() -> FocusConfig {
    FocusConfig { local_window: 512, chunk_size: 512, query_len: Some(256), ..FocusConfig::default() }
}

/// The sizes reading by retrieval starts from: chunks of 512 tokens scored by the last 32 tokens
/// of the prompt (the question and the assistant's header), a local window of 512 tokens, and a
/// read of 2048 tokens (the first chunk, the two best, the local context), the budget chosen on
/// the evaluation suite's dev split.
pub fn retrieve_sizes() -> FocusConfig {
    FocusConfig {
        local_window: 512,
        chunk_size: 512,
        query_len: Some(32),
        decode: DecodeMode::Retrieve,
        read_budget: Some(2048),
        ..FocusConfig::default()
    }
}

/// Where `ask` switches from plain attention to FocusLLM on the default model: the crossover
/// measured on the evaluation suite.
pub const DEFAULT_MODEL_SWITCH: usize = 4096;

/// Chunks whose candidates cached-local decoding refreshes per token when `ask`, `chat` and
/// `serve` read with the adapter (`--refresh-chunks`): decoding then costs the same at every
/// length, with the accuracy of refreshing every chunk on the evaluation suite (docs/evaluation.md).
pub const DEFAULT_REFRESH_CHUNKS: usize = 8;

/// The chunk cache's default size in MiB for `serve` and `chat`: about 85 chunks of 512 tokens of
/// the default model, a 44K-token document.
pub const DEFAULT_CHUNK_CACHE_MIB: u64 = 2048;
