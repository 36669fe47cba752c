//! The model's chunk cache (`Model::set_chunk_cache_limit`): a FocusLLM prompt or document read
//! through it gives what a read without it gives (fresh chunk forwards of `chunk ++ query`), in
//! every decode mode (retrieval's chunk scores included), whether its chunks were found or computed; chunks met
//! again are found; the cache keeps within its byte limit, dropping the least recently used first.
//!
//! Tolerance: 1e-4 absolute on every logit, after prefill and after each greedy step, as in
//! `focus_document.rs`: through the cache a chunk's keys/values come from a forward of the chunk
//! alone, which changes only the order of floating-point sums.

mod common;

use common::focus_golden::golden;
use common::{load, max_abs_diff};
use focusllm::focus::{DecodeMode, Document, FocusConfig};
use focusllm::{argmax, prefill, ChunkCacheStats, Control, Model};

type Cpu = focusllm::cpu::CpuBackend;

const TOL: f32 = 1e-4;
/// Greedy steps checked after each prefill.
const STEPS: usize = 4;

/// The golden sizes (L = 16, S = 12, Q = 6) with a threshold the inputs reach.
fn sizes() -> FocusConfig {
    FocusConfig { threshold: Some(40), chunk_batch: 3, ..golden("tiny-llama").config }
}

/// The golden input cut into a document (its first 100 ids) and questions of different lengths.
fn doc_and_tails() -> (Vec<u32>, Vec<Vec<u32>>) {
    let ids = golden("tiny-llama").ids;
    let doc = ids[..100].to_vec();
    (doc, vec![ids[100..103].to_vec(), ids[103..112].to_vec(), ids[100..103].to_vec()])
}

/// Bytes of the f32 key/value caches of `tokens` positions of `model`.
fn bytes(model: &Model<Cpu>, tokens: usize) -> u64 {
    let c = model.config();
    (tokens * c.num_layers * c.kv_dim() * 2 * 4) as u64
}

/// The prefill logits and `STEPS` greedy steps of `tokens`.
fn run(model: &Model<Cpu>, tokens: &[u32], config: &FocusConfig) -> Vec<Vec<f32>> {
    let (mut decoder, mut logits) = prefill(model, tokens, Some(config), Control::default()).unwrap();
    let mut out = vec![logits.clone()];
    for _ in 0..STEPS {
        logits = decoder.step(argmax(&logits) as u32).unwrap();
        out.push(logits.clone());
    }
    out
}

fn worst(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().zip(b).map(|(x, y)| max_abs_diff(x, y)).fold(0.0, f32::max)
}

