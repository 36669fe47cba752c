//! `focusllm ask`: a question about a document. The document and the question go into the
//! model's chat template, the answer streams to stdout, progress and speed go to stderr; the
//! document is read as the [`Reader`] policy says (plain attention when short, FocusLLM when long).

use std::path::PathBuf;

use focusllm::ChatMessage;

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
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
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

/// Reads the file, asks, and streams the answer.
pub fn run(args: AskArgs) -> Result<(), CliError> {
    let question = args.question.join(" ");
    if question.trim().is_empty() {
        return Err(CliError::Usage("the question is empty".into()));
    }
    let document =
        std::fs::read_to_string(&args.file).map_err(|source| CliError::Read { path: args.file.clone(), source })?;
    let sampling = args.sampling.sampling()?;
    let reader = Reader::load(&args.model, &args.focus)?;
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
