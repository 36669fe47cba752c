//! Limits and reliability of generation: memory budgets refused before work on every path,
//! plain-attention prefill in micro-batches (cancellable between them, the same logits as one
//! forward), and byte-identical output across runs and CPU thread counts.

mod common;

use common::focus_golden::{golden, load_tiny_adapter};
use common::{default_model, load, max_abs_diff};
use focusllm::cpu::{CpuBackend, CpuOptions};
use focusllm::focus::{DecodeMode, Document, FocusConfig};
use focusllm::{
    CancelToken, Control, Error, GenerateOptions, LanguageModel, LogitsFor, Pipeline, Progress, ProgressCallback,
    Sampling, PREFILL_BATCH,
};

/// Bytes of the f32 key/value caches of one position of `model`, from its configuration.
fn bytes_per_token(model: &focusllm::Model<CpuBackend>) -> u64 {
    let c = model.config();
    (c.num_layers * c.num_kv_heads * c.head_dim * 2 * 4) as u64
}

/// The tiny model with its adapter, and the golden FocusLLM sizes (L = 16, S = 12, Q = 6).
fn tiny() -> (Pipeline<CpuBackend>, Vec<u32>, FocusConfig) {
    let mut p = load("tiny-llama");
    load_tiny_adapter(&mut p);
    let g = golden("tiny-llama");
    (p, g.ids, FocusConfig { threshold: Some(40), ..g.config })
}

fn budget(options: &GenerateOptions, bytes: u64) -> GenerateOptions {
    GenerateOptions { memory_budget: Some(bytes), stop_at_eos: false, ..options.clone() }
}

fn is_out_of_memory<T>(r: focusllm::Result<T>, what: &str) -> (u64, u64) {
    match r {
        Err(Error::OutOfMemory { needed, available, limit, .. }) => {
            assert_eq!(limit, "the memory budget", "{what}");
            assert!(needed > available, "{what}: needed {needed}, available {available}");
            (needed, available)
        }
        Err(e) => panic!("{what}: expected out of memory, got {e}"),
        Ok(_) => panic!("{what}: expected out of memory, it ran"),
    }
}

#[test]
fn plain_attention_counts_the_prompt_and_the_tokens_to_generate() {
    let (p, ids, _) = tiny();
    let per = bytes_per_token(p.model());
    let options = GenerateOptions { max_tokens: 9, ..Default::default() };
    let exact = (ids.len() as u64 + 9) * per;
    let (needed, available) =
        is_out_of_memory(p.generate_ids(&ids, &budget(&options, exact - 1)), "one byte short of the cache");
    assert_eq!((needed, available), (exact, exact - 1));
    let ids_out: Vec<u32> = p.generate_ids(&ids, &budget(&options, exact)).unwrap().map(|t| t.unwrap().id).collect();
    assert_eq!(ids_out.len(), 9, "a budget of exactly the cache runs to the end");
    // More tokens to generate need more room.
    let longer = GenerateOptions { max_tokens: 10, ..options };
    is_out_of_memory(p.generate_ids(&ids, &budget(&longer, exact)), "one more token to generate");
}

#[test]
fn every_focusllm_mode_is_refused_under_a_small_budget_and_runs_under_a_large_one() {
    let (p, ids, config) = tiny();
    let per = bytes_per_token(p.model());
    for mode in DecodeMode::ALL {
        let options = GenerateOptions {
            max_tokens: 3,
            focus: Some(FocusConfig { decode: mode, ..config.clone() }),
            ..Default::default()
        };
        // Every mode holds at least the local window and the tokens to generate.
        let (needed, _) = is_out_of_memory(p.generate_ids(&ids, &budget(&options, 16 * per)), mode.name());
        assert!(needed >= (16 + 3) * per, "{}: {needed} bytes", mode.name());
        // Modes that keep the chunks' raw caches need room for them too (the input is ~8 chunks).
        if mode.keeps_chunk_caches() {
            assert!(needed >= ids.len() as u64 * per / 2, "{}: {needed} bytes", mode.name());
        }
        let ran = p.generate_ids(&ids, &budget(&options, needed)).unwrap().count();
        assert_eq!(ran, 3, "{}: a budget of what it asked for runs", mode.name());
    }
}

