//! The reusable document memory (`focus::Document`, `Llm::read`): a document read once and asked
//! several questions in a row gives, for every question, what a from-scratch read of the document
//! and that question with the same split (`focus::prefill_document`) gives, in every decode mode
//! that condenses chunks, with copied and with adapter candidate projections.
//!
//! Tolerance: 1e-4 absolute on every logit, after prefill and after each greedy step (logits of
//! order 1-5, f32 on both sides; the two differ only in the order of floating-point sums, since a
//! chunk's keys/values are computed in a forward of the chunk alone rather than of chunk ++ query).

mod common;

use common::focus_golden::golden;
use common::{load, max_abs_diff};
use focusllm::focus::{plan_document, prefill_document, CandidateOrder, DecodeMode, Document, FocusConfig};
use focusllm::{argmax, CancelToken, Control, Error, GenerateOptions, ProgressCallback};

const TOL: f32 = 1e-4;
/// Greedy steps checked after each prefill.
const STEPS: usize = 4;

fn tiny_model(adapter: bool) -> focusllm::Pipeline<focusllm::cpu::CpuBackend> {
    let mut p = load("tiny-llama");
    if adapter {
        common::focus_golden::load_tiny_adapter(&mut p);
    }
    p
}

/// The golden input cut into a document (its first 100 ids) and three questions of different
/// lengths taken from the rest.
fn doc_and_tails() -> (Vec<u32>, Vec<Vec<u32>>) {
    let ids = golden("tiny-llama").ids;
    let doc = ids[..100].to_vec();
    let tails = vec![ids[100..103].to_vec(), ids[103..112].to_vec(), ids[105..127].to_vec()];
    (doc, tails)
}

/// The golden sizes (L = 16, S = 12, Q = 6) with a threshold the 100-token document reaches.
fn sizes() -> FocusConfig {
    FocusConfig { threshold: Some(40), chunk_batch: 3, ..golden("tiny-llama").config }
}

/// Asks every tail of `tails` in a row of one document and compares each with a fresh read;
/// returns the largest difference over all logits.
fn compare(
    model: &focusllm::Model<focusllm::cpu::CpuBackend>,
    doc: &[u32],
    tails: &[Vec<u32>],
    config: &FocusConfig,
) -> f32 {
    let document = Document::read(model, doc, config, Control::default()).unwrap();
    let mut worst = 0.0f32;
    let mut firsts: Vec<Vec<f32>> = Vec::new();
    for tail in tails {
        let tokens = [doc, tail.as_slice()].concat();
        let (mut kept, mut a) = document.ask(tail, Control::default()).unwrap();
        let (mut fresh, mut b) = prefill_document(model, doc.len(), &tokens, config, Control::default()).unwrap();
        // Each question is answered from its own read, not the previous one's.
        assert!(firsts.iter().all(|f| max_abs_diff(f, &b) > 1e-3), "{:?}: two questions, one answer", config.decode);
        firsts.push(b.clone());
        for step in 0..=STEPS {
            let d = max_abs_diff(&a, &b);
            worst = worst.max(d);
            assert!(d < TOL, "{:?} tail {} step {step}: max |diff| {d}", config.decode, tail.len());
            if step == STEPS {
                break;
            }
            let t = argmax(&b) as u32;
            a = kept.step(t).unwrap();
            b = fresh.step(t).unwrap();
        }
    }
    worst
}

