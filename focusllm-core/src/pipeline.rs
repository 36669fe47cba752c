//! `Pipeline`: a model, its tokenizer and chat template loaded from a GGUF file or a Hugging Face
//! directory, ready to generate text.

use std::ops::Range;
use std::path::Path;

use crate::backend::Backend;
use crate::chat_template::ChatTemplate;
use crate::config::ModelConfig;
use crate::control::Control;
use crate::error::{Error, Result};
use crate::focus::{CacheDtype, DecodeMode, Document, FocusConfig};
use crate::generation::{prefill, GenerateOptions, TokenStream};
use crate::model::{ChunkCacheStats, Model};
use crate::tokenizer::Tokenizer;
use crate::weights::SafetensorsWeights;

/// How errors name an adapter loaded from bytes.
const ADAPTER_BYTES: &str = "<adapter bytes>";

/// A model resident on a backend together with its tokenizer and chat template.
pub struct Pipeline<B: Backend> {
    model: Model<B>,
    tokenizer: Tokenizer,
    chat_template: Option<ChatTemplate>,
}

/// The text of a special token in `tokenizer_config.json`: a string or `{"content": ...}`.
fn special_token_text(config: &serde_json::Value, key: &str) -> String {
    match &config[key] {
        serde_json::Value::String(s) => s.clone(),
        other => other["content"].as_str().unwrap_or_default().to_string(),
    }
}

/// The chat template of a Hugging Face directory's `tokenizer_config.json` (or a separate
/// `chat_template.jinja`), if it has one.
fn hf_chat_template(dir: &Path) -> Result<Option<ChatTemplate>> {
    let path = dir.join("tokenizer_config.json");
    let config: serde_json::Value = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| Error::Json { path: path.clone(), source: e })?,
        Err(_) => serde_json::Value::Null,
    };
    let source = match config["chat_template"].as_str() {
        Some(s) => Some(s.to_string()),
        None => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
    };
    source
        .map(|s| {
            ChatTemplate::new(s, special_token_text(&config, "bos_token"), special_token_text(&config, "eos_token"))
        })
        .transpose()
}

