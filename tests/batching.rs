//! A batch of independent sequences in one forward equals each run alone; candidate rows use the
//! candidate projections and nothing else changes.

mod common;

use std::collections::HashMap;

use common::{golden, load, max_abs_diff, FIXTURES};
use focusllm::{LogitsFor, SafetensorsWeights, SeqInput};

#[test]
fn batch_of_different_lengths_equals_each_alone() {
    for name in FIXTURES {
        let p = load(name);
        let model = p.model();
        let cases = golden(name);
        // Each sequence has a different cached past and a different number of new tokens.
        let splits = [3usize, 7, 20];
        let mut caches: Vec<_> = cases.iter().map(|_| model.new_cache()).collect();
        for (case, (cache, &split)) in cases.iter().zip(caches.iter_mut().zip(&splits)) {
            model.forward_one(&case.ids[..split], cache, LogitsFor::None).unwrap();
        }
        let mut alone_caches = caches.clone();
        let mut batch: Vec<SeqInput<'_, _>> = cases
            .iter()
            .zip(caches.iter_mut().zip(&splits))
            .map(|(case, (cache, &split))| SeqInput {
                tokens: &case.ids[split..],
                cache,
                candidates: 0,
                logits: LogitsFor::All,
            })
            .collect();
        let batched = model.forward(&mut batch).unwrap();
        for (i, case) in cases.iter().enumerate() {
            let alone = model.forward_one(&case.ids[splits[i]..], &mut alone_caches[i], LogitsFor::All).unwrap();
            assert_eq!(batched[i].rows, alone.rows);
            let d = max_abs_diff(&batched[i].data, &alone.data);
            assert!(d < 1e-5, "{name} sequence {i}: batched vs alone max |diff| {d}");
            // And both agree with transformers.
            for r in 0..alone.rows {
                assert!(max_abs_diff(batched[i].row(r), &case.logits[splits[i] + r]) < 1e-4);
            }
        }
        for (a, b) in caches.iter().zip(&alone_caches) {
            assert_eq!(a.len(), b.len());
        }
    }
}

/// Writes the fixture's checkpoint plus `beacon_*` tensors (scaled copies of the ordinary
/// projections) to a temporary safetensors file.
fn candidate_file(name: &str, scale: f32, dir: &std::path::Path) -> std::path::PathBuf {
    let weights = SafetensorsWeights::from_dir(common::fixture_dir(name)).unwrap();
    let config = focusllm::ModelConfig::from_file(common::fixture_dir(name).join("config.json")).unwrap();
    let mut tensors: HashMap<String, (Vec<usize>, Vec<u8>)> = HashMap::new();
    for l in 0..config.num_layers {
        for (part, proj) in [
            ("self_attn", "q"),
            ("self_attn", "k"),
            ("self_attn", "v"),
            ("self_attn", "o"),
            ("mlp", "up"),
            ("mlp", "down"),
        ] {
            let src = format!("model.layers.{l}.{part}.{proj}_proj.weight");
            let t = focusllm::WeightSource::tensor(&weights, &src).unwrap().unwrap();
            let data: Vec<u8> = t.to_f32().iter().flat_map(|x| (x * scale).to_le_bytes()).collect();
            tensors.insert(format!("model.layers.{l}.{part}.beacon_{proj}_proj.weight"), (t.shape.clone(), data));
            let bias = format!("model.layers.{l}.{part}.{proj}_proj.bias");
            if let Some(b) = focusllm::WeightSource::tensor(&weights, &bias).unwrap() {
                let data: Vec<u8> = b.to_f32().iter().flat_map(|x| x.to_le_bytes()).collect();
                tensors.insert(format!("model.layers.{l}.{part}.beacon_{proj}_proj.bias"), (b.shape.clone(), data));
            }
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, (shape, data))| {
            (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap())
        })
        .collect();
    let path = dir.join(format!("{name}-beacon-{scale}.safetensors"));
    safetensors::serialize_to_file(views, None, &path).unwrap();
    path
}

#[test]
fn candidate_rows_use_candidate_projections() {
    let dir = std::env::temp_dir().join(format!("focusllm-cand-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in FIXTURES {
        let case = &golden(name)[1];
        let run = |scale: Option<f32>| {
            let mut p = load(name);
            if let Some(scale) = scale {
                let file = candidate_file(name, scale, &dir);
                let src = SafetensorsWeights::from_files(&file, std::slice::from_ref(&file)).unwrap();
                assert_eq!(p.model_mut().load_candidate_projections(&src).unwrap(), 6 * p.model().config().num_layers);
            }
            let model = p.model();
            let mut cache = model.new_cache();
            let mut batch = [SeqInput { tokens: &case.ids, cache: &mut cache, candidates: 1, logits: LogitsFor::All }];
            model.forward(&mut batch).unwrap().remove(0)
        };
        let ordinary = run(None);
        let copies = run(Some(1.0));
        let altered = run(Some(0.5));
        let n = case.ids.len();
        // Copies of the ordinary projections change nothing; the last row matches transformers.
        assert!(max_abs_diff(&ordinary.data, &copies.data) < 1e-5, "{name}: copied candidate projections");
        assert!(max_abs_diff(ordinary.row(n - 1), &case.logits[n - 1]) < 1e-4);
        // Different projections change the candidate (last) row only.
        for r in 0..n - 1 {
            assert!(max_abs_diff(ordinary.row(r), altered.row(r)) < 1e-5, "{name}: row {r} must not change");
        }
        assert!(max_abs_diff(ordinary.row(n - 1), altered.row(n - 1)) > 1e-2, "{name}: candidate row must change");
    }
    std::fs::remove_dir_all(&dir).ok();
}
