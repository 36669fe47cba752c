//! `focusllm`: ask about a long file, chat, serve, and run the passkey, benchmark and evaluation
//! suites. Parses the command line and dispatches; errors print as one `focusllm: error:` line.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use focusllm_cli::commands::{ask, bench, chat, eval, passkey};
use focusllm_cli::{serve, CliError};

/// Read inputs far past a model's window with FocusLLM: chunks of a long input are condensed in
/// parallel into candidate tokens that the model attends to with its local context.
#[derive(Parser)]
#[command(name = "focusllm", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ask a question about a document; the answer streams to stdout.
    Ask(ask::AskArgs),
    /// Chat in the terminal, optionally about a document.
    Chat(chat::ChatArgs),
    /// Serve the model over HTTP.
    Serve(serve::ServeArgs),
    /// The passkey retrieval test: accuracy per length and depth for each reading mode.
    Passkey(passkey::PasskeyArgs),
    /// Prefill and decode speed and peak memory.
    Bench(bench::BenchArgs),
    /// The long-context evaluation suite (scripts/make_eval.py writes its samples).
    Eval(eval::EvalArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            eprintln!("focusllm: error: {} (see --help)", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    let result: Result<(), CliError> = match cli.command {
        Command::Ask(args) => ask::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Passkey(args) => passkey::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("focusllm: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Clap's message on one line: its lines up to the usage, joined, without the `error:` prefix.
fn one_line(rendered: &str) -> String {
    let lines: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    lines.join(" ").trim_start_matches("error:").trim().to_string()
}
