//! Text to token ids and back, through the `tokenizers` crate, plus incremental detokenisation for
//! streaming output.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A Hugging Face tokenizer: from `tokenizer.json`, or built from a GGUF file's metadata.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    source: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Loads the bytes of a `tokenizer.json`; `source` names it in errors. Malformed JSON is
    /// refused before `tokenizers` reads it (its deserializer panics on some malformed files,
    /// found by fuzzing), as are `Precompiled` normalizers; a panic inside it all the same
    /// becomes an error too.
    pub fn from_bytes(bytes: &[u8], source: impl Into<PathBuf>) -> Result<Self> {
        let source = source.into();
        let fail = |message: String| Error::Tokenizer { path: source.clone(), message };
        // Parsed whole first: `tokenizers` panics on JSON errors inside a `decoder`, and skipping
        // (`IgnoredAny`) does not check `\u` escapes such as a lone surrogate.
        let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| fail(e.to_string()))?;
        check_precompiled(&json["normalizer"]).map_err(fail)?;
        let inner = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(bytes))
            .map_err(|_| fail("the tokenizers crate panicked reading it".into()))?
            .map_err(|e| fail(e.to_string()))?;
        Ok(Tokenizer { inner, source })
    }

    /// Wraps an already built tokenizer; `source` names it in error messages.
    pub fn from_tokenizers(inner: tokenizers::Tokenizer, source: impl Into<PathBuf>) -> Self {
        Tokenizer { inner, source: source.into() }
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Tokenizer { path: self.source.clone(), message: e.to_string() }
    }

    /// Encodes text, adding the special tokens (e.g. BOS) the tokenizer's post-processor adds.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, true)
    }

    /// Encodes text; `add_special_tokens` chooses whether the post-processor's tokens are added.
    pub fn encode_with(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| self.error(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids to text, leaving out special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| self.error(e))
    }

    /// The id of a token given by its text (e.g. `"<|im_end|>"`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// Turns a stream of token ids into a stream of text pieces, holding back incomplete UTF-8
/// sequences and keeping the spacing that decoding one token at a time would lose.
#[derive(Debug, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    /// Start of the window decoded for context.
    prev: usize,
    /// End of the text already emitted (as a token index).
    current: usize,
}

impl TextStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token and returns the text it completes (possibly empty).
    ///
    /// A token that has no text of its own and changes nothing (a special token, skipped when
    /// decoding) is left out of the window, so a long run of them costs a constant time each
    /// rather than a decode of the whole run.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = tokenizer.decode(&self.ids[self.prev..self.current])?;
        let now = tokenizer.decode(&self.ids[self.prev..])?;
        if now == before && self.ids.len() == self.current + 1 && tokenizer.decode(&[id])?.is_empty() {
            self.ids.pop();
            return Ok(String::new());
        }
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            let piece = match now.get(before.len()..) {
                Some(p) if now.starts_with(&before) => p.to_string(),
                _ => now.chars().skip(before.chars().count()).collect(),
            };
            self.prev = self.current;
            self.current = self.ids.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }
}

/// Refuses `Precompiled` normalizers (alone or inside a `Sequence`): `tokenizers` panics reading a
/// malformed one and indexes its character map unchecked while encoding. No supported
/// architecture's tokenizer uses one; they come from SentencePiece models such as T5's.
fn check_precompiled(normalizer: &serde_json::Value) -> std::result::Result<(), String> {
    match normalizer["type"].as_str() {
        Some("Precompiled") => Err("a `Precompiled` normalizer is not supported".into()),
        Some("Sequence") => {
            normalizer["normalizers"].as_array().map_or(Ok(()), |list| list.iter().try_for_each(check_precompiled))
        }
        _ => Ok(()),
    }
}
