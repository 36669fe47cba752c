//! Helpers shared by the examples: a small flag parser, model and device selection, memory readings.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use focusllm::{CandidateOrder, DecodeMode, Device, FocusConfig, Prefix};

/// The adapter trained for the default model (`training/`), in the repository.
pub const SHIPPED_ADAPTER: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/adapters/SmolLM2-135M-Instruct.focus-lora.safetensors");

/// The FocusLLM sizes the shipped adapter was trained with (L = S = 512, Q = 256), over the
/// official defaults for everything else.
pub fn shipped_adapter_sizes() -> FocusConfig {
    FocusConfig { local_window: 512, chunk_size: 512, query_len: Some(256), ..FocusConfig::default() }
}

/// The sizes reading by retrieval (`DecodeMode::Retrieve`) starts from: chunks of 512 tokens,
/// scored by the last 32 tokens of the prompt (the question and the assistant's header), a local
/// window of 512 tokens, and a read of 2048 tokens (the first chunk, the two best, the local
/// context). The budget was chosen on the evaluation suite's dev split (docs/evaluation.md).
pub fn retrieve_sizes() -> FocusConfig {
    FocusConfig {
        local_window: 512,
        chunk_size: 512,
        query_len: Some(32),
        decode: DecodeMode::Retrieve,
        read_budget: Some(2048),
        ..FocusConfig::default()
    }
}

/// Where `ask` switches from plain attention to FocusLLM on the default model: the crossover
/// measured on the evaluation suite (docs/evaluation.md).
pub const DEFAULT_MODEL_SWITCH: usize = 4096;

/// Command-line flags: `--name value` pairs, `--switch` booleans and positional arguments.
pub struct Args {
    values: HashMap<String, String>,
    switches: Vec<String>,
    pub positional: Vec<String>,
}

impl Args {
    /// Parses `std::env::args`; `switches` lists the flags that take no value.
    pub fn parse(usage: &str, switches: &[&str]) -> Args {
        let mut values = HashMap::new();
        let mut found = Vec::new();
        let mut positional = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            if a == "--help" || a == "-h" {
                println!("{usage}");
                std::process::exit(0);
            }
            if let Some(name) = a.strip_prefix("--") {
                if switches.contains(&name) {
                    found.push(name.to_string());
                } else if let Some(v) = it.next() {
                    values.insert(name.to_string(), v);
                } else {
                    fail(usage, &format!("--{name} needs a value"));
                }
            } else {
                positional.push(a);
            }
        }
        Args { values, switches: found, positional }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// A parsed value, or `default` when the flag is absent; exits with a message when malformed.
    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| fail("", &format!("--{name}: cannot parse {v:?}"))),
        }
    }

    /// A comma-separated list.
    pub fn list(&self, name: &str, default: &str) -> Vec<String> {
        self.get(name).unwrap_or(default).split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }

    /// The model: `--model PATH` (GGUF file or Hugging Face directory), else the default model,
    /// fetched into the cache if missing.
    pub fn model(&self) -> PathBuf {
        self.model_flag("model")
    }

    /// A model path given by `--{flag} PATH`, else the default model, fetched if missing.
    pub fn model_flag(&self, flag: &str) -> PathBuf {
        match self.get(flag) {
            Some(p) => PathBuf::from(p),
            None => focusllm::default_model::path().unwrap_or_else(|e| fail("", &e.to_string())),
        }
    }

    /// Loads the model at `path` on the chosen device, with the candidate projections of `adapter`.
    pub fn load_with(&self, path: &Path, adapter: Option<&Path>) -> focusllm::Llm {
        let mut llm = focusllm::Llm::load(path, self.device()).unwrap_or_else(|e| fail("", &e.to_string()));
        if let Some(adapter) = adapter {
            let n = llm.load_adapter(adapter).unwrap_or_else(|e| fail("", &format!("{}: {e}", adapter.display())));
            eprintln!("adapter {}: {n} candidate projections", adapter.display());
        }
        llm
    }

    /// A second copy of the model with trained candidate projections, when any of `modes` needs
    /// one: `--adapter FILE`, or the shipped adapter on the default model.
    pub fn adapted_model(&self, usage: &str, path: &Path, modes: &[Mode]) -> Option<focusllm::Llm> {
        modes.iter().any(|m| matches!(m, Mode::Adapter(_))).then(|| {
            let adapter = match (self.get("adapter"), self.get("model")) {
                (Some(file), _) => PathBuf::from(file),
                (None, None) => PathBuf::from(SHIPPED_ADAPTER),
                (None, Some(_)) => fail(
                    usage,
                    "adapter-* modes with --model need --adapter FILE (the shipped one is for the default model)",
                ),
            };
            self.load_with(path, Some(&adapter))
        })
    }

    /// `--device cpu|wgpu[:N]|cuda[:N]` and `--threads N`.
    pub fn device(&self) -> Device {
        let device = Device::parse(self.get("device").unwrap_or("cpu")).unwrap_or_else(|e| fail("", &e.to_string()));
        match device {
            Device::Cpu { .. } => Device::Cpu { threads: self.get("threads").map(|_| self.num("threads", 1)) },
            other => other,
        }
    }

    /// The FocusLLM flags over the official defaults (see [`Args::focus_over`]).
    pub fn focus(&self, mode: DecodeMode, header_len: usize) -> FocusConfig {
        self.focus_over(FocusConfig::default(), mode, header_len)
    }

    /// The FocusLLM flags: `--local`, `--chunk`, `--query`, `--threshold`, `--chunk-batch`,
    /// `--order candidates-first|sink-first`, `--prefix auto|none|header` (header = `header_len`
    /// tokens of the prompt), `--share-chunks` / `--no-share-chunks` (identical chunks computed
    /// once), `--read-budget N` and `--read-margin N` (the retrieval mode's read), and the decode mode given; what is not
    /// given comes from `d`.
    pub fn focus_over(&self, d: FocusConfig, mode: DecodeMode, header_len: usize) -> FocusConfig {
        FocusConfig {
            local_window: self.num("local", d.local_window),
            chunk_size: self.num("chunk", d.chunk_size),
            query_len: self.get("query").map(|_| self.num("query", 0)).or(d.query_len),
            threshold: self.get("threshold").map(|_| self.num("threshold", 0)),
            chunk_batch: self.num("chunk-batch", d.chunk_batch),
            decode: mode,
            order: match self.get("order").unwrap_or("candidates-first") {
                "candidates-first" => CandidateOrder::CandidatesFirst,
                "sink-first" => CandidateOrder::SinkFirst,
                other => fail("", &format!("--order: unknown {other:?} (candidates-first, sink-first)")),
            },
            prefix: match self.get("prefix").unwrap_or("auto") {
                "auto" => Prefix::Auto,
                "none" => Prefix::None,
                "header" => Prefix::PromptHead(header_len),
                other => fail("", &format!("--prefix: unknown {other:?} (auto, none, header)")),
            },
            share_identical_chunks: self.has("share-chunks")
                || (d.share_identical_chunks && !self.has("no-share-chunks")),
            read_budget: self.get("read-budget").map(|_| self.num("read-budget", 0)).or(d.read_budget),
            read_margin: self.num("read-margin", d.read_margin),
            ..d
        }
    }
}

