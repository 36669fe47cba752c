//! The passkey retrieval test, the project's main job: hide a 5-digit pass key at a chosen depth of
//! a long repetitive text and ask the model for it, with plain attention, with FocusLLM in each
//! decode mode (copied, untrained candidate projections) and with FocusLLM and a trained adapter.
//! Prints an accuracy table (length x depth) with prefill time and peak memory. An answer is correct
//! when the first number in it is the key.
//!
//! cargo run --release --example passkey -- [--lengths 4k,16k] [--depths 0.2,0.5,0.8] [--seeds 1]
//!     [--modes plain,focus-cached,adapter-cached] [--plain-max 8k] [--local 512] [--chunk 512]
//!     [--query 256] [--chunk-batch 4] [--order candidates-first|sink-first] [--prefix auto|none|header]
//!     [--no-chat] [--no-share-chunks] [--device cpu|wgpu|cuda] [--threads N] [--model PATH]
//!     [--adapter FILE] [--verbose]
//!
//! FocusLLM defaults here are those the shipped adapter was trained with (L = S = 512, Q = 256), not
//! the official 2048/2048/512 (pass `--local 2048 --chunk 2048 --query 512` for those); `focus-retrieve`
//! starts from the retrieval sizes (L = S = 512, Q = 32). `adapter-*`
//! modes load `--adapter FILE`, by default the repository's adapter for the default model.

mod common;

use std::time::Instant;

use common::{
    chat_prompt, fail, parse_len, peak_rss_mib, reset_peak_rss, retrieve_sizes, shipped_adapter_sizes, Args, Mode,
};
use focusllm::{DecodeMode, FocusConfig, GenerateOptions, Llm};

const USAGE: &str = "usage: passkey [--lengths 4k,16k] [--depths 0.2,0.5,0.8] [--seeds N] [--plain-max 8k]
               [--modes plain,focus-exact,focus-cached,focus-frozen,focus-min-entropy,focus-retrieve,adapter-cached,...]
               [--local N] [--chunk N] [--query N] [--threshold N] [--chunk-batch N] [--order candidates-first|sink-first]
               [--prefix auto|none|header] [--no-chat] [--no-share-chunks] [--device cpu|wgpu|cuda] [--threads N]
               [--model PATH] [--adapter FILE] [--verbose]";

const FILLER: &str = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";

/// A mode's name in the table's rows (the adapter's rows as the README's tables name them).
fn row_name(mode: Mode) -> String {
    match mode {
        Mode::Adapter(m) => format!("focus-{} + adapter", m.name()),
        other => other.name(),
    }
}

/// A 5-digit pass key derived from the seed (deterministic, spread over 10000..99999).
fn pass_key(seed: u64, length: usize, depth: f64) -> u32 {
    let mut x = seed ^ (length as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (depth * 1000.0) as u64;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    10_000 + ((x ^ (x >> 31)) % 90_000) as u32
}

/// Token ids of a passkey prompt of about `length` tokens, and the length of its chat header.
fn build_prompt(llm: &Llm, chat: bool, length: usize, depth: f64, key: u32) -> (Vec<u32>, usize) {
    let tok = llm.tokenizer();
    let needle = format!("The pass key is {key}. Remember it. {key} is the pass key. ");
    let question = "What is the pass key?";
    let count = |s: &str| tok.encode_with(s, false).map(|t| t.len()).unwrap_or_else(|e| fail("", &e.to_string()));
    let per_filler = count(&FILLER.repeat(8)) as f64 / 8.0;
    let overhead = count(&needle) + count(question) + 64;
    let reps = ((length.saturating_sub(overhead)) as f64 / per_filler).floor() as usize;
    let at = ((reps as f64) * depth).round() as usize;
    let body = format!("{}{needle}{}", FILLER.repeat(at), FILLER.repeat(reps - at));
    let templated = if chat { chat_prompt(llm, &format!("{body}{question}"), "The pass key is") } else { None };
    let (text, header_len) = match templated {
        Some((header, rest)) => {
            let header_len = tok.encode(&header).map(|t| t.len()).unwrap_or(0);
            (format!("{header}{rest}"), header_len)
        }
        None => (format!("{body}{question} The pass key is"), 0),
    };
    (tok.encode(&text).unwrap_or_else(|e| fail("", &e.to_string())), header_len)
}

/// The first run of digits in `answer`: the number the model gave (an answer is correct when it is
/// the key itself, not the key with more digits after it).
fn first_number(answer: &str) -> Option<&str> {
    let start = answer.find(|c: char| c.is_ascii_digit())?;
    let rest = &answer[start..];
    Some(&rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())])
}

struct Cell {
    correct: usize,
    total: usize,
}

