//! Streaming generation: stop tokens, budgets, seeded sampling, cancellation, the facade.

mod common;

use common::{fixture_dir, golden, load};
use focusllm::{CancelToken, Device, FinishReason, GenerateOptions, LanguageModel, Llm, Sampling};

#[test]
fn stops_at_stop_token_without_emitting_it() {
    let p = load("tiny-llama");
    let case = &golden("tiny-llama")[0];
    let stop = case.greedy[3];
    let options = GenerateOptions { max_tokens: 50, stop_tokens: vec![stop], stop_at_eos: false, ..Default::default() };
    let mut stream = p.generate_ids(&case.ids, &options).unwrap();
    let ids: Vec<u32> = stream.by_ref().map(|t| t.unwrap().id).collect();
    let first = case.greedy.iter().position(|&t| t == stop).unwrap();
    assert_eq!(ids, case.greedy[..first]);
    assert_eq!(stream.finish_reason(), Some(FinishReason::Stop(stop)));
}

#[test]
fn max_tokens_and_text_pieces() {
    let p = load("tiny-qwen2");
    let options = GenerateOptions { max_tokens: 7, stop_at_eos: false, ..Default::default() };
    let mut stream = p.generate("The grass is", &options).unwrap();
    let tokens: Vec<_> = stream.by_ref().map(Result::unwrap).collect();
    assert_eq!(tokens.len(), 7);
    assert_eq!(stream.finish_reason(), Some(FinishReason::MaxTokens));
    // The streamed pieces concatenate to the decoding of all generated ids, except that an
    // incomplete UTF-8 sequence at the end (random weights emit stray bytes) is held back.
    let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
    let text: String = tokens.iter().map(|t| t.text.as_str()).collect();
    let full = p.tokenizer().decode(&ids).unwrap();
    let rest = full.strip_prefix(&text).unwrap_or_else(|| panic!("{text:?} is not a prefix of {full:?}"));
    assert!(rest.chars().all(|c| c == '\u{FFFD}'), "held back {rest:?}");
    assert!(!text.is_empty());
}

#[test]
fn seeded_sampling_is_reproducible_and_differs_from_greedy() {
    let p = load("tiny-llama");
    let run = |seed| {
        let sampling = Sampling { temperature: 1.5, top_k: 50, top_p: 0.95, seed, ..Default::default() };
        let options = GenerateOptions { max_tokens: 24, sampling, stop_at_eos: false, ..Default::default() };
        p.generate("The sky is", &options).unwrap().map(|t| t.unwrap().id).collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn cancel_from_another_thread() {
    let p = load("tiny-llama");
    let cancel = CancelToken::new();
    let options =
        GenerateOptions { max_tokens: 10_000, stop_at_eos: false, cancel: Some(cancel.clone()), ..Default::default() };
    let mut stream = p.generate("The sky is", &options).unwrap();
    let mut n = 0;
    std::thread::scope(|s| {
        for tok in stream.by_ref() {
            tok.unwrap();
            n += 1;
            if n == 5 {
                let c = cancel.clone();
                s.spawn(move || c.cancel()).join().unwrap();
            }
        }
    });
    assert_eq!(n, 5);
    assert_eq!(stream.finish_reason(), Some(FinishReason::Cancelled));
}

#[test]
fn facade_loads_and_generates_on_cpu() {
    let llm = Llm::load(fixture_dir("tiny-mistral"), Device::Cpu { threads: Some(1) }).unwrap();
    let case = &golden("tiny-mistral")[2];
    let options = GenerateOptions { max_tokens: case.greedy.len(), stop_at_eos: false, ..Default::default() };
    let ids: Vec<u32> = llm.generate(&case.text, &options).unwrap().map(|t| t.unwrap().id).collect();
    assert_eq!(ids, case.greedy);
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Llm>();
    assert!(matches!(
        Llm::load(fixture_dir("tiny-mistral"), Device::Cpu { threads: Some(0) }),
        Err(focusllm::Error::InvalidOption { .. })
    ));
}

#[test]
fn text_stream_passes_over_tokens_without_text() {
    // Runs of special tokens (skipped when decoding) between the pieces of a text, and a
    // multi-byte character split over byte-level tokens: the streamed text is the text itself.
    let p = load("tiny-llama");
    let tokenizer = p.tokenizer();
    let text = "The archive is kept in the cellar, caf\u{e9} \u{2603} and all.";
    let ids = tokenizer.encode_with(text, false).unwrap();
    let (bos, eos) = (0, 1);
    let mut stream = focusllm::TextStream::new();
    let mut streamed = String::new();
    for &id in &ids {
        for _ in 0..200 {
            streamed += &stream.push(tokenizer, eos).unwrap();
            streamed += &stream.push(tokenizer, bos).unwrap();
        }
        streamed += &stream.push(tokenizer, id).unwrap();
    }
    assert_eq!(streamed, tokenizer.decode(&ids).unwrap());
    assert_eq!(streamed, text);
}
