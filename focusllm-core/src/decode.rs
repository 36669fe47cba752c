//! The [`Decoder`] trait, the source of next-token logits that generation pulls from, and
//! [`PlainDecoder`], plain causal decoding over one KV cache. The FocusLLM engine's decoders
//! implement the same trait.

use crate::backend::Backend;
use crate::budget::ensure_fits;
use crate::control::{Control, Progress};
use crate::error::{Error, Result};
use crate::model::{KvCache, LogitsFor, Model};

/// Most tokens per forward of a plain-attention prefill: cancellation is checked and progress
/// reported between these micro-batches, so neither waits for a whole long prompt.
pub const PREFILL_BATCH: usize = 256;

/// Runs `tokens` onto `cache` in forwards of at most [`PREFILL_BATCH`] tokens, checking
/// cancellation before each and reporting [`Progress::Prefill`] (in micro-batches) around them;
/// returns the logits of the last token, or nothing with [`LogitsFor::None`].
pub(crate) fn prefill_in_batches<B: Backend>(
    model: &Model<B>,
    tokens: &[u32],
    cache: &mut KvCache<B>,
    logits: LogitsFor,
    control: &Control,
) -> Result<Vec<f32>> {
    let total = tokens.len().div_ceil(PREFILL_BATCH);
    control.report(Progress::Prefill { done: 0, total });
    let mut last = Vec::new();
    for (done, batch) in tokens.chunks(PREFILL_BATCH).enumerate() {
        if control.cancelled() {
            return Err(Error::Cancelled);
        }
        let wanted = if done + 1 == total { logits } else { LogitsFor::None };
        last = model.forward_one(batch, cache, wanted)?.data;
        control.report(Progress::Prefill { done: done + 1, total });
    }
    Ok(last)
}

/// A source of next-token logits: plain attention over a KV cache, or the FocusLLM engine.
pub trait Decoder {
    /// Feeds one chosen token and returns the logits for the token after it.
    fn step(&mut self, token: u32) -> Result<Vec<f32>>;
}

/// Plain causal decoding over one KV cache.
pub(crate) struct PlainDecoder<'a, B: Backend> {
    model: &'a Model<B>,
    cache: KvCache<B>,
}

impl<'a, B: Backend> PlainDecoder<'a, B> {
    /// Plain decoding over `cache`, the keys/values of everything read so far.
    pub(crate) fn from_cache(model: &'a Model<B>, cache: KvCache<B>) -> Self {
        PlainDecoder { model, cache }
    }

    /// Prefills `prompt` in micro-batches (see [`prefill_in_batches`]) and returns the decoder
    /// with the logits of the prompt's last position. A cache for the prompt and
    /// `control.reserve_tokens` more that does not fit is refused first.
    pub(crate) fn prefill(model: &'a Model<B>, prompt: &[u32], control: &Control) -> Result<(Self, Vec<f32>)> {
        if prompt.is_empty() {
            return Err(Error::EmptyInput { what: "the prompt" });
        }
        let tokens = prompt.len() + control.reserve_tokens;
        ensure_fits(model, tokens, control, || {
            format!("the key/value cache of {tokens} tokens (plain attention: the prompt and the tokens to generate)")
        })?;
        let mut cache = model.new_cache();
        let logits = prefill_in_batches(model, prompt, &mut cache, LogitsFor::Last, control)?;
        Ok((PlainDecoder { model, cache }, logits))
    }
}

impl<B: Backend> Decoder for PlainDecoder<'_, B> {
    fn step(&mut self, token: u32) -> Result<Vec<f32>> {
        Ok(self.model.forward_one(&[token], &mut self.cache, LogitsFor::Last)?.data)
    }
}
