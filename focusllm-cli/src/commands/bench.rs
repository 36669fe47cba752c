//! `focusllm bench`: prefill tokens/s at several lengths and decode tokens/s, for each CPU thread
//! count (or the one GPU), with peak memory; optionally FocusLLM prefill rows for long inputs,
//! and read-once rows for documents (read, save, load, three questions each decoding in another
//! mode). Prints a Markdown table of medians over `--runs` (the document rows run once).

use std::time::Instant;

use focusllm::{Control, DecodeMode, Device, FocusConfig, GenerateOptions, Llm};

use crate::error::CliError;
use crate::focus_args::{parse_decode, FocusArgs};
use crate::model_args::{Adapter, ModelArgs};
use crate::sizes::adapter_sizes;
use crate::suite::{parse_len, peak_rss_mib, reset_peak_rss};

/// Flags of `focusllm bench` (`--threads` takes a comma-separated list here, default 1,2).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Prompt lengths of the plain prefill rows (`none`: no such rows).
    #[arg(long, value_name = "N,...|none", value_delimiter = ',', default_value = "512,2048,8192")]
    pub prefill: Vec<String>,
    /// Tokens decoded after a short prompt for the decode row (0: no such row).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub decode_tokens: usize,
    /// Runs per measurement (the median is printed).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub runs: usize,
    /// Prompt lengths of the FocusLLM prefill rows.
    #[arg(long, value_name = "N,...", value_delimiter = ',', value_parser = parse_len)]
    pub focus_lengths: Vec<usize>,
    /// Decode modes of the FocusLLM rows [default: --decode if given, else frozen,exact].
    #[arg(long, value_name = "MODE,...", value_delimiter = ',', value_parser = parse_decode)]
    pub focus_modes: Vec<DecodeMode>,
    /// Document lengths of the read-once rows, read with the adapter's sizes (L = S = 512,
    /// Q = 256) under the FocusLLM flags, every chunk computed.
    #[arg(long, value_name = "N,...", value_delimiter = ',', value_parser = parse_len)]
    pub document_lengths: Vec<usize>,
    /// Tokens decoded per mode in the read-once rows.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub document_decode_tokens: usize,
    /// Prompt lengths of the chunk cache rows: a FocusLLM prompt (the read-once sizes) with the
    /// chunk cache empty, then the same document with another question.
    #[arg(long, value_name = "N,...", value_delimiter = ',', value_parser = parse_len)]
    pub chunk_cache_lengths: Vec<usize>,
    /// The model (an adapter is loaded only when --adapter names one).
    #[command(flatten)]
    pub model: ModelArgs,
    /// FocusLLM sizes of the FocusLLM rows, over the official defaults.
    #[command(flatten)]
    pub focus: FocusArgs,
}

const TEXT: &str = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. \
                    A long book has many chapters, and every chapter has many pages full of words. ";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `n` token ids of ordinary text.
fn tokens(llm: &Llm, n: usize) -> Result<Vec<u32>, CliError> {
    let piece = llm.tokenizer().encode_with(TEXT, false)?;
    Ok(piece.iter().copied().cycle().take(n).collect())
}

