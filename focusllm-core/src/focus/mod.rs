//! The FocusLLM engine (docs/algorithm.md), written once over [`Backend`]: the chunk scheduler, dynamic
//! condensing of memory chunks into candidate tokens in batched forwards, the local forward with
//! the candidates in front, and the decode modes.

mod config;
mod decoder;
mod memory;
mod retrieve;
mod schedule;

pub use config::{CandidateOrder, DecodeMode, FocusConfig, Prefix, ANSWER_ROOM};
pub use retrieve::{score_chunks, select_chunks};
pub use decoder::FocusDecoder;
pub use schedule::{plan, Plan};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::generation::{Control, Decoder, PlainDecoder};
use crate::model::Model;

/// Prefills `tokens` with FocusLLM when they reach the threshold, plain attention otherwise, and
/// returns the decoder for the rest of generation with the logits of the last input position.
pub fn prefill<'a, B: Backend>(
    model: &'a Model<B>,
    tokens: &[u32],
    config: &FocusConfig,
    control: Control,
) -> Result<(Box<dyn Decoder + Send + 'a>, Vec<f32>)> {
    config.validate()?;
    if tokens.is_empty() {
        return Err(Error::EmptyInput { what: "the prompt" });
    }
    model.check_tokens(tokens)?;
    match plan(tokens, config, model.config().bos_token_id) {
        Some(plan) if config.decode == DecodeMode::Retrieve => {
            let (decoder, logits) = retrieve::prefill(model, tokens, &plan, config, &control)?;
            Ok((Box::new(decoder), logits))
        }
        Some(plan) => {
            let (decoder, logits) = FocusDecoder::prefill(model, tokens, &plan, config, control)?;
            Ok((Box::new(decoder), logits))
        }
        None => {
            let (decoder, logits) = PlainDecoder::prefill_with(model, tokens, &control)?;
            Ok((Box::new(decoder), logits))
        }
    }
}
