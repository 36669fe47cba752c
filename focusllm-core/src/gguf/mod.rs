//! GGUF model files (llama.cpp's format), memory-mapped: metadata to [`ModelConfig`], the
//! tokenizer and chat template from `tokenizer.*`, and tensors (every [`GgmlType::SUPPORTED`]
//! type) under their Hugging Face names and conventions, in the file's own format (backends that
//! compute on quantised blocks keep them; the others dequantise with [`HostTensor::to_f32`]).
//!
//! ```no_run
//! use focusllm_core::gguf::GgufFile;
//! use focusllm_core::WeightSource;
//!
//! let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let config = file.config()?;
//! let tokenizer = file.tokenizer()?;
//! let q = file.tensor("model.layers.0.self_attn.q_proj.weight")?;
//! # Ok::<(), focusllm_core::Error>(())
//! ```
//!
//! llama.cpp's converter stores the q/k projections of `llama` models with the rows of every head
//! interleaved for GPT-J-style RoPE; this crate's model (like transformers) rotates the two halves
//! of a head, so those tensors are permuted back on load.

mod config;
pub mod names;
mod reader;
mod tokenizer;

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::quant::DType;
use crate::weights::{HostTensor, WeightSource};

use crate::chat_template::ChatTemplate;
pub use names::ROPE_FREQ_FACTORS;
pub use reader::{GgmlType, GgufHeader, MetaValue, TensorInfo};

/// The bytes of a GGUF file: a read-only memory map, or a buffer held in memory.
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An opened GGUF file: its parsed header and its (memory-mapped) tensor data.
pub struct GgufFile {
    path: PathBuf,
    bytes: Bytes,
    header: GgufHeader,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.header.version)
            .field("metadata", &self.header.metadata.len())
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses a GGUF file (header, metadata, tensor infos; every tensor's data
    /// range is checked to lie inside the file).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let bytes = if len == 0 {
            Bytes::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only; a file modified while mapped is outside our contract,
            // as it is for every memory-mapping model loader.
            Bytes::Mapped(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?)
        };
        Self::from_parts(path.to_path_buf(), bytes)
    }

    /// Parses a GGUF file held in memory; `name` stands for its path in error messages.
    pub fn from_bytes(bytes: Vec<u8>, name: impl Into<PathBuf>) -> Result<Self> {
        Self::from_parts(name.into(), Bytes::Owned(bytes))
    }

    fn from_parts(path: PathBuf, bytes: Bytes) -> Result<Self> {
        let header = GgufHeader::parse(&bytes, &path)?;
        Ok(GgufFile { path, bytes, header })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed header: version, metadata and tensor infos.
    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The metadata value under `key`.
    pub fn metadata(&self, key: &str) -> Option<&MetaValue> {
        self.header.get(key)
    }

    fn keys(&self) -> MetaKeys<'_> {
        MetaKeys { header: &self.header, path: &self.path }
    }

    /// The model configuration from `general.architecture` and the `{arch}.*` keys
    /// (architectures `llama`, `qwen2`, `qwen3` and `gemma3`).
    pub fn config(&self) -> Result<ModelConfig> {
        config::model_config(&self.keys())
    }

    /// The tokenizer described by `tokenizer.ggml.*`.
    pub fn tokenizer(&self) -> Result<crate::tokenizer::Tokenizer> {
        let inner = tokenizer::build(&self.keys())?;
        Ok(crate::tokenizer::Tokenizer::from_tokenizers(inner, &self.path))
    }

    /// The chat template of `tokenizer.chat_template`, compiled, with the BOS and EOS token texts;
    /// `None` when the file has none.
    pub fn chat_template(&self) -> Option<Result<ChatTemplate>> {
        self.header.get("tokenizer.chat_template")?;
        Some((|| {
            let keys = self.keys();
            let source = keys.string("tokenizer.chat_template")?;
            let token = |key: &str| -> Result<String> {
                let Some(id) = keys.opt_u32(key)? else { return Ok(String::new()) };
                let tokens = keys.string_array("tokenizer.ggml.tokens")?;
                tokens.get(id as usize).map(|t| t.to_string()).ok_or_else(|| Error::GgufTokenizer {
                    path: self.path.clone(),
                    key: key.to_string(),
                    reason: format!("id {id} is outside the vocabulary of {} tokens", tokens.len()),
                })
            };
            ChatTemplate::new(source, token("tokenizer.ggml.bos_token_id")?, token("tokenizer.ggml.eos_token_id")?)
        })())
    }

    /// Information on the tensor with GGUF name `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensor(name)
    }

    /// The raw data bytes of a tensor (range checked at open).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        &self.bytes[info.range.clone()]
    }

    /// A tensor (by GGUF name) dequantised to f32, in the file's layout.
    pub fn dequantize(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        let dtype = self.dtype(info)?;
        crate::quant::dequantize(dtype, self.tensor_data(info), info.len()).ok_or_else(|| Error::GgufInvalid {
            path: self.path.clone(),
            reason: format!("tensor `{}`: data size does not match its shape", info.name),
        })
    }

    /// The host element type of a tensor, or the typed error for a ggml type this crate cannot read.
    fn dtype(&self, info: &TensorInfo) -> Result<DType> {
        info.ggml_type.dtype().ok_or_else(|| Error::GgufUnsupportedTensorType {
            path: self.path.clone(),
            tensor: info.name.clone(),
            ggml_type: info.ggml_type.name(),
        })
    }

    /// The file's `general.architecture` (empty when it has none).
    pub fn architecture(&self) -> &str {
        self.header.get("general.architecture").and_then(MetaValue::as_str).unwrap_or("")
    }

    /// For `llama` files, the head count a q or k tensor (by GGUF name) was permuted with.
    fn permuted_heads(&self, gguf_name: &str) -> Result<Option<usize>> {
        let keys = self.keys();
        if keys.opt_string("general.architecture")? != Some("llama") {
            return Ok(None);
        }
        let stem = gguf_name.rsplit_once('.').map_or(gguf_name, |(s, _)| s);
        let heads = keys.usize("llama.attention.head_count")?;
        if stem.ends_with(".attn_q") {
            Ok(Some(heads))
        } else if stem.ends_with(".attn_k") {
            Ok(Some(keys.opt_usize("llama.attention.head_count_kv")?.unwrap_or(heads)))
        } else {
            Ok(None)
        }
    }
}

