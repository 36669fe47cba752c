//! Speed and memory benchmark: prefill tokens/s at several lengths and decode tokens/s, for each
//! thread count, with peak memory; optionally FocusLLM prefill rows for long inputs. Prints a
//! Markdown table (medians over `--runs`).
//!
//! cargo run --release --example bench -- [--threads 1,2] [--prefill 512,2048,8192|none] [--decode 64]
//!     [--runs 3] [--focus-lengths 32k,128k --focus-modes frozen,exact] [--device cpu|wgpu|cuda] [--model PATH]

mod common;

use std::time::Instant;

use common::{fail, peak_rss_mib, reset_peak_rss, Args};
use focusllm::{DecodeMode, Device, GenerateOptions, Llm};

const USAGE: &str = "usage: bench [--threads 1,2] [--prefill 512,2048,8192|none] [--decode N (0: none)] [--runs N]
             [--focus-lengths 32k,128k] [--focus-modes frozen,exact] [--local N] [--chunk N]
             [--device cpu|wgpu|cuda] [--model PATH]";

const TEXT: &str = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. \
                    A long book has many chapters, and every chapter has many pages full of words. ";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn parse_len(s: &str) -> usize {
    let l = s.to_ascii_lowercase();
    match l.strip_suffix('k') {
        Some(n) => n.parse::<usize>().map(|n| n * 1024),
        None => l.parse(),
    }
    .unwrap_or_else(|_| fail(USAGE, &format!("bad length {s:?}")))
}

/// `n` token ids of ordinary text.
fn tokens(llm: &Llm, n: usize) -> Vec<u32> {
    let piece = llm.tokenizer().encode_with(TEXT, false).unwrap_or_else(|e| fail("", &e.to_string()));
    piece.iter().copied().cycle().take(n).collect()
}

/// Seconds to the first generated token (the prefill) for `ids`.
fn time_prefill(llm: &Llm, ids: &[u32], focus: Option<focusllm::FocusConfig>) -> f64 {
    let options = GenerateOptions { max_tokens: 1, stop_at_eos: false, focus, ..Default::default() };
    let start = Instant::now();
    for t in llm.generate_ids(ids, &options).unwrap_or_else(|e| fail("", &e.to_string())) {
        t.unwrap_or_else(|e| fail("", &e.to_string()));
    }
    start.elapsed().as_secs_f64()
}

/// Tokens per second of decoding `n` tokens after a short prompt (first token excluded).
fn time_decode(llm: &Llm, n: usize) -> f64 {
    let ids = tokens(llm, 16);
    let options = GenerateOptions { max_tokens: n + 1, stop_at_eos: false, ..Default::default() };
    let mut stream = llm.generate_ids(&ids, &options).unwrap_or_else(|e| fail("", &e.to_string()));
    stream.next();
    let start = Instant::now();
    let mut count = 0;
    for t in stream {
        t.unwrap_or_else(|e| fail("", &e.to_string()));
        count += 1;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args = Args::parse(USAGE, &[]);
    let model = args.model();
    let runs: usize = args.num("runs", 3);
    let decode_n: usize = args.num("decode", 64);
    // `--prefill none` and `--decode 0` leave those rows out (for FocusLLM-only runs).
    let prefill: Vec<usize> =
        args.list("prefill", "512,2048,8192").iter().filter(|s| *s != "none").map(|s| parse_len(s)).collect();
    let threads: Vec<usize> = args
        .list("threads", "1,2")
        .iter()
        .map(|s| s.parse().unwrap_or_else(|_| fail(USAGE, "bad --threads")))
        .collect();
    let base_device = Device::parse(args.get("device").unwrap_or("cpu")).unwrap_or_else(|e| fail("", &e.to_string()));
    let devices: Vec<(String, Device)> = match base_device {
        Device::Cpu { .. } => {
            threads.iter().map(|&t| (format!("cpu x{t}"), Device::Cpu { threads: Some(t) })).collect()
        }
        other => vec![(format!("{other:?}"), other)],
    };

    println!("model: {}", model.display());
    println!("| device | test | tokens | median s | tokens/s | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    for (name, device) in &devices {
        reset_peak_rss();
        let llm = Llm::load(&model, device.clone()).unwrap_or_else(|e| fail("", &e.to_string()));
        // One warm-up so page faults and thread start-up are not timed.
        time_prefill(&llm, &tokens(&llm, 64), None);
        for &n in &prefill {
            let ids = tokens(&llm, n);
            let secs = median((0..runs).map(|_| time_prefill(&llm, &ids, None)).collect());
            println!("| {name} | prefill | {n} | {secs:.3} | {:.1} | {:.0} |", n as f64 / secs, peak_rss_mib());
        }
        if decode_n > 0 {
            let tps = median((0..runs).map(|_| time_decode(&llm, decode_n)).collect());
            println!(
                "| {name} | decode | {decode_n} | {:.3} | {tps:.2} | {:.0} |",
                decode_n as f64 / tps,
                peak_rss_mib()
            );
        }

        for len in args.list("focus-lengths", "").iter().map(|s| parse_len(s)) {
            for mode in args.list("focus-modes", "frozen,exact") {
                let mode = DecodeMode::parse(&mode).unwrap_or_else(|e| fail(USAGE, &e.to_string()));
                reset_peak_rss();
                let ids = tokens(&llm, len);
                let secs = time_prefill(&llm, &ids, Some(args.focus(mode, 0)));
                println!(
                    "| {name} | focus-{} prefill | {len} | {secs:.1} | {:.1} | {:.0} |",
                    mode.name(),
                    len as f64 / secs,
                    peak_rss_mib()
                );
            }
        }
    }
}
