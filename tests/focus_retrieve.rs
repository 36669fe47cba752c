//! Reading by retrieval (`DecodeMode::Retrieve`): its chunk scores against a direct computation
//! from unbatched plain forwards and a host log-softmax; its read and decoding against plain
//! attention over the chunks it chose and the local context; and, on the default model, that the
//! chunk holding a fact in varied text is the one chosen and the answer found.
//!
//! Tolerance on the tiny model: 1e-4 on scores (sums of a few log-probabilities, batched against
//! unbatched forwards) and 1e-5 on logits (the same plain forward on both sides).

mod common;

use common::focus_golden::golden;
use common::{default_model, load};
use focusllm::focus::{self, DecodeMode, FocusConfig};
use focusllm::{prefill, Backend, Control, LogitsFor, Model};

/// `log softmax(row)[target]` in f64, written out here rather than taken from the engine.
fn log_prob(row: &[f32], target: u32) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    row[target as usize] as f64 - lse
}

/// Log-probabilities of `query[1..]` after `context ++ query[..i]`, from one plain forward.
fn query_log_probs<B: Backend>(model: &Model<B>, context: &[u32], query: &[u32]) -> Vec<f64> {
    let tokens = [context, query].concat();
    let mut cache = model.new_cache();
    let logits = model.forward_one(&tokens, &mut cache, LogitsFor::All).unwrap();
    (1..query.len()).map(|i| log_prob(logits.row(context.len() + i - 1), query[i])).collect()
}

#[test]
fn scores_selection_and_read_match_a_direct_computation() {
    let p = load("tiny-llama");
    let m = p.model();
    let g = golden("tiny-llama");
    let ids = &g.ids;
    // 127 tokens, L = 16, S = 12: 10 chunks (the last shorter); room for the local context and two chunks.
    let config = FocusConfig {
        local_window: 16,
        chunk_size: 12,
        query_len: Some(6),
        decode: DecodeMode::Retrieve,
        read_budget: Some(16 + 24),
        chunk_batch: 3,
        ..FocusConfig::default()
    };
    let plan = focus::plan(ids, &config, m.config().bos_token_id).expect("past the threshold");
    assert_eq!(plan.chunks.len(), 10);
    let chunks: Vec<&[u32]> = plan.chunks.iter().map(|r| &ids[r.clone()]).collect();
    let scores = focus::score_chunks(m, &chunks, &plan.query, 3, &Control::default()).unwrap();
    let base = query_log_probs(m, &[], &plan.query);
    for (c, chunk) in chunks.iter().enumerate() {
        let with = query_log_probs(m, chunk, &plan.query);
        let direct: f64 = with.iter().zip(&base).map(|(w, b)| w - b).sum();
        assert!((scores[c] - direct).abs() < 1e-4, "chunk {c}: engine {} direct {direct}", scores[c]);
    }
    let lengths: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
    let chosen = focus::select_chunks(&lengths, &scores, plan.local.len(), 40);
    assert_eq!(chosen.len(), 2, "chunk 0 and the best other: {chosen:?}");
    assert_eq!(chosen[0], 0);
    let best = (1..chunks.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap();
    assert_eq!(chosen[1], best);

    // The read is plain attention over the chosen chunks and the local context, and so is decoding.
    let read: Vec<u32> =
        chosen.iter().flat_map(|&c| chunks[c].iter().copied()).chain(ids[plan.local.clone()].iter().copied()).collect();
    let (mut decoder, mut logits) = prefill(m, ids, Some(&config), Control::default()).unwrap();
    let mut cache = m.new_cache();
    let mut expected = m.forward_one(&read, &mut cache, LogitsFor::Last).unwrap().data;
    for step in 0..4 {
        let worst = common::max_abs_diff(&logits, &expected);
        assert!(worst < 1e-5, "step {step}: logits differ by {worst}");
        let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        logits = decoder.step(next).unwrap();
        expected = m.forward_one(&[next], &mut cache, LogitsFor::Last).unwrap().data;
    }

    // A budget that holds the whole input reads it whole: plain attention.
    let roomy = FocusConfig { read_budget: Some(ids.len()), ..config.clone() };
    let (_, logits) = prefill(m, ids, Some(&roomy), Control::default()).unwrap();
    let mut cache = m.new_cache();
    assert_eq!(logits, m.forward_one(ids, &mut cache, LogitsFor::Last).unwrap().data);
}

#[test]
fn scoring_is_cancellable_and_refuses_bad_input() {
    let p = load("tiny-llama");
    let g = golden("tiny-llama");
    let chunks: Vec<&[u32]> = g.ids[..48].chunks(12).collect();
    let err = focus::score_chunks(p.model(), &chunks, &g.ids[50..51], 2, &Control::default()).unwrap_err();
    assert!(err.to_string().contains("query_len"), "{err}");
    let vocab = p.model().config().vocab_size as u32;
    let bad: Vec<u32> = vec![1, 2, vocab];
    let err = focus::score_chunks(p.model(), &[&bad[..]], &g.ids[50..56], 2, &Control::default()).unwrap_err();
    assert!(matches!(err, focusllm::Error::TokenOutOfRange { .. }), "{err}");
    let cancel = focusllm::CancelToken::new();
    cancel.cancel();
    let control = Control { cancel: Some(cancel), ..Control::default() };
    let err = focus::score_chunks(p.model(), &chunks, &g.ids[50..56], 2, &control).unwrap_err();
    assert!(matches!(err, focusllm::Error::Cancelled), "{err}");
}

/// Varied sentences with no number in them and no word of the fact's, from a seeded generator.
fn varied_text(sentences: usize, seed: u64) -> Vec<String> {
    const WHO: [&str; 8] = [
        "The miller",
        "A tired sailor",
        "The old teacher",
        "My cousin",
        "The baker",
        "A young clerk",
        "The gardener",
        "Our neighbour",
    ];
    const DID: [&str; 8] = ["painted", "carried", "repaired", "sold", "borrowed", "described", "hid", "cleaned"];
    const WHAT: [&str; 8] = [
        "a wooden chair",
        "the green lantern",
        "two baskets of apples",
        "a broken clock",
        "the silver spoon",
        "an old map",
        "the heavy coat",
        "a box of letters",
    ];
    const WHEN: [&str; 8] = [
        "before dawn",
        "after the storm",
        "on market day",
        "in the evening",
        "during the festival",
        "at noon",
        "last winter",
        "before supper",
    ];
    let mut x = seed;
    let mut next = move |n: usize| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((x >> 33) as usize) % n
    };
    (0..sentences).map(|_| format!("{} {} {} {}.", WHO[next(8)], DID[next(8)], WHAT[next(8)], WHEN[next(8)])).collect()
}