#[test]
fn a_document_is_refused_under_a_small_budget_when_read_and_when_asked() {
    let (p, ids, config) = tiny();
    let m = p.model();
    let per = bytes_per_token(m);
    let (doc, tail) = (&ids[..100], &ids[100..110]);
    let small = Control { memory_budget: Some(10 * per), ..Control::default() };
    for plain in [false, true] {
        // A threshold past the document reads it with plain attention.
        let config = if plain { FocusConfig { threshold: Some(1000), ..config.clone() } } else { config.clone() };
        let what = if plain { "plain document" } else { "document memory" };
        is_out_of_memory(Document::read(m, doc, &config, small.clone()), what);
        let document = Document::read(m, doc, &config, Control::default()).unwrap();
        is_out_of_memory(document.ask(tail, small.clone()), what);
        // The answer's tokens count too.
        let (_, logits) = document.ask(tail, Control::default()).unwrap();
        let generous = Control { memory_budget: Some(1000 * per), ..Control::default() };
        let (_, again) = document.ask(tail, generous.clone()).unwrap();
        assert_eq!(logits, again, "{what}: a budget changes nothing that fits");
        let greedy = Control { reserve_tokens: 2000, ..generous };
        is_out_of_memory(document.ask(tail, greedy), what);
    }
}

#[test]
fn plain_prefill_runs_in_micro_batches_with_the_logits_of_one_forward() {
    let (p, ids, _) = tiny();
    let m = p.model();
    // A prompt of two and a half micro-batches (the model has no position limit of its own).
    let prompt: Vec<u32> = ids.iter().cycle().take(PREFILL_BATCH * 5 / 2).copied().collect();
    let mut cache = m.new_cache();
    let whole = m.forward_one(&prompt, &mut cache, LogitsFor::Last).unwrap().data;
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = reports.clone();
    let options = GenerateOptions {
        max_tokens: 1,
        progress: Some(ProgressCallback::new(move |pr| {
            if let Progress::Prefill { done, total } = pr {
                sink.lock().unwrap().push((done, total));
            }
        })),
        ..Default::default()
    };
    let (_, batched) = focusllm::prefill(m, &prompt, None, options.control()).unwrap();
    let diff = max_abs_diff(&whole, &batched);
    assert!(diff < 1e-4, "micro-batched prefill differs from one forward by {diff}");
    assert_eq!(*reports.lock().unwrap(), [(0, 3), (1, 3), (2, 3), (3, 3)]);

    // Cancelled after the first micro-batch: the next does not start.
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(0usize));
    let count = seen.clone();
    let control = Control {
        cancel: Some(cancel),
        progress: Some(ProgressCallback::new(move |pr| {
            if let Progress::Prefill { done: 1, .. } = pr {
                trigger.cancel();
            }
            *count.lock().unwrap() += 1;
        })),
        ..Control::default()
    };
    assert!(matches!(focusllm::prefill(m, &prompt, None, control), Err(Error::Cancelled)));
    assert_eq!(*seen.lock().unwrap(), 2, "reports 0/3 and 1/3, then the cancel check");
}

/// The ids generated with seeded sampling from `prompt`, on a CPU backend of `threads` workers.
fn sampled(path: &std::path::Path, threads: usize, prompt: &[u32], focus: Option<FocusConfig>) -> Vec<u32> {
    let mut p = Pipeline::load(path, CpuBackend::new(CpuOptions { threads: Some(threads) }).unwrap()).unwrap();
    p.load_adapter_bytes(focusllm_adapters::SMOLLM2_135M_INSTRUCT).unwrap();
    let options = GenerateOptions {
        max_tokens: 12,
        sampling: Sampling { temperature: 0.9, top_p: 0.95, seed: 1234, ..Sampling::default() },
        stop_at_eos: false,
        focus,
        ..Default::default()
    };
    p.generate_ids(prompt, &options).unwrap().map(|t| t.unwrap().id).collect()
}

#[test]
fn outputs_are_identical_across_runs_and_thread_counts() {
    let Some(path) = default_model("outputs_are_identical_across_runs_and_thread_counts") else { return };
    let p = Pipeline::load(&path, common::cpu()).unwrap();
    let text = "The lighthouse keeper wrote the weather down every morning, and the ships passed by. ".repeat(40);
    let ids = p.tokenizer().encode(&text).unwrap();
    assert!(ids.len() > PREFILL_BATCH * 2, "{} tokens", ids.len());
    // FocusLLM with small sizes: several chunks, condensed in parallel batches.
    let focus = FocusConfig {
        local_window: 256,
        chunk_size: 256,
        query_len: Some(64),
        threshold: Some(512),
        chunk_batch: 3,
        decode: DecodeMode::CachedLocal,
        ..FocusConfig::default()
    };
    for focus in [None, Some(focus)] {
        let label = if focus.is_some() { "FocusLLM" } else { "plain" };
        let first = sampled(&path, 2, &ids, focus.clone());
        assert_eq!(first.len(), 12);
        for threads in [2, 1, 3] {
            assert_eq!(sampled(&path, threads, &ids, focus.clone()), first, "{label}, {threads} threads");
        }
    }
}