#[test]
fn prompts_through_the_chunk_cache_are_fresh_reads() {
    let mut p = load("tiny-llama");
    common::focus_golden::load_tiny_adapter(&mut p);
    let model = p.model();
    let (doc, tails) = doc_and_tails();
    let mut report = Vec::new();
    for mode in DecodeMode::ALL {
        let config = FocusConfig { decode: mode, ..sizes() };
        model.set_chunk_cache_limit(0);
        let fresh: Vec<_> = tails.iter().map(|t| run(model, &[doc.as_slice(), t].concat(), &config)).collect();
        model.set_chunk_cache_limit(1 << 30);
        let mut before = model.chunk_cache_stats();
        assert_eq!((before.chunks, before.bytes), (0, 0), "turning the cache off empties it");
        for (i, tail) in tails.iter().enumerate() {
            let tokens = [doc.as_slice(), tail].concat();
            let plan = focusllm::focus::plan(&tokens, &config, model.config().bos_token_id).unwrap();
            let cached = run(model, &tokens, &config);
            let d = worst(&cached, &fresh[i]);
            assert!(d < TOL, "{} question {i}: max |diff| {d}", mode.name());
            let after = model.chunk_cache_stats();
            let (hits, misses) = (after.hits - before.hits, after.misses - before.misses);
            assert_eq!(hits + misses, plan.chunks.len() as u64, "{} question {i}: every chunk looked up", mode.name());
            match i {
                0 => assert_eq!(hits, 0, "{}: an empty cache finds nothing", mode.name()),
                // The second question is longer: the plain split moves, but the chunks before the
                // question's reach are the same tokens and are found.
                1 => assert!(hits >= plan.chunks.len() as u64 - 2 && misses > 0, "{}: {after:?}", mode.name()),
                // The first question again: every chunk is found.
                _ => assert_eq!(misses, 0, "{}: {after:?}", mode.name()),
            }
            report.push(format!("{} question {i}: {d:e} ({hits} chunks found, {misses} computed)", mode.name()));
            before = after;
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn a_document_read_again_finds_its_chunks() {
    let p = load("tiny-llama");
    let model = p.model();
    let (doc, tails) = doc_and_tails();
    let config = FocusConfig { decode: DecodeMode::CachedLocal, ..sizes() };
    let fresh = Document::read(model, &doc, &config, Control::default()).unwrap();
    model.set_chunk_cache_limit(1 << 30);
    let first = Document::read(model, &doc, &config, Control::default()).unwrap();
    let after_first = model.chunk_cache_stats();
    let chunks = first.chunks().len() as u64;
    assert_eq!((after_first.hits, after_first.misses, after_first.chunks as u64), (0, chunks, chunks));
    let expected: u64 = first.chunks().iter().map(|r| bytes(model, r.len())).sum();
    assert_eq!(after_first.bytes, expected, "the cache counts the bytes of the raw caches it holds");
    let second = Document::read(model, &doc, &config, Control::default()).unwrap();
    let after_second = model.chunk_cache_stats();
    assert_eq!((after_second.hits, after_second.misses), (chunks, chunks), "a second read computes nothing");
    for tail in &tails {
        let (_, a) = first.ask(tail, Control::default()).unwrap();
        let (_, b) = second.ask(tail, Control::default()).unwrap();
        let (_, c) = fresh.ask(tail, Control::default()).unwrap();
        assert_eq!(a, b, "both documents hold the same caches");
        assert!(max_abs_diff(&a, &c) < TOL);
    }
}

#[test]
fn the_chunk_cache_keeps_its_limit_and_drops_the_least_recently_used() {
    let p = load("tiny-llama");
    let model = p.model();
    let (doc, _) = doc_and_tails();
    let config = sizes();
    // 90 tokens of memory: seven chunks of 12 and one of 6. Room for two chunks of 12 holds the
    // last two chunks read (12 + 6 rows), not a third.
    let limit = bytes(model, 24);
    model.set_chunk_cache_limit(limit);
    let document = Document::read(model, &doc, &config, Control::default()).unwrap();
    let ranges = document.chunks().to_vec();
    assert_eq!(ranges.len(), 8);
    let stats = model.chunk_cache_stats();
    let held = bytes(model, 12) + bytes(model, 6);
    assert_eq!(
        stats,
        ChunkCacheStats { chunks: 2, bytes: held, limit, hits: 0, misses: 8, evictions: 6 },
        "after the first read"
    );
    // Read again: the two held chunks are found; the other six are computed, and each evicts
    // the least recently used, leaving the last two computed (two chunks of 12).
    Document::read(model, &doc, &config, Control::default()).unwrap();
    let stats = model.chunk_cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.chunks, stats.evictions, stats.bytes), (2, 14, 2, 12, limit));
    // A limit below one chunk keeps nothing; 0 turns the cache off and finds nothing.
    model.set_chunk_cache_limit(bytes(model, 5));
    assert_eq!((model.chunk_cache_stats().chunks, model.chunk_cache_stats().bytes), (0, 0));
    Document::read(model, &doc, &config, Control::default()).unwrap();
    assert_eq!(model.chunk_cache_stats().chunks, 0);
    model.set_chunk_cache_limit(0);
    let off = model.chunk_cache_stats();
    Document::read(model, &doc, &config, Control::default()).unwrap();
    assert_eq!(model.chunk_cache_stats(), off, "an off cache counts nothing");
}
