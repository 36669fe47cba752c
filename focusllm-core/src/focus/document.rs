//! A reusable document memory (docs/algorithm.md, "Read once, ask many"): a document is read once,
//! keeping every memory chunk's raw keys/values, and each question then runs only the query over
//! the kept chunk caches, and the local forward.

use std::ops::Range;
use std::sync::Arc;

use crate::backend::Backend;
use crate::budget::ensure_fits;
use crate::control::{Control, Progress};
use crate::decode::{prefill_in_batches, Decoder, PlainDecoder};
use crate::error::{Error, Result};
use crate::model::{KvCache, LogitsFor, Model};

use super::config::{DecodeMode, FocusConfig};
use super::decoder::{check_memory, distinct_chunks, FocusDecoder};
use super::memory::raw_caches;
use super::schedule::{plan_document, Plan};

/// What a [`Document`] keeps between questions.
pub(super) enum Kept<B: Backend> {
    /// A document read with plain attention: the keys/values of all its tokens.
    Plain(KvCache<B>),
    /// A document read with FocusLLM: its memory chunks and the raw caches of the distinct ones
    /// (`of[c]` is the distinct chunk whose cache chunk `c` shares).
    Memory { chunks: Vec<Range<usize>>, caches: Vec<Arc<KvCache<B>>>, of: Vec<usize> },
}

/// A document read once and asked many questions.
///
/// [`Document::read`] splits the document with [`plan_document`](super::plan_document), whose
/// memory chunks do not depend on the question, and keeps each chunk's keys (rotated at their
/// positions in the chunk) and values. [`Document::ask`] then runs, for a question, only the query
/// tokens of every chunk over a copy of its kept cache, and the local forward: what a fresh read
/// of the document and the question with the same split
/// ([`prefill_document`](super::prefill_document)) computes, up to the order of floating-point sums. The kept caches are never changed, so questions may follow one
/// another (or a cancelled one) freely. A document too short for FocusLLM (see `plan_document`)
/// keeps its plain key/value cache instead, and a question extends a copy of it.
///
/// [`Document::save`] writes the kept caches to a safetensors file and [`Document::load`] maps
/// them back for the same model, so a document need not be read again in another process.
pub struct Document<'m, B: Backend> {
    pub(super) model: &'m Model<B>,
    pub(super) config: FocusConfig,
    pub(super) tokens: Vec<u32>,
    pub(super) kept: Kept<B>,
}

impl<'m, B: Backend> Document<'m, B> {
    /// Reads `doc` (token ids, with whatever chat header the template puts before the user's
    /// text) under `config`, with cancellation between chunk batches and progress after each.
    ///
    /// Errors: an empty document, an id outside the vocabulary, an invalid configuration, the
    /// [`DecodeMode::Retrieve`] mode (it keeps no chunk caches), kept caches larger than the
    /// backend's memory, or cancellation.
    pub fn read(model: &'m Model<B>, doc: &[u32], config: &FocusConfig, control: Control) -> Result<Self> {
        config.validate()?;
        if config.decode == DecodeMode::Retrieve {
            return Err(Error::InvalidOption {
                name: "decode",
                value: config.decode.name().to_string(),
                reason: "reading by retrieval keeps no chunk caches; a document memory needs another mode",
            });
        }
        if doc.is_empty() {
            return Err(Error::EmptyInput { what: "the document" });
        }
        model.check_tokens(doc)?;
        if control.cancelled() {
            return Err(Error::Cancelled);
        }
        let kept = match plan_document(doc.len(), doc, config, model.config().bos_token_id) {
            None => {
                let tokens = doc.len() + control.reserve_tokens;
                ensure_fits(model, tokens, &control, || {
                    format!("the key/value cache of the document's {tokens} tokens")
                })?;
                let mut cache = model.new_cache();
                prefill_in_batches(model, doc, &mut cache, LogitsFor::None, &control)?;
                Kept::Plain(cache)
            }
            Some(plan) => {
                let all: Vec<&[u32]> = plan.chunks.iter().map(|r| &doc[r.clone()]).collect();
                let (distinct, of) = distinct_chunks(&all, config.share_identical_chunks);
                let chunks: Vec<&[u32]> = distinct.iter().map(|&c| all[c]).collect();
                // Every mode needs the raw caches here, whatever it keeps while decoding.
                let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
                check_memory(model, &lens, &plan, config, DecodeMode::Exact, &control)?;
                let total = chunks.iter().filter(|c| !model.chunk_store.contains(c)).count() + 1;
                let caches = raw_caches(model, &chunks, config.chunk_batch, (0, total), &control)?;
                control.report(Progress::Prefill { done: total, total });
                Kept::Memory { chunks: plan.chunks, caches, of }
            }
        };
        Ok(Document { model, config: config.clone(), tokens: doc.to_vec(), kept })
    }

