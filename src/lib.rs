//! # focusllm
//!
//! Run decoder-only models (LLaMA, Mistral, Qwen2/3, Gemma 3) on inputs far past their native
//! window with FocusLLM, on the CPU (feature `cpu`, on by default), any GPU through wgpu, or NVIDIA
//! GPUs through CUDA.
//! `default_model` (feature `default-model`, on by default) fetches and caches a small model to
//! start from.
//!
//! ```no_run
//! use focusllm::{Device, GenerateOptions, Llm};
//!
//! fn main() -> Result<(), focusllm::Error> {
//!     let llm = Llm::load("models/SmolLM2-135M-Instruct", Device::Cpu { threads: None })?;
//!     let options = GenerateOptions { max_tokens: 32, ..Default::default() };
//!     for token in llm.generate("The capital of France is", &options)? {
//!         print!("{}", token?.text);
//!     }
//!     Ok(())
//! }
//! ```
#![warn(missing_docs)]

use std::path::Path;

pub use focusllm_core::*;

#[cfg(feature = "default-model")]
pub mod default_model;

/// The CPU backend (feature `cpu`).
#[cfg(feature = "cpu")]
pub use focusllm_cpu as cpu;

/// The wgpu backend (feature `wgpu`).
#[cfg(feature = "wgpu")]
pub use focusllm_wgpu as wgpu;

/// The CUDA backend (feature `cuda`).
#[cfg(feature = "cuda")]
pub use focusllm_cuda as cuda;

/// Where a model runs; chosen at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Device {
    /// The CPU backend with `threads` workers (`None`: every core). Needs the `cpu` feature.
    Cpu {
        /// Worker threads.
        threads: Option<usize>,
    },
    /// A GPU through wgpu (Vulkan, Metal, DX12, WebGPU). Needs the `wgpu` feature.
    Wgpu {
        /// Index of the adapter among those wgpu enumerates; `None` picks the high-performance one.
        adapter: Option<usize>,
    },
    /// An NVIDIA GPU through CUDA. Needs the `cuda` feature.
    Cuda {
        /// The CUDA device ordinal.
        ordinal: usize,
    },
}

impl Device {
    /// Parses the `--device` values of the examples: `cpu`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::InvalidOption {
            name: "device",
            value: text.to_string(),
            reason: "expected cpu, wgpu[:N] or cuda[:N]",
        };
        let (kind, index) = match text.split_once(':') {
            Some((k, i)) => (k, Some(i.parse::<usize>().map_err(|_| bad())?)),
            None => (text, None),
        };
        match kind {
            "cpu" if index.is_none() => Ok(Device::Cpu { threads: None }),
            "wgpu" => Ok(Device::Wgpu { adapter: index }),
            "cuda" => Ok(Device::Cuda { ordinal: index.unwrap_or(0) }),
            _ => Err(bad()),
        }
    }
}

fn not_built(backend: &'static str, feature: &str) -> Error {
    Error::Backend { backend, message: format!("focusllm was built without the `{feature}` feature") }
}

impl Default for Device {
    fn default() -> Self {
        Device::Cpu { threads: None }
    }
}

/// A model and its tokenizer loaded on a [`Device`]: the handle an application keeps.
///
/// It is `Send + Sync`: share it behind an `Arc` and generate from several threads.
pub struct Llm {
    inner: Box<dyn LanguageModel>,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm").field("backend", &self.inner.backend_name()).finish_non_exhaustive()
    }
}

impl Llm {
    /// Loads a GGUF file or a Hugging Face model directory (`config.json`, safetensors weights,
    /// `tokenizer.json`) onto `device`.
    pub fn load(dir: impl AsRef<Path>, device: Device) -> Result<Self> {
        let dir = dir.as_ref();
        let inner: Box<dyn LanguageModel> = match device {
            #[cfg(feature = "cpu")]
            Device::Cpu { threads } => {
                Box::new(Pipeline::load(dir, cpu::CpuBackend::new(cpu::CpuOptions { threads })?)?)
            }
            #[cfg(feature = "wgpu")]
            Device::Wgpu { adapter } => {
                Box::new(Pipeline::load(dir, wgpu::WgpuBackend::new(wgpu::WgpuOptions { adapter })?)?)
            }
            #[cfg(feature = "cuda")]
            Device::Cuda { ordinal } => {
                Box::new(Pipeline::load(dir, cuda::CudaBackend::new(cuda::CudaOptions { ordinal })?)?)
            }
            #[allow(unreachable_patterns)]
            Device::Cpu { .. } => return Err(not_built("cpu", "cpu")),
            #[allow(unreachable_patterns)]
            Device::Wgpu { .. } => return Err(not_built("wgpu", "wgpu")),
            #[allow(unreachable_patterns)]
            Device::Cuda { .. } => return Err(not_built("cuda", "cuda")),
        };
        Ok(Llm { inner })
    }

