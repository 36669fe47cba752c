//! A model directory of random weights shaped like the default model, as
//! `examples/random_model.rs` writes it for machines the real weights cannot reach: its
//! configuration is the GGUF file's, its exported tokenizer encodes as the GGUF one does, and its
//! weights load and give well-conditioned logits (neither flat nor saturated) through all 30 layers.

mod common;

use common::{cpu, default_model};
use focusllm::gguf::GgufFile;
use focusllm::{DType, LogitsFor, Model, ModelConfig, SafetensorsWeights, Tokenizer};
use focusllm_testdata::random_checkpoint;

#[test]
fn random_weights_shaped_like_the_default_model_load_and_stay_conditioned() {
    let Some(path) = default_model("random model") else { return };
    let gguf = GgufFile::open(&path).unwrap();
    let config = gguf.config().unwrap();
    let dir = std::env::temp_dir().join(format!("focusllm-random-model-{}", std::process::id()));
    random_checkpoint::write(&config, &dir, DType::F16, 1).unwrap();
    assert_eq!(ModelConfig::from_file(dir.join("config.json")).unwrap(), config);

    let tokenizer = gguf.tokenizer().unwrap();
    tokenizer.inner().save(dir.join("tokenizer.json"), false).unwrap();
    let exported = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let text = "The pass key is 71432. Remember it.\nWhat is the pass key? Ünïcödé, tabs\tand  spaces.";
    assert_eq!(exported.encode(text).unwrap(), tokenizer.encode(text).unwrap());

    let weights = SafetensorsWeights::from_dir(&dir).unwrap();
    let model = Model::load(cpu(), config.clone(), &weights).unwrap();
    let ids = tokenizer.encode(text).unwrap();
    let mut cache = model.new_cache();
    let logits = model.forward_one(&ids, &mut cache, LogitsFor::All).unwrap();
    let (mut argmaxes, mut stds) = (Vec::new(), Vec::new());
    for pos in 0..ids.len() {
        let row = logits.row(pos);
        assert!(row.iter().all(|x| x.is_finite()), "position {pos}: non-finite logits");
        let mean = row.iter().sum::<f32>() / row.len() as f32;
        let std = (row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / row.len() as f32).sqrt();
        assert!((0.3..30.0).contains(&std), "position {pos}: logit std {std}");
        stds.push(std);
        argmaxes.push(row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0);
    }
    argmaxes.sort_unstable();
    argmaxes.dedup();
    let range = stds.iter().fold((f32::MAX, 0f32), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    eprintln!(
        "{} positions: logit std {:.2}..{:.2}, {} distinct greedy tokens",
        ids.len(),
        range.0,
        range.1,
        argmaxes.len()
    );
    assert!(argmaxes.len() > ids.len() / 3, "the next-token choice barely depends on the input: {argmaxes:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
