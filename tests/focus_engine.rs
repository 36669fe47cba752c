//! The FocusLLM engine against the independent PyTorch reference (`scripts/focus_reference.py`) on
//! the tiny LLaMA fixture, in every decode mode and both candidate orders, with copied and with
//! adapter (different) candidate projections; plus the engine's structural properties.
//!
//! Tolerance: 1e-4 absolute on every logit (logits of order 1-5, both sides in f32).

mod common;

use common::focus_golden::{golden, Golden, Run};
use common::{fixture_dir, load, max_abs_diff};
use focusllm::focus::{DecodeMode, FocusConfig, Prefix};
use focusllm::{prefill, Backend, Control, LogitsFor, SeqInput};

const TOL: f32 = 1e-4;

fn tiny_model(adapter: bool) -> focusllm::Pipeline<focusllm::cpu::CpuBackend> {
    let mut p = load("tiny-llama");
    if adapter {
        common::focus_golden::load_tiny_adapter(&mut p);
    }
    p
}

/// One golden run on the tiny model (with the adapter where the run used it).
fn check_run(g: &Golden, run: &Run, chunk_batch: usize) {
    let p = tiny_model(run.adapter);
    common::focus_golden::check_run(p.model(), g, run, chunk_batch, TOL);
}

#[test]
fn matches_reference_in_every_mode() {
    let g = golden("tiny-llama");
    // 127 tokens, L = 16, S = 12: 10 memory chunks, the last one shorter; 3 chunks per batch.
    assert_eq!(g.runs.len(), 7);
    for run in &g.runs {
        check_run(&g, run, 3);
    }
}

#[test]
fn chunk_batching_does_not_change_results() {
    let g = golden("tiny-llama");
    for run in g.runs.iter().filter(|r| r.mode == DecodeMode::Exact || r.mode == DecodeMode::MinEntropy) {
        check_run(&g, run, 1);
        check_run(&g, run, 16);
    }
}

#[test]
fn below_threshold_is_the_plain_forward() {
    let p = tiny_model(true);
    let g = golden("tiny-llama");
    let ids = &g.ids[..40];
    // Below the threshold (L + S = 28 < 40 here, so raise it) and inside the local window both run plain attention.
    for config in [
        FocusConfig { threshold: Some(41), ..g.config.clone() },
        FocusConfig { local_window: 40, threshold: Some(10), ..g.config.clone() },
    ] {
        let (_, logits) = prefill(p.model(), ids, Some(&config), Control::default()).unwrap();
        let mut cache = p.model().new_cache();
        let plain = p.model().forward_one(ids, &mut cache, LogitsFor::Last).unwrap();
        assert_eq!(logits, plain.data);
    }
    // At the threshold FocusLLM takes over and the result differs.
    let config = FocusConfig { threshold: Some(40), ..g.config.clone() };
    let (_, logits) = prefill(p.model(), ids, Some(&config), Control::default()).unwrap();
    let mut cache = p.model().new_cache();
    let plain = p.model().forward_one(ids, &mut cache, LogitsFor::Last).unwrap();
    assert!(max_abs_diff(&logits, &plain.data) > 1e-3);
}

#[test]
fn copied_candidate_kv_equals_ordinary_last_token_kv() {
    let g = golden("tiny-llama");
    let (chunk, query) = (&g.ids[..12], &g.ids[g.ids.len() - 6..]);
    let tokens = [chunk, query].concat();
    for adapter in [false, true] {
        let p = tiny_model(adapter);
        let (m, b) = (p.model(), p.model().backend());
        let mut cand_cache = m.new_cache();
        m.forward(&mut [SeqInput { tokens: &tokens, cache: &mut cand_cache, candidates: 1, logits: LogitsFor::None }])
            .unwrap();
        let candidate = cand_cache.split_off_last(m, 1).unwrap();
        let mut plain_cache = m.new_cache();
        m.forward_one(&tokens, &mut plain_cache, LogitsFor::None).unwrap();
        let last = plain_cache.split_off_last(m, 1).unwrap();
        let mut worst = 0.0f32;
        for l in 0..m.config().num_layers {
            let (c, o) = (candidate.layer(l).unwrap(), last.layer(l).unwrap());
            worst = worst.max(max_abs_diff(&b.to_host(&c.k).unwrap(), &b.to_host(&o.k).unwrap()));
            worst = worst.max(max_abs_diff(&b.to_host(&c.v).unwrap(), &b.to_host(&o.v).unwrap()));
        }
        // The other tokens' raw keys/values never depend on the candidate projections.
        for l in 0..m.config().num_layers {
            let (c, o) = (cand_cache.layer(l).unwrap(), plain_cache.layer(l).unwrap());
            assert_eq!(b.to_host(&c.k).unwrap(), b.to_host(&o.k).unwrap());
        }
        if adapter {
            assert!(worst > 1e-2, "adapter projections must change the candidate's K/V ({worst})");
        } else {
            assert!(worst < 1e-6, "copied projections: candidate K/V differ by {worst}");
        }
    }
}