#[test]
fn asking_a_kept_document_is_a_fresh_read_in_every_mode() {
    let (doc, tails) = doc_and_tails();
    let mut report = Vec::new();
    for adapter in [false, true] {
        let p = tiny_model(adapter);
        for mode in [DecodeMode::Exact, DecodeMode::CachedLocal, DecodeMode::FrozenMemory, DecodeMode::MinEntropy] {
            for order in [CandidateOrder::CandidatesFirst, CandidateOrder::SinkFirst] {
                let config = FocusConfig { decode: mode, order, ..sizes() };
                let worst = compare(p.model(), &doc, &tails, &config);
                report.push(format!("{} {order:?} adapter={adapter}: {worst:e}", mode.name()));
            }
        }
        // More than one candidate per chunk (frozen only), batches of one and of all chunks, and
        // shared identical chunks.
        for config in [
            FocusConfig { decode: DecodeMode::FrozenMemory, candidates_per_chunk: 2, ..sizes() },
            FocusConfig { chunk_batch: 1, ..sizes() },
            FocusConfig { decode: DecodeMode::CachedLocal, chunk_batch: 16, ..sizes() },
            FocusConfig { share_identical_chunks: true, ..sizes() },
        ] {
            let worst = compare(p.model(), &doc, &tails, &config);
            let label = format!(
                "{} candidates={} batch={} share={}",
                config.decode.name(),
                config.candidates_per_chunk,
                config.chunk_batch,
                config.share_identical_chunks
            );
            report.push(format!("{label} adapter={adapter}: {worst:e}"));
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn a_short_document_is_read_plainly_and_still_reused() {
    let p = tiny_model(true);
    let (doc, tails) = doc_and_tails();
    let config = FocusConfig { threshold: Some(200), ..sizes() };
    let document = Document::read(p.model(), &doc, &config, Control::default()).unwrap();
    assert!(!document.has_memory() && document.chunks().is_empty());
    let worst = compare(p.model(), &doc, &tails, &config);
    println!("plain: {worst:e}");
}

#[test]
fn chunk_boundaries_do_not_depend_on_the_question() {
    let p = tiny_model(false);
    let (doc, tails) = doc_and_tails();
    let config = sizes();
    let bos = p.model().config().bos_token_id;
    let document = Document::read(p.model(), &doc, &config, Control::default()).unwrap();
    // 100 tokens, L - Q = 10 kept in the local context: 90 of memory = 7 x 12 + 6.
    let expected: Vec<_> = (0..90).step_by(12).map(|s| s..(s + 12).min(90)).collect();
    assert_eq!(document.chunks(), expected.as_slice());
    for tail in &tails {
        let plan = plan_document(doc.len(), &[doc.as_slice(), tail].concat(), &config, bos).unwrap();
        assert_eq!(plan.chunks, expected);
        assert_eq!(plan.local, 90..doc.len() + tail.len());
    }
    // The plain split of the same inputs moves with the question's length.
    let plain = |tail: &[u32]| focusllm::focus::plan(&[doc.as_slice(), tail].concat(), &config, bos).unwrap().chunks;
    assert_ne!(plain(&tails[0]), plain(&tails[2]));
}

#[test]
fn a_question_after_a_cancelled_one_still_matches() {
    let p = tiny_model(true);
    let (doc, tails) = doc_and_tails();
    let config = FocusConfig { decode: DecodeMode::CachedLocal, chunk_batch: 2, ..sizes() };
    let document = Document::read(p.model(), &doc, &config, Control::default()).unwrap();
    // Cancelled before it starts, and cancelled after its first chunk batch.
    let cancel = CancelToken::new();
    cancel.cancel();
    let before = Control { cancel: Some(cancel), ..Control::default() };
    assert!(matches!(document.ask(&tails[1], before), Err(Error::Cancelled)));
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let midway = Control {
        cancel: Some(cancel),
        progress: Some(ProgressCallback::new(move |_| trigger.cancel())),
        ..Control::default()
    };
    assert!(matches!(document.ask(&tails[1], midway), Err(Error::Cancelled)));
    for tail in [&tails[0], &tails[2]] {
        let tokens = [doc.as_slice(), tail].concat();
        let (_, a) = document.ask(tail, Control::default()).unwrap();
        let (_, b) = prefill_document(p.model(), doc.len(), &tokens, &config, Control::default()).unwrap();
        assert!(max_abs_diff(&a, &b) < TOL);
    }
}

#[test]
fn bad_documents_and_questions_are_typed_errors() {
    let p = tiny_model(false);
    let (doc, tails) = doc_and_tails();
    let config = sizes();
    let m = p.model();
    let read = |doc: &[u32], config: &FocusConfig| Document::read(m, doc, config, Control::default());
    assert!(matches!(read(&[], &config), Err(Error::EmptyInput { .. })));
    assert!(matches!(read(&[doc.clone(), vec![100_000]].concat(), &config), Err(Error::TokenOutOfRange { .. })));
    assert!(matches!(read(&doc, &FocusConfig { chunk_size: 0, ..config.clone() }), Err(Error::InvalidOption { .. })));
    let retrieve = FocusConfig { decode: DecodeMode::Retrieve, ..config.clone() };
    assert!(matches!(read(&doc, &retrieve), Err(Error::InvalidOption { .. })));
    let document = read(&doc, &config).unwrap();
    assert!(matches!(document.ask(&[], Control::default()), Err(Error::EmptyInput { .. })));
    assert!(matches!(document.ask(&[1, 300], Control::default()), Err(Error::TokenOutOfRange { .. })));
    // The document is still usable after refused questions.
    let tokens = [doc.as_slice(), &tails[0]].concat();
    let (_, a) = document.ask(&tails[0], Control::default()).unwrap();
    let (_, b) = prefill_document(m, doc.len(), &tokens, &config, Control::default()).unwrap();
    assert!(max_abs_diff(&a, &b) < TOL);
}

#[test]
fn the_facade_reads_once_and_answers_each_question_as_a_fresh_read() {
    let (doc, tails) = doc_and_tails();
    let mut llm =
        focusllm::Llm::load(common::fixture_dir("tiny-llama"), focusllm::Device::Cpu { threads: Some(2) }).unwrap();
    llm.load_adapter(common::fixture_dir("focus").join("tiny-llama-adapter.safetensors")).unwrap();
    let p = tiny_model(true);
    let config = FocusConfig { decode: DecodeMode::CachedLocal, ..sizes() };
    let document = llm.read(&doc, &config, Control::default()).unwrap();
    assert_eq!(document.tokens(), doc.as_slice());
    assert_eq!(document.chunks().len(), 8);
    let options = GenerateOptions { max_tokens: 6, stop_at_eos: false, ..Default::default() };
    for tail in &tails {
        let answer: Vec<u32> = document.ask_ids(tail, &options).unwrap().map(|t| t.unwrap().id).collect();
        let tokens = [doc.as_slice(), tail].concat();
        let (mut fresh, mut logits) =
            prefill_document(p.model(), doc.len(), &tokens, &config, Control::default()).unwrap();
        let mut expected = Vec::new();
        for _ in 0..options.max_tokens {
            let t = argmax(&logits) as u32;
            expected.push(t);
            logits = fresh.step(t).unwrap();
        }
        assert_eq!(answer, expected);
    }
    // Text questions need a document read as text.
    assert!(matches!(document.ask("what?", &options), Err(Error::InvalidOption { .. })));
    assert!(matches!(llm.read(&[], &config, Control::default()), Err(Error::EmptyInput { .. })));
    // A text document: its question is the encoded question and the end of the turn.
    let text = "one two three four five six seven eight nine ten ".repeat(12);
    let document = llm.read_text(&text, &config, Control::default()).unwrap();
    assert!(!document.chunks().is_empty());
    let answer: Vec<u32> = document.ask("which number?", &options).unwrap().map(|t| t.unwrap().id).collect();
    assert_eq!(answer.len(), options.max_tokens);
    assert!(matches!(document.ask("", &options), Err(Error::EmptyInput { .. })));
}

#[test]
fn a_text_document_puts_the_question_in_the_chat_template_users_turn() {
    let dir = common::fixture_dir("tiny-llama");
    let model = focusllm::Model::load(
        common::cpu(),
        focusllm::ModelConfig::from_file(dir.join("config.json")).unwrap(),
        &focusllm::SafetensorsWeights::from_dir(&dir).unwrap(),
    )
    .unwrap();
    let tokenizer = focusllm::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let template = focusllm::ChatTemplate::new(
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}</turn>{% endfor %}\
         {% if add_generation_prompt %}<assistant>{% endif %}",
        "",
        "",
    )
    .unwrap();
    let llm = focusllm::Llm::from_model(focusllm::Pipeline::new(model, tokenizer, Some(template)));
    let config = sizes();
    let text = "one two three four five six seven eight nine ten ".repeat(12);
    let document = llm.read_text(&text, &config, Control::default()).unwrap();
    let encode = |s: &str, special| llm.tokenizer().encode_with(s, special).unwrap();
    assert_eq!(document.tokens(), encode(&format!("<user>{text}\n\n"), true).as_slice());
    let options = GenerateOptions { max_tokens: 5, stop_at_eos: false, ..Default::default() };
    for question in ["which number?", "what comes after seven, and what after nine?"] {
        let by_text: Vec<u32> = document.ask(question, &options).unwrap().map(|t| t.unwrap().id).collect();
        let tail = encode(&format!("{question}</turn><assistant>"), false);
        let by_ids: Vec<u32> = document.ask_ids(&tail, &options).unwrap().map(|t| t.unwrap().id).collect();
        assert_eq!(by_text, by_ids);
    }
}
