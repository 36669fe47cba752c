//! `focusllm passkey`, the project's main job: hides a 5-digit pass key at chosen depths of a long
//! repetitive text and asks the model for it, with plain attention, FocusLLM in each decode mode
//! (copied, untrained candidate projections) and FocusLLM with a trained adapter. Prints an
//! accuracy table (length x depth) with prefill time and peak memory; an answer is correct when
//! the first number in it is the key.
//!
//! FocusLLM rows start from the sizes the built-in adapter was trained with (L = S = 512, Q = 256),
//! not the official 2048/2048/512, and compute identical chunks once (the filler is periodic);
//! `focus-retrieve` starts from the retrieval sizes.

use std::time::Instant;

use focusllm::{DecodeMode, FocusConfig, GenerateOptions, Llm};

use crate::error::CliError;
use crate::focus_args::FocusArgs;
use crate::model_args::ModelArgs;
use crate::prompt::chat_prompt;
use crate::sizes::{adapter_sizes, retrieve_sizes};
use crate::suite::{parse_len, peak_rss_mib, reset_peak_rss, Mode};

/// Flags of `focusllm passkey`.
#[derive(clap::Args, Debug, Clone)]
pub struct PasskeyArgs {
    /// Prompt lengths in tokens.
    #[arg(long, value_name = "N,...", value_delimiter = ',', value_parser = parse_len, default_value = "4k,16k")]
    pub lengths: Vec<usize>,
    /// Depths of the key in the text (0: start, 1: end).
    #[arg(long, value_name = "D,...", value_delimiter = ',', default_value = "0.2,0.5,0.8")]
    pub depths: Vec<f64>,
    /// Keys tried per length and depth.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seeds: u64,
    /// Reading modes, one table row each: plain, focus-DECODE, adapter-DECODE.
    #[arg(long, value_name = "MODE,...", value_delimiter = ',', default_value = "plain,focus-cached,adapter-cached")]
    pub modes: Vec<Mode>,
    /// Longest prompt the plain rows run (plain attention past the window is meaningless).
    #[arg(long, value_name = "N", value_parser = parse_len, default_value = "8k")]
    pub plain_max: usize,
    /// Ask without the chat template.
    #[arg(long)]
    pub no_chat: bool,
    /// Print every answer to stderr.
    #[arg(long)]
    pub verbose: bool,
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// FocusLLM sizes over the rows' defaults.
    #[command(flatten)]
    pub focus: FocusArgs,
}

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
fn build_prompt(llm: &Llm, chat: bool, length: usize, depth: f64, key: u32) -> Result<(Vec<u32>, usize), CliError> {
    let tok = llm.tokenizer();
    let needle = format!("The pass key is {key}. Remember it. {key} is the pass key. ");
    let question = "What is the pass key?";
    let count = |s: &str| tok.encode_with(s, false).map(|t| t.len());
    let per_filler = count(&FILLER.repeat(8))? as f64 / 8.0;
    let overhead = count(&needle)? + count(question)? + 64;
    let reps = ((length.saturating_sub(overhead)) as f64 / per_filler).floor() as usize;
    let at = ((reps as f64) * depth.clamp(0.0, 1.0)).round() as usize;
    let body = format!("{}{needle}{}", FILLER.repeat(at), FILLER.repeat(reps - at));
    let templated = if chat { chat_prompt(llm, &format!("{body}{question}"), "The pass key is") } else { None };
    let (text, header_len) = match templated {
        Some((header, rest)) => {
            let header_len = tok.encode(&header).map(|t| t.len()).unwrap_or(0);
            (format!("{header}{rest}"), header_len)
        }
        None => (format!("{body}{question} The pass key is"), 0),
    };
    Ok((tok.encode(&text)?, header_len))
}

/// The first run of digits in `answer`: the number the model gave (an answer is correct when it is
/// the key itself, not the key with more digits after it).
fn first_number(answer: &str) -> Option<&str> {
    let start = answer.find(|c: char| c.is_ascii_digit())?;
    let rest = &answer[start..];
    Some(&rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())])
}