/// A reading mode of the evaluations: plain attention, or FocusLLM in a decode mode with copied
/// (untrained) or the adapter's candidate projections. Parsed from `plain`, `focus-MODE`, `adapter-MODE`.
#[derive(Clone, Copy)]
pub enum Mode {
    Plain,
    Focus(DecodeMode),
    Adapter(DecodeMode),
}

impl Mode {
    /// Parses a mode name; exits with the usage when it is unknown.
    pub fn parse(usage: &str, s: &str) -> Mode {
        let decode = |m: &str| DecodeMode::parse(m).unwrap_or_else(|_| fail(usage, &format!("unknown mode {s:?}")));
        match (s, s.strip_prefix("focus-"), s.strip_prefix("adapter-")) {
            ("plain", _, _) => Mode::Plain,
            (_, Some(m), _) => Mode::Focus(decode(m)),
            (_, _, Some(m)) => Mode::Adapter(decode(m)),
            _ => fail(usage, &format!("unknown mode {s:?}")),
        }
    }

    /// The mode's name with the decode mode spelled out (`adapter-cached-local`).
    pub fn name(self) -> String {
        match self {
            Mode::Plain => "plain".into(),
            Mode::Focus(m) => format!("focus-{}", m.name()),
            Mode::Adapter(m) => format!("adapter-{}", m.name()),
        }
    }
}

/// A token count such as `4096` or `16k` (16384); exits with the usage when malformed.
pub fn parse_len(usage: &str, s: &str) -> usize {
    let lower = s.to_ascii_lowercase();
    let parsed = match lower.strip_suffix('k') {
        Some(n) => n.parse::<usize>().map(|n| n * 1024),
        None => lower.parse::<usize>(),
    };
    parsed.unwrap_or_else(|_| fail(usage, &format!("bad length {s:?}")))
}

/// Prints an error (and the usage, if given) and exits.
pub fn fail(usage: &str, message: &str) -> ! {
    eprintln!("error: {message}");
    if !usage.is_empty() {
        eprintln!("\n{usage}");
    }
    std::process::exit(2)
}

/// Peak resident memory of this process in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets the peak-memory counter so the next reading covers only what follows (Linux).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Renders a one-turn chat with the model's template when it has one: returns the header (everything
/// before the user's text) and the rest (user text, end of turn, assistant header, `assistant_prefix`).
pub fn chat_prompt(llm: &focusllm::Llm, user: &str, assistant_prefix: &str) -> Option<(String, String)> {
    let template = llm.chat_template()?;
    let marker = "\u{0}FOCUSLLM-USER\u{0}";
    let rendered = template.render(&[focusllm::ChatMessage::new("user", marker)], true).ok()?;
    let (header, rest) = rendered.split_once(marker)?;
    Some((header.to_string(), format!("{user}{rest}{assistant_prefix}")))
}