    /// Asks a question: `tail` holds the ids that follow the document (the question, the end of
    /// the turn and the assistant's header as the chat template renders them). Returns the decoder
    /// for the answer and the logits of the tail's last position, as
    /// [`prefill_document`](super::prefill_document) of the document followed by `tail` would.
    /// The document's kept state is unchanged, whatever happens.
    ///
    /// Errors: an empty tail, an id outside the vocabulary, or cancellation (between chunk batches).
    pub fn ask(&self, tail: &[u32], control: Control) -> Result<(Box<dyn Decoder + Send + 'm>, Vec<f32>)> {
        if tail.is_empty() {
            return Err(Error::EmptyInput { what: "the question" });
        }
        self.model.check_tokens(tail)?;
        if control.cancelled() {
            return Err(Error::Cancelled);
        }
        let model = self.model;
        let prev = tail[tail.len() - 1];
        match &self.kept {
            Kept::Plain(cache) => {
                // The question's copy of the document's cache, the question and the answer.
                let tokens = cache.len() + tail.len() + control.reserve_tokens;
                ensure_fits(model, tokens, &control, || {
                    format!("a question's key/value cache of {tokens} tokens (document, question and answer)")
                })?;
                let mut cache = cache.clone();
                let logits = prefill_in_batches(model, tail, &mut cache, LogitsFor::Last, &control)?;
                Ok((Box::new(PlainDecoder::from_cache(model, cache)), logits))
            }
            Kept::Memory { chunks, caches, of } => {
                let plan = self.plan(tail)?;
                if plan.chunks != *chunks {
                    return Err(Error::InvalidOption {
                        name: "plan",
                        value: format!("{} chunks", plan.chunks.len()),
                        reason: "the question moved the document's chunks",
                    });
                }
                let lens: Vec<usize> = caches.iter().map(|c| c.len()).collect();
                check_memory(model, &lens, &plan, &self.config, self.config.decode, &control)?;
                let (decoder, logits) =
                    FocusDecoder::from_kept(model, caches, of.clone(), &plan, &self.config, control, prev)?;
                Ok((Box::new(decoder), logits))
            }
        }
    }

    /// The plan of the document followed by `tail`.
    fn plan(&self, tail: &[u32]) -> Result<Plan> {
        let tokens = [self.tokens.as_slice(), tail].concat();
        plan_document(self.tokens.len(), &tokens, &self.config, self.model.config().bos_token_id).ok_or(
            Error::InvalidOption {
                name: "plan",
                value: format!("{} tokens", tokens.len()),
                reason: "a document read with FocusLLM must plan memory for every question",
            },
        )
    }

    /// The document's token ids.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The memory chunks, as ranges of the document (empty when it is read with plain attention).
    /// They are the same for every question.
    pub fn chunks(&self) -> &[Range<usize>] {
        match &self.kept {
            Kept::Plain(_) => &[],
            Kept::Memory { chunks, .. } => chunks,
        }
    }

    /// Whether the document is read with FocusLLM (it has memory chunks) rather than plain attention.
    pub fn has_memory(&self) -> bool {
        matches!(self.kept, Kept::Memory { .. })
    }

    /// The configuration the document was read with (and its decoding as last set).
    pub fn config(&self) -> &FocusConfig {
        &self.config
    }

    /// Changes how the following questions decode: the mode and, for cached-local decoding, how
    /// many chunks refresh their candidate per token ([`FocusConfig::refresh_chunks`]). The kept
    /// caches serve every mode but retrieval, so nothing is read again.
    ///
    /// Errors: [`DecodeMode::Retrieve`], or a combination [`FocusConfig::validate`] refuses.
    pub fn set_decoding(&mut self, decode: DecodeMode, refresh_chunks: Option<usize>) -> Result<()> {
        let config = FocusConfig { decode, refresh_chunks, ..self.config.clone() };
        config.validate()?;
        if decode == DecodeMode::Retrieve {
            return Err(Error::InvalidOption {
                name: "decode",
                value: decode.name().to_string(),
                reason: "reading by retrieval reads chunks in full, not from a document's kept caches",
            });
        }
        self.config = config;
        Ok(())
    }

    /// The model the document was read by.
    pub fn model(&self) -> &'m Model<B> {
        self.model
    }
}
