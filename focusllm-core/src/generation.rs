//! Streaming generation, the user-facing API: [`prefill`] reads a prompt (with plain attention, or
//! with FocusLLM when asked and the prompt is long enough), then a [`TokenStream`] yields tokens
//! one by one with a sampling policy, stop tokens, a token budget and cancellation from another
//! thread.

use crate::backend::Backend;
use crate::control::{CancelToken, Control, Progress, ProgressCallback};
use crate::decode::{Decoder, PlainDecoder};
use crate::error::Result;
use crate::focus::FocusConfig;
use crate::model::Model;
use crate::sampling::{Sampler, Sampling};
use crate::tokenizer::{TextStream, Tokenizer};

/// Prefills `prompt` and returns the decoder for the rest of generation with the logits of the
/// prompt's last position.
///
/// This is where the way of reading is chosen, once: with FocusLLM when `focus` is given and
/// [`focus::plan`](crate::focus::plan) finds memory to condense (the prompt reaches the threshold
/// and is longer than the local window), with plain attention otherwise. With a configuration,
/// the configuration and every token id are checked first. A document to be asked several
/// questions is read once by [`focus::Document`](crate::focus::Document) instead, with a split
/// that does not depend on the question.
pub fn prefill<'a, B: Backend>(
    model: &'a Model<B>,
    prompt: &[u32],
    focus: Option<&FocusConfig>,
    control: Control,
) -> Result<(Box<dyn Decoder + Send + 'a>, Vec<f32>)> {
    if let Some(config) = focus {
        if let Some(plan) = crate::focus::checked_plan(model, prompt, config)? {
            return crate::focus::read(model, prompt, &plan, config, control);
        }
    }
    let (decoder, logits) = PlainDecoder::prefill(model, prompt, &control)?;
    Ok((Box::new(decoder), logits))
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
    /// Most bytes the key/value caches of this generation may take (the prompt's, and
    /// `max_tokens` more rows), below what the backend reports free; `None`: only the backend's
    /// limit. A generation that would not fit is an [`Error::OutOfMemory`](crate::Error::OutOfMemory)
    /// before any work.
    pub memory_budget: Option<u64>,
    /// Read long inputs with FocusLLM: inputs at or over its threshold (and longer than the local
    /// window) are read in its decode mode, shorter ones with plain attention. `None` (the default) always runs plain attention.
    pub focus: Option<FocusConfig>,
}

impl GenerateOptions {
    /// The cancellation, progress and memory part of the options.
    pub fn control(&self) -> Control {
        Control {
            cancel: self.cancel.clone(),
            progress: self.progress.clone(),
            memory_budget: self.memory_budget,
            reserve_tokens: self.max_tokens,
        }
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
            memory_budget: None,
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
            let tokens_per_second =
                if self.produced > 1 && secs > 0.0 { (self.produced - 1) as f64 / secs } else { 0.0 };
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
