//! Fuzzes tokenizers. The input is split at its first NUL byte (which no JSON text holds): the part
//! before it is loaded as a `tokenizer.json` (`Tokenizer::from_bytes`, as `Tokenizer::from_file`
//! does); the part after it (or the whole
//! input when it has no NUL), up to 1 KiB, is text, read as lossy UTF-8, and a list of token ids,
//! read as little-endian `u16`s (modulo the vocabulary size plus 8) and `u32`s. The text is
//! encoded (with and without special tokens) and decoded, the ids decoded and streamed
//! (`TextStream::push`), by the tokenizer loaded from the input and by the fixtures' real ones,
//! loaded once: the tiny LLaMA and Qwen2 `tokenizer.json`s, and those built from the metadata of
//! two GGUF fixtures (byte-level BPE, and SentencePiece with byte fallback). Ids outside a
//! vocabulary must give typed errors or be skipped, never panic; a tokenizer's own ids must stream.
#![no_main]

use std::sync::OnceLock;

use focusllm_core::gguf::GgufFile;
use focusllm_core::{TextStream, Tokenizer};
use libfuzzer_sys::fuzz_target;

/// Most ids streamed through `TextStream` per list: each push decodes the ids not yet emitted
/// twice, and ids that add no text (out of the vocabulary, special, or an incomplete UTF-8
/// sequence) never close that window, so such a run of `n` ids costs `n^2 / 2` decodes.
const MAX_STREAMED: usize = 256;
/// The same for the raw `u32` ids, almost all outside the vocabulary.
const MAX_STREAMED_RAW: usize = 32;

/// Most bytes of text encoded (and read as ids) per input: byte-level pre-tokenization runs
/// regexes, slow under the sanitizer, and five tokenizers encode each text twice.
const MAX_TEXT: usize = 1024;

fn json_tokenizer(bytes: &[u8], name: &str) -> Tokenizer {
    let inner = tokenizers::Tokenizer::from_bytes(bytes).expect("a fixture tokenizer.json loads");
    Tokenizer::from_tokenizers(inner, name)
}

fn gguf_tokenizer(bytes: &[u8], name: &str) -> Tokenizer {
    let file = GgufFile::from_bytes(bytes.to_vec(), name).expect("a GGUF fixture opens");
    file.tokenizer().expect("a GGUF fixture's tokenizer builds")
}

fn real_tokenizers() -> &'static [Tokenizer] {
    static REAL: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    REAL.get_or_init(|| {
        vec![
            json_tokenizer(include_bytes!("../../tests/fixtures/tiny-llama/tokenizer.json"), "tiny-llama"),
            json_tokenizer(include_bytes!("../../tests/fixtures/tiny-qwen2/tokenizer.json"), "tiny-qwen2"),
            gguf_tokenizer(include_bytes!("../seeds/gguf_parse/tiny-llama.gguf"), "tiny-llama.gguf"),
            gguf_tokenizer(include_bytes!("../../tests/fixtures/gguf/spm-vocab.gguf"), "spm-vocab.gguf"),
        ]
    })
}

/// Streams `ids` as generation does; `known` says every id came from the tokenizer itself.
fn stream(tokenizer: &Tokenizer, ids: &[u32], known: bool, most: usize) {
    let mut stream = TextStream::new();
    for &id in ids.iter().take(most) {
        match stream.push(tokenizer, id) {
            Ok(_) => {}
            Err(e) if known => panic!("streaming the tokenizer's own id {id} failed: {e}"),
            Err(_) => {}
        }
    }
}

fn exercise(tokenizer: &Tokenizer, text: &str, id_bytes: &[u8]) {
    for special in [true, false] {
        if let Ok(ids) = tokenizer.encode_with(text, special) {
            let _ = tokenizer.decode(&ids);
            stream(tokenizer, &ids, true, MAX_STREAMED);
        }
    }
    // Mostly inside the vocabulary, a few just past it; then any u32.
    let bound = tokenizer.vocab_size() as u32 + 8;
    let near: Vec<u32> =
        id_bytes.chunks_exact(2).map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])) % bound).collect();
    let raw: Vec<u32> = id_bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    for (ids, most) in [(&near, MAX_STREAMED), (&raw, MAX_STREAMED_RAW)] {
        let _ = tokenizer.decode(ids);
        stream(tokenizer, ids, false, most);
    }
    let _ = tokenizer.token_id(text);
    let _ = tokenizer.vocab_size();
}

fuzz_target!(|data: &[u8]| {
    let (json, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let rest = &rest[..rest.len().min(MAX_TEXT)];
    let text = String::from_utf8_lossy(rest);
    if let Ok(tokenizer) = Tokenizer::from_bytes(json, "input tokenizer.json") {
        exercise(&tokenizer, &text, rest);
    }
    for tokenizer in real_tokenizers() {
        exercise(tokenizer, &text, rest);
    }
});
