//! The long-context evaluation suite: runs the samples that `scripts/make_eval.py` wrote (RULER-style
//! tasks in real prose, and the passkey) through each reading mode and prints, per split (dev and
//! held-out), a table of task x length x mode with the score and the time taken. A sample's score is
//! the fraction of its expected strings found in the answer (RULER's measure, case-insensitive).
//!
//! Every result is appended to `--results FILE` as it is measured; a run given the same file skips
//! what is already there, so a long run can stop and go on, and `--report` prints the tables of a
//! file without running anything (`--report-modes` names its columns). Retrieval with a read budget
//! of N tokens (`--read-budget N`, default that of the examples' retrieval sizes) is the mode
//! `focus-retrieve@N`.
//!
//! cargo run --release --example eval -- --suite eval.jsonl [--results results.jsonl]
//!     [--modes plain,adapter-cached,focus-retrieve] [--lengths 4k,8k] [--tasks ...] [--splits dev,heldout]
//!     [--plain-max 8k] [--max-tokens 32] [--retrieve-query 32] [--report] [--verbose]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use common::{chat_prompt, fail, parse_len, retrieve_sizes, shipped_adapter_sizes, Args, Mode};
use focusllm::{DecodeMode, FocusConfig, GenerateOptions, Llm};
use serde_json::{json, Value};

const USAGE: &str = "usage: eval --suite FILE.jsonl [--results FILE.jsonl] [--modes plain,adapter-cached,focus-retrieve,...]
            [--lengths 4k,8k,...] [--tasks single-number,...] [--splits dev,heldout] [--seeds N] [--plain-max 8k]
            [--max-tokens N] [--retrieve-query N] [--read-budget N] [--report-modes a,b,...] [--chunk-batch N] [--model PATH] [--adapter FILE]
            [--device cpu|wgpu|cuda] [--threads N] [--report] [--verbose]";

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

fn read_jsonl(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| fail("", &format!("cannot read {path}: {e}")));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| fail("", &format!("{path}: {e}"))))
        .collect()
}

/// Tokens of a nominal length left for the template, the question and the answer.
const ROOM: usize = 256;

