//! A [`Document`] saved to one safetensors file and loaded back (docs/algorithm.md, "Read once,
//! ask many"): the kept caches as f32 (or f16) tensors, the document's ids, and in `__metadata__` the format
//! version, the model's identity, the FocusLLM configuration, the chunks and their sharing map.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use safetensors::tensor::{Dtype, SafeTensorError, View};

use crate::backend::Backend;
use crate::budget::ensure_fits;
use crate::control::Control;
use crate::error::{Error, Result};
use crate::model::{KvCache, LayerKv, Model};
use crate::weights::SafetensorsWeights;

use super::config::{CandidateOrder, DecodeMode, FocusConfig, Prefix};
use super::decoder::{check_memory, distinct_chunks};
use super::document::{Document, Kept};
use super::schedule::plan_document;

/// The `format` entry of a document file.
const FORMAT: &str = "focusllm-document";
/// The `version` entry this crate writes and reads.
const VERSION: &str = "2";

/// How a saved document stores its caches' keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheDtype {
    /// f32, as they are computed: the loaded document answers bit for bit as the saved one.
    #[default]
    F32,
    /// IEEE half precision, rounded to nearest: half the file. The loaded document's logits differ
    /// from the saved one's by that rounding (docs/algorithm.md, "Saved documents").
    F16,
}

impl CacheDtype {
    /// Parses `f32` or `f16`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "f32" => Ok(CacheDtype::F32),
            "f16" => Ok(CacheDtype::F16),
            _ => Err(Error::InvalidOption { name: "dtype", value: text.to_string(), reason: "expected f32 or f16" }),
        }
    }
}

/// One tensor to write: its dtype, shape and little-endian bytes.
struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// What identifies the model a document was read by: every configuration size, and the
/// fingerprints of its weights and of its candidate projections.
fn model_identity<B: Backend>(model: &Model<B>) -> Vec<(&'static str, String)> {
    let c = model.config();
    vec![
        ("model.architecture", format!("{:?}", c.architecture)),
        ("model.hidden_size", c.hidden_size.to_string()),
        ("model.intermediate_size", c.intermediate_size.to_string()),
        ("model.num_layers", c.num_layers.to_string()),
        ("model.num_heads", c.num_heads.to_string()),
        ("model.num_kv_heads", c.num_kv_heads.to_string()),
        ("model.head_dim", c.head_dim.to_string()),
        ("model.vocab_size", c.vocab_size.to_string()),
        ("model.rope_theta", c.rope_theta.to_string()),
        ("model.rope_scaling", format!("{:?}", c.rope_scaling)),
        ("model.rms_norm_eps", c.rms_norm_eps.to_string()),
        ("model.tie_word_embeddings", c.tie_word_embeddings.to_string()),
        ("model.qkv_bias", c.qkv_bias.to_string()),
        ("model.o_bias", c.o_bias.to_string()),
        ("model.bos_token_id", format!("{:?}", c.bos_token_id)),
        ("model.max_position_embeddings", c.max_position_embeddings.to_string()),
        ("model.weights", format!("{:016x}", model.weights_fingerprint())),
        (
            "model.candidates",
            model.candidates_fingerprint().map_or_else(|| "none".to_string(), |f| format!("{f:016x}")),
        ),
    ]
}

fn opt(value: Option<usize>) -> String {
    value.map_or_else(|| "none".to_string(), |v| v.to_string())
}