fn main() {
    // --share-chunks: the filler is periodic, so many chunks are identical; computing each distinct
    // chunk once gives the same answers (prefill times then are not those of ordinary text).
    let args = Args::parse(USAGE, &["no-chat", "verbose", "share-chunks", "no-share-chunks"]);
    let lengths: Vec<usize> = args.list("lengths", "4k,16k").iter().map(|s| parse_len(USAGE, s)).collect();
    let plain_max = parse_len(USAGE, args.get("plain-max").unwrap_or("8k"));
    let depths: Vec<f64> = args
        .list("depths", "0.2,0.5,0.8")
        .iter()
        .map(|d| d.parse().unwrap_or_else(|_| fail(USAGE, &format!("bad depth {d:?}"))))
        .collect();
    let seeds: u64 = args.num("seeds", 1);
    let modes: Vec<Mode> =
        args.list("modes", "plain,focus-cached,adapter-cached").iter().map(|m| Mode::parse(USAGE, m)).collect();
    let chat = !args.has("no-chat");
    let verbose = args.has("verbose");
    let model_path = args.model();
    let llm = args.load_with(&model_path, None);
    let adapted = args.adapted_model(USAGE, &model_path, &modes);
    eprintln!(
        "model {} ({} layers, window {}), device {:?}",
        model_path.display(),
        llm.config().num_layers,
        llm.config().max_position_embeddings,
        args.device()
    );
    // The sizes the shipped adapter was trained with; identical chunks (the filler is periodic)
    // computed once, which changes no answer but makes prefill times those of this synthetic input.
    let focus_defaults = FocusConfig { share_identical_chunks: true, ..shipped_adapter_sizes() };

    println!(
        "| mode | tokens | {} | prefill s (mean) | peak RSS MiB |",
        depths.iter().map(|d| format!("depth {d}")).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|---|{}---|---|", "---|".repeat(depths.len()));
    for &mode in &modes {
        for &length in &lengths {
            if matches!(mode, Mode::Plain) && length > plain_max {
                let skipped = vec!["-"; depths.len()].join(" | ");
                println!("| plain | ~{length} (skipped: over --plain-max) | {skipped} | - | - |");
                continue;
            }
            let model = match (mode, &adapted) {
                (Mode::Adapter(_), Some(adapted)) => adapted,
                _ => &llm,
            };
            let mut cells: Vec<Cell> = depths.iter().map(|_| Cell { correct: 0, total: 0 }).collect();
            let mut prefill_secs = Vec::new();
            let mut actual_len = 0;
            reset_peak_rss();
            for (di, &depth) in depths.iter().enumerate() {
                for seed in 0..seeds {
                    let key = pass_key(seed, length, depth);
                    let (ids, header_len) = build_prompt(model, chat, length, depth, key);
                    actual_len = ids.len();
                    let focus = match mode {
                        Mode::Plain => None,
                        Mode::Focus(DecodeMode::Retrieve) => {
                            let sizes = FocusConfig { share_identical_chunks: true, ..retrieve_sizes() };
                            Some(args.focus_over(sizes, DecodeMode::Retrieve, header_len))
                        }
                        Mode::Focus(m) | Mode::Adapter(m) => {
                            Some(args.focus_over(focus_defaults.clone(), m, header_len))
                        }
                    };
                    let options = GenerateOptions { max_tokens: 8, focus, ..Default::default() };
                    let start = Instant::now();
                    let mut stream = model.generate_ids(&ids, &options).unwrap_or_else(|e| fail("", &e.to_string()));
                    let mut answer = String::new();
                    let mut first = true;
                    for tok in stream.by_ref() {
                        let tok = tok.unwrap_or_else(|e| fail("", &e.to_string()));
                        if first {
                            prefill_secs.push(start.elapsed().as_secs_f64());
                            first = false;
                        }
                        answer.push_str(&tok.text);
                    }
                    let ok = first_number(&answer) == Some(&*key.to_string());
                    cells[di].total += 1;
                    cells[di].correct += ok as usize;
                    if verbose {
                        let verdict = match (ok, answer.contains(&key.to_string())) {
                            (true, _) => "ok",
                            (false, true) => "WRONG (the key's digits run on)",
                            (false, false) => "WRONG",
                        };
                        eprintln!(
                            "{} {} tokens depth {depth} key {key}: {answer:?} {verdict}",
                            row_name(mode),
                            ids.len()
                        );
                    }
                }
            }
            let mean = prefill_secs.iter().sum::<f64>() / prefill_secs.len().max(1) as f64;
            let row: Vec<String> = cells.iter().map(|c| format!("{}/{}", c.correct, c.total)).collect();
            println!(
                "| {} | {} | {} | {:.1} | {:.0} |",
                row_name(mode),
                actual_len,
                row.join(" | "),
                mean,
                peak_rss_mib()
            );
        }
    }
    if modes.iter().any(|m| !matches!(m, Mode::Plain)) {
        let c = args.focus_over(focus_defaults, DecodeMode::Exact, 0);
        println!(
            "\nFocusLLM rows: local window {}, chunk size {}, query {}, threshold {}; identical chunks {}.",
            c.local_window,
            c.chunk_size,
            c.query_len(),
            c.threshold(),
            if c.share_identical_chunks {
                "computed once (prefill times are not those of ordinary text)"
            } else {
                "each computed"
            }
        );
    }
}