/// The sample's document: as many of its haystack paragraphs as fit in `length - ROOM` of the
/// model's tokens, with each needle put between paragraphs at its depth.
fn document(llm: &Llm, sample: &Value) -> String {
    let budget = (sample["length"].as_u64().unwrap_or(0) as usize).saturating_sub(ROOM);
    let count =
        |s: &str| llm.tokenizer().encode_with(s, false).map(|t| t.len()).unwrap_or_else(|e| fail("", &e.to_string()));
    let needles: Vec<(f64, &str)> = sample["needles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| (n[0].as_f64().unwrap_or(0.5), n[1].as_str().unwrap_or("")))
        .collect();
    let mut used: usize = needles.iter().map(|(_, s)| count(s) + 1).sum();
    let mut paras: Vec<&str> = Vec::new();
    for p in sample["paragraphs"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let n = count(p) + 1;
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
    paras.join("\n\n")
}

/// Runs one sample in one mode; returns the result record.
fn run(llm: &Llm, sample: &Value, mode: &str, focus: Option<FocusConfig>, max_tokens: usize) -> Value {
    let text = |k: &str| sample[k].as_str().unwrap_or_else(|| fail("", &format!("a sample has no {k:?}")));
    let user = format!("{}\n\n{}", document(llm, sample), text("question"));
    let prompt = match chat_prompt(llm, &user, text("prefix")) {
        Some((header, rest)) => format!("{header}{rest}"),
        None => format!("{user}\n{}", text("prefix")),
    };
    let ids = llm.tokenizer().encode(&prompt).unwrap_or_else(|e| fail("", &e.to_string()));
    let options = GenerateOptions { max_tokens, focus, ..Default::default() };
    let start = Instant::now();
    let mut stream = llm.generate_ids(&ids, &options).unwrap_or_else(|e| fail("", &e.to_string()));
    let mut answer = String::new();
    let mut prefill = None;
    let mut n = 0usize;
    for tok in stream.by_ref() {
        let tok = tok.unwrap_or_else(|e| fail("", &e.to_string()));
        prefill.get_or_insert_with(|| start.elapsed().as_secs_f64());
        answer.push_str(&tok.text);
        n += 1;
    }
    let total = start.elapsed().as_secs_f64();
    let prefill = prefill.unwrap_or(total);
    let answers: Vec<String> =
        sample["answers"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
    json!({
        "key": key(sample, mode), "task": sample["task"], "split": sample["split"], "length": sample["length"],
        "seed": sample["seed"], "mode": mode, "tokens": ids.len(), "score": score(&answer, &answers), "answer": answer,
        "answers": answers, "prefill_s": prefill, "decode_tps": if n > 1 { (n - 1) as f64 / (total - prefill).max(1e-9) } else { 0.0 },
    })
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

fn main() {
    let args = Args::parse(USAGE, &["report", "verbose"]);
    let Some(suite) = args.get("suite") else { fail(USAGE, "--suite is required (scripts/make_eval.py writes it)") };
    let parsed: Vec<Mode> =
        args.list("modes", "plain,adapter-cached,focus-retrieve").iter().map(|m| Mode::parse(USAGE, m)).collect();
    // Retrieval is named with its read budget: each budget is a mode of its own in the tables.
    let budget = args.num("read-budget", retrieve_sizes().read_budget.unwrap_or(2048));
    let label = |m: Mode| match m {
        Mode::Focus(DecodeMode::Retrieve) => format!("{}@{budget}", m.name()),
        _ => m.name(),
    };
    let modes: Vec<String> = match args.get("report-modes") {
        _ if parsed.is_empty() => fail(USAGE, "--modes is empty"),
        Some(_) => args.list("report-modes", ""),
        None => parsed.iter().map(|&m| label(m)).collect(),
    };
    let results_path = args.get("results").map(PathBuf::from);
    let mut results: Vec<Value> = match &results_path {
        Some(p) if p.exists() => read_jsonl(&p.to_string_lossy()),
        _ => Vec::new(),
    };
    if args.has("report") {
        report(&results, &modes);
        return;
    }
    let lengths: Vec<usize> =
        args.list("lengths", "4k,8k,16k,32k,64k,128k").iter().map(|s| parse_len(USAGE, s)).collect();
    let tasks = args.list("tasks", "");
    let splits = args.list("splits", "dev,heldout");
    let seeds: u64 = args.num("seeds", u64::MAX);
    let plain_max = parse_len(USAGE, args.get("plain-max").unwrap_or("8k"));
    let max_tokens = args.num("max-tokens", 32);
    let samples: Vec<Value> = read_jsonl(suite)
        .into_iter()
        .filter(|s| lengths.contains(&(s["length"].as_u64().unwrap_or(0) as usize)))
        .filter(|s| tasks.is_empty() || tasks.iter().any(|t| s["task"].as_str() == Some(t)))
        .filter(|s| splits.iter().any(|t| s["split"].as_str() == Some(t)))
        .filter(|s| s["seed"].as_u64().unwrap_or(0) < seeds)
        .collect();
    let model_path = args.model();
    let llm = args.load_with(&model_path, None);
    let adapted = args.adapted_model(USAGE, &model_path, &parsed);
    let mut sink = results_path.as_ref().map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap_or_else(|e| fail("", &format!("{}: {e}", p.display())))
    });
    let done: std::collections::HashSet<String> =
        results.iter().filter_map(|r| r["key"].as_str().map(String::from)).collect();
    let retrieve = FocusConfig {
        query_len: Some(args.num("retrieve-query", retrieve_sizes().query_len.unwrap_or(32))),
        read_budget: Some(budget),
        chunk_batch: args.num("chunk-batch", 4),
        ..retrieve_sizes()
    };
    let trained = FocusConfig { chunk_batch: args.num("chunk-batch", 4), ..shipped_adapter_sizes() };
    eprintln!("{} samples x {} modes", samples.len(), modes.len());
    for sample in &samples {
        for &mode in &parsed {
            if done.contains(&key(sample, &label(mode))) {
                continue;
            }
            let length = sample["length"].as_u64().unwrap_or(0) as usize;
            let (model, focus) = match mode {
                Mode::Plain if length > plain_max => continue,
                Mode::Plain => (&llm, None),
                Mode::Focus(DecodeMode::Retrieve) => (&llm, Some(retrieve.clone())),
                Mode::Focus(m) => (&llm, Some(FocusConfig { decode: m, ..trained.clone() })),
                Mode::Adapter(m) => {
                    (adapted.as_ref().unwrap_or(&llm), Some(FocusConfig { decode: m, ..trained.clone() }))
                }
            };
            let record = run(model, sample, &label(mode), focus, max_tokens);
            if args.has("verbose") {
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
            if let Some(f) = sink.as_mut() {
                let _ = writeln!(f, "{record}");
            }
            results.push(record);
        }
    }
    report(&results, &modes);
}