/// The FocusLLM configuration as metadata entries.
fn focus_entries(c: &FocusConfig) -> Vec<(&'static str, String)> {
    let prefix = match &c.prefix {
        Prefix::Auto => "auto".to_string(),
        Prefix::None => "none".to_string(),
        Prefix::PromptHead(n) => format!("head:{n}"),
        Prefix::Tokens(ids) => format!("tokens:{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
    };
    let order = match c.order {
        CandidateOrder::CandidatesFirst => "candidates-first",
        CandidateOrder::SinkFirst => "sink-first",
    };
    vec![
        ("focus.local_window", c.local_window.to_string()),
        ("focus.chunk_size", c.chunk_size.to_string()),
        ("focus.query_len", opt(c.query_len)),
        ("focus.threshold", opt(c.threshold)),
        ("focus.candidates_per_chunk", c.candidates_per_chunk.to_string()),
        ("focus.decode", c.decode.name().to_string()),
        ("focus.chunk_batch", c.chunk_batch.to_string()),
        ("focus.prefix", prefix),
        ("focus.order", order.to_string()),
        ("focus.share_identical_chunks", c.share_identical_chunks.to_string()),
        ("focus.read_budget", opt(c.read_budget)),
        ("focus.read_margin", c.read_margin.to_string()),
        ("focus.refresh_chunks", opt(c.refresh_chunks)),
    ]
}

/// `data` as little-endian bytes of `dtype`.
fn tensor_bytes(data: &[f32], dtype: CacheDtype) -> (Dtype, Vec<u8>) {
    match dtype {
        CacheDtype::F32 => (Dtype::F32, data.iter().flat_map(|x| x.to_le_bytes()).collect()),
        CacheDtype::F16 => (Dtype::F16, data.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect()),
    }
}

/// Appends the per-layer keys and values of `cache` as `{prefix}.layer.{l}.k` / `.v`, in `dtype`.
fn cache_tensors<B: Backend>(
    model: &Model<B>,
    prefix: &str,
    cache: &KvCache<B>,
    dtype: CacheDtype,
    out: &mut Vec<(String, Owned)>,
) -> Result<()> {
    let b = model.checked();
    for l in 0..model.config().num_layers {
        let kv = cache.layer(l).ok_or_else(|| Error::Shape {
            op: "save document",
            detail: format!("layer {l} of `{prefix}` holds no keys/values"),
        })?;
        for (part, tensor) in [("k", &kv.k), ("v", &kv.v)] {
            let (rows, cols) = b.dims(tensor);
            let (dtype, data) = tensor_bytes(&b.to_host(tensor)?, dtype);
            out.push((format!("{prefix}.layer.{l}.{part}"), Owned { dtype, shape: vec![rows, cols], data }));
        }
    }
    Ok(())
}

/// The metadata of a document file, with errors naming the file and the entry.
struct Meta<'a> {
    path: &'a Path,
    file: &'a SafetensorsWeights,
}