/// Undoes llama.cpp's q/k permutation: within each of `heads` heads, stored row `2 i + j` is
/// Hugging Face row `j * half + i`.
fn unpermute_rows<T: Copy + Default>(data: &[T], rows: usize, heads: usize) -> Option<Vec<T>> {
    let group = heads.checked_mul(2)?;
    if heads == 0 || rows == 0 || !rows.is_multiple_of(group) || !data.len().is_multiple_of(rows) {
        return None;
    }
    if data.is_empty() {
        // Rows of no elements: nothing moves (and a fuzzed row count must not be walked).
        return Some(Vec::new());
    }
    let row_len = data.len() / rows;
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![T::default(); data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * head_dim + 2 * i + j) * row_len;
                let dst = (h * head_dim + j * half + i) * row_len;
                out[dst..dst + row_len].copy_from_slice(&data[src..src + row_len]);
            }
        }
    }
    Some(out)
}

impl WeightSource for GgufFile {
    fn tensor(&self, name: &str) -> Result<Option<HostTensor<'_>>> {
        let Some(gguf_name) = names::hf_to_gguf(name, self.architecture()) else { return Ok(None) };
        let Some(info) = self.header.tensor(&gguf_name) else { return Ok(None) };
        let shape = info.shape();
        let dtype = self.dtype(info)?;
        let data = self.tensor_data(info);
        if dtype.bytes_for(info.len()) != Some(data.len()) {
            return Err(Error::GgufInvalid {
                path: self.path.clone(),
                reason: format!("tensor `{gguf_name}`: data size does not match its shape"),
            });
        }
        let bytes = match self.permuted_heads(&gguf_name)? {
            // Whole rows move, so quantised rows (whole blocks each) move as bytes.
            Some(heads) => {
                let rows = shape.first().copied().unwrap_or(1);
                Cow::Owned(unpermute_rows(data, rows, heads).ok_or_else(|| Error::GgufInvalid {
                    path: self.path.clone(),
                    reason: format!(
                        "tensor `{gguf_name}`: {rows} rows cannot be split into {heads} heads of even width"
                    ),
                })?)
            }
            None => Cow::Borrowed(data),
        };
        let tensor = HostTensor { name: name.to_string(), dtype, shape, bytes };
        if self.architecture() == "gemma3" && name.ends_with("norm.weight") {
            // llama.cpp's converter stores Gemma's norms as 1 + w; served as w, as Hugging Face has them.
            let data: Vec<f32> = tensor.to_f32().iter().map(|w| w - 1.0).collect();
            return Ok(Some(HostTensor::from_f32(name, tensor.shape, &data)));
        }
        Ok(Some(tensor))
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let gguf_name = names::hf_to_gguf(name, self.architecture())?;
        self.header.tensor(&gguf_name).map(TensorInfo::shape)
    }

    fn location(&self) -> &Path {
        &self.path
    }
}

