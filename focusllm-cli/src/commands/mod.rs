//! The subcommands, one module each with its flags and its `run`.

pub mod ask;
pub mod bench;
pub mod chat;
pub mod eval;
pub mod passkey;
