//! The one error type of the core crate: every variant names the file, tensor, key or value at fault.

use std::path::PathBuf;

/// Result alias used throughout focusllm.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, read or memory-mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A JSON file (config.json, a safetensors index) is not valid JSON or has the wrong structure.
    #[error("malformed JSON in {path}: {source}")]
    Json {
        /// The file at fault.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// A required key is missing from a configuration file.
    #[error("{path}: missing key `{key}`")]
    MissingConfigKey {
        /// The configuration file.
        path: PathBuf,
        /// The missing key.
        key: &'static str,
    },

    /// The configuration names a model architecture this crate does not implement.
    #[error("{path}: unsupported model_type `{model_type}` (supported: llama, mistral, qwen2, qwen3)")]
    UnsupportedModelType {
        /// The configuration file.
        path: PathBuf,
        /// The architecture found.
        model_type: String,
    },

    /// A configuration value is present but unusable.
    #[error("invalid value for `{key}`: {value} ({reason})")]
    InvalidConfig {
        /// The key at fault.
        key: String,
        /// The value found, as text.
        value: String,
        /// Why it is rejected.
        reason: String,
    },

    /// A safetensors file is corrupt or truncated.
    #[error("invalid safetensors file {path}: {reason}")]
    Safetensors {
        /// The file at fault.
        path: PathBuf,
        /// What the safetensors reader reported.
        reason: String,
    },

    /// A tensor the configuration requires is absent from the checkpoint.
    #[error("tensor `{name}` is missing from {location}")]
    MissingTensor {
        /// The tensor's name.
        name: String,
        /// The checkpoint searched (file or directory).
        location: PathBuf,
    },

    /// A tensor's shape disagrees with the configuration.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The tensor's name.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape stored in the file.
        found: Vec<usize>,
    },

    /// A tensor is stored in a data type this crate cannot read.
    #[error("tensor `{name}` has unsupported data type {dtype}")]
    UnsupportedDtype {
        /// The tensor's name.
        name: String,
        /// The data type found.
        dtype: String,
    },

    /// The tokenizer file could not be loaded, or encoding/decoding failed.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A token id is not in the model's vocabulary.
    #[error("token id {id} is out of range for a vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },

    /// An input that must hold at least one token is empty.
    #[error("empty input: {what} must contain at least one token")]
    EmptyInput {
        /// Which input was empty.
        what: &'static str,
    },

    /// An option or argument passed to the API is out of its valid range.
    #[error("invalid option `{name}` = {value}: {reason}")]
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// The value given, as text.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// The operands of a backend operation break its contract (widths, row ranges, positions).
    #[error("{op}: {detail}")]
    Shape {
        /// The operation refused.
        op: &'static str,
        /// Which operand is at fault, and how.
        detail: String,
    },

    /// A backend failed (device lost, allocation failed, a device limit exceeded).
    #[error("{backend} backend: {message}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// What went wrong.
        message: String,
    },

    /// The default model could not be fetched; the message says how to get it by hand.
    #[error("cannot fetch the default model: {message}")]
    ModelFetch {
        /// What failed and how to get the file by hand.
        message: String,
    },

    /// A file does not start with the GGUF magic `GGUF`.
    #[error("{path}: not a GGUF file (magic {found:02x?}, expected \"GGUF\")")]
    GgufBadMagic {
        /// The file at fault.
        path: PathBuf,
        /// The first four bytes found.
        found: [u8; 4],
    },

    /// A GGUF file has a format version this crate does not read (it reads 2 and 3).
    #[error("{path}: unsupported GGUF version {version} (supported: 2, 3)")]
    GgufUnsupportedVersion {
        /// The file at fault.
        path: PathBuf,
        /// The version found.
        version: u32,
    },

    /// A GGUF file ends before a structure it announces.
    #[error("{path}: truncated GGUF file: {what} at byte {offset} needs {needed} bytes, but the file has {file_len}")]
    GgufTruncated {
        /// The file at fault.
        path: PathBuf,
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The file's length.
        file_len: u64,
    },

    /// A GGUF tensor is stored in a ggml type this crate cannot read (or one it does not know).
    #[error(
        "{path}: tensor `{tensor}` has unsupported ggml type {ggml_type} (supported: {})",
        crate::gguf::GgmlType::SUPPORTED
    )]
    GgufUnsupportedTensorType {
        /// The file at fault.
        path: PathBuf,
        /// The tensor's GGUF name.
        tensor: String,
        /// The type's name (or number, when unknown).
        ggml_type: String,
    },

    /// A GGUF metadata key the loader needs is absent.
    #[error("{path}: GGUF metadata key `{key}` is missing")]
    GgufMissingKey {
        /// The file at fault.
        path: PathBuf,
        /// The missing key.
        key: String,
    },

    /// A GGUF metadata value has the wrong type (or an unusable value).
    #[error("{path}: GGUF metadata key `{key}` has type {found}, expected {expected}")]
    GgufWrongType {
        /// The file at fault.
        path: PathBuf,
        /// The key at fault.
        key: String,
        /// What the loader needs.
        expected: String,
        /// What the file holds.
        found: String,
    },

    /// A GGUF tensor's data lies (partly) outside the file.
    #[error("{path}: tensor `{tensor}` data spans bytes {start}..{end}, beyond the file's {file_len} bytes")]
    GgufTensorOutOfBounds {
        /// The file at fault.
        path: PathBuf,
        /// The tensor's GGUF name.
        tensor: String,
        /// First byte of its data.
        start: u64,
        /// One past its last byte.
        end: u64,
        /// The file's length.
        file_len: u64,
    },

    /// A GGUF file is structurally invalid in some other way (bad UTF-8 key, too many dimensions,
    /// a size that overflows, duplicate names, misaligned data, ...).
    #[error("{path}: invalid GGUF file: {reason}")]
    GgufInvalid {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong, naming the key or tensor.
        reason: String,
    },

    /// The `tokenizer.ggml.*` metadata of a GGUF file is inconsistent (lengths differ, merges name
    /// unknown tokens, special ids outside the vocabulary, unknown tokenizer model or pre-tokenizer).
    #[error("{path}: inconsistent tokenizer metadata: `{key}`: {reason}")]
    GgufTokenizer {
        /// The file at fault.
        path: PathBuf,
        /// The metadata key at fault.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// A chat template failed to parse or render.
    #[error("chat template: {message}")]
    ChatTemplate {
        /// The template engine's message.
        message: String,
    },

    /// The work needs more memory than the device has available, or than the caller's budget;
    /// refused before any of it is allocated.
    #[error("out of memory: {what} needs {needed} bytes, {available} available ({limit})")]
    OutOfMemory {
        /// What was to be allocated.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
        /// Where the available figure comes from: the backend's free memory or the memory budget.
        limit: &'static str,
    },

    /// A saved document (see [`focus::Document::load`](crate::focus::Document::load)) was made by
    /// another model, with other candidate projections, or in another format version.
    #[error("{path}: the document was saved with {field} = {found}, but here {field} = {expected}")]
    DocumentMismatch {
        /// The document file.
        path: PathBuf,
        /// The metadata field that differs (e.g. `model.hidden_size`, `model.candidates`).
        field: String,
        /// The value the loading model (or this crate) has.
        expected: String,
        /// The value the file holds.
        found: String,
    },

    /// A saved document file is not a valid one: a metadata entry or tensor is missing or
    /// malformed, or its chunks, caches and tokens disagree with one another.
    #[error("{path}: invalid document file: {reason}")]
    DocumentInvalid {
        /// The document file.
        path: PathBuf,
        /// What is wrong, naming the entry or tensor.
        reason: String,
    },

    /// The work was cancelled through a [`crate::CancelToken`].
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// An [`Error::Io`] naming the file at fault.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// An [`Error::Json`] naming the file at fault.
    pub fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Error::Json { path: path.into(), source }
    }
}
