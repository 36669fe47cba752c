//! Backend-agnostic core of focusllm: configuration, checkpoint loading, tokenizer, the [`Backend`]
//! trait, the LLaMA-family model written once over it, sampling and streaming generation.
#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod default_model;
pub mod error;
pub mod generation;
pub mod model;
pub mod pipeline;
pub mod sampling;
pub mod tokenizer;
pub mod weights;

pub use backend::{AttentionSeq, Backend, HeadLayout, RowSlice};
pub use config::{Architecture, ModelConfig, RopeScaling};
pub use error::{Error, Result};
pub use generation::{CancelToken, Decoder, FinishReason, GenerateOptions, GeneratedToken, PlainDecoder, TokenStream};
pub use model::{KvCache, Logits, LogitsFor, Model, SeqInput};
pub use pipeline::{LanguageModel, Pipeline};
pub use sampling::{Sampler, Sampling};
pub use tokenizer::{TextStream, Tokenizer};
pub use weights::{DType, HostTensor, SafetensorsWeights, WeightSource};
