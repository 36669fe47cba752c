//! `focusllm eval`, the long-context evaluation suite: runs the samples that `scripts/make_eval.py`
//! wrote (RULER-style tasks in real prose, and the passkey) through each reading mode and prints,
//! per split (dev and held-out), a table of task x length x mode with the score and the time
//! taken. A sample's score is the fraction of its expected strings found in the answer (RULER's
//! measure, case-insensitive).
//!
//! Every result is appended to `--results FILE` as it is measured; a run given the same file skips
//! what is already there, so a long run can stop and go on, and `--report` prints the tables of a
//! file without running anything (`--report-modes` names its columns). Retrieval with a read budget
//! of N tokens (`--read-budget N`) is the mode `focus-retrieve@N`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use focusllm::{DecodeMode, FocusConfig, GenerateOptions, Llm};
use serde_json::{json, Value};

use crate::error::CliError;
use crate::focus_args::FocusArgs;
use crate::model_args::ModelArgs;
use crate::prompt::{chat_prompt, document_question};
use crate::sizes::{adapter_sizes, retrieve_sizes};
use crate::suite::{parse_len, Mode};

/// Flags of `focusllm eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The suite (JSON lines; scripts/make_eval.py writes it).
    #[arg(long, value_name = "FILE.jsonl")]
    pub suite: PathBuf,
    /// Results file: appended to as results come, and what it holds already is not run again.
    #[arg(long, value_name = "FILE.jsonl")]
    pub results: Option<PathBuf>,
    /// Reading modes, one column each: plain, focus-DECODE, adapter-DECODE.
    #[arg(long, value_name = "MODE,...", value_delimiter = ',', default_value = "plain,adapter-cached,focus-retrieve")]
    pub modes: Vec<Mode>,
    /// Nominal sample lengths to run.
    #[arg(long, value_name = "N,...", value_delimiter = ',', value_parser = parse_len, default_value = "4k,8k,16k,32k,64k,128k")]
    pub lengths: Vec<usize>,
    /// Tasks to run [default: all].
    #[arg(long, value_name = "TASK,...", value_delimiter = ',')]
    pub tasks: Vec<String>,
    /// Splits to run.
    #[arg(long, value_name = "SPLIT,...", value_delimiter = ',', default_value = "dev,heldout")]
    pub splits: Vec<String>,
    /// Samples per task, length and split (those with a smaller seed) [default: all].
    #[arg(long, value_name = "N", default_value_t = u64::MAX, hide_default_value = true)]
    pub seeds: u64,
    /// Longest sample the plain column runs.
    #[arg(long, value_name = "N", value_parser = parse_len, default_value = "8k")]
    pub plain_max: usize,
    /// The most tokens an answer may have.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_tokens: usize,
    /// The query length of the retrieval column (the other FocusLLM columns take --query-len).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub retrieve_query: usize,
    /// Columns of the tables [default: the modes run].
    #[arg(long, value_name = "MODE,...", value_delimiter = ',')]
    pub report_modes: Vec<String>,
    /// Print the tables of --results without running anything.
    #[arg(long)]
    pub report: bool,
    /// Print every answer to stderr.
    #[arg(long)]
    pub verbose: bool,
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// FocusLLM sizes over the columns' defaults.
    #[command(flatten)]
    pub focus: FocusArgs,
}

/// RULER's string match: the fraction of `answers` found in `output`, ignoring case.
fn score(output: &str, answers: &[String]) -> f64 {
    let out = output.to_lowercase();
    answers.iter().filter(|a| out.contains(&a.to_lowercase())).count() as f64 / answers.len().max(1) as f64
}

/// The key under which a result is stored: one sample in one mode.
fn key(sample: &Value, mode: &str) -> String {
    let text = |k: &str| sample[k].as_str().map_or_else(|| sample[k].to_string(), String::from);
    format!("{}/{}/{}/{}/{mode}", text("task"), text("split"), sample["length"], sample["seed"])
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Read { path: path.into(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| CliError::BadData { path: path.into(), message: format!("line {}: {e}", i + 1) })
        })
        .collect()
}

/// Tokens of a nominal length left for the template, the question and the answer.
const ROOM: usize = 256;

