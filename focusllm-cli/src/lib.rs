//! The `focusllm` command line as a library: the flags every subcommand shares, the reading
//! policy of `ask`, `chat` and the server ([`reading::Reader`]), progress display, and the
//! subcommands themselves. The binary (`src/main.rs`) only parses and dispatches.
#![warn(missing_docs)]

pub mod answer;
pub mod commands;
pub mod error;
pub mod focus_args;
pub mod model_args;
pub mod progress;
pub mod prompt;
pub mod reading;
pub mod sampling_args;
pub mod serve;
pub mod sizes;
pub mod suite;

pub use error::CliError;
pub use focus_args::FocusArgs;
pub use model_args::ModelArgs;
pub use reading::Reader;