impl Meta<'_> {
    fn invalid(&self, reason: String) -> Error {
        Error::DocumentInvalid { path: self.path.to_path_buf(), reason }
    }

    fn get(&self, key: &str) -> Result<&str> {
        self.file.metadata(key).ok_or_else(|| self.invalid(format!("no `{key}` metadata entry")))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let text = self.get(key)?;
        text.parse().map_err(|_| self.invalid(format!("`{key}` = {text:?} is not a valid value")))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key)? {
            "none" => Ok(None),
            _ => self.parse(key).map(Some),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let text = self.get(key)?;
        serde_json::from_str(text).map_err(|e| self.invalid(format!("`{key}`: {e}")))
    }

    /// The FocusLLM configuration the document was read with.
    fn focus(&self) -> Result<FocusConfig> {
        let bad = |key: &str, text: &str| self.invalid(format!("`{key}` = {text:?} is not a valid value"));
        let prefix = match self.get("focus.prefix")? {
            "auto" => Prefix::Auto,
            "none" => Prefix::None,
            text => match text.split_once(':') {
                Some(("head", n)) => Prefix::PromptHead(n.parse().map_err(|_| bad("focus.prefix", text))?),
                Some(("tokens", "")) => Prefix::Tokens(Vec::new()),
                Some(("tokens", ids)) => Prefix::Tokens(
                    ids.split(',').map(str::parse).collect::<Result<_, _>>().map_err(|_| bad("focus.prefix", text))?,
                ),
                _ => return Err(bad("focus.prefix", text)),
            },
        };
        let order = match self.get("focus.order")? {
            "candidates-first" => CandidateOrder::CandidatesFirst,
            "sink-first" => CandidateOrder::SinkFirst,
            text => return Err(bad("focus.order", text)),
        };
        let decode = self.get("focus.decode")?;
        let config = FocusConfig {
            local_window: self.parse("focus.local_window")?,
            chunk_size: self.parse("focus.chunk_size")?,
            query_len: self.opt_usize("focus.query_len")?,
            threshold: self.opt_usize("focus.threshold")?,
            candidates_per_chunk: self.parse("focus.candidates_per_chunk")?,
            decode: DecodeMode::parse(decode).map_err(|_| bad("focus.decode", decode))?,
            chunk_batch: self.parse("focus.chunk_batch")?,
            prefix,
            order,
            share_identical_chunks: self.parse("focus.share_identical_chunks")?,
            read_budget: self.opt_usize("focus.read_budget")?,
            read_margin: self.parse("focus.read_margin")?,
            refresh_chunks: self.opt_usize("focus.refresh_chunks")?,
        };
        config.validate().map_err(|e| self.invalid(format!("the saved FocusLLM configuration: {e}")))?;
        if config.decode == DecodeMode::Retrieve {
            return Err(bad("focus.decode", decode));
        }
        Ok(config)
    }

    /// The document's ids: the `tokens` tensor, u32 of shape `[n]`, `n` as `document.tokens` says.
    fn tokens(&self) -> Result<Vec<u32>> {
        let n: usize = self.parse("document.tokens")?;
        let (dtype, shape, bytes) = self.file.raw("tokens").ok_or_else(|| self.invalid("no `tokens` tensor".into()))?;
        if dtype != Dtype::U32 || shape != [n] || n == 0 {
            return Err(self.invalid(format!("`tokens` is {dtype:?} {shape:?}, expected U32 [{n}] with n > 0")));
        }
        Ok(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// The cache saved as `{prefix}.layer.{l}.k` / `.v`, `len` rows of the model's key/value
    /// width each, f32 or f16 (widened), uploaded to the model's backend.
    fn cache<B: Backend>(&self, model: &Model<B>, prefix: &str, len: usize) -> Result<KvCache<B>> {
        let b = model.checked();
        let kv_dim = model.config().kv_dim();
        let mut layers = Vec::with_capacity(model.config().num_layers);
        for l in 0..model.config().num_layers {
            let part = |part: &str| -> Result<B::Tensor> {
                let name = format!("{prefix}.layer.{l}.{part}");
                let (dtype, shape, bytes) =
                    self.file.raw(&name).ok_or_else(|| self.invalid(format!("no `{name}` tensor")))?;
                if !matches!(dtype, Dtype::F32 | Dtype::F16) || shape != [len, kv_dim] {
                    return Err(
                        self.invalid(format!("`{name}` is {dtype:?} {shape:?}, expected F32 or F16 [{len}, {kv_dim}]"))
                    );
                }
                let data: Vec<f32> = match dtype {
                    Dtype::F16 => {
                        bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
                    }
                    _ => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                };
                b.from_host(&data, len, kv_dim)
            };
            layers.push(LayerKv { k: part("k")?, v: part("v")? });
        }
        Ok(KvCache::from_layers(layers, len))
    }
}

impl<'m, B: Backend> Document<'m, B> {
    /// Saves the document to one safetensors file at `path` (docs/algorithm.md, "Read once, ask
    /// many"): every kept cache's per-layer keys and values as f32 tensors
    /// (`chunk.{c}.layer.{l}.k` / `.v` for the distinct memory chunks, `plain.layer.{l}.k` / `.v`
    /// for a document read with plain attention), the ids as the u32 tensor `tokens`, and in the
    /// metadata the format version, the model's identity, the configuration, the chunks and
    /// which distinct chunk each one shares. [`Document::load`] reads it back.
    ///
    /// The file is written as `{path}.partial` and renamed to `path` once whole, so a failed save
    /// leaves no half-written document. Errors: a backend failure reading the caches back, or a
    /// file that cannot be written ([`Error::Io`] naming `path`).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_noted(path, None, CacheDtype::F32)
    }

    /// [`Document::save`] with a note, free text an application keeps with the document (the
    /// facade keeps what follows a text question there; [`Document::load_noted`] returns it), and
    /// the caches in `dtype`.
    pub fn save_noted(&self, path: impl AsRef<Path>, note: Option<&str>, dtype: CacheDtype) -> Result<()> {
        let path = path.as_ref();
        let model = self.model;
        let mut meta: HashMap<String, String> = HashMap::new();
        let mut put = |key: &str, value: String| {
            meta.insert(key.to_string(), value);
        };
        put("format", FORMAT.to_string());
        put("version", VERSION.to_string());
        for (key, value) in model_identity(model).into_iter().chain(focus_entries(&self.config)) {
            put(key, value);
        }
        put("document.tokens", self.tokens.len().to_string());
        if let Some(note) = note {
            put("document.note", note.to_string());
        }
        let ids = self.tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        let mut tensors =
            vec![("tokens".to_string(), Owned { dtype: Dtype::U32, shape: vec![self.tokens.len()], data: ids })];
        match &self.kept {
            Kept::Plain(cache) => {
                put("document.kind", "plain".to_string());
                cache_tensors(model, "plain", cache, dtype, &mut tensors)?;
            }
            Kept::Memory { chunks, caches, of } => {
                put("document.kind", "memory".to_string());
                let ranges: Vec<[usize; 2]> = chunks.iter().map(|r| [r.start, r.end]).collect();
                put("document.chunks", serde_json::to_string(&ranges).expect("numbers serialise"));
                put("document.shared", serde_json::to_string(of).expect("numbers serialise"));
                for (c, cache) in caches.iter().enumerate() {
                    cache_tensors(model, &format!("chunk.{c}"), cache, dtype, &mut tensors)?;
                }
            }
        }
        // Written beside the target and renamed over it, so a failed save leaves no half file.
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        let written = safetensors::serialize_to_file(tensors, Some(meta), &partial).map_err(|e| match e {
            SafeTensorError::IoError(source) => Error::io(path, source),
            other => Error::Safetensors { path: path.to_path_buf(), reason: other.to_string() },
        });
        match written.and_then(|()| std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))) {
            Ok(()) => Ok(()),
            Err(e) => {
                // The partial file is of no use; failing to remove it changes nothing for the caller.
                let _ = std::fs::remove_file(&partial);
                Err(e)
            }
        }
    }

    /// Loads a document saved by [`Document::save`] for `model`, memory-mapping the file and
    /// uploading its caches to the model's backend. The document keeps the configuration it was
    /// saved with (the file carries its own sizes; [`Document::config`] tells them).
    ///
    /// Checked on load: the format and its version; the model's identity (architecture, every
    /// size of its configuration, the fingerprints of its weights and of its candidate
    /// projections: a document read with an adapter is refused by the model without it, and the
    /// other way round), an [`Error::DocumentMismatch`] naming the field; then that the saved
    /// configuration is valid, that the ids are in the vocabulary, that the saved chunks and
    /// sharing map are what the configuration gives the ids, and that every cache has its
    /// chunk's length and the model's width, an [`Error::DocumentInvalid`] otherwise. A truncated
    /// or corrupt file is an [`Error::Safetensors`], kept caches larger than the backend's memory
    /// an [`Error::OutOfMemory`].
    pub fn load(path: impl AsRef<Path>, model: &'m Model<B>) -> Result<Self> {
        Ok(Self::load_noted(path, model)?.0)
    }

    /// [`Document::load`], also returning the note saved with [`Document::save_noted`].
    pub fn load_noted(path: impl AsRef<Path>, model: &'m Model<B>) -> Result<(Self, Option<String>)> {
        let path = path.as_ref();
        let file = SafetensorsWeights::from_files(path, &[path.to_path_buf()])?;
        let meta = Meta { path, file: &file };
        let format = file.metadata("format");
        if format != Some(FORMAT) {
            return Err(meta.invalid(format!("not a focusllm document (format {format:?}, expected {FORMAT:?})")));
        }
        let mismatch = |field: &str, expected: String, found: &str| Error::DocumentMismatch {
            path: path.to_path_buf(),
            field: field.to_string(),
            expected,
            found: found.to_string(),
        };
        let version = meta.get("version")?;
        if version != VERSION {
            return Err(mismatch("version", VERSION.to_string(), version));
        }
        for (field, expected) in model_identity(model) {
            let found = meta.get(field)?;
            if found != expected {
                return Err(mismatch(field, expected, found));
            }
        }
        let config = meta.focus()?;
        let tokens = meta.tokens()?;
        model.check_tokens(&tokens).map_err(|e| meta.invalid(format!("`tokens`: {e}")))?;
        let layers = model.config().num_layers;
        let plan = plan_document(tokens.len(), &tokens, &config, model.config().bos_token_id);
        let (kept, tensors) = match (meta.get("document.kind")?, plan) {
            ("plain", None) => {
                ensure_fits(model, tokens.len(), &Control::default(), || {
                    format!("the key/value cache of the document's {} tokens", tokens.len())
                })?;
                (Kept::Plain(meta.cache(model, "plain", tokens.len())?), 1 + 2 * layers)
            }
            ("memory", Some(plan)) => {
                let ranges: Vec<[usize; 2]> = meta.json("document.chunks")?;
                let chunks: Vec<Range<usize>> = ranges.iter().map(|&[s, e]| s..e).collect();
                if chunks != plan.chunks {
                    return Err(meta.invalid(format!(
                        "the saved chunks ({} of them) are not those its configuration gives its {} ids ({})",
                        chunks.len(),
                        tokens.len(),
                        plan.chunks.len()
                    )));
                }
                let of: Vec<usize> = meta.json("document.shared")?;
                let all: Vec<&[u32]> = chunks.iter().map(|r| &tokens[r.clone()]).collect();
                let (distinct, expected_of) = distinct_chunks(&all, config.share_identical_chunks);
                if of != expected_of {
                    return Err(meta.invalid("`document.shared` is not the sharing map of the saved chunks".into()));
                }
                let distinct_tokens: Vec<&[u32]> = distinct.iter().map(|&c| all[c]).collect();
                let lens: Vec<usize> = distinct_tokens.iter().map(|c| c.len()).collect();
                check_memory(model, &lens, &plan, &config, DecodeMode::Exact, &Control::default())?;
                let caches = distinct
                    .iter()
                    .enumerate()
                    .map(|(d, &c)| meta.cache(model, &format!("chunk.{d}"), chunks[c].len()).map(Arc::new))
                    .collect::<Result<Vec<_>>>()?;
                (Kept::Memory { chunks, caches, of }, 1 + 2 * layers * distinct.len())
            }
            (kind @ ("plain" | "memory"), plan) => {
                let reads = if plan.is_some() { "memory" } else { "plain attention" };
                return Err(meta.invalid(format!(
                    "saved as `{kind}`, but its configuration reads its {} ids with {reads}",
                    tokens.len()
                )));
            }
            (kind, _) => return Err(meta.invalid(format!("`document.kind` = {kind:?}, expected plain or memory"))),
        };
        let found = file.names().count();
        if found != tensors {
            return Err(meta.invalid(format!("{found} tensors, expected {tensors}")));
        }
        let note = file.metadata("document.note").map(str::to_string);
        Ok((Document { model, config, tokens, kept }, note))
    }
}
