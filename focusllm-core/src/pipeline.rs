//! `Pipeline`: a model and its tokenizer loaded from a model directory, ready to generate text.

use std::path::Path;

use crate::backend::Backend;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::generation::{GenerateOptions, PlainDecoder, TokenStream};
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::weights::SafetensorsWeights;

/// A model resident on a backend together with its tokenizer.
pub struct Pipeline<B: Backend> {
    model: Model<B>,
    tokenizer: Tokenizer,
}

impl<B: Backend> Pipeline<B> {
    /// Loads a Hugging Face model directory (`config.json`, `model.safetensors` or a sharded index,
    /// `tokenizer.json`) onto `backend`. Every tensor is checked before any is uploaded.
    pub fn load(dir: impl AsRef<Path>, backend: B) -> Result<Self> {
        let dir = dir.as_ref();
        let config = ModelConfig::from_file(dir.join("config.json"))?;
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))?;
        let weights = SafetensorsWeights::from_dir(dir)?;
        let model = Model::load(backend, config, &weights)?;
        Ok(Pipeline { model, tokenizer })
    }

    /// Joins an already loaded model and tokenizer.
    pub fn new(model: Model<B>, tokenizer: Tokenizer) -> Self {
        Pipeline { model, tokenizer }
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

/// What every loaded model offers, whatever its backend: the object-safe face of [`Pipeline`].
pub trait LanguageModel: Send + Sync {
    /// The model's configuration.
    fn config(&self) -> &ModelConfig;

    /// The model's tokenizer.
    fn tokenizer(&self) -> &Tokenizer;

    /// The backend's name.
    fn backend_name(&self) -> &'static str;

    /// Prefills token ids and returns a stream of generated tokens.
    fn generate_ids(&self, prompt: &[u32], options: &GenerateOptions) -> Result<TokenStream<'_>>;

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

    fn generate_ids(&self, prompt: &[u32], options: &GenerateOptions) -> Result<TokenStream<'_>> {
        options.sampling.validate()?;
        let (decoder, logits) = PlainDecoder::prefill(&self.model, prompt)?;
        let eos = &self.model.config().eos_token_ids;
        TokenStream::new(Box::new(decoder), logits, prompt, eos, Some(&self.tokenizer), options.clone())
    }
}