#[test]
fn smollm2_reads_the_chunk_that_holds_the_fact() {
    let Some(path) = default_model("smollm2_reads_the_chunk_that_holds_the_fact") else { return };
    let llm = focusllm::Pipeline::load(&path, common::cpu()).unwrap();
    let mut sentences = varied_text(560, 7);
    sentences.insert(230, "The access code of the harbour gate is 4172093.".to_string());
    let prompt = format!(
        "{}\n\nQuestion: What is the access code of the harbour gate?\nAnswer: The access code of the harbour gate is",
        sentences.join(" ")
    );
    let ids = llm.tokenizer().encode(&prompt).unwrap();
    let config = FocusConfig {
        local_window: 512,
        chunk_size: 512,
        query_len: Some(32),
        decode: DecodeMode::Retrieve,
        read_budget: Some(512 + 2 * 512),
        ..FocusConfig::default()
    };
    let m = llm.model();
    let plan = focus::plan(&ids, &config, m.config().bos_token_id).unwrap();
    assert!(plan.chunks.len() >= 8, "{} tokens, {} chunks", ids.len(), plan.chunks.len());
    let needle = llm.tokenizer().encode(&sentences[..230].join(" ")).unwrap().len(); // where the fact starts
    let holder = plan.chunks.iter().position(|r| r.contains(&needle)).unwrap();
    let chunks: Vec<&[u32]> = plan.chunks.iter().map(|r| &ids[r.clone()]).collect();
    let scores = focus::score_chunks(m, &chunks, &plan.query, 4, &Control::default()).unwrap();
    let best = (0..chunks.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap();
    eprintln!("{} tokens; scores {scores:.1?}; the fact starts in chunk {holder}", ids.len());
    // The fact may straddle two chunks; either is right.
    assert!(best == holder || best == holder + 1, "the best chunk is {best}, the fact starts in {holder}");
    let options = focusllm::GenerateOptions { max_tokens: 8, focus: Some(config), ..Default::default() };
    use focusllm::LanguageModel;
    let answer: String = llm.generate_ids(&ids, &options).unwrap().map(|t| t.unwrap().text).collect();
    assert!(answer.contains("4172093"), "answer {answer:?}");
}