/// Typed access to GGUF metadata, with errors naming the file and key.
pub(crate) struct MetaKeys<'a> {
    pub(crate) header: &'a GgufHeader,
    pub(crate) path: &'a Path,
}

impl<'a> MetaKeys<'a> {
    pub(crate) fn wrong(&self, key: &str, expected: &str, found: &dyn std::fmt::Display) -> Error {
        Error::GgufWrongType {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }

    fn require(&self, key: &str) -> Result<&'a MetaValue> {
        self.header
            .get(key)
            .ok_or_else(|| Error::GgufMissingKey { path: self.path.to_path_buf(), key: key.to_string() })
    }

    fn mismatch(&self, key: &str, expected: &str, v: &MetaValue) -> Error {
        self.wrong(key, expected, &v.type_name())
    }

    pub(crate) fn string(&self, key: &str) -> Result<&'a str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.mismatch(key, "string", v))
    }

    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<&'a str>> {
        self.header.get(key).map(|_| self.string(key)).transpose()
    }

    pub(crate) fn usize(&self, key: &str) -> Result<usize> {
        let v = self.require(key)?;
        match v.as_u64() {
            Some(n) => usize::try_from(n).map_err(|_| self.wrong(key, "an integer that fits usize", &n)),
            None => Err(self.mismatch(key, "non-negative integer", v)),
        }
    }

    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.header.get(key).map(|_| self.usize(key)).transpose()
    }

    pub(crate) fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        let Some(v) = self.header.get(key) else { return Ok(None) };
        match v.as_u64() {
            Some(n) => u32::try_from(n).map(Some).map_err(|_| self.wrong(key, "a token id (u32)", &n)),
            None => Err(self.mismatch(key, "non-negative integer", v)),
        }
    }

    pub(crate) fn f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        match (v.as_f64(), v.as_i64()) {
            (Some(x), _) => Ok(x as f32),
            (None, Some(x)) => Ok(x as f32),
            _ => Err(self.mismatch(key, "float", v)),
        }
    }

    pub(crate) fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.header.get(key).map(|_| self.f32(key)).transpose()
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        let Some(v) = self.header.get(key) else { return Ok(None) };
        v.as_bool().map(Some).ok_or_else(|| self.mismatch(key, "bool", v))
    }

    fn array(&self, key: &str, expected: &str) -> Result<&'a [MetaValue]> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| self.mismatch(key, expected, v))
    }

    pub(crate) fn string_array(&self, key: &str) -> Result<Vec<&'a str>> {
        let expected = "array of string";
        let items = self.array(key, expected)?;
        items
            .iter()
            .map(|x| x.as_str().ok_or_else(|| self.wrong(key, expected, &format!("array of {}", x.type_name()))))
            .collect()
    }

    pub(crate) fn int_array(&self, key: &str) -> Result<Vec<i64>> {
        let expected = "array of integers";
        let items = self.array(key, expected)?;
        items
            .iter()
            .map(|x| x.as_i64().ok_or_else(|| self.wrong(key, expected, &format!("array of {}", x.type_name()))))
            .collect()
    }

    pub(crate) fn float_array(&self, key: &str) -> Result<Vec<f32>> {
        let expected = "array of float";
        let items = self.array(key, expected)?;
        items
            .iter()
            .map(|x| {
                x.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| self.wrong(key, expected, &format!("array of {}", x.type_name())))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(heads, 2, rows/heads/2, cols).swapaxes(1, 2).
        let (heads, head_dim, cols) = (3, 4, 2);
        let rows = heads * head_dim;
        let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let mut permuted = vec![0.0; hf.len()];
        for h in 0..heads {
            for a in 0..2 {
                for i in 0..head_dim / 2 {
                    // source index (h, a, i) lands at (h, i, a)
                    let src = (h * head_dim + a * (head_dim / 2) + i) * cols;
                    let dst = (h * head_dim + i * 2 + a) * cols;
                    permuted[dst..dst + cols].copy_from_slice(&hf[src..src + cols]);
                }
            }
        }
        assert_eq!(unpermute_rows(&permuted, rows, heads).unwrap(), hf);
        assert!(unpermute_rows(&permuted, rows, 5).is_none());
        assert!(unpermute_rows(&permuted, rows, 0).is_none());
        // Billions of empty rows (a fuzzed shape with a zero width) return at once.
        assert_eq!(unpermute_rows::<u8>(&[], 1 << 40, 2), Some(Vec::new()));
    }
}
