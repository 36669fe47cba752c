//! Ask a question about a document: the document and the question go into the model's chat
//! template, the answer streams to stdout, progress and speed to stderr. A short document is read
//! with plain attention, a longer one with FocusLLM: on the default model from 4096 tokens (the
//! crossover measured in docs/evaluation.md), on another model past its window (`--threshold N`
//! moves the switch, `--plain` turns FocusLLM off).
//!
//! On the default model it loads the repository's trained candidate projections (`adapters/`) and
//! reads with the sizes they were trained with (L = S = 512, Q = 256), cached-local decoding. With
//! `--no-adapter`, or on any other model without `--adapter FILE`, it reads by retrieval (`--mode
//! retrieve`, training-free: the chunks most relevant to the question are read in full).
//!
//! cargo run --release --example ask -- [--model PATH] [--device cpu|wgpu|cuda] [--mode cached-local]
//!     [--max-tokens N] [--local N] [--chunk N] [--query N] --file DOC.txt "question"

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use common::{chat_prompt, fail, retrieve_sizes, shipped_adapter_sizes, Args, DEFAULT_MODEL_SWITCH, SHIPPED_ADAPTER};
use focusllm::{DecodeMode, FocusConfig, GenerateOptions, Progress, ProgressCallback};

const USAGE: &str = "usage: ask [--model PATH] [--adapter FILE | --no-adapter] [--device cpu|wgpu|cuda] [--threads N] [--mode exact|cached-local|frozen|min-entropy|retrieve]
           [--plain] [--max-tokens N] [--local N] [--chunk N] [--query N] [--threshold N] [--chunk-batch N]
           [--order candidates-first|sink-first] [--prefix auto|none|header] --file DOC.txt \"question\"";

fn main() {
    let args = Args::parse(USAGE, &["plain", "no-adapter"]);
    let Some(file) = args.get("file") else { fail(USAGE, "--file is required") };
    let question = args.positional.join(" ");
    if question.trim().is_empty() {
        fail(USAGE, "the question is missing");
    }
    let document = std::fs::read_to_string(file).unwrap_or_else(|e| fail("", &format!("cannot read {file}: {e}")));
    // The shipped adapter on the default model unless told otherwise, with its trained sizes.
    let shipped = args.get("model").is_none() && args.get("adapter").is_none() && !args.has("no-adapter");
    let adapter = match args.get("adapter") {
        Some(file) => Some(PathBuf::from(file)),
        None => shipped.then(|| PathBuf::from(SHIPPED_ADAPTER)),
    };
    let llm = args.load_with(&args.model(), adapter.as_deref());

    let user = format!("{document}\n\n{question}");
    let (text, header_len) = match chat_prompt(&llm, &user, "") {
        Some((header, rest)) => {
            let n = llm.tokenizer().encode(&header).map(|t| t.len()).unwrap_or(0);
            (format!("{header}{rest}"), n)
        }
        None => (format!("{user}\nAnswer:"), 0),
    };
    let ids = llm.tokenizer().encode(&text).unwrap_or_else(|e| fail("", &e.to_string()));
    let default_mode = if adapter.is_some() { "cached-local" } else { "retrieve" };
    let mode =
        DecodeMode::parse(args.get("mode").unwrap_or(default_mode)).unwrap_or_else(|e| fail(USAGE, &e.to_string()));
    let focus_defaults = match (mode, &adapter) {
        (DecodeMode::Retrieve, _) => retrieve_sizes(),
        (_, Some(_)) => shipped_adapter_sizes(),
        (_, None) => FocusConfig::default(),
    };
    let window = llm.config().max_position_embeddings;
    let focus = (!args.has("plain")).then(|| {
        let f = args.focus_over(focus_defaults, mode, header_len);
        match (args.get("threshold"), args.get("model")) {
            (Some(_), _) => f,
            (None, None) => FocusConfig { threshold: Some(DEFAULT_MODEL_SWITCH), ..f },
            (None, Some(_)) => f.past_window(window),
        }
    });
    match &focus {
        Some(f) if ids.len() >= f.threshold() => {
            eprintln!(
                "{} tokens: reading with FocusLLM ({} decoding, {} memory chunks of {}, local window {})",
                ids.len(),
                mode.name(),
                (ids.len() - f.local_window).div_ceil(f.chunk_size),
                f.chunk_size,
                f.local_window
            );
        }
        None if ids.len() > window => {
            fail("", &format!("the prompt has {} tokens, more than the model's window of {window}; drop --plain to read it with FocusLLM", ids.len()));
        }
        _ => eprintln!("{} tokens: plain attention", ids.len()),
    }

    let progress = ProgressCallback::new(|p| match p {
        Progress::Prefill { done, total } => eprint!("\rprefill {done}/{total}"),
        Progress::Generated { .. } => {}
    });
    let options = GenerateOptions {
        max_tokens: args.num("max-tokens", 256),
        focus,
        progress: Some(progress),
        ..Default::default()
    };
    let start = Instant::now();
    let mut stream = llm.generate_ids(&ids, &options).unwrap_or_else(|e| fail("", &e.to_string()));
    let mut first: Option<Instant> = None;
    let mut n = 0usize;
    let stdout = std::io::stdout();
    for tok in stream.by_ref() {
        let tok = tok.unwrap_or_else(|e| fail("", &e.to_string()));
        if first.is_none() {
            first = Some(Instant::now());
            eprintln!("\rprefill {:.1} s", start.elapsed().as_secs_f64());
        }
        n += 1;
        let mut out = stdout.lock();
        let _ = out.write_all(tok.text.as_bytes());
        let _ = out.flush();
    }
    println!();
    if let Some(t) = first {
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{n} tokens, {:.2} tokens/s after the first ({:?})",
            (n.saturating_sub(1)) as f64 / secs.max(1e-9),
            stream.finish_reason()
        );
    }
}
