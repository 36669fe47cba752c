//! The default model requantised by llama.cpp's `llama-quantize` into the formats people download
//! (Q4_K_M, Q5_K_M, Q6_K, IQ4_XS, Q3_K_M, and the shipped Q4_1), each loaded through
//! `Pipeline::load` on the CPU backend against llama.cpp's own logits for the same file
//! (`scripts/make_requantized.sh` makes the files and the goldens): the three prompts of the
//! transformers golden, the logits at the last prompt position and after each of 24 greedy tokens
//! (teacher-forced on llama.cpp's tokens), and the same greedy choice at every one of them.
//!
//! Tolerance: llama.cpp quantises the activations to 8 bits before most products (Q8_0 blocks
//! against Q4_0/Q5_0/Q8_0 weights, Q8_K against the K-quants and IQ4), while focusllm multiplies
//! the f32 activations with the exactly dequantised weights (bit-exact against both `gguf.quants`
//! and llama.cpp's own `to_float`, tests/gguf_fixtures.rs and scripts/make_llama_cpp_golden.py),
//! so the two differ by llama.cpp's activation rounding. Its size is measured on the shipped Q4_1
//! file, whose focusllm logits match transformers to 5e-4: there llama.cpp's rows are off by an RMS
//! of up to 0.6-0.7 and at most 4-6% of the largest logit; on the other files up to 0.4-1.9 and
//! 5-15% (worst rows of the 25 per prompt; the README has the table this test prints).
//! `RMS_TOL` and `MAX_DIFF_TOL` leave room above those (a wrong scale or quant order moves logits by
//! whole units everywhere). Greedy: at every step the arg-max equals llama.cpp's token, unless
//! llama.cpp's own logits rank the two within `NEAR_TIE` (below its RMS error: a tie at its
//! precision, counted in the table).

mod common;

use std::path::{Path, PathBuf};

use common::{default_model, skip_or_fail};
use focusllm::{prefill, Control, Pipeline};
use focusllm_testdata::golden::{ids, logit_cases, LogitCase};

/// Largest |logit difference| over a row, relative to the row's largest |logit|.
const MAX_DIFF_TOL: f32 = 0.25;

/// Largest root-mean-square logit difference of a row.
const RMS_TOL: f32 = 3.0;

/// A greedy step may differ where llama.cpp's logits of the two tokens are this close.
const NEAR_TIE: f32 = 0.5;

/// The f32 fixture: summation order only.
const F32_FILE: Limits = Limits { max_diff: 1e-4, rms: 1e-4, near_tie: 0.0 };

/// The Gemma 3-style f32 fixture: llama.cpp's GELU reads its input and returns its output as f16
/// (a table lookup), a relative rounding of up to 2^-11 of each MLP activation that transformers'
/// GELU (and focusllm's) does not have; measured at 2-3e-4 of the largest logit, RMS 5e-4.
const GELU_F32_FILE: Limits = Limits { max_diff: 2e-3, rms: 2e-3, near_tie: 0.0 };

/// The f16 fixture: llama.cpp rounds the activations to f16 before each product.
const F16_FILE: Limits = Limits { max_diff: 1e-2, rms: 1e-2, near_tie: 0.0 };

const STEMS: [&str; 6] = [
    "SmolLM2-135M-Instruct.Q4_1",
    "SmolLM2-135M-Instruct.Q4_K_M",
    "SmolLM2-135M-Instruct.Q5_K_M",
    "SmolLM2-135M-Instruct.Q6_K",
    "SmolLM2-135M-Instruct.IQ4_XS",
    "SmolLM2-135M-Instruct.Q3_K_M",
];

/// A real third-party file: Google's Gemma 3 270M base model, Q4_K_M as llama.cpp's GGUF-my-repo
/// made it (scripts/fetch_gemma3.sh), in the cache directory beside the default model.
const GEMMA: &str = "gemma-3-270m-q4_k_m";

/// The block types llama-quantize wrote tiny random models of width 256 in (every type's rows
/// whole; scripts/make_requantized.sh): `wide-<ARCH>.<TYPE>.gguf` beside the requantised files.
const WIDE_TYPES: [&str; 12] =
    ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"];

/// The architectures of those models.
const WIDE_ARCHS: [&str; 2] = ["gemma3", "qwen3"];

fn gemma_file() -> PathBuf {
    focusllm::default_model::cache_dir().join(format!("{GEMMA}.gguf"))
}

struct Case {
    name: String,
    ids: Vec<u32>,
    greedy: Vec<u32>,
    /// `[greedy.len() + 1, vocab]`.
    logits: Vec<f32>,
}

fn cases(dir: &Path, stem: &str) -> Vec<Case> {
    logit_cases(dir, stem)
        .into_iter()
        .map(|LogitCase { meta: c, logits }| Case {
            name: c["name"].as_str().unwrap().to_string(),
            ids: ids(&c["ids"]),
            greedy: ids(&c["greedy"]),
            logits,
        })
        .collect()
}

