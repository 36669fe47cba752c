//! Trained FocusLLM candidate projections, as the bytes of their safetensors files, so a program
//! that depends on focusllm from crates.io can load them without a path into its repository:
//!
//! ```no_run
//! # fn main() -> Result<(), focusllm::Error> {
//! let mut llm = focusllm::Llm::load(focusllm::default_model::path()?, focusllm::Device::default())?;
//! llm.load_adapter_bytes(focusllm_adapters::SMOLLM2_135M_INSTRUCT)?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

/// Low-rank candidate projections (rank 32 on `q`, `k`, `v` and `o` of every layer) for
/// SmolLM2-135M-Instruct, focusllm's default model, trained by the repository's `training/` with
/// chunks and local windows of up to 512 tokens and a query of up to 256: read with those sizes
/// (`local_window: 512, chunk_size: 512, query_len: Some(256)`).
pub const SMOLLM2_135M_INSTRUCT: &[u8] = include_bytes!("../SmolLM2-135M-Instruct.focus-lora.safetensors");

/// The file name [`SMOLLM2_135M_INSTRUCT`] was built from.
pub const SMOLLM2_135M_INSTRUCT_NAME: &str = "SmolLM2-135M-Instruct.focus-lora.safetensors";