    /// Loads FocusLLM candidate projections (`beacon_{q,k,v,o}_proj`, optionally
    /// `mlp.beacon_{up,down}_proj`) from an adapter safetensors file, each in full or as a
    /// low-rank delta; the rest stay copies of the ordinary projections. Returns how many
    /// projections were loaded.
    pub fn load_adapter(&mut self, path: impl AsRef<Path>) -> Result<usize> {
        self.inner.load_adapter(path.as_ref())
    }

    /// [`Llm::load_adapter`] from the bytes of an adapter safetensors file, such as
    /// `focusllm_adapters::SMOLLM2_135M_INSTRUCT` (the adapter trained for the default model).
    pub fn load_adapter_bytes(&mut self, bytes: &[u8]) -> Result<usize> {
        self.inner.load_adapter_bytes(bytes)
    }

    /// Wraps any loaded model (e.g. a [`Pipeline`] on a custom backend).
    pub fn from_model(model: impl LanguageModel + 'static) -> Self {
        Llm { inner: Box::new(model) }
    }

    /// Encodes `prompt` and streams the generated tokens.
    pub fn generate(&self, prompt: &str, options: &GenerateOptions) -> Result<TokenStream<'_>> {
        self.inner.generate(prompt, options)
    }

    /// Streams the continuation of already tokenised input.
    pub fn generate_ids(&self, prompt: &[u32], options: &GenerateOptions) -> Result<TokenStream<'_>> {
        self.inner.generate_ids(prompt, options)
    }

    /// Reads a document once for many questions (docs/algorithm.md, "Read once, ask many"):
    /// `doc` is its token ids, with whatever the chat template puts before the user's text. The
    /// raw keys/values of its memory chunks are kept, so every [`Document::ask_ids`] runs only the
    /// chunks' queries and the local forward; the split into chunks never depends on the question.
    /// `control` cancels the read between chunk batches and receives its progress.
    pub fn read(&self, doc: &[u32], focus: &FocusConfig, control: Control) -> Result<Document<'_>> {
        Ok(Document { inner: self.inner.read_ids(doc, focus, control)?, llm: self, rest: None })
    }

    /// Reads a text document for questions asked in text: the document goes into the user's
    /// turn of the chat template as `ask` puts it there (`{document}\n\n{question}`, then the end
    /// of the turn and the assistant's header), and [`Document::ask`] adds the question.
    ///
    /// The document's part (the header, the document, the blank line) and each question's part
    /// are tokenised separately, so a tokenizer that would merge across the blank line may give
    /// ids that differ there from encoding the whole prompt at once. A model without a chat
    /// template gets the plain `{document}\n\n{question}\nAnswer:` prompt.
    pub fn read_text(&self, document: &str, focus: &FocusConfig, control: Control) -> Result<Document<'_>> {
        if document.is_empty() {
            return Err(Error::EmptyInput { what: "the document" });
        }
        let (header, rest) = match self.chat_template() {
            Some(template) => {
                let marker = "\u{0}FOCUSLLM-USER\u{0}";
                let rendered = template.render(&[ChatMessage::new("user", marker)], true)?;
                let (header, rest) = rendered.split_once(marker).ok_or_else(|| Error::InvalidOption {
                    name: "chat_template",
                    value: "user turn".into(),
                    reason: "the template does not render the user's text verbatim",
                })?;
                (header.to_string(), rest.to_string())
            }
            None => (String::new(), "\nAnswer:".to_string()),
        };
        let doc = self.tokenizer().encode(&format!("{header}{document}\n\n"))?;
        let inner = self.inner.read_ids(&doc, focus, control)?;
        Ok(Document { inner, llm: self, rest: Some(rest) })
    }

    /// Loads a document saved by [`Document::save`], for this model: its kept caches are mapped
    /// from the file and uploaded, so no chunk is read again. The file carries the FocusLLM
    /// configuration it was read with, which the document keeps; a document read as text
    /// ([`Llm::read_text`]) is asked in text again. A file from another model, or read with
    /// other candidate projections, is an [`Error::DocumentMismatch`] naming the field that
    /// differs; a malformed one an [`Error::DocumentInvalid`], a truncated one an
    /// [`Error::Safetensors`] (see [`focus::Document::load`]).
    pub fn load_document(&self, path: impl AsRef<Path>) -> Result<Document<'_>> {
        let (inner, rest) = self.inner.load_document(path.as_ref())?;
        Ok(Document { inner, llm: self, rest })
    }

    /// Sets the most bytes of the chunk cache: the raw key/value caches of FocusLLM memory chunks,
    /// kept by their tokens, so that a chunk met again (the same long document in a later prompt,
    /// a conversation that grows, a document read again) is not computed again. Least recently
    /// used chunks go first; 0, the default, empties the cache and turns it off. Answers are what
    /// a fresh read gives, up to the order of floating-point sums.
    pub fn set_chunk_cache_limit(&self, bytes: u64) {
        self.inner.set_chunk_cache_limit(bytes);
    }

    /// What the chunk cache holds and has done (chunks, bytes, hits, misses, evictions).
    pub fn chunk_cache_stats(&self) -> ChunkCacheStats {
        self.inner.chunk_cache_stats()
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        self.inner.config()
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        self.inner.tokenizer()
    }

    /// The model's chat template, if its files carry one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.inner.chat_template()
    }
}