fn requantized_dir(test: &str) -> Option<PathBuf> {
    default_model(test)?;
    let dir = focusllm::default_model::cache_dir().join("requantized");
    let mut missing: Vec<String> = STEMS
        .iter()
        .flat_map(|s| {
            let gguf = (!s.ends_with("Q4_1")).then(|| format!("{s}.gguf"));
            gguf.into_iter().chain([format!("{s}.json"), format!("{s}.safetensors")])
        })
        .filter(|f| !dir.join(f).exists())
        .collect();
    let gemma = [format!("{GEMMA}.json"), format!("{GEMMA}.safetensors")];
    let tokens = [format!("{}.tokens.json", STEMS[0]), format!("{GEMMA}.tokens.json")];
    let wide = WIDE_ARCHS.iter().flat_map(|a| {
        WIDE_TYPES.iter().flat_map(move |t| ["gguf", "json", "safetensors"].map(|e| format!("wide-{a}.{t}.{e}")))
    });
    for f in tokens.into_iter().chain(gemma).chain(wide) {
        if !dir.join(&f).exists() {
            missing.push(f);
        }
    }
    if !gemma_file().exists() {
        missing.push(gemma_file().display().to_string());
    }
    if !missing.is_empty() {
        skip_or_fail(test, &format!("{missing:?} are not in {} (run scripts/make_requantized.sh)", dir.display()));
        return None;
    }
    Some(dir)
}

fn argmax(x: &[f32]) -> u32 {
    x.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32
}

/// How close one file's logits must be to llama.cpp's.
struct Limits {
    max_diff: f32,
    rms: f32,
    near_tie: f32,
}

/// The default model's files: see the module doc.
const QUANTISED: Limits = Limits { max_diff: MAX_DIFF_TOL, rms: RMS_TOL, near_tie: NEAR_TIE };

/// Runs every case of `stem`'s golden through the file at `path`; prints a table row per case and
/// returns what is out of `limits`. Cases that would pass the model's context are left out.
fn compare(dir: &Path, stem: &str, path: &Path, limits: &Limits) -> Vec<String> {
    let mut failures = Vec::new();
    let pipeline = Pipeline::load(path, common::cpu()).unwrap_or_else(|e| panic!("{stem}: {e}"));
    let model = pipeline.model();
    let (vocab, context) = (model.config().vocab_size, model.config().max_position_embeddings);
    for case in cases(dir, stem).into_iter().filter(|c| c.ids.len() + c.greedy.len() <= context) {
        let (mut decoder, mut logits) = prefill(model, &case.ids, None, Control::default()).unwrap();
        let (mut worst, mut worst_rms, mut equal, mut ties) = (0.0f32, 0.0f32, 0, 0);
        for (step, want) in case.logits.chunks_exact(vocab).enumerate() {
            let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let diff = logits.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            let rms = (logits.iter().zip(want).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / vocab as f32).sqrt();
            (worst, worst_rms) = (worst.max(diff / scale), worst_rms.max(rms));
            let Some(&token) = case.greedy.get(step) else { break };
            let ours = argmax(&logits);
            if ours == token {
                equal += 1;
            } else if want[token as usize] - want[ours as usize] < limits.near_tie {
                ties += 1;
            } else {
                failures.push(format!(
                    "{stem} {} step {step}: chose {ours}, llama.cpp {token} by a margin of {}",
                    case.name,
                    want[token as usize] - want[ours as usize]
                ));
            }
            logits = decoder.step(token).unwrap();
        }
        println!(
            "| {stem} | {} | {} | {worst:.2e} | {worst_rms:.2e} | {equal}/{} | {ties} |",
            case.name,
            case.ids.len(),
            case.greedy.len()
        );
        if worst > limits.max_diff || worst_rms > limits.rms {
            failures.push(format!("{stem} {}: max diff / max logit {worst}, RMS diff {worst_rms}", case.name));
        }
    }
    failures
}

const TABLE_HEAD: &str = "| file | prompt | tokens | worst max diff / max logit | worst RMS diff | greedy steps equal | near-ties |\n|---|---|---|---|---|---|---|";

