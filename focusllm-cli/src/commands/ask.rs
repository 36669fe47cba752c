//! `focusllm ask`: a question about a document. The document and the question go into the
//! model's chat template, the answer streams to stdout, progress and speed go to stderr; the
//! document is read as the [`Reader`] policy says (plain attention when short, FocusLLM when long).
//!
//! With `--save-memory FILE` the document is read once as a reusable document memory
//! ([`focusllm::Llm::read_text`]) and saved; with `--memory FILE` a saved one is loaded instead of
//! reading `--file`. Either way the question is asked over the document memory
//! ([`focusllm::Document::ask`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use focusllm::focus::CacheDtype;
use focusllm::{ChatMessage, Control, DecodeMode, FocusConfig, GenerateOptions, Sampling};

use crate::answer;
use crate::error::CliError;
use crate::focus_args::FocusArgs;
use crate::model_args::ModelArgs;
use crate::progress::ReadProgress;
use crate::prompt::document_question;
use crate::reading::Reader;
use crate::sampling_args::SamplingArgs;

/// Flags of `focusllm ask`.
#[derive(clap::Args, Debug, Clone)]
pub struct AskArgs {
    /// The document to ask about (UTF-8 text).
    #[arg(long, value_name = "FILE", required_unless_present = "memory", conflicts_with = "memory")]
    pub file: Option<PathBuf>,
    /// After reading the document, save it as a document memory (its chunks' keys and values)
    /// that `--memory` loads for later questions.
    #[arg(long, value_name = "FILE", conflicts_with = "memory")]
    pub save_memory: Option<PathBuf>,
    /// How `--save-memory` stores the keys and values: f32 (answers bit for bit as the read) or
    /// f16 (half the file; logits differ by the rounding).
    #[arg(long, value_name = "f32|f16", default_value = "f32", value_parser = parse_dtype, requires = "save_memory")]
    pub memory_dtype: CacheDtype,
    /// Load a document memory saved by `--save-memory` (on the same model and adapter) instead of
    /// reading `--file`; it keeps the FocusLLM sizes it was read with (`--decode` and
    /// `--refresh-chunks` apply).
    #[arg(long, value_name = "FILE")]
    pub memory: Option<PathBuf>,
    /// The question (several words are joined with spaces).
    #[arg(required = true, value_name = "QUESTION")]
    pub question: Vec<String>,
    /// The most tokens the answer may have.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_tokens: usize,
    /// How answer tokens are chosen.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// How the document is read.
    #[command(flatten)]
    pub focus: FocusArgs,
}

/// Reads the file (or loads the saved memory), asks, and streams the answer.
pub fn run(args: AskArgs) -> Result<(), CliError> {
    let question = args.question.join(" ");
    if question.trim().is_empty() {
        return Err(CliError::Usage("the question is empty".into()));
    }
    let sampling = args.sampling.sampling()?;
    if let Some(memory) = &args.memory {
        let reader = Reader::load(&args.model, &args.focus)?;
        return ask_memory(&reader, &args.focus, memory, &question, args.max_tokens, sampling);
    }
    let file = args.file.as_ref().ok_or_else(|| CliError::Usage("give --file or --memory".into()))?;
    let document = std::fs::read_to_string(file).map_err(|source| CliError::Read { path: file.clone(), source })?;
    let reader = Reader::load(&args.model, &args.focus)?;
    if let Some(save) = &args.save_memory {
        return read_and_save(&reader, &document, save, args.memory_dtype, &question, args.max_tokens, sampling);
    }
    let ids = reader.chat_ids(&[ChatMessage::new("user", document_question(&document, &question))])?;
    reader.check(ids.len())?;
    eprintln!("{}", reader.describe(ids.len()));
    let progress = ReadProgress::new(ids.len(), "reading");
    let options = reader.options(ids.len(), args.max_tokens, sampling, None, progress.callback());
    let answer = answer::stream(&reader, &ids, &options, &progress)?;
    println!();
    eprintln!("{}", answer.summary());
    Ok(())
}

/// The configuration a document memory is read with under the reader's policy: its FocusLLM
/// configuration (with `--plain`, one whose threshold no document reaches).
pub fn memory_config(reader: &Reader) -> Result<FocusConfig, CliError> {
    match reader.focus_config() {
        Some(config) if config.decode == DecodeMode::Retrieve => Err(CliError::Usage(
            "a saved document memory needs a decode mode that keeps chunk caches, not retrieve: give --decode \
             (e.g. cached-local) or an adapter"
                .into(),
        )),
        Some(config) => Ok(config.clone()),
        None => Ok(FocusConfig { threshold: Some(usize::MAX), ..FocusConfig::default() }),
    }
}

/// `--memory-dtype`'s value.
fn parse_dtype(text: &str) -> Result<CacheDtype, String> {
    CacheDtype::parse(text).map_err(|_| "expected f32 or f16".to_string())
}

/// Reads `document` as a document memory, saves it to `path` in `dtype`, and answers `question` over it.
fn read_and_save(
    reader: &Reader,
    document: &str,
    path: &Path,
    dtype: CacheDtype,
    question: &str,
    max_tokens: usize,
    sampling: Sampling,
) -> Result<(), CliError> {
    let config = memory_config(reader)?;
    let llm = reader.llm();
    let doc_tokens = llm.tokenizer().encode(document).map_or(document.len(), |ids| ids.len());
    reader.check(doc_tokens)?;
    let progress = ReadProgress::new(doc_tokens, "reading");
    let read = llm.read_text(document, &config, Control { progress: progress.callback(), ..Control::default() });
    progress.finish();
    let read = read?;
    eprintln!("{}", describe_memory(&read));
    read.save_as(path, dtype)?;
    eprintln!("document memory saved to {}", path.display());
    ask(&read, question, max_tokens, sampling)
}

/// Loads the document memory saved at `path` and answers `question` over it, decoding as
/// `--decode` and `--refresh-chunks` say where given (the sizes stay those it was read with).
fn ask_memory(
    reader: &Reader,
    flags: &FocusArgs,
    path: &Path,
    question: &str,
    max_tokens: usize,
    sampling: Sampling,
) -> Result<(), CliError> {
    let mut document = reader.llm().load_document(path)?;
    if flags.decode.is_some() || flags.refresh_chunks.is_some() {
        let wanted = flags.over(document.focus().clone(), 0);
        document.set_decoding(wanted.decode, wanted.refresh_chunks)?;
    }
    eprintln!("{} (loaded from {})", describe_memory(&document), path.display());
    ask(&document, question, max_tokens, sampling)
}

/// A one-line description of a document memory, for stderr.
fn describe_memory(document: &focusllm::Document<'_>) -> String {
    let tokens = document.tokens().len();
    if document.chunks().is_empty() {
        return format!("document of {tokens} tokens read with plain attention");
    }
    let f = document.focus();
    format!(
        "document of {tokens} tokens read with FocusLLM ({} decoding, {} memory chunks of {}, local window {})",
        f.decode.name(),
        document.chunks().len(),
        f.chunk_size,
        f.local_window
    )
}

/// Asks `question` over `document` and streams the answer.
fn ask(
    document: &focusllm::Document<'_>,
    question: &str,
    max_tokens: usize,
    sampling: Sampling,
) -> Result<(), CliError> {
    let progress = ReadProgress::new(document.tokens().len(), "asking");
    let options = GenerateOptions { max_tokens, sampling, progress: progress.callback(), ..GenerateOptions::default() };
    let answer = answer::print_stream(Instant::now(), document.ask(question, &options), &progress)?;
    println!();
    eprintln!("{}", answer.summary());
    Ok(())
}
