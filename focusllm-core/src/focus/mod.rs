//! The FocusLLM engine (docs/algorithm.md), written once over [`Backend`]: the chunk scheduler, dynamic
//! condensing of memory chunks into candidate tokens in batched forwards, the local forward with
//! the candidates in front, and the decode modes. A read starts from [`crate::prefill`], which
//! hands an input to the engine when [`plan`] finds memory to condense; a [`Document`] reads a
//! document once and answers many questions about it from its kept chunk caches.

mod config;
mod decoder;
mod document;
mod document_file;
mod memory;
mod retrieve;
mod schedule;

pub use config::{CandidateOrder, DecodeMode, FocusConfig, Prefix, ANSWER_ROOM};
pub use document::Document;
pub use document_file::CacheDtype;
pub use retrieve::{score_chunks, select_chunks};
pub use schedule::{plan, plan_document, Plan};

use crate::backend::Backend;
use crate::control::Control;
use crate::decode::Decoder;
use crate::error::{Error, Result};
use crate::model::Model;
use decoder::FocusDecoder;

/// Checks `config` and every id of `tokens`, then plans their FocusLLM read: `None` when the
/// input is to be read with plain attention (see [`plan`]).
pub(crate) fn checked_plan<B: Backend>(model: &Model<B>, tokens: &[u32], config: &FocusConfig) -> Result<Option<Plan>> {
    config.validate()?;
    if tokens.is_empty() {
        return Err(Error::EmptyInput { what: "the prompt" });
    }
    model.check_tokens(tokens)?;
    Ok(plan(tokens, config, model.config().bos_token_id))
}

/// Reads a document followed by a question from scratch, with the split of [`plan_document`]:
/// `tokens` is the document's `doc_len` ids followed by the question's tail. With FocusLLM when
/// the document has memory to condense, with plain attention otherwise; returns the decoder and
/// the logits of the last position. This is what [`Document::ask`] computes from its kept chunk
/// caches; it reads the document again for every question.
///
/// Errors: an invalid configuration, an empty input, an id outside the vocabulary, cancellation.
pub fn prefill_document<'a, B: Backend>(
    model: &'a Model<B>,
    doc_len: usize,
    tokens: &[u32],
    config: &FocusConfig,
    control: Control,
) -> Result<(Box<dyn Decoder + Send + 'a>, Vec<f32>)> {
    config.validate()?;
    if tokens.is_empty() {
        return Err(Error::EmptyInput { what: "the prompt" });
    }
    model.check_tokens(tokens)?;
    match plan_document(doc_len, tokens, config, model.config().bos_token_id) {
        Some(plan) => read(model, tokens, &plan, config, control),
        None => {
            let (decoder, logits) = crate::decode::PlainDecoder::prefill(model, tokens, &control)?;
            Ok((Box::new(decoder), logits))
        }
    }
}

/// Reads `tokens` with FocusLLM as `plan` lays them out, in the configured decode mode (by
/// retrieval, or condensing the chunks into candidates), and returns the decoder for the rest of
/// generation with the logits of the last input position.
pub(crate) fn read<'a, B: Backend>(
    model: &'a Model<B>,
    tokens: &[u32],
    plan: &Plan,
    config: &FocusConfig,
    control: Control,
) -> Result<(Box<dyn Decoder + Send + 'a>, Vec<f32>)> {
    if config.decode == DecodeMode::Retrieve {
        let (decoder, logits) = retrieve::prefill(model, tokens, plan, config, &control)?;
        return Ok((Box::new(decoder), logits));
    }
    let (decoder, logits) = FocusDecoder::prefill(model, tokens, plan, config, control)?;
    Ok((Box::new(decoder), logits))
}
