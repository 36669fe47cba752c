//! A model of real size on the CUDA backend: its weights' device memory against their size on disk,
//! and against the CPU backend a greedy continuation and FocusLLM (official sizes, cached-local
//! decoding) over a ~32K-token passkey input. The CPU picks
//! each greedy token; the GPU is fed the same tokens, and every step's logits are compared, so a
//! near tie cannot make the two runs diverge.
//!
//! The model is `FOCUSLLM_MODEL` (GGUF file or Hugging Face directory), else the default model when
//! it is cached. On a GPU machine the real weights may not be there: `scripts/cuda_device_check.sh`
//! then makes a directory of random weights shaped like the default model (`examples/random_model.rs`),
//! which runs every kernel at the same sizes. Skips with a printed reason without a CUDA device
//! (fails then if FOCUSLLM_REQUIRE_CUDA=1) or a model (fails then if either variable or
//! FOCUSLLM_TEST_STRICT=1 is set). The harness itself also runs without a GPU, CPU against CPU.

mod support;

use std::path::PathBuf;
use std::time::Instant;

use focusllm_core::{prefill, Backend, Control, DecodeMode, FocusConfig, Pipeline};
use focusllm_cpu::{CpuBackend, CpuOptions};
use support::{cuda, cuda_required, max_abs_diff};

/// Largest |logit difference| allowed, relative to the largest |logit| of the step (floor 1): a
/// wrong kernel moves logits by their own size; summation order over 30 layers by far less.
const REL_TOL: f32 = 2e-3;

fn model_path(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("FOCUSLLM_MODEL").map(PathBuf::from).or_else(focusllm::default_model::find);
    if path.is_none() {
        let why = "no model (set FOCUSLLM_MODEL or fetch the default model)";
        let strict = cuda_required() || std::env::var("FOCUSLLM_TEST_STRICT").as_deref() == Ok("1");
        assert!(!strict, "{test}: {why} (FOCUSLLM_REQUIRE_CUDA=1 or FOCUSLLM_TEST_STRICT=1 forbids skipping)");
        eprintln!("SKIPPED {test}: {why}");
    }
    path
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}

/// Gap between the best and second-best logit.
fn margin(v: &[f32]) -> f32 {
    let best = argmax(v) as usize;
    let second = v.iter().enumerate().filter(|&(i, _)| i != best).map(|(_, x)| *x).fold(f32::NEG_INFINITY, f32::max);
    v[best] - second
}

/// Prefill then `steps` steps fed `forced` tokens (or greedy ones when `forced` is empty); returns
/// every step's logits, the tokens fed and the prefill's seconds.
fn run<B: Backend>(
    p: &Pipeline<B>,
    ids: &[u32],
    config: &FocusConfig,
    steps: usize,
    forced: &[u32],
) -> (Vec<Vec<f32>>, Vec<u32>, f64) {
    let start = Instant::now();
    let (mut decoder, logits) = prefill(p.model(), ids, Some(config), Control::default()).unwrap();
    let prefill_s = start.elapsed().as_secs_f64();
    let (mut out, mut fed) = (vec![logits], Vec::new());
    for i in 0..steps {
        let next = forced.get(i).copied().unwrap_or_else(|| argmax(out.last().unwrap()));
        fed.push(next);
        out.push(decoder.step(next).unwrap());
    }
    (out, fed, prefill_s)
}

