//! Writes a model directory with the shape and tokenizer of a model but seeded random weights:
//! for benchmarking and comparing backends on a machine the real weights cannot reach (the
//! directory's tokenizer files are small; its weights are made where it runs).
//!
//! cargo run --release --example random_model -- --out DIR [--like PATH] [--dtype f16|bf16|f32] [--seed N]
//!
//! `--like` is a GGUF file or a Hugging Face directory (default: the default model); with
//! `--like DIR --out DIR` only the weights are (re)made, from the directory's own `config.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use focusllm::gguf::GgufFile;
use focusllm::{DType, ModelConfig};
use focusllm_testdata::random_checkpoint;

const USAGE: &str = "usage: random_model --out DIR [--like GGUF|DIR] [--dtype f16|bf16|f32] [--seed N]";

/// Prints an error (and the usage, if given) and exits.
fn fail(usage: &str, message: &str) -> ! {
    eprintln!("error: {message}");
    if !usage.is_empty() {
        eprintln!("\n{usage}");
    }
    std::process::exit(2)
}

/// The `--name value` pairs of the command line.
fn flags() -> HashMap<String, String> {
    let mut flags = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        match (arg.strip_prefix("--"), it.next()) {
            (Some(name), Some(value)) => flags.insert(name.to_string(), value),
            (Some(name), None) => fail(USAGE, &format!("--{name} needs a value")),
            (None, _) => fail(USAGE, &format!("unexpected argument {arg:?}")),
        };
    }
    flags
}

fn or_fail<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| fail("", &e.to_string()))
}

/// The configuration of `like`, after copying (or exporting from GGUF) its tokenizer files to `out`.
fn config_and_tokenizer(like: &Path, out: &Path) -> ModelConfig {
    or_fail(std::fs::create_dir_all(out));
    if like.is_file() {
        let file = or_fail(GgufFile::open(like));
        let tokenizer = or_fail(file.tokenizer());
        or_fail(tokenizer.inner().save(out.join("tokenizer.json"), false));
        if let Some(template) = file.chat_template() {
            let template = or_fail(template);
            let config = serde_json::json!({
                "chat_template": template.source(),
                "bos_token": template.bos_token(),
                "eos_token": template.eos_token(),
            });
            or_fail(std::fs::write(out.join("tokenizer_config.json"), config.to_string()));
        }
        return or_fail(file.config());
    }
    let same = matches!((like.canonicalize(), out.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if !same {
        for name in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
            if like.join(name).exists() {
                or_fail(std::fs::copy(like.join(name), out.join(name)));
            }
        }
    }
    or_fail(ModelConfig::from_file(like.join("config.json")))
}

fn main() {
    let args = flags();
    let out = PathBuf::from(args.get("out").unwrap_or_else(|| fail(USAGE, "--out DIR is required")));
    let like = match args.get("like") {
        Some(path) => PathBuf::from(path),
        None => or_fail(focusllm::default_model::path()),
    };
    let dtype = match args.get("dtype").map_or("f16", String::as_str) {
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        "f32" => DType::F32,
        other => fail(USAGE, &format!("--dtype: unknown {other:?}")),
    };
    let seed: u64 = args.get("seed").map_or(0, |s| s.parse().unwrap_or_else(|_| fail(USAGE, "--seed: not a number")));
    let config = config_and_tokenizer(&like, &out);
    or_fail(random_checkpoint::write(&config, &out, dtype, seed));
    eprintln!(
        "{}: random {dtype:?} weights (seed {seed}) shaped like {} ({} layers, hidden {}, vocab {})",
        out.display(),
        like.display(),
        config.num_layers,
        config.hidden_size,
        config.vocab_size
    );
}
