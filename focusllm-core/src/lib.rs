//! Backend-agnostic core of focusllm: configuration, checkpoint loading, tokenizer, the [`Backend`]
//! trait, the LLaMA-family model written once over it, sampling and streaming generation.
#![warn(missing_docs)]

pub mod backend;
pub mod chat_template;
pub mod config;
pub mod control;
pub mod decode;
pub mod error;
pub mod focus;
pub mod generation;
pub mod gguf;
pub mod model;
pub mod pipeline;
pub mod quant;
pub mod sampling;
pub mod tokenizer;
pub mod weights;

pub use backend::{grown_capacity, AttentionSeq, Backend, HeadLayout, RowSlice};
pub use chat_template::{ChatMessage, ChatTemplate};
pub use config::{Architecture, ModelConfig, RopeScaling};
pub use error::{Error, Result};
pub use focus::{CandidateOrder, DecodeMode, FocusConfig, Prefix};
pub use control::{CancelToken, Control, Progress, ProgressCallback};
pub use decode::Decoder;
pub use generation::{prefill, FinishReason, GenerateOptions, GeneratedToken, TokenStream};
pub use model::{KvCache, Logits, LogitsFor, Model, SeqInput};
pub use pipeline::{LanguageModel, Pipeline};
pub use sampling::{Sampler, Sampling};
pub use tokenizer::{TextStream, Tokenizer};
pub use quant::DType;
pub use weights::{HostTensor, SafetensorsWeights, WeightSource};