impl<B: Backend> Pipeline<B> {
    /// Loads a model onto `backend`: a GGUF file (see [`Pipeline::load_gguf`]) or a Hugging Face
    /// model directory (`config.json`, `model.safetensors` or a sharded index, `tokenizer.json`).
    /// Every tensor is checked before any is uploaded.
    pub fn load(path: impl AsRef<Path>, backend: B) -> Result<Self> {
        let dir = path.as_ref();
        if dir.is_file() {
            return Self::load_gguf(dir, backend);
        }
        let config = ModelConfig::from_file(dir.join("config.json"))?;
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))?;
        let chat_template = hf_chat_template(dir)?;
        let weights = SafetensorsWeights::from_dir(dir)?;
        let model = Model::load(backend, config, &weights)?;
        Ok(Pipeline { model, tokenizer, chat_template })
    }

    /// Loads a GGUF file onto `backend`: configuration, tokenizer and chat template from its
    /// metadata, tensors in the file's own format (quantised blocks stay blocks where the backend
    /// keeps them; see [`crate::gguf`]).
    pub fn load_gguf(path: impl AsRef<Path>, backend: B) -> Result<Self> {
        let file = crate::gguf::GgufFile::open(path)?;
        let config = file.config()?;
        let tokenizer = file.tokenizer()?;
        let chat_template = file.chat_template().transpose()?;
        let model = Model::load(backend, config, &file)?;
        Ok(Pipeline { model, tokenizer, chat_template })
    }

    /// Joins an already loaded model, tokenizer and (optional) chat template.
    pub fn new(model: Model<B>, tokenizer: Tokenizer, chat_template: Option<ChatTemplate>) -> Self {
        Pipeline { model, tokenizer, chat_template }
    }

    /// Loads FocusLLM candidate projections (`beacon_*_proj`, in full or as `lora_a`/`lora_b`)
    /// from a separate adapter safetensors file; returns how many projections it held.
    pub fn load_adapter(&mut self, path: impl AsRef<Path>) -> Result<usize> {
        let path = path.as_ref();
        let adapter = SafetensorsWeights::from_files(path, &[path.to_path_buf()])?;
        self.model.load_candidate_projections(&adapter)
    }

    /// [`Pipeline::load_adapter`] from the bytes of a safetensors file (e.g. the `focusllm-adapters`
    /// crate's, built into the program); errors name the adapter `<adapter bytes>`.
    pub fn load_adapter_bytes(&mut self, bytes: &[u8]) -> Result<usize> {
        let adapter = SafetensorsWeights::from_bytes(Path::new(ADAPTER_BYTES), bytes)?;
        self.model.load_candidate_projections(&adapter)
    }

    /// The model.
    pub fn model(&self) -> &Model<B> {
        &self.model
    }

    /// The model, mutably (e.g. to load candidate projections).
    pub fn model_mut(&mut self) -> &mut Model<B> {
        &mut self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

/// A document read once and asked many questions, whatever the backend: the object-safe face of
/// [`focus::Document`](crate::focus::Document), made by [`LanguageModel::read_ids`].
pub trait DocumentMemory: Send + Sync {
    /// The document's token ids.
    fn tokens(&self) -> &[u32];

    /// The memory chunks, as ranges of the document (empty when it is read with plain attention);
    /// the same for every question.
    fn chunks(&self) -> &[Range<usize>];

    /// Asks a question: `tail` holds the ids that follow the document (the question, the end of
    /// the turn, the assistant's header). Only the query of every chunk runs over the kept chunk
    /// caches, then the local forward; the answer streams with `options`' sampling, stops, budget,
    /// cancellation and progress. `options.focus` is ignored: the document keeps the
    /// configuration it was read with.
    fn ask_ids(&self, tail: &[u32], options: &GenerateOptions) -> Result<TokenStream<'_>>;

    /// The FocusLLM configuration the document was read with (and its decoding as last set).
    fn config(&self) -> &FocusConfig;

    /// Changes how the following questions decode (see
    /// [`focus::Document::set_decoding`](crate::focus::Document::set_decoding)); nothing is read again.
    fn set_decoding(&mut self, decode: DecodeMode, refresh_chunks: Option<usize>) -> Result<()>;

    /// Saves the document to a safetensors file, with an optional note and the caches in
    /// `dtype` (see [`focus::Document::save_noted`](crate::focus::Document::save_noted));
    /// [`LanguageModel::load_document`] reads it back.
    fn save(&self, path: &Path, note: Option<&str>, dtype: CacheDtype) -> Result<()>;
}

/// A [`Document`] with the tokenizer and end-of-sequence ids its answers stream with.
struct PipelineDocument<'a, B: Backend> {
    document: Document<'a, B>,
    tokenizer: &'a Tokenizer,
}

impl<B: Backend> DocumentMemory for PipelineDocument<'_, B> {
    fn tokens(&self) -> &[u32] {
        self.document.tokens()
    }

    fn chunks(&self) -> &[Range<usize>] {
        self.document.chunks()
    }

    fn ask_ids(&self, tail: &[u32], options: &GenerateOptions) -> Result<TokenStream<'_>> {
        options.sampling.validate()?;
        let (decoder, logits) = self.document.ask(tail, options.control())?;
        let prompt = [self.document.tokens(), tail].concat();
        let eos = &self.document.model().config().eos_token_ids;
        TokenStream::new(decoder, logits, &prompt, eos, Some(self.tokenizer), options.clone())
    }

    fn config(&self) -> &FocusConfig {
        self.document.config()
    }

    fn set_decoding(&mut self, decode: DecodeMode, refresh_chunks: Option<usize>) -> Result<()> {
        self.document.set_decoding(decode, refresh_chunks)
    }

    fn save(&self, path: &Path, note: Option<&str>, dtype: CacheDtype) -> Result<()> {
        self.document.save_noted(path, note, dtype)
    }
}

/// What every loaded model offers, whatever its backend: the object-safe face of [`Pipeline`].
pub trait LanguageModel: Send + Sync {
    /// The model's configuration.
    fn config(&self) -> &ModelConfig;

    /// The model's tokenizer.
    fn tokenizer(&self) -> &Tokenizer;