#[test]
fn config_validation_and_cancellation() {
    let p = tiny_model(false);
    let g = golden("tiny-llama");
    let bad = [
        FocusConfig { chunk_size: 0, ..FocusConfig::default() },
        FocusConfig { local_window: 8, query_len: Some(9), ..FocusConfig::default() },
        FocusConfig { chunk_batch: 0, ..FocusConfig::default() },
        FocusConfig { candidates_per_chunk: 2, ..FocusConfig::default() },
    ];
    for config in bad {
        assert!(
            matches!(
                prefill(p.model(), &g.ids, Some(&config), Control::default()),
                Err(focusllm::Error::InvalidOption { .. })
            ),
            "{config:?}"
        );
    }
    let cancel = focusllm::CancelToken::new();
    cancel.cancel();
    let control = Control { cancel: Some(cancel), ..Control::default() };
    assert!(matches!(prefill(p.model(), &g.ids, Some(&g.config), control), Err(focusllm::Error::Cancelled)));
    let oov = [g.ids.clone(), vec![100_000]].concat();
    assert!(matches!(
        prefill(p.model(), &oov, Some(&g.config), Control::default()),
        Err(focusllm::Error::TokenOutOfRange { .. })
    ));
    assert_eq!(Prefix::default(), Prefix::Auto);
}

