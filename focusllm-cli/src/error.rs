//! The crate's one error type: every variant names what is wrong, in a line the binary prints as
//! `focusllm: error: ...`.

use std::path::PathBuf;

/// Everything that can stop a `focusllm` command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The library refused: a model that does not load, a bad option, a failed backend.
    #[error(transparent)]
    Library(#[from] focusllm::Error),

    /// `--model` names nothing on disk.
    #[error("model {} not found (give a GGUF file or a Hugging Face model directory)", .0.display())]
    ModelNotFound(PathBuf),

    /// A file the command needs could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file at fault.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A file the command writes could not be opened or written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file at fault.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A file's contents are not what the command expects (a line of an evaluation suite).
    #[error("{}: {message}", path.display())]
    BadData {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// Flags that cannot be used together, or a value the command cannot use.
    #[error("{0}")]
    Usage(String),

    /// A prompt too long for plain attention that the flags would read with it.
    #[error(
        "the prompt has {tokens} tokens, more than the model's window of {window}; {hint} to read it with FocusLLM"
    )]
    PastWindow {
        /// The prompt's length in tokens.
        tokens: usize,
        /// The model's window.
        window: usize,
        /// The flag to change.
        hint: &'static str,
    },

    /// The server could not start or stopped on a failure: its runtime, its listening socket.
    #[error("server: {what}: {source}")]
    Server {
        /// What the server was doing.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Standard input or output, or the terminal's Ctrl-C handling, failed.
    #[error("terminal: {0}")]
    Terminal(String),
}
