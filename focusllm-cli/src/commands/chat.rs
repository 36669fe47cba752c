//! `focusllm chat`: a multi-turn conversation in the terminal under the model's chat template,
//! optionally about a document given with the first turn. Each turn reads the whole conversation
//! as the [`Reader`] policy says, with the FocusLLM chunks already read found in the model's chunk
//! cache (`--chunk-cache-mib`). Ctrl-C cancels the answer being written; at the prompt,
//! Ctrl-C or end of input ends the chat.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use focusllm::{CancelToken, ChatMessage, FinishReason};

use crate::answer;
use crate::error::CliError;
use crate::focus_args::FocusArgs;
use crate::model_args::ModelArgs;
use crate::progress::ReadProgress;
use crate::prompt::document_question;
use crate::reading::Reader;
use crate::sampling_args::SamplingArgs;

/// Flags of `focusllm chat`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChatArgs {
    /// A document (UTF-8 text) given as context with the first question.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A system message opening the conversation.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// The most tokens an answer may have.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_tokens: usize,
    /// How answer tokens are chosen.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// How the conversation is read.
    #[command(flatten)]
    pub focus: FocusArgs,
    /// Memory for FocusLLM chunks kept between turns, in MiB: each turn reuses the chunks of the
    /// document and the conversation already read (0: off, every turn reads everything again).
    #[arg(long, value_name = "MIB", default_value_t = crate::sizes::DEFAULT_CHUNK_CACHE_MIB)]
    pub chunk_cache_mib: u64,
}

/// The answer being written, which Ctrl-C cancels; `None` while the prompt waits for input.
type Current = Arc<Mutex<Option<CancelToken>>>;

/// Runs the conversation until end of input or Ctrl-C at the prompt.
pub fn run(args: ChatArgs) -> Result<(), CliError> {
    let document = match &args.file {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|source| CliError::Read { path: path.clone(), source })?)
        }
        None => None,
    };
    let sampling = args.sampling.sampling()?;
    let reader = Reader::load(&args.model, &args.focus)?;
    reader.llm().set_chunk_cache_limit(args.chunk_cache_mib.saturating_mul(1 << 20));
    let current = cancel_on_ctrl_c()?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("Ctrl-C stops an answer; Ctrl-C or Ctrl-D at the prompt ends the chat.");
    }
    let mut messages: Vec<ChatMessage> = args.system.iter().map(|s| ChatMessage::new("system", s)).collect();
    let mut document = document;
    let mut input = std::io::stdin().lock();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        if input.read_line(&mut line).map_err(|e| CliError::Terminal(e.to_string()))? == 0 {
            if interactive {
                eprintln!();
            }
            return Ok(());
        }
        let question = line.trim();
        if question.is_empty() {
            continue;
        }
        let content = match &document {
            Some(doc) => document_question(doc, question),
            None => question.to_string(),
        };
        messages.push(ChatMessage::new("user", content));
        match turn(&reader, &messages, &args, sampling.clone(), &current)? {
            Some(reply) => {
                messages.push(ChatMessage::new("assistant", reply));
                document = None;
            }
            None => {
                messages.pop();
            }
        }
    }
}

/// Answers the conversation's last turn; `None` when the answer was cancelled or the prompt
/// refused (the turn is then dropped, and can be asked again).
fn turn(
    reader: &Reader,
    messages: &[ChatMessage],
    args: &ChatArgs,
    sampling: focusllm::Sampling,
    current: &Current,
) -> Result<Option<String>, CliError> {
    let ids = reader.chat_ids(messages)?;
    if let Err(e) = reader.check(ids.len()) {
        eprintln!("focusllm: {e}");
        return Ok(None);
    }
    eprintln!("{}", reader.describe(ids.len()));
    let cancel = CancelToken::new();
    *current.lock().unwrap_or_else(PoisonError::into_inner) = Some(cancel.clone());
    let progress = ReadProgress::new(ids.len(), "reading");
    let options = reader.options(ids.len(), args.max_tokens, sampling, Some(cancel), progress.callback());
    let result = answer::stream(reader, &ids, &options, &progress);
    *current.lock().unwrap_or_else(PoisonError::into_inner) = None;
    let answer = result?;
    println!();
    if answer.finish == Some(FinishReason::Cancelled) {
        eprintln!("(answer cancelled; the question is dropped)");
        return Ok(None);
    }
    eprintln!("{}", answer.summary());
    Ok(Some(answer.text.trim().to_string()))
}

/// Installs the Ctrl-C handler: it cancels the answer being written, or ends the program when
/// none is (Ctrl-C at the prompt).
fn cancel_on_ctrl_c() -> Result<Current, CliError> {
    let current: Current = Arc::new(Mutex::new(None));
    let handler = current.clone();
    ctrlc::set_handler(move || match handler.lock().unwrap_or_else(PoisonError::into_inner).take() {
        Some(cancel) => cancel.cancel(),
        None => {
            eprintln!();
            std::process::exit(130);
        }
    })
    .map_err(|e| CliError::Terminal(format!("cannot handle Ctrl-C: {e}")))?;
    Ok(current)
}