/// The sample's document: as many of its haystack paragraphs as fit in `length - ROOM` of the
/// model's tokens, with each needle put between paragraphs at its depth.
fn document(llm: &Llm, sample: &Value) -> Result<String, CliError> {
    let budget = (sample["length"].as_u64().unwrap_or(0) as usize).saturating_sub(ROOM);
    let count = |s: &str| llm.tokenizer().encode_with(s, false).map(|t| t.len());
    let needles: Vec<(f64, &str)> = sample["needles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| (n[0].as_f64().unwrap_or(0.5), n[1].as_str().unwrap_or("")))
        .collect();
    let mut used = 0;
    for (_, s) in &needles {
        used += count(s)? + 1;
    }
    let mut paras: Vec<&str> = Vec::new();
    for p in sample["paragraphs"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let n = count(p)? + 1;
        if used + n > budget {
            break;
        }
        used += n;
        paras.push(p);
    }
    let mut sorted = needles;
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (depth, sentence) in sorted {
        let at = ((depth * paras.len() as f64).round() as usize).clamp(1.min(paras.len()), paras.len());
        paras.insert(at, sentence);
    }
    Ok(paras.join("\n\n"))
}

/// One sample of the suite with where it came from, for error messages.
struct Sample<'a> {
    value: &'a Value,
    suite: &'a Path,
}

impl Sample<'_> {
    /// A text field the sample must have.
    fn text(&self, k: &str) -> Result<&str, CliError> {
        self.value[k]
            .as_str()
            .ok_or_else(|| CliError::BadData { path: self.suite.into(), message: format!("a sample has no {k:?}") })
    }
}

