//! The reading policy of `ask`, `chat` and the server: which adapter is loaded, whether a prompt is
//! read with plain attention or FocusLLM, and with which sizes.
//!
//! On the default model the built-in adapter is loaded and FocusLLM reads with the sizes it was
//! trained with, in cached-local decoding refreshing [`DEFAULT_REFRESH_CHUNKS`] chunks per token,
//! from [`DEFAULT_MODEL_SWITCH`] tokens on. Without an adapter (`--no-adapter`, or another model
//! without `--adapter FILE`) FocusLLM reads by retrieval, which needs no training; on another model
//! it takes over only past the model's window. Every FocusLLM flag given overrides the size it
//! names; `--plain` turns FocusLLM off.

use focusllm::{CancelToken, ChatMessage, DecodeMode, FocusConfig, GenerateOptions, Llm, ProgressCallback, Sampling};

use crate::error::CliError;
use crate::focus_args::FocusArgs;
use crate::model_args::ModelArgs;
use crate::prompt;
use crate::sizes::{adapter_sizes, retrieve_sizes, DEFAULT_MODEL_SWITCH, DEFAULT_REFRESH_CHUNKS};

/// A loaded model with the policy `ask` reads documents by.
pub struct Reader {
    llm: Llm,
    /// The loaded adapter's name, if any.
    adapter: Option<String>,
    /// The FocusLLM configuration for long prompts; `None` with `--plain`.
    focus: Option<FocusConfig>,
}

// The server shares one `Reader` between its request handlers.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Reader>();
};

impl Reader {
    /// Loads the model and its adapter, and fixes the FocusLLM configuration from the flags.
    pub fn load(model: &ModelArgs, focus: &FocusArgs) -> Result<Reader, CliError> {
        let adapter = model.adapter();
        let llm = model.load(adapter.as_ref())?;
        let config = (!focus.plain).then(|| policy(&llm, adapter.is_some(), model.is_default_model(), focus));
        if let Some(config) = &config {
            config.validate()?;
        }
        Ok(Reader { llm, adapter: adapter.map(|a| a.name()), focus: config })
    }

    /// The FocusLLM configuration the policy reads long prompts with; `None` with `--plain`.
    pub fn focus_config(&self) -> Option<&FocusConfig> {
        self.focus.as_ref()
    }

    /// The loaded model.
    pub fn llm(&self) -> &Llm {
        &self.llm
    }

    /// Token ids of a conversation under the model's chat template with the assistant's turn
    /// opened (or the `{user}\nAnswer:` fallback when the model has none).
    pub fn chat_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, CliError> {
        if messages.is_empty() {
            return Err(CliError::Usage("a conversation needs at least one message".into()));
        }
        let text = match self.llm.chat_template() {
            Some(template) => template.render(messages, true)?,
            None => plain_transcript(messages),
        };
        Ok(self.llm.tokenizer().encode(&text)?)
    }

    /// Generation options for a prompt of `prompt_len` tokens: FocusLLM when the policy reads a
    /// prompt that long with it, else plain attention; the given max tokens, sampling, progress
    /// and cancel.
    pub fn options(
        &self,
        prompt_len: usize,
        max_tokens: usize,
        sampling: Sampling,
        cancel: Option<CancelToken>,
        progress: Option<ProgressCallback>,
    ) -> GenerateOptions {
        GenerateOptions {
            max_tokens,
            sampling,
            cancel,
            progress,
            focus: self.focus_for(prompt_len).cloned(),
            ..GenerateOptions::default()
        }
    }

    /// A one-line description of how a prompt of that length will be read (plain / FocusLLM
    /// mode, chunks), for stderr and logs.
    pub fn describe(&self, prompt_len: usize) -> String {
        let Some(f) = self.focus_for(prompt_len) else {
            return match self.check(prompt_len) {
                Ok(()) => format!("{prompt_len} tokens: plain attention"),
                Err(e) => format!("{prompt_len} tokens: refused ({e})"),
            };
        };
        let chunks = (prompt_len - f.local_window).div_ceil(f.chunk_size);
        let window = f.local_window;
        if f.decode == DecodeMode::Retrieve {
            let budget = f.read_budget.map_or_else(|| "the window".to_string(), |b| format!("{b} tokens"));
            return format!(
                "{prompt_len} tokens: reading with FocusLLM by retrieval ({chunks} chunks of {} scored, \
                 a read of {budget}, local window {window})",
                f.chunk_size
            );
        }
        let projections =
            self.adapter.as_deref().map_or("copied candidate projections".to_string(), |a| format!("adapter {a}"));
        format!(
            "{prompt_len} tokens: reading with FocusLLM ({} decoding, {chunks} memory chunks of {}, local window \
             {window}, {projections})",
            f.decode.name(),
            f.chunk_size
        )
    }

    /// Refuses a prompt that would be read with plain attention past the model's window.
    pub fn check(&self, prompt_len: usize) -> Result<(), CliError> {
        let window = self.llm.config().max_position_embeddings;
        if self.focus_for(prompt_len).is_some() || prompt_len <= window {
            return Ok(());
        }
        let hint = if self.focus.is_none() { "drop --plain" } else { "lower --threshold" };
        Err(CliError::PastWindow { tokens: prompt_len, window, hint })
    }

    /// The FocusLLM configuration if a prompt of `prompt_len` tokens is read with it.
    fn focus_for(&self, prompt_len: usize) -> Option<&FocusConfig> {
        self.focus.as_ref().filter(|f| prompt_len >= f.threshold() && prompt_len > f.local_window)
    }
}

/// The FocusLLM configuration of the policy: the adapter's sizes and cached-local decoding
/// refreshing [`DEFAULT_REFRESH_CHUNKS`] chunks per token with an adapter, else retrieval, with the
/// flags over them and the switch point of the model.
fn policy(llm: &Llm, adapter: bool, default_model: bool, flags: &FocusArgs) -> FocusConfig {
    let decode = flags.decode.unwrap_or(if adapter { DecodeMode::CachedLocal } else { DecodeMode::Retrieve });
    let base = match (decode, adapter) {
        (DecodeMode::Retrieve, _) => retrieve_sizes(),
        (_, true) => FocusConfig { refresh_chunks: Some(DEFAULT_REFRESH_CHUNKS), ..adapter_sizes() },
        (_, false) => FocusConfig::default(),
    };
    let config = flags.over(FocusConfig { decode, ..base }, prompt::header_len(llm));
    match (flags.threshold, default_model) {
        (Some(_), _) => config,
        (None, true) => FocusConfig { threshold: Some(DEFAULT_MODEL_SWITCH), ..config },
        (None, false) => config.past_window(llm.config().max_position_embeddings),
    }
}

/// A conversation as plain text for a model without a chat template: each user turn followed by
/// `Answer:`, the way `ask` prompts such a model.
fn plain_transcript(messages: &[ChatMessage]) -> String {
    let mut text = String::new();
    for m in messages {
        match m.role.as_str() {
            "user" => text.push_str(&format!("{}\nAnswer:", m.content)),
            "assistant" => text.push_str(&format!(" {}\n\n", m.content)),
            _ => text.push_str(&format!("{}\n\n", m.content)),
        }
    }
    text
}
