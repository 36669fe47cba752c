//! The [`Decoder`] trait, the source of next-token logits that generation pulls from, and
//! [`PlainDecoder`], plain causal decoding over one KV cache. The FocusLLM engine's decoders
//! implement the same trait.

use crate::backend::Backend;
use crate::control::{Control, Progress};
use crate::error::{Error, Result};
use crate::model::{KvCache, LogitsFor, Model};

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

    /// Prefills `prompt`, with cancellation and progress reporting, and returns the decoder with
    /// the logits of the prompt's last position.
    pub(crate) fn prefill(model: &'a Model<B>, prompt: &[u32], control: &Control) -> Result<(Self, Vec<f32>)> {
        if prompt.is_empty() {
            return Err(Error::EmptyInput { what: "the prompt" });
        }
        if control.cancelled() {
            return Err(Error::Cancelled);
        }
        control.report(Progress::Prefill { done: 0, total: 1 });
        let mut cache = model.new_cache();
        let logits = model.forward_one(prompt, &mut cache, LogitsFor::Last)?;
        control.report(Progress::Prefill { done: 1, total: 1 });
        Ok((PlainDecoder { model, cache }, logits.data))
    }
}

impl<B: Backend> Decoder for PlainDecoder<'_, B> {
    fn step(&mut self, token: u32) -> Result<Vec<f32>> {
        Ok(self.model.forward_one(&[token], &mut self.cache, LogitsFor::Last)?.data)
    }
}