#[test]
fn progress_reports_every_chunk_batch() {
    let p = tiny_model(false);
    let g = golden("tiny-llama");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let control = Control {
        progress: Some(focusllm::ProgressCallback::new(move |pr| sink.lock().unwrap().push(pr))),
        ..Control::default()
    };
    let config = FocusConfig { chunk_batch: 4, ..g.config.clone() };
    prefill(p.model(), &g.ids, Some(&config), control).unwrap();
    let seen = seen.lock().unwrap();
    // 10 chunks in batches of 4 -> 3 reports, then the local forward: total 11 steps.
    let done: Vec<usize> = seen
        .iter()
        .map(|p| match p {
            focusllm::Progress::Prefill { done, total: 11 } => *done,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(done, vec![4, 8, 10, 11]);
}

#[test]
fn candidate_projections_load_from_the_checkpoint_or_an_adapter_file() {
    let g = golden("tiny-llama");
    let run = g.runs.iter().find(|r| r.name == "exact_adapter").unwrap();
    let adapter = fixture_dir("focus").join("tiny-llama-adapter.safetensors");

    // A separate adapter file given after loading, through the facade.
    let mut llm = focusllm::Llm::load(fixture_dir("tiny-llama"), focusllm::Device::Cpu { threads: Some(2) }).unwrap();
    assert_eq!(llm.load_adapter(&adapter).unwrap(), 12);
    let config = FocusConfig { decode: run.mode, order: run.order, ..g.config.clone() };
    let options = focusllm::GenerateOptions {
        max_tokens: run.greedy.len(),
        stop_at_eos: false,
        focus: Some(config),
        ..Default::default()
    };
    let ids: Vec<u32> = llm.generate_ids(&g.ids, &options).unwrap().map(|t| t.unwrap().id).collect();
    assert_eq!(ids, run.greedy);

    // A checkpoint that carries beacon_* tensors beside the base weights loads them by itself.
    let dir = std::env::temp_dir().join(format!("focusllm-beacon-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture_dir("tiny-llama").join(f), dir.join(f)).unwrap();
    }
    let base = std::fs::read(fixture_dir("tiny-llama").join("model.safetensors")).unwrap();
    let extra = std::fs::read(&adapter).unwrap();
    let (base, extra) =
        (safetensors::SafeTensors::deserialize(&base).unwrap(), safetensors::SafeTensors::deserialize(&extra).unwrap());
    let all: Vec<_> = base.tensors().into_iter().chain(extra.tensors()).collect();
    safetensors::serialize_to_file(all, None, &dir.join("model.safetensors")).unwrap();
    let p = focusllm::Pipeline::load(&dir, common::cpu()).unwrap();
    common::focus_golden::check_run(p.model(), &g, run, 3, TOL);
    std::fs::remove_dir_all(&dir).ok();
}

/// The tiny model with the reference's low-rank adapter (`lora_a`/`lora_b` on q, k, v and o).
fn tiny_lora_model() -> focusllm::Pipeline<focusllm::cpu::CpuBackend> {
    let mut p = load("tiny-llama");
    common::focus_golden::load_tiny_lora(&mut p);
    p
}

#[test]
fn low_rank_adapter_matches_reference() {
    // The reference merges W + lora_b @ lora_a into full matrices; the engine applies the delta unmerged.
    let g = golden("tiny-llama-lora");
    let p = tiny_lora_model();
    assert_eq!(g.runs.len(), 2);
    for run in &g.runs {
        for chunk_batch in [1, 4] {
            common::focus_golden::check_run(p.model(), &g, run, chunk_batch, TOL);
        }
    }
    // And it is not the copied projections' result.
    let copied = tiny_model(false);
    let (_, with) = prefill(p.model(), &g.ids, Some(&g.config), Control::default()).unwrap();
    let (_, without) = prefill(copied.model(), &g.ids, Some(&g.config), Control::default()).unwrap();
    assert!(max_abs_diff(&with, &without) > 1e-2);
}

/// Writes an adapter file holding `tensors` (name, shape; zeros) and tries to load it.
fn load_bad_adapter(tensors: &[(&str, Vec<usize>)]) -> focusllm::Result<usize> {
    let data: Vec<Vec<u8>> = tensors.iter().map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()]).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&data)
        .map(|((name, shape), bytes)| {
            (
                name.to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("focusllm-bad-adapter-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.safetensors", tensors.len()));
    safetensors::serialize_to_file(views, None, &file).unwrap();
    let mut p = load("tiny-llama");
    let result = p.load_adapter(&file);
    std::fs::remove_file(&file).ok();
    result
}

#[test]
fn bad_low_rank_adapters_are_typed_errors() {
    let p = load("tiny-llama");
    let (h, kvd) = (p.model().config().hidden_size, p.model().config().kv_dim());
    let k = "model.layers.0.self_attn.beacon_k_proj";
    let (a, b, w) = (format!("{k}.lora_a"), format!("{k}.lora_b"), format!("{k}.weight"));
    // lora_a without lora_b.
    let e = load_bad_adapter(&[(&a, vec![2, h])]).unwrap_err();
    assert!(matches!(&e, focusllm::Error::MissingTensor { name, .. } if *name == b), "{e}");
    // Ranks that disagree.
    let e = load_bad_adapter(&[(&a, vec![2, h]), (&b, vec![kvd, 3])]).unwrap_err();
    assert!(matches!(&e, focusllm::Error::TensorShape { name, .. } if *name == b), "{e}");
    // lora_a of the wrong input width.
    let e = load_bad_adapter(&[(&a, vec![2, h + 1]), (&b, vec![kvd, 2])]).unwrap_err();
    assert!(matches!(&e, focusllm::Error::TensorShape { name, .. } if *name == a), "{e}");
    // A full matrix and a delta for the same projection.
    let e = load_bad_adapter(&[(&a, vec![2, h]), (&b, vec![kvd, 2]), (&w, vec![kvd, h])]).unwrap_err();
    assert!(matches!(&e, focusllm::Error::InvalidConfig { key, .. } if *key == w), "{e}");
    // A well-formed one loads.
    assert_eq!(load_bad_adapter(&[(&a, vec![2, h]), (&b, vec![kvd, 2])]).unwrap(), 1);
}

#[test]
fn sharing_identical_chunks_is_exact() {
    // A periodic input (period 4 divides S = 12): most chunks are identical, one holds a "needle".
    let p = tiny_model(true);
    let g = golden("tiny-llama");
    let mut ids: Vec<u32> =
        std::iter::once(g.ids[0]).chain([40u32, 41, 42, 43].iter().copied().cycle().take(96)).collect();
    ids[50] = 77;
    ids.extend_from_slice(&g.ids[g.ids.len() - 20..]);
    for mode in [DecodeMode::Exact, DecodeMode::CachedLocal, DecodeMode::FrozenMemory, DecodeMode::MinEntropy] {
        let run = |share: bool| {
            let config =
                FocusConfig { decode: mode, share_identical_chunks: share, chunk_batch: 2, ..g.config.clone() };
            let seen = std::sync::Arc::new(std::sync::Mutex::new(0usize));
            let sink = seen.clone();
            let control = Control {
                progress: Some(focusllm::ProgressCallback::new(move |pr| {
                    if let focusllm::Progress::Prefill { total, .. } = pr {
                        *sink.lock().unwrap() = total;
                    }
                })),
                ..Control::default()
            };
            let (mut decoder, logits) = prefill(p.model(), &ids, Some(&config), control).unwrap();
            let mut all = vec![logits];
            for t in [5u32, 9, 13] {
                all.push(decoder.step(t).unwrap());
            }
            let total = *seen.lock().unwrap();
            (all, total)
        };
        let (shared, shared_total) = run(true);
        let (separate, separate_total) = run(false);
        // Equal up to summation order (the batches of the products differ).
        for (a, b) in shared.iter().zip(&separate) {
            assert!(max_abs_diff(a, b) < 1e-5, "{mode:?}: {}", max_abs_diff(a, b));
        }
        // 8 memory chunks: the needle's own, the one after the BOS, and the identical rest once.
        assert!(shared_total < separate_total, "{mode:?}: {shared_total} vs {separate_total} forwards");
    }
}

#[test]
fn an_adapter_from_bytes_is_the_adapter_from_its_file() {
    let file = fixture_dir("focus").join("tiny-llama-lora-adapter.safetensors");
    let (mut from_file, mut from_bytes) = (load("tiny-llama"), load("tiny-llama"));
    let loaded = from_file.load_adapter(&file).unwrap();
    assert!(loaded > 0);
    assert_eq!(from_bytes.load_adapter_bytes(&std::fs::read(&file).unwrap()).unwrap(), loaded);
    // The candidate rows take the adapter's projections: their logits agree bit for bit.
    let ids = golden("tiny-llama").ids;
    let run = |p: &focusllm::Pipeline<_>| {
        let mut cache = p.model().new_cache();
        let mut batch = [SeqInput { tokens: &ids, cache: &mut cache, candidates: 1, logits: LogitsFor::All }];
        p.model().forward(&mut batch).unwrap().remove(0).data
    };
    assert_eq!(run(&from_file), run(&from_bytes));
    // Bytes that are no safetensors file are a typed error naming the adapter.
    let e = load("tiny-llama").load_adapter_bytes(b"not an adapter").unwrap_err();
    assert!(matches!(&e, focusllm::Error::Safetensors { path, .. } if path.to_str() == Some("<adapter bytes>")), "{e}");
}

#[test]
fn refreshing_some_chunks() {
    // 10 memory chunks; cached-local decoding of 6 tokens with every chunk or some refreshed.
    let p = tiny_model(true);
    let g = golden("tiny-llama");
    let run = |refresh_chunks: Option<usize>| {
        let config =
            FocusConfig { decode: DecodeMode::CachedLocal, refresh_chunks, chunk_batch: 3, ..g.config.clone() };
        let (mut decoder, logits) = prefill(p.model(), &g.ids, Some(&config), Control::default()).unwrap();
        let mut all = vec![logits];
        for t in [5u32, 9, 13, 2, 7, 11] {
            all.push(decoder.step(t).unwrap());
        }
        all
    };
    let every = run(None);
    // As many chunks as there are (or more) is cached-local itself, to the last bit.
    for k in [10, 64] {
        for (step, (a, b)) in every.iter().zip(&run(Some(k))).enumerate() {
            assert_eq!(a, b, "refresh {k}, step {step}");
        }
    }
    // Fewer: the same prefill, then stale candidates in the chunks not chosen change the logits.
    for k in [1, 3] {
        let some = run(Some(k));
        assert_eq!(some[0], every[0], "refresh {k}: prefill");
        let worst = some.iter().zip(&every).map(|(a, b)| max_abs_diff(a, b)).fold(0.0, f32::max);
        assert!(worst > 1e-4 && some.iter().flatten().all(|x| x.is_finite()), "refresh {k}: max |diff| {worst}");
    }
    // Only cached-local decoding refreshes some chunks, and at least one.
    for (decode, k) in [(DecodeMode::Exact, 2), (DecodeMode::CachedLocal, 0)] {
        let config = FocusConfig { decode, refresh_chunks: Some(k), ..g.config.clone() };
        let err = prefill(p.model(), &g.ids, Some(&config), Control::default()).err().expect("refused");
        assert!(err.to_string().contains("refresh_chunks"), "{err}");
    }
}