/// Correct answers of one table cell.
#[derive(Default, Clone)]
struct Cell {
    correct: usize,
    total: usize,
}

/// Runs the table.
pub fn run(args: PasskeyArgs) -> Result<(), CliError> {
    args.focus.refuse_reading_flags("passkey", "--modes names how each row reads (focus-DECODE, adapter-DECODE)")?;
    let model_path = args.model.model_path()?;
    let device = args.model.device()?;
    let llm = args.model.load_on(&model_path, device.clone(), None)?;
    // A second copy of the model with the adapter's projections, for the `adapter-*` rows.
    let adapted = if args.modes.iter().any(|m| m.needs_adapter()) {
        Some(args.model.load_on(&model_path, device.clone(), Some(&args.model.required_adapter()?))?)
    } else {
        None
    };
    eprintln!(
        "model {} ({} layers, window {}), device {device:?}",
        model_path.display(),
        llm.config().num_layers,
        llm.config().max_position_embeddings,
    );
    // The adapter's trained sizes; identical chunks (the filler is periodic) computed once, which
    // changes no answer but makes prefill times those of this synthetic input.
    let focus_defaults = FocusConfig { share_identical_chunks: true, ..adapter_sizes() };
    let depths = &args.depths;

    println!(
        "| mode | tokens | {} | prefill s (mean) | peak RSS MiB |",
        depths.iter().map(|d| format!("depth {d}")).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|---|{}---|---|", "---|".repeat(depths.len()));
    for &mode in &args.modes {
        for &length in &args.lengths {
            if mode == Mode::Plain && length > args.plain_max {
                let skipped = vec!["-"; depths.len()].join(" | ");
                println!("| plain | ~{length} (skipped: over --plain-max) | {skipped} | - | - |");
                continue;
            }
            let model = match (mode, &adapted) {
                (Mode::Adapter(_), Some(adapted)) => adapted,
                _ => &llm,
            };
            let mut cells = vec![Cell::default(); depths.len()];
            let mut prefill_secs = Vec::new();
            let mut actual_len = 0;
            reset_peak_rss();
            for (di, &depth) in depths.iter().enumerate() {
                for seed in 0..args.seeds {
                    let key = pass_key(seed, length, depth);
                    let (ids, header_len) = build_prompt(model, !args.no_chat, length, depth, key)?;
                    actual_len = ids.len();
                    let focus = match mode {
                        Mode::Plain => None,
                        Mode::Focus(DecodeMode::Retrieve) => {
                            let sizes = FocusConfig { share_identical_chunks: true, ..retrieve_sizes() };
                            Some(args.focus.over(sizes, header_len))
                        }
                        Mode::Focus(m) | Mode::Adapter(m) => {
                            Some(args.focus.over(FocusConfig { decode: m, ..focus_defaults.clone() }, header_len))
                        }
                    };
                    let options = GenerateOptions { max_tokens: 8, focus, ..Default::default() };
                    let start = Instant::now();
                    let mut answer = String::new();
                    let mut first = true;
                    for tok in model.generate_ids(&ids, &options)? {
                        let tok = tok?;
                        if first {
                            prefill_secs.push(start.elapsed().as_secs_f64());
                            first = false;
                        }
                        answer.push_str(&tok.text);
                    }
                    let ok = first_number(&answer) == Some(&*key.to_string());
                    cells[di].total += 1;
                    cells[di].correct += ok as usize;
                    if args.verbose {
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
    if args.modes.iter().any(|&m| m != Mode::Plain) {
        let c = args.focus.over(focus_defaults, 0);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_number_takes_the_first_run_of_digits() {
        assert_eq!(first_number(" 12345. Remember"), Some("12345"));
        assert_eq!(first_number("is 123456"), Some("123456"));
        assert_eq!(first_number("none"), None);
    }

    #[test]
    fn keys_have_five_digits() {
        for seed in 0..50 {
            let key = pass_key(seed, 4096, 0.5);
            assert!((10_000..100_000).contains(&key));
        }
    }
}