/// Runs one sample in one mode; returns the result record.
fn run_sample(
    llm: &Llm,
    sample: &Sample,
    mode: &str,
    focus: Option<FocusConfig>,
    max_tokens: usize,
) -> Result<Value, CliError> {
    let s = sample.value;
    let user = document_question(&document(llm, s)?, sample.text("question")?);
    let prefix = sample.text("prefix")?;
    let prompt = match chat_prompt(llm, &user, prefix) {
        Some((header, rest)) => format!("{header}{rest}"),
        None => format!("{user}\n{prefix}"),
    };
    let ids = llm.tokenizer().encode(&prompt)?;
    let options = GenerateOptions { max_tokens, focus, ..Default::default() };
    let start = Instant::now();
    let mut answer = String::new();
    let mut prefill = None;
    let mut n = 0usize;
    for tok in llm.generate_ids(&ids, &options)? {
        let tok = tok?;
        prefill.get_or_insert_with(|| start.elapsed().as_secs_f64());
        answer.push_str(&tok.text);
        n += 1;
    }
    let total = start.elapsed().as_secs_f64();
    let prefill = prefill.unwrap_or(total);
    let answers: Vec<String> =
        s["answers"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
    Ok(json!({
        "key": key(s, mode), "task": s["task"], "split": s["split"], "length": s["length"],
        "seed": s["seed"], "mode": mode, "tokens": ids.len(), "score": score(&answer, &answers), "answer": answer,
        "answers": answers, "prefill_s": prefill, "decode_tps": if n > 1 { (n - 1) as f64 / (total - prefill).max(1e-9) } else { 0.0 },
    }))
}

/// Prints, per split, the score table (task x length, one column per mode) and the cost table.
fn report(results: &[Value], modes: &[String]) {
    let mut splits: Vec<String> = results.iter().filter_map(|r| r["split"].as_str().map(String::from)).collect();
    splits.sort();
    splits.dedup();
    for split in &splits {
        // (length, task) -> mode -> (score sum, n)
        let mut cells: BTreeMap<(u64, String), BTreeMap<String, (f64, usize)>> = BTreeMap::new();
        let mut cost: BTreeMap<(u64, String), (f64, f64, f64, usize)> = BTreeMap::new();
        for r in results.iter().filter(|r| r["split"].as_str() == Some(split)) {
            let length = r["length"].as_u64().unwrap_or(0);
            let mode = r["mode"].as_str().unwrap_or("").to_string();
            let s = r["score"].as_f64().unwrap_or(0.0);
            for task in [r["task"].as_str().unwrap_or("").to_string(), "all tasks".to_string()] {
                let c = cells.entry((length, task)).or_default().entry(mode.clone()).or_insert((0.0, 0));
                c.0 += s;
                c.1 += 1;
            }
            let c = cost.entry((length, mode)).or_insert((0.0, 0.0, 0.0, 0));
            c.0 += r["tokens"].as_f64().unwrap_or(0.0);
            c.1 += r["prefill_s"].as_f64().unwrap_or(0.0);
            c.2 += r["decode_tps"].as_f64().unwrap_or(0.0);
            c.3 += 1;
        }
        println!("\n### split: {split} (score: mean fraction of expected strings found; samples in brackets)\n");
        println!("| length | task | {} |", modes.join(" | "));
        println!("|---|---|{}", "---|".repeat(modes.len()));
        for ((length, task), by_mode) in &cells {
            let row: Vec<String> = modes
                .iter()
                .map(|m| by_mode.get(m).map_or("-".to_string(), |(s, n)| format!("{:.2} ({n})", s / *n as f64)))
                .collect();
            let name = if task == "all tasks" { format!("**{task}**") } else { task.clone() };
            println!("| {}k | {name} | {} |", length / 1024, row.join(" | "));
        }
        println!("\n| length | mode | tokens (mean) | prefill s (mean) | decode tokens/s (mean) |");
        println!("|---|---|---|---|---|");
        for ((length, mode), (tokens, prefill, tps, n)) in &cost {
            let n = *n as f64;
            println!("| {}k | {mode} | {:.0} | {:.1} | {:.2} |", length / 1024, tokens / n, prefill / n, tps / n);
        }
    }
}

/// Runs the suite (or, with `--report`, only prints the tables of `--results`).
pub fn run(args: EvalArgs) -> Result<(), CliError> {
    args.focus.refuse_reading_flags("eval", "--modes names how each column reads (focus-DECODE, adapter-DECODE)")?;
    if args.modes.is_empty() {
        return Err(CliError::Usage("--modes is empty".into()));
    }
    let retrieve = FocusConfig { query_len: Some(args.retrieve_query), ..args.focus.over(retrieve_sizes(), 0) };
    let trained = |decode| args.focus.over(FocusConfig { decode, ..adapter_sizes() }, 0);
    // Retrieval is named with its read budget: each budget is a column of its own in the tables.
    let budget = retrieve.read_budget.unwrap_or(2048);
    // Cached-local decoding that refreshes only some chunks is named with their count.
    let label = |m: Mode| match m {
        Mode::Focus(DecodeMode::Retrieve) => format!("{}@{budget}", m.name()),
        Mode::Focus(d) | Mode::Adapter(d) if trained(d).refresh_chunks.is_some() => {
            format!("{}@top{}", m.name(), trained(d).refresh_chunks.unwrap_or_default())
        }
        _ => m.name(),
    };
    let columns: Vec<String> = if args.report_modes.is_empty() {
        args.modes.iter().map(|&m| label(m)).collect()
    } else {
        args.report_modes.clone()
    };
    let mut results = match &args.results {
        Some(p) if p.exists() => read_jsonl(p)?,
        _ => Vec::new(),
    };
    if args.report {
        report(&results, &columns);
        return Ok(());
    }
    let samples: Vec<Value> = read_jsonl(&args.suite)?
        .into_iter()
        .filter(|s| args.lengths.contains(&(s["length"].as_u64().unwrap_or(0) as usize)))
        .filter(|s| args.tasks.is_empty() || args.tasks.iter().any(|t| s["task"].as_str() == Some(t)))
        .filter(|s| args.splits.iter().any(|t| s["split"].as_str() == Some(t)))
        .filter(|s| s["seed"].as_u64().unwrap_or(0) < args.seeds)
        .collect();
    let model_path = args.model.model_path()?;
    let device = args.model.device()?;
    let llm = args.model.load_on(&model_path, device.clone(), None)?;
    // A second copy of the model with the adapter's projections, for the `adapter-*` columns.
    let adapted = if args.modes.iter().any(|m| m.needs_adapter()) {
        Some(args.model.load_on(&model_path, device, Some(&args.model.required_adapter()?))?)
    } else {
        None
    };
    let mut sink = match &args.results {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| CliError::Write { path: p.clone(), source })?,
        ),
        None => None,
    };
    let done: HashSet<String> = results.iter().filter_map(|r| r["key"].as_str().map(String::from)).collect();
    eprintln!("{} samples x {} modes", samples.len(), args.modes.len());
    for value in &samples {
        let sample = Sample { value, suite: &args.suite };
        for &mode in &args.modes {
            if done.contains(&key(value, &label(mode))) {
                continue;
            }
            let length = value["length"].as_u64().unwrap_or(0) as usize;
            let (model, focus) = match mode {
                Mode::Plain if length > args.plain_max => continue,
                Mode::Plain => (&llm, None),
                Mode::Focus(DecodeMode::Retrieve) => (&llm, Some(retrieve.clone())),
                Mode::Focus(m) => (&llm, Some(trained(m))),
                Mode::Adapter(m) => (adapted.as_ref().unwrap_or(&llm), Some(trained(m))),
            };
            let record = run_sample(model, &sample, &label(mode), focus, args.max_tokens)?;
            if args.verbose {
                eprintln!(
                    "{} {} {} tokens {}: {:.2} {:?} (expected {}) prefill {:.1} s",
                    record["task"],
                    record["split"],
                    record["tokens"],
                    record["mode"],
                    record["score"].as_f64().unwrap_or(0.0),
                    record["answer"].as_str().unwrap_or(""),
                    record["answers"],
                    record["prefill_s"].as_f64().unwrap_or(0.0)
                );
            }
            if let (Some(f), Some(p)) = (sink.as_mut(), &args.results) {
                writeln!(f, "{record}").map_err(|source| CliError::Write { path: p.clone(), source })?;
            }
            results.push(record);
        }
    }
    report(&results, &columns);
    Ok(())
}
