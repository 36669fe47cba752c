//! Backend-agnostic core of focusllm: configuration, checkpoint loading, tokenizer, the [`Backend`]
//! trait, the model written once over it, the FocusLLM engine, sampling and streaming generation.
//!
//! Everything an application or a backend needs is at the crate root. Three modules stay
//! namespaces of their own: [`focus`], the FocusLLM engine's configuration and its planning and
//! scoring functions; [`gguf`], llama.cpp's model files; and [`quant`], the element formats and
//! block helpers that backends computing on quantised weights use.
#![warn(missing_docs)]

mod backend;
mod budget;
mod chat_template;
mod check;
mod config;
mod control;
mod decode;
mod error;
pub mod focus;
mod generation;
pub mod gguf;
mod model;
mod pipeline;
pub mod quant;
mod sampling;
mod tokenizer;
mod weights;

pub use backend::{grown_capacity, packed_key_values, AttentionSeq, Backend, HeadLayout, KeyValues, RowSlice};
pub use chat_template::{ChatMessage, ChatTemplate};
pub use check::Checked;
pub use config::{Activation, Architecture, LayerType, ModelConfig, RopeScaling};
pub use control::{CancelToken, Control, Progress, ProgressCallback};
pub use decode::{Decoder, PREFILL_BATCH};
pub use error::{Error, Result};
pub use focus::{CandidateOrder, DecodeMode, FocusConfig, Prefix};
pub use generation::{prefill, FinishReason, GenerateOptions, GeneratedToken, TokenStream};
pub use model::{rope_table_rows, ChunkCacheStats, KvCache, LayerKv, Logits, LogitsFor, Model, RopeTable, SeqInput};
pub use pipeline::{DocumentMemory, LanguageModel, Pipeline};
pub use quant::DType;
pub use sampling::{argmax, Sampler, Sampling};
pub use tokenizer::{TextStream, Tokenizer};
pub use weights::{HostTensor, SafetensorsWeights, WeightSource};
