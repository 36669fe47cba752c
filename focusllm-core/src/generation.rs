//! Streaming generation: prefill a prompt, then yield tokens one by one with a sampling policy,
//! stop tokens, a token budget and cancellation from another thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::{KvCache, LogitsFor, Model};
use crate::sampling::{Sampler, Sampling};
use crate::tokenizer::{TextStream, Tokenizer};

/// A flag that cancels generation from another thread; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder of this token to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`CancelToken::cancel`] has been called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Progress of long work, reported through a [`ProgressCallback`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// Prefill: `done` of `total` steps (FocusLLM: memory chunks condensed, plus the local forward).
    Prefill {
        /// Steps finished.
        done: usize,
        /// Steps in all.
        total: usize,
    },
    /// Generation: tokens so far and the rate since the first one.
    Generated {
        /// Tokens generated so far.
        tokens: usize,
        /// Tokens per second since the first generated token.
        tokens_per_second: f64,
    },
}

/// A function called with [`Progress`] reports; cheap to clone.
#[derive(Clone)]
pub struct ProgressCallback(pub Arc<dyn Fn(Progress) + Send + Sync>);

impl ProgressCallback {
    /// Wraps a closure.
    pub fn new(f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        ProgressCallback(Arc::new(f))
    }
}

impl std::fmt::Debug for ProgressCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressCallback")
    }
}

/// Cancellation and progress reporting handed to long-running work.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Checked between units of work.
    pub cancel: Option<CancelToken>,
    /// Called after each unit of work.
    pub progress: Option<ProgressCallback>,
}

impl Control {
    /// Whether cancellation was requested.
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }

    /// Reports progress, if anyone listens.
    pub fn report(&self, progress: Progress) {
        if let Some(cb) = &self.progress {
            (cb.0)(progress);
        }
    }
}

/// What to generate and when to stop.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How each token is chosen.
    pub sampling: Sampling,
    /// Extra token ids that end generation (not emitted).
    pub stop_tokens: Vec<u32>,
    /// Whether the model's end-of-sequence ids end generation (default true).
    pub stop_at_eos: bool,
    /// Cancels the work (between chunk batches of a prefill, and between tokens) when triggered.
    pub cancel: Option<CancelToken>,
    /// Receives prefill and generation progress.
    pub progress: Option<ProgressCallback>,
    /// Read long inputs with FocusLLM: inputs at or over its threshold are condensed, shorter ones
    /// run plain attention. `None` (the default) always runs plain attention.
    pub focus: Option<crate::focus::FocusConfig>,
}

impl GenerateOptions {
    /// The cancellation and progress part of the options.
    pub fn control(&self) -> Control {
        Control { cancel: self.cancel.clone(), progress: self.progress.clone() }
    }
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampling: Sampling::default(),
            stop_tokens: Vec::new(),
            stop_at_eos: true,
            cancel: None,
            progress: None,
            focus: None,
        }
    }
}

/// Why a [`TokenStream`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_tokens` were generated.
    MaxTokens,
    /// A stop token (or end-of-sequence) was chosen; it is not emitted.
    Stop(u32),
    /// The [`CancelToken`] was triggered.
    Cancelled,
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedToken {
    /// Its id.
    pub id: u32,
    /// The text it completes (may be empty while a multi-byte character is incomplete).
    pub text: String,
}

/// A source of next-token logits: the plain model, or later the FocusLLM engine.
pub trait Decoder {
    /// Feeds one chosen token and returns the logits for the token after it.
    fn step(&mut self, token: u32) -> Result<Vec<f32>>;
}

/// Plain causal decoding over one KV cache.
pub struct PlainDecoder<'a, B: Backend> {
    model: &'a Model<B>,
    cache: KvCache<B>,
}

impl<'a, B: Backend> PlainDecoder<'a, B> {
    /// Prefills `prompt` and returns the decoder with the logits of the prompt's last position.
    pub fn prefill(model: &'a Model<B>, prompt: &[u32]) -> Result<(Self, Vec<f32>)> {
        Self::prefill_with(model, prompt, &Control::default())
    }

    /// [`PlainDecoder::prefill`] with cancellation and progress reporting.
    pub fn prefill_with(model: &'a Model<B>, prompt: &[u32], control: &Control) -> Result<(Self, Vec<f32>)> {
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

/// An iterator over generated tokens. Errors end the stream after being yielded once.
pub struct TokenStream<'a> {
    decoder: Box<dyn Decoder + Send + 'a>,
    tokenizer: Option<&'a Tokenizer>,
    text: TextStream,
    sampler: Sampler,
    options: GenerateOptions,
    stop: Vec<u32>,
    history: Vec<u32>,
    /// Logits for the next choice, or `None` once a token is pending to be fed.
    logits: Option<Vec<f32>>,
    pending: Option<u32>,
    produced: usize,
    finish: Option<FinishReason>,
    failed: bool,
    started: Option<std::time::Instant>,
}

impl<'a> TokenStream<'a> {
    /// A stream over `decoder`, whose prefill of `prompt` produced `logits`. With a tokenizer each
    /// token carries its text; without one `text` stays empty.
    pub fn new(
        decoder: Box<dyn Decoder + Send + 'a>,
        logits: Vec<f32>,
        prompt: &[u32],
        eos: &[u32],
        tokenizer: Option<&'a Tokenizer>,
        options: GenerateOptions,
    ) -> Result<Self> {
        let sampler = Sampler::new(options.sampling.clone())?;
        let mut stop = options.stop_tokens.clone();
        if options.stop_at_eos {
            stop.extend_from_slice(eos);
        }
        Ok(TokenStream {
            decoder,
            tokenizer,
            text: TextStream::new(),
            sampler,
            options,
            stop,
            history: prompt.to_vec(),
            logits: Some(logits),
            pending: None,
            produced: 0,
            finish: None,
            failed: false,
            started: None,
        })
    }

    /// Why the stream ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Ids generated so far.
    pub fn generated(&self) -> &[u32] {
        &self.history[self.history.len() - self.produced..]
    }

    fn next_token(&mut self) -> Result<Option<GeneratedToken>> {
        if self.options.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            self.finish = Some(FinishReason::Cancelled);
            return Ok(None);
        }
        if self.produced >= self.options.max_tokens {
            self.finish = Some(FinishReason::MaxTokens);
            return Ok(None);
        }
        let mut logits = match (self.logits.take(), self.pending.take()) {
            (Some(l), _) => l,
            (None, Some(t)) => self.decoder.step(t)?,
            (None, None) => unreachable!("a stream always holds logits or a pending token"),
        };
        let id = self.sampler.sample(&mut logits, &self.history);
        if self.stop.contains(&id) {
            self.finish = Some(FinishReason::Stop(id));
            return Ok(None);
        }
        self.history.push(id);
        self.produced += 1;
        self.pending = Some(id);
        let started = *self.started.get_or_insert_with(std::time::Instant::now);
        if let Some(cb) = &self.options.progress {
            let secs = started.elapsed().as_secs_f64();
            let tokens_per_second = if self.produced > 1 && secs > 0.0 { (self.produced - 1) as f64 / secs } else { 0.0 };
            (cb.0)(Progress::Generated { tokens: self.produced, tokens_per_second });
        }
        let text = match self.tokenizer {
            Some(t) => self.text.push(t, id)?,
            None => String::new(),
        };
        Ok(Some(GeneratedToken { id, text }))
    }
}

impl Iterator for TokenStream<'_> {
    type Item = Result<GeneratedToken>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finish.is_some() || self.failed {
            return None;
        }
        match self.next_token() {
            Ok(tok) => tok.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