/// Seconds to the first generated token (the prefill) for `ids`.
fn time_prefill(llm: &Llm, ids: &[u32], focus: Option<FocusConfig>) -> Result<f64, CliError> {
    let options = GenerateOptions { max_tokens: 1, stop_at_eos: false, focus, ..Default::default() };
    let start = Instant::now();
    for t in llm.generate_ids(ids, &options)? {
        t?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Tokens per second of decoding `n` tokens after a short prompt (first token excluded).
fn time_decode(llm: &Llm, n: usize) -> Result<f64, CliError> {
    let ids = tokens(llm, 16)?;
    let options = GenerateOptions { max_tokens: n + 1, stop_at_eos: false, ..Default::default() };
    let mut stream = llm.generate_ids(&ids, &options)?;
    stream.next().transpose()?;
    rest_rate(stream)
}

/// Tokens per second of what is left of a stream.
fn rest_rate(stream: focusllm::TokenStream<'_>) -> Result<f64, CliError> {
    let start = Instant::now();
    let mut count = 0;
    for t in stream {
        t?;
        count += 1;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// Questions of the read-once rows, as the ids that follow the document.
const QUESTIONS: [&str; 3] = [
    "\nQuestion: what colour is the sky?\nAnswer:",
    "\nQuestion: what is a long book full of?\nAnswer:",
    "\nQuestion: what colour is the sun?\nAnswer:",
];

/// The chunk cache rows of one prompt length: the document and the first question with the
/// cache empty, then the document with each other question, its chunks found in the cache.
fn chunk_cache_rows(llm: &Llm, name: &str, len: usize, focus: &FocusConfig) -> Result<(), CliError> {
    reset_peak_rss();
    llm.set_chunk_cache_limit(u64::MAX);
    let doc = tokens(llm, len)?;
    let mut first = None;
    for (i, question) in QUESTIONS.iter().enumerate() {
        let ids = [doc.clone(), llm.tokenizer().encode_with(question, false)?].concat();
        let secs = time_prefill(llm, &ids, Some(focus.clone()))?;
        let stats = llm.chunk_cache_stats();
        let ratio = first.map_or_else(String::new, |f| format!(", {:.2} of the first", secs / f));
        first.get_or_insert(secs);
        println!(
            "| {name} | prompt {} through the chunk cache ({} chunks found so far{ratio}) | {} | {secs:.2} | {:.1} | {:.0} |",
            i + 1,
            stats.hits,
            ids.len(),
            ids.len() as f64 / secs,
            peak_rss_mib()
        );
    }
    llm.set_chunk_cache_limit(0);
    Ok(())
}

/// The read-once rows of one document length: read, save (with the file's size), load, then three
/// questions (seconds to the first answer token), each decoding in another mode.
fn document_rows(llm: &Llm, name: &str, len: usize, focus: &FocusConfig, decode: usize) -> Result<(), CliError> {
    let row = |test: &str, secs: f64, rate: String| {
        println!("| {name} | {test} | {len} | {secs:.2} | {rate} | {:.0} |", peak_rss_mib());
    };
    reset_peak_rss();
    let ids = tokens(llm, len)?;
    let start = Instant::now();
    let mut doc = llm.read(&ids, focus, Control::default())?;
    let read = start.elapsed().as_secs_f64();
    row(&format!("document read ({} chunks)", doc.chunks().len()), read, format!("{:.1}", len as f64 / read));
    let file = std::env::temp_dir().join(format!("focusllm-bench-{}.safetensors", std::process::id()));
    let start = Instant::now();
    doc.save(&file)?;
    let save = start.elapsed().as_secs_f64();
    let mib = std::fs::metadata(&file).map_err(|source| CliError::Read { path: file.clone(), source })?.len() as f64
        / f64::from(1 << 20);
    row(&format!("document save ({mib:.0} MiB, {:.1} MiB per 1K tokens)", mib * 1024.0 / len as f64), save, "-".into());
    let start = Instant::now();
    let loaded = llm.load_document(&file);
    let load = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    drop(loaded?);
    row("document load", load, "-".into());
    // Each question decodes in its own mode: the first token times the question, the rest the mode.
    let modes = [(DecodeMode::CachedLocal, None), (DecodeMode::CachedLocal, Some(8)), (DecodeMode::FrozenMemory, None)];
    for (i, (question, (mode, refresh))) in QUESTIONS.iter().zip(modes).enumerate() {
        doc.set_decoding(mode, refresh)?;
        let label = refresh.map_or_else(|| mode.name().to_string(), |k| format!("{} refresh {k}", mode.name()));
        let tail = llm.tokenizer().encode_with(question, false)?;
        let options = GenerateOptions { max_tokens: decode + 1, stop_at_eos: false, ..Default::default() };
        let start = Instant::now();
        let mut stream = doc.ask_ids(&tail, &options)?;
        stream.next().transpose()?;
        let secs = start.elapsed().as_secs_f64();
        row(&format!("question {}, {label} ({:.2} of the read)", i + 1, secs / read), secs, "-".into());
        if decode > 0 {
            let rate = rest_rate(stream)?;
            row(&format!("decode {label}, {decode} tokens"), decode as f64 / rate, format!("{rate:.2}"));
        }
    }
    Ok(())
}

/// The devices compared: the CPU at each thread count, or the one GPU.
fn devices(args: &ModelArgs) -> Result<Vec<(String, Device)>, CliError> {
    match &args.device {
        Device::Cpu { .. } => {
            let threads = if args.threads.is_empty() { vec![1, 2] } else { args.threads.clone() };
            Ok(threads.iter().map(|&t| (format!("cpu x{t}"), Device::Cpu { threads: Some(t) })).collect())
        }
        other if args.threads.is_empty() => Ok(vec![(format!("{other:?}"), other.clone())]),
        _ => Err(CliError::Usage("--threads applies to --device cpu only".into())),
    }
}

/// Runs the benchmark and prints its table.
pub fn run(args: BenchArgs) -> Result<(), CliError> {
    if args.focus.plain {
        return Err(CliError::Usage("bench does not take --plain: its prefill rows are plain attention".into()));
    }
    let prefill = args
        .prefill
        .iter()
        .filter(|s| s.as_str() != "none")
        .map(|s| parse_len(s).map_err(|e| CliError::Usage(format!("--prefill: {e}"))))
        .collect::<Result<Vec<usize>, _>>()?;
    let modes = match (&args.focus_modes[..], args.focus.decode) {
        ([], Some(mode)) => vec![mode],
        ([], None) => vec![DecodeMode::FrozenMemory, DecodeMode::Exact],
        (modes, _) => modes.to_vec(),
    };
    let runs = args.runs.max(1);
    let model = args.model.model_path()?;
    let adapter = args.model.adapter.clone().map(Adapter::File);

    println!("model: {}", model.display());
    println!("| device | test | tokens | median s | tokens/s | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    for (name, device) in devices(&args.model)? {
        reset_peak_rss();
        let llm = args.model.load_on(&model, device, adapter.as_ref())?;
        // One warm-up so page faults and thread start-up are not timed.
        time_prefill(&llm, &tokens(&llm, 64)?, None)?;
        for &n in &prefill {
            let ids = tokens(&llm, n)?;
            let secs = median((0..runs).map(|_| time_prefill(&llm, &ids, None)).collect::<Result<_, _>>()?);
            println!("| {name} | prefill | {n} | {secs:.3} | {:.1} | {:.0} |", n as f64 / secs, peak_rss_mib());
        }
        if args.decode_tokens > 0 {
            let n = args.decode_tokens;
            let tps = median((0..runs).map(|_| time_decode(&llm, n)).collect::<Result<_, _>>()?);
            println!("| {name} | decode | {n} | {:.3} | {tps:.2} | {:.0} |", n as f64 / tps, peak_rss_mib());
        }
        for &len in &args.focus_lengths {
            for &mode in &modes {
                reset_peak_rss();
                let ids = tokens(&llm, len)?;
                let focus = FocusConfig { decode: mode, ..args.focus.over(FocusConfig::default(), 0) };
                let secs = time_prefill(&llm, &ids, Some(focus))?;
                println!(
                    "| {name} | focus-{} prefill | {len} | {secs:.1} | {:.1} | {:.0} |",
                    mode.name(),
                    len as f64 / secs,
                    peak_rss_mib()
                );
            }
        }
        let sizes = args.focus.over(adapter_sizes(), 0);
        let decode = args.focus.decode.unwrap_or(DecodeMode::CachedLocal);
        let focus = FocusConfig { decode, threshold: Some(0), share_identical_chunks: false, ..sizes };
        for &len in &args.document_lengths {
            document_rows(&llm, &name, len, &focus, args.document_decode_tokens)?;
        }
        for &len in &args.chunk_cache_lengths {
            chunk_cache_rows(&llm, &name, len, &focus)?;
        }
    }
    Ok(())
}
