//! The whole model on the CUDA backend: the model checks of the backend conformance suite
//! (`focusllm_testdata::conformance`: the tiny fixtures, LLaMA with GQA and llama3 RoPE scaling in
//! f32, Qwen2 with biases, tied embeddings and bf16 weights in shards, Mistral with f16 weights,
//! against Hugging Face transformers' logits at every position, through incremental decoding,
//! greedy continuations and packed batches; the FocusLLM engine in every decode mode against the
//! PyTorch reference of the algorithm, with copied, full and low-rank candidate projections), with
//! the device keeping every weight as the checkpoint holds it (`Storage::Exact`, 1e-4 absolute on
//! every logit, as for the CPU backend). Beyond the suite: the FocusLLM engine at larger chunk
//! sizes than the reference's against the CPU backend, and chunk caches larger than the device
//! refused with a typed error.
//! Skips with a printed reason without a CUDA device (fails then if FOCUSLLM_REQUIRE_CUDA=1).

mod support;

use focusllm_core::focus::{self, DecodeMode, FocusConfig};
use focusllm_core::{prefill, Backend, CancelToken, Control, Error, Pipeline};
use focusllm_testdata::conformance::MODEL_TOL;
use focusllm_testdata::focus_golden::load_tiny_adapter;
use focusllm_testdata::{fixture_dir, max_abs_diff};
use support::{cpu, cuda};

focusllm_testdata::model_conformance_tests!(cuda("golden"));

fn load<B: Backend>(name: &str, backend: B) -> Pipeline<B> {
    Pipeline::load(fixture_dir(name), backend).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// A long input built from the fixture's own tokens (deterministic, in-vocabulary).
fn long_input(vocab: usize, n: usize) -> Vec<u32> {
    (0..n as u64).map(|i| ((i * 7919 + 13) % (vocab as u64 - 3) + 3) as u32).collect()
}

/// FocusLLM prefill and `steps` greedy decode steps; returns every step's logits.
fn focus_run<B: Backend>(p: &Pipeline<B>, tokens: &[u32], config: &FocusConfig, steps: usize) -> Vec<Vec<f32>> {
    let (mut decoder, logits) = prefill(p.model(), tokens, Some(config), Control::default()).unwrap();
    let mut out = vec![logits];
    for _ in 0..steps {
        let last = out.last().unwrap();
        let next = last.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        out.push(decoder.step(next).unwrap());
    }
    out
}

/// Loads the tiny adapter (different candidate projections, so the candidate rows take their own
/// path through gather, linear and scatter).
fn with_adapter<B: Backend>(mut p: Pipeline<B>) -> Pipeline<B> {
    load_tiny_adapter(&mut p);
    p
}

/// 300 tokens in chunks of 48 (the reference's golden runs use chunks of 12), every decode mode
/// keeping memory, against the CPU backend within the golden tolerance.
#[test]
fn focusllm_engine_matches_cpu_in_every_decode_mode() {
    let name = "tiny-llama";
    let Some(gpu) = cuda("focusllm engine") else { return };
    let g = with_adapter(load(name, gpu));
    let c = with_adapter(load(name, cpu()));
    let tokens = long_input(g.model().config().vocab_size, 300);
    for mode in [DecodeMode::Exact, DecodeMode::CachedLocal, DecodeMode::FrozenMemory] {
        let config = FocusConfig {
            local_window: 64,
            chunk_size: 48,
            query_len: Some(16),
            decode: mode,
            chunk_batch: 3,
            ..Default::default()
        };
        let gl = focus_run(&g, &tokens, &config, 3);
        let cl = focus_run(&c, &tokens, &config, 3);
        for (step, (gl, cl)) in gl.iter().zip(&cl).enumerate() {
            let d = max_abs_diff(gl, cl);
            assert!(d < MODEL_TOL, "{mode:?} step {step}: max |diff| {d}");
        }
    }
}

/// Exact and cached-local decoding keep every chunk's raw keys and values: an input whose caches
/// cannot fit in the device's free memory is refused before any work, with a typed error saying
/// how many bytes it needed. Needs a device small enough to overflow with a few million tokens of
/// the tiny model (the emulator, given 512 MiB by scripts/test_cuda_emulated.sh); a real GPU's
/// memory would take hundreds of millions, and the test says so and returns.
#[test]
fn an_input_whose_chunk_caches_cannot_fit_is_a_typed_error() {
    let Some(gpu) = cuda("chunk caches over device memory") else { return };
    let (free, total) = gpu.memory_info().unwrap();
    let p = load("tiny-llama", gpu);
    let c = p.model().config();
    let per_token = (c.num_layers * c.kv_dim() * 2 * std::mem::size_of::<f32>()) as u64;
    let n = free as u64 / per_token * 5 / 4 + 4096;
    if n > 8_000_000 {
        eprintln!("SKIPPED chunk caches over device memory: {free} free bytes of {total} take an input of {n} tokens to overflow");
        return;
    }
    let tokens = long_input(c.vocab_size, n as usize);
    let config = FocusConfig { decode: DecodeMode::CachedLocal, share_identical_chunks: false, ..Default::default() };
    // Cancelled from the start: if the memory check let the input through, condensing stops at
    // its first batch (an `Error::Cancelled`) instead of running for hours.
    let cancel = CancelToken::new();
    cancel.cancel();
    let result = prefill(p.model(), &tokens, Some(&config), Control { cancel: Some(cancel), ..Control::default() });
    match result {
        Err(Error::OutOfMemory { what, needed, available, .. }) => {
            assert!(
                needed > available && available <= free as u64,
                "needed {needed}, available {available}, free {free}"
            );
            eprintln!("{n} tokens: out of memory: {what} needs {needed} bytes, {available} available");
        }
        Err(other) => panic!("{n} tokens on a device with {free} bytes free: expected out of memory, got: {other}"),
        Ok(_) => panic!("{n} tokens on a device with {free} bytes free: the prefill was not refused"),
    }
}

/// The CPU half of the engine comparison runs everywhere, so the harness itself (fixture paths,
/// the FocusLLM configuration really chunking the input) is checked without a GPU; the suite's
/// model checks run on the CPU backend in `focusllm-cpu/tests/conformance.rs`.
#[test]
fn the_cpu_reference_side_runs_without_a_gpu() {
    let c = with_adapter(load("tiny-llama", cpu()));
    let tokens = long_input(c.model().config().vocab_size, 300);
    let config =
        FocusConfig { local_window: 64, chunk_size: 48, query_len: Some(16), chunk_batch: 3, ..Default::default() };
    let plan =
        focus::plan(&tokens, &config, c.model().config().bos_token_id).expect("the input must take the FocusLLM path");
    assert!(plan.chunks.len() >= 4, "{} chunks", plan.chunks.len());
    assert_eq!(focus_run(&c, &tokens, &config, 2).len(), 3);
}