#[test]
fn requantized_files_match_llama_cpp() {
    let Some(dir) = requantized_dir("requantized_files_match_llama_cpp") else { return };
    println!("{TABLE_HEAD}");
    let mut failures = Vec::new();
    for stem in STEMS {
        let path =
            if stem.ends_with("Q4_1") { default_model("q4_1").unwrap() } else { dir.join(format!("{stem}.gguf")) };
        failures.extend(compare(&dir, stem, &path, &QUANTISED));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Gemma 3 (GeGLU, scaled embeddings, sandwich norms scaling by 1 + w, q/k norms, sliding-window
/// layers of 512 positions with their own RoPE base between global ones; the long prompt runs
/// 2215 tokens, past the window), a file made by others: its Q4_K_M mix of Q5_0, Q4_K, Q6_K and
/// Q8_0 tensors, with llama.cpp's 8-bit activations, within the default model's limits.
#[test]
fn gemma3_file_matches_llama_cpp() {
    let Some(dir) = requantized_dir("gemma3_file_matches_llama_cpp") else { return };
    println!("{TABLE_HEAD}");
    let failures = compare(&dir, GEMMA, &gemma_file(), &QUANTISED);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The tiny random models at width 256: llama.cpp's 8-bit activations move their logits by at most
/// 0.57% (Gemma 3) and 2.7% (Qwen3, whose logits are small) of the largest, an RMS of at most 0.063
/// and 0.023, in every block type (2026-12-04); a wrong scale, quant order or group would move them
/// by whole units. A greedy step may differ where llama.cpp's two logits are within 0.05, about twice
/// Qwen3's RMS difference (its flips were at margins of 0.024-0.031).
const WIDE: Limits = Limits { max_diff: 0.1, rms: 0.5, near_tie: 0.05 };

/// Tiny random Gemma 3 and Qwen3 models of width 256 quantised by llama-quantize into each block
/// type (with the tool's usual mixes: Q6_K for the embedding or output table of most, Q3_K beside
/// Q2_K), against llama.cpp within [`WIDE`].
#[test]
fn wide_models_in_every_block_type_match_llama_cpp() {
    let Some(dir) = requantized_dir("wide_models_in_every_block_type_match_llama_cpp") else { return };
    println!("{TABLE_HEAD}");
    let mut failures = Vec::new();
    for (arch, t) in WIDE_ARCHS.iter().flat_map(|a| WIDE_TYPES.map(|t| (a, t))) {
        let stem = format!("wide-{arch}.{t}");
        failures.extend(compare(&dir, &stem, &dir.join(format!("{stem}.gguf")), &WIDE));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The committed tiny fixtures in llama.cpp: the Llama 3.x-style file (RoPE frequency factors as
/// `rope_freqs.weight`) and the Qwen3-style one (per-head q/k RMSNorm), both f32 weights, which
/// llama.cpp computes in f32 too, so only summation order differs; the Gemma 3-style one (f32,
/// sliding windows of 24 positions over prompts of up to 5251 tokens, llama.cpp's f16 GELU); and
/// the Mistral-style one (f16 weights, which llama.cpp multiplies with activations rounded to f16).
/// Only the prompts that fit a file's context are run. The goldens are committed
/// (tests/fixtures/gguf/llama_cpp, recorded by scripts/make_requantized.sh).
#[test]
fn tiny_llama3_qwen3_gemma3_and_mistral_files_match_llama_cpp() {
    println!("{TABLE_HEAD}");
    let fixtures = common::fixture_dir("gguf");
    let dir = fixtures.join("llama_cpp");
    let mut failures = Vec::new();
    let files = [
        ("tiny-llama3", &F32_FILE),
        ("tiny-qwen3", &F32_FILE),
        ("tiny-gemma3", &GELU_F32_FILE),
        ("tiny-mistral", &F16_FILE),
    ];
    for (stem, limits) in files {
        failures.extend(compare(&dir, stem, &fixtures.join(format!("{stem}.gguf")), limits));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The tokenizers of the default model (byte-level BPE) and of Gemma 3 (SentencePiece with byte
/// fallback, 262,144 tokens) against llama.cpp's (`llama_tokenize`, no BOS added, special tokens
/// parsed) on every line of the README and design documents plus lines of other scripts, emoji,
/// whitespace runs and special tokens (scripts/make_llama_cpp_golden.py).
#[test]
fn tokenizer_matches_llama_cpp() {
    let Some(dir) = requantized_dir("tokenizer_matches_llama_cpp") else { return };
    let mut differ = Vec::new();
    for (stem, path) in [(STEMS[0], default_model("tokenizer").unwrap()), (GEMMA, gemma_file())] {
        let tokenizer = focusllm::gguf::GgufFile::open(&path).unwrap().tokenizer().unwrap();
        let golden: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.tokens.json"))).unwrap()).unwrap();
        let cases = golden["cases"].as_array().unwrap();
        assert!(cases.len() >= 300, "{stem}: {} lines", cases.len());
        let (mut tokens, before) = (0, differ.len());
        for case in cases {
            let text = case["text"].as_str().unwrap();
            let want = ids(&case["ids"]);
            tokens += want.len();
            let got = tokenizer.encode_with(text, false).unwrap();
            if got != want {
                differ.push(format!("{stem}: {text:?}: {got:?} vs llama.cpp {want:?}"));
            }
        }
        println!("{stem}: {} lines, {tokens} tokens: {} differ from llama.cpp", cases.len(), differ.len() - before);
        // With special tokens, the BOS the file asks for (Gemma: add_bos_token) comes first.
        let file = focusllm::gguf::GgufFile::open(&path).unwrap();
        let bos = file.config().unwrap().bos_token_id;
        let adds_bos = file.metadata("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
        let first = tokenizer.encode("Hello").unwrap()[0];
        assert_eq!(adds_bos, Some(first) == bos, "{stem}: first token {first}, BOS {bos:?}, add_bos_token {adds_bos}");
    }
    assert!(differ.is_empty(), "{differ:#?}");
}