/// Runs `ids` on `backend` and on the CPU backend (all cores) and checks every step's logits and
/// greedy choice.
fn compare<G: Backend>(
    test: &str,
    backend: G,
    ids_of: impl Fn(&Pipeline<CpuBackend>) -> Vec<u32>,
    config: &FocusConfig,
    steps: usize,
) {
    let Some(path) = model_path(test) else { return };
    let c = Pipeline::load(&path, CpuBackend::new(CpuOptions { threads: None }).unwrap())
        .unwrap_or_else(|e| panic!("loading {} on the CPU: {e}", path.display()));
    let g = Pipeline::load(&path, backend).unwrap_or_else(|e| panic!("loading {} on {}: {e}", path.display(), test));
    let ids = ids_of(&c);
    let (cl, tokens, c_secs) = run(&c, &ids, config, steps, &[]);
    let (gl, _, g_secs) = run(&g, &ids, config, steps, &tokens);
    let text = |t: &[u32]| c.tokenizer().decode(t).unwrap_or_default();
    let g_greedy: Vec<u32> = gl[..steps].iter().map(|l| argmax(l)).collect();
    eprintln!(
        "{test}: {} tokens, prefill CPU {c_secs:.2} s, other {g_secs:.2} s; greedy CPU {:?}, other {:?}",
        ids.len(),
        text(&tokens),
        text(&g_greedy)
    );
    for (step, (g, c)) in gl.iter().zip(&cl).enumerate() {
        let scale = c.iter().fold(1f32, |m, x| m.max(x.abs()));
        let (d, m) = (max_abs_diff(g, c), margin(c));
        eprintln!("  step {step}: max |logit diff| {d:.2e} (largest |logit| {scale:.2}, top-2 margin {m:.3})");
        assert!(d <= REL_TOL * scale, "{test} step {step}: max |logit diff| {d} over {REL_TOL} x {scale}");
        if m > 2.0 * d {
            assert_eq!(argmax(g), argmax(c), "{test} step {step}: greedy tokens differ");
        }
    }
}

/// A plain prompt of a few dozen tokens.
fn short_prompt(p: &Pipeline<CpuBackend>) -> Vec<u32> {
    p.tokenizer().encode("The history of the printing press begins in the fifteenth century, when").unwrap()
}

/// The standard passkey prompt, about 32K tokens.
fn passkey_32k(p: &Pipeline<CpuBackend>) -> Vec<u32> {
    let filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";
    let needle = "The pass key is 71432. Remember it. 71432 is the pass key. ";
    let text = format!("{}{needle}{}What is the pass key? The pass key is", filler.repeat(640), filler.repeat(720));
    p.tokenizer().encode(&text).unwrap()
}

#[test]
fn greedy_continuation_matches_cpu() {
    let Some(gpu) = cuda("model greedy continuation") else { return };
    compare("model greedy continuation", gpu, short_prompt, &FocusConfig::default(), 16);
}

#[test]
fn focusllm_on_a_32k_passkey_input_matches_cpu() {
    let Some(gpu) = cuda("FocusLLM 32K passkey") else { return };
    let config = FocusConfig { decode: DecodeMode::CachedLocal, ..Default::default() };
    compare("FocusLLM 32K passkey", gpu, passkey_32k, &config, 8);
}

/// Bytes of a model's weights on disk: the GGUF file, or a directory's safetensors files.
fn bytes_on_disk(path: &std::path::Path) -> u64 {
    if path.is_file() {
        return std::fs::metadata(path).unwrap().len();
    }
    let entries = std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .map(|p| std::fs::metadata(&p).unwrap().len())
        .sum()
}

/// The weights take about their size on disk on the device: GGUF's quantised blocks stay blocks,
/// 16-bit weights stay 16-bit (widened to f32, a Q4_1 file would take several times its size).
#[test]
fn weights_take_about_their_size_on_disk_on_the_device() {
    let test = "weights on the device";
    let Some(gpu) = cuda(test) else { return };
    let Some(path) = model_path(test) else { return };
    let (free_before, _) = gpu.memory_info().unwrap();
    let p = Pipeline::load(&path, gpu).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
    let (free_after, _) = p.model().backend().memory_info().unwrap();
    let (used, on_disk) = (free_before.saturating_sub(free_after) as u64, bytes_on_disk(&path));
    eprintln!("MEASURED {test}: {used} bytes on the device for {on_disk} bytes on disk ({})", path.display());
    assert!(used <= on_disk + on_disk / 4 + (32 << 20), "{test}: {used} bytes on the device for {on_disk} on disk");
}

/// The harness itself (model lookup, teacher forcing, the comparisons) on a machine without a GPU:
/// the CPU backend on one thread against all cores (the 32K input is left to the GPU run: it is too
/// slow for a CPU test).
#[test]
fn the_harness_runs_on_the_cpu_without_a_gpu() {
    let one_thread = CpuBackend::new(CpuOptions { threads: Some(1) }).unwrap();
    compare("CPU, one thread", one_thread, short_prompt, &FocusConfig::default(), 4);
}