    /// The backend's name.
    fn backend_name(&self) -> &'static str;

    /// The model's chat template, if its files carry one.
    fn chat_template(&self) -> Option<&ChatTemplate>;

    /// Loads FocusLLM candidate projections from an adapter safetensors file (see
    /// [`Pipeline::load_adapter`]).
    fn load_adapter(&mut self, path: &Path) -> Result<usize>;

    /// Loads candidate projections from the bytes of an adapter safetensors file (see
    /// [`Pipeline::load_adapter_bytes`]).
    fn load_adapter_bytes(&mut self, bytes: &[u8]) -> Result<usize>;

    /// Sets the most bytes of the model's chunk cache (see [`Model::set_chunk_cache_limit`]):
    /// FocusLLM chunks met again, in prompts or documents, are then not computed again.
    fn set_chunk_cache_limit(&self, bytes: u64);

    /// What the model's chunk cache holds and has done.
    fn chunk_cache_stats(&self) -> ChunkCacheStats;

    /// Prefills token ids and returns a stream of generated tokens.
    fn generate_ids(&self, prompt: &[u32], options: &GenerateOptions) -> Result<TokenStream<'_>>;

    /// Reads a document once (token ids, with the chat header in front) for many questions (see
    /// [`focus::Document`](crate::focus::Document)): its memory chunks' raw caches are kept, so
    /// each [`DocumentMemory::ask_ids`] runs only the queries and the local forward.
    fn read_ids(&self, doc: &[u32], focus: &FocusConfig, control: Control) -> Result<Box<dyn DocumentMemory + '_>>;

    /// Loads a document saved by [`DocumentMemory::save`] for this model (see
    /// [`focus::Document::load`](crate::focus::Document::load) for what is checked), with the
    /// note saved with it.
    fn load_document(&self, path: &Path) -> Result<(Box<dyn DocumentMemory + '_>, Option<String>)>;

    /// Encodes `prompt` (with the tokenizer's special tokens) and streams the continuation.
    /// An empty prompt is an error even where the tokenizer would add a BOS token.
    fn generate(&self, prompt: &str, options: &GenerateOptions) -> Result<TokenStream<'_>> {
        if prompt.is_empty() {
            return Err(crate::Error::EmptyInput { what: "the prompt" });
        }
        let ids = self.tokenizer().encode(prompt)?;
        self.generate_ids(&ids, options)
    }
}

impl<B: Backend> LanguageModel for Pipeline<B>
where
    B::Tensor: Send,
{
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn backend_name(&self) -> &'static str {
        self.model.backend().name()
    }

    fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    fn load_adapter(&mut self, path: &Path) -> Result<usize> {
        Pipeline::load_adapter(self, path)
    }

    fn load_adapter_bytes(&mut self, bytes: &[u8]) -> Result<usize> {
        Pipeline::load_adapter_bytes(self, bytes)
    }

    fn set_chunk_cache_limit(&self, bytes: u64) {
        self.model.set_chunk_cache_limit(bytes);
    }

    fn chunk_cache_stats(&self) -> ChunkCacheStats {
        self.model.chunk_cache_stats()
    }

    fn generate_ids(&self, prompt: &[u32], options: &GenerateOptions) -> Result<TokenStream<'_>> {
        options.sampling.validate()?;
        let (decoder, logits) = prefill(&self.model, prompt, options.focus.as_ref(), options.control())?;
        let eos = &self.model.config().eos_token_ids;
        TokenStream::new(decoder, logits, prompt, eos, Some(&self.tokenizer), options.clone())
    }

    fn read_ids(&self, doc: &[u32], focus: &FocusConfig, control: Control) -> Result<Box<dyn DocumentMemory + '_>> {
        let document = Document::read(&self.model, doc, focus, control)?;
        Ok(Box::new(PipelineDocument { document, tokenizer: &self.tokenizer }))
    }

    fn load_document(&self, path: &Path) -> Result<(Box<dyn DocumentMemory + '_>, Option<String>)> {
        let (document, note) = Document::load_noted(path, &self.model)?;
        Ok((Box::new(PipelineDocument { document, tokenizer: &self.tokenizer }), note))
    }
}