/// A document read once by [`Llm::read`] or [`Llm::read_text`], to be asked many questions.
///
/// Each question costs the query forwards of the memory chunks over their kept caches and the
/// local forward, not a new read of the document; the answer is what reading the document and
/// the question from scratch with the same split gives ([`focus::prefill_document`]).
pub struct Document<'a> {
    inner: Box<dyn DocumentMemory + 'a>,
    llm: &'a Llm,
    /// What follows the question in the prompt (end of turn, assistant header), for text questions.
    rest: Option<String>,
}

impl std::fmt::Debug for Document<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("tokens", &self.inner.tokens().len())
            .field("chunks", &self.inner.chunks().len())
            .finish_non_exhaustive()
    }
}

impl Document<'_> {
    /// Asks a question given as ids: `tail` is everything that follows the document in the
    /// prompt (the question, the end of the turn, the assistant's header). `options.focus` is
    /// ignored: the document keeps the configuration it was read with.
    pub fn ask_ids(&self, tail: &[u32], options: &GenerateOptions) -> Result<TokenStream<'_>> {
        self.inner.ask_ids(tail, options)
    }

    /// Asks a question in text about a document read with [`Llm::read_text`]: the question, then
    /// the end of the user's turn and the assistant's header, are encoded (without the
    /// tokenizer's special tokens) and asked as [`Document::ask_ids`] does. A document read from
    /// ids with [`Llm::read`] has no template to finish the turn with: ask it with `ask_ids`.
    pub fn ask(&self, question: &str, options: &GenerateOptions) -> Result<TokenStream<'_>> {
        if question.is_empty() {
            return Err(Error::EmptyInput { what: "the question" });
        }
        let rest = self.rest.as_deref().ok_or(Error::InvalidOption {
            name: "question",
            value: question.to_string(),
            reason: "a document read from ids takes its questions as ids (ask_ids)",
        })?;
        let tail = self.llm.tokenizer().encode_with(&format!("{question}{rest}"), false)?;
        self.ask_ids(&tail, options)
    }

    /// The document's token ids.
    pub fn tokens(&self) -> &[u32] {
        self.inner.tokens()
    }

    /// The memory chunks, as ranges of the document's ids (empty when it is read with plain
    /// attention); the same for every question.
    pub fn chunks(&self) -> &[std::ops::Range<usize>] {
        self.inner.chunks()
    }

    /// The FocusLLM configuration the document was read with (and its decoding as last set).
    pub fn focus(&self) -> &FocusConfig {
        self.inner.config()
    }

    /// Changes how the following questions decode: the mode and, for cached-local decoding, how
    /// many chunks refresh their candidate per token. The kept caches serve every mode but
    /// [`DecodeMode::Retrieve`], which is refused, so nothing is read again.
    pub fn set_decoding(&mut self, decode: DecodeMode, refresh_chunks: Option<usize>) -> Result<()> {
        self.inner.set_decoding(decode, refresh_chunks)
    }

    /// Saves the document to one safetensors file (its kept caches, ids, chunks, the model's
    /// identity and the FocusLLM configuration; docs/algorithm.md, "Read once, ask many"), for
    /// [`Llm::load_document`] to load, in this process or another, on the same model. A
    /// document read as text keeps what follows its questions in the file, so it is asked in
    /// text again after loading.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_as(path, focus::CacheDtype::F32)
    }

    /// [`Document::save`] with the caches in `dtype`: [`focus::CacheDtype::F16`] halves the file,
    /// and the loaded document's logits then differ from this one's by the rounding to f16.
    pub fn save_as(&self, path: impl AsRef<Path>, dtype: focus::CacheDtype) -> Result<()> {
        self.inner.save(path.as_ref(), self.rest.as_deref(), dtype)
    }
}

/// The README's examples, compiled as doc-tests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
