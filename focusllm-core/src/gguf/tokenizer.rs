//! A `tokenizers::Tokenizer` built from a GGUF file's `tokenizer.ggml.*` metadata, the way
//! transformers' GGUF loader builds it (and llama.cpp tokenizes):
//!
//! - `gpt2`: byte-level BPE with the file's merges, the pre-tokenizer split chosen by
//!   `tokenizer.ggml.pre` (llama.cpp's regexes), a byte-level decoder;
//! - `llama`: SentencePiece-style BPE with byte fallback, merges from the file or derived from the
//!   token scores, a `▁` metaspace pre-tokenizer.
//!
//! Tokens typed CONTROL (3) become special added tokens, USER_DEFINED (4) plain added tokens, so
//! both are matched whole in text. `add_bos_token` / `add_eos_token` become a post-processor.

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{Error, Result};

use super::MetaKeys;

/// llama.cpp's token types.
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// LLaMA 3's split (llama.cpp `llama3`, `llama-bpe`, ...).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split (llama.cpp `qwen2`, `deepseek-r1-qwen`).
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a byte-level vocabulary splits text before BPE, by `tokenizer.ggml.pre`.
fn byte_level_pre_tokenizer(keys: &MetaKeys<'_>, pre: Option<&str>) -> Result<PreTokenizerWrapper> {
    let gpt2 = || PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
    let split = |regex: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| tok_error(keys, "tokenizer.ggml.pre", format!("regex: {e}")))?;
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
        ])))
    };
    match pre {
        None | Some("default" | "gpt2" | "gpt-2") => Ok(gpt2()),
        // llama.cpp: "\p{N}" then the GPT-2 regex, i.e. every digit on its own.
        Some("smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva") => {
            Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                gpt2(),
            ])))
        }
        Some(
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" | "dbrx"
            | "smaug-bpe",
        ) => split(LLAMA3_SPLIT),
        Some("qwen2" | "deepseek-r1-qwen" | "megrez") => split(QWEN2_SPLIT),
        Some(other) => Err(tok_error(
            keys,
            "tokenizer.ggml.pre",
            format!("unsupported pre-tokenizer `{other}` (supported: default, gpt2, smollm, starcoder, llama3/llama-bpe, qwen2, ...)"),
        )),
    }
}

fn tok_error(keys: &MetaKeys<'_>, key: &str, reason: String) -> Error {
    Error::GgufTokenizer { path: keys.path.to_path_buf(), key: key.to_string(), reason }
}

/// GPT-2's printable byte alphabet: every character a byte-level vocabulary is spelled with.
fn in_byte_alphabet(c: char) -> bool {
    matches!(c as u32, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF | 0x100..=0x143)
}

/// GPT-2's byte-to-character map.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(0x100 + n).unwrap_or('\u{FFFD}')
}

/// Builds the tokenizer the metadata describes.
pub(crate) fn build(keys: &MetaKeys<'_>) -> Result<tokenizers::Tokenizer> {
    let model_key = "tokenizer.ggml.model";
    let kind = keys.string(model_key)?;
    let tokens = keys.string_array("tokenizer.ggml.tokens")?;
    let n = tokens.len();
    if n == 0 {
        return Err(tok_error(keys, "tokenizer.ggml.tokens", "the vocabulary is empty".into()));
    }
    if u32::try_from(n).is_err() {
        return Err(tok_error(keys, "tokenizer.ggml.tokens", format!("{n} tokens do not fit u32 ids")));
    }
    let token_types = match keys.header.get("tokenizer.ggml.token_type") {
        None => None,
        Some(_) => Some(keys.int_array("tokenizer.ggml.token_type")?),
    };
    let scores = match keys.header.get("tokenizer.ggml.scores") {
        None => None,
        Some(_) => Some(keys.float_array("tokenizer.ggml.scores")?),
    };
    for (key, len) in [
        ("tokenizer.ggml.token_type", token_types.as_ref().map(Vec::len)),
        ("tokenizer.ggml.scores", scores.as_ref().map(Vec::len)),
    ] {
        if let Some(len) = len.filter(|&l| l != n) {
            return Err(tok_error(keys, key, format!("{len} entries for {n} tokens in tokenizer.ggml.tokens")));
        }
    }
    let merges = match keys.header.get("tokenizer.ggml.merges") {
        None => None,
        Some(_) => Some(keys.string_array("tokenizer.ggml.merges")?),
    };
    let mut special_ids = HashMap::new();
    for name in ["bos", "eos", "unknown", "padding", "eot", "eom"] {
        let key = format!("tokenizer.ggml.{name}_token_id");
        if let Some(id) = keys.opt_u32(&key)? {
            if id as usize >= n {
                return Err(tok_error(keys, &key, format!("id {id} is outside the vocabulary of {n} tokens")));
            }
            special_ids.insert(name, id);
        }
    }

    let byte_level = match kind {
        "gpt2" => true,
        "llama" => false,
        other => {
            return Err(tok_error(
                keys,
                model_key,
                format!("unsupported tokenizer model `{other}` (supported: gpt2, llama)"),
            ));
        }
    };

    // The vocabulary as the model sees it (byte-level tokens spelled in GPT-2's alphabet).
    let spelled: Vec<String> = if byte_level {
        tokens
            .iter()
            .map(|t| if t.chars().all(in_byte_alphabet) { t.to_string() } else { t.bytes().map(byte_char).collect() })
            .collect()
    } else {
        tokens.iter().map(|t| t.to_string()).collect()
    };
    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(n);
    for (id, t) in spelled.iter().enumerate() {
        vocab.entry(t.clone()).or_insert(id as u32);
    }

    let merges: Vec<(String, String)> = match (merges, byte_level) {
        (Some(list), _) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, m) in list.iter().enumerate() {
                let pair = m.split_once(' ').filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(' '));
                let Some((a, b)) = pair else {
                    return Err(tok_error(
                        keys,
                        "tokenizer.ggml.merges",
                        format!("merge #{i} `{m}` is not two tokens separated by a space"),
                    ));
                };
                for part in [a, b, &format!("{a}{b}")] {
                    if !vocab.contains_key(part) {
                        return Err(tok_error(
                            keys,
                            "tokenizer.ggml.merges",
                            format!("merge #{i} `{m}` names `{part}`, which is not in the vocabulary"),
                        ));
                    }
                }
                out.push((a.to_string(), b.to_string()));
            }
            out
        }
        (None, true) => {
            return Err(Error::GgufMissingKey { path: keys.path.to_path_buf(), key: "tokenizer.ggml.merges".into() })
        }
        (None, false) => {
            let Some(scores) = &scores else {
                return Err(Error::GgufMissingKey {
                    path: keys.path.to_path_buf(),
                    key: "tokenizer.ggml.scores".into(),
                });
            };
            merges_from_scores(&spelled, scores, &vocab)
        }
    };

    let bpe = BPE::builder()
        .vocab_and_merges(
            vocab.iter().map(|(k, &v)| (k.clone(), v)).collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .byte_fallback(!byte_level)
        .fuse_unk(!byte_level)
        .build()
        .map_err(|e| tok_error(keys, "tokenizer.ggml.merges", e.to_string()))?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);

    let add_prefix_space = keys.opt_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    if byte_level {
        let pre = keys.opt_string("tokenizer.ggml.pre")?;
        tokenizer.with_pre_tokenizer(Some(byte_level_pre_tokenizer(keys, pre)?));
        tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevelDecoder::default())));
    } else {
        let scheme = if add_prefix_space { PrependScheme::First } else { PrependScheme::Never };
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Metaspace(Metaspace::new('\u{2581}', scheme, false))));
        let replace = Replace::new("\u{2581}", " ").map_err(|e| tok_error(keys, model_key, e.to_string()))?;
        let mut steps = vec![
            DecoderWrapper::Replace(replace),
            DecoderWrapper::ByteFallback(ByteFallback::new()),
            DecoderWrapper::Fuse(Fuse::new()),
        ];
        if add_prefix_space {
            steps.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
        }
        tokenizer.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(steps))));
    }

    // Added tokens: CONTROL as special, USER_DEFINED as plain (both matched whole, unnormalised).
    if let Some(types) = &token_types {
        let control: Vec<AddedToken> = tokens
            .iter()
            .zip(types)
            .filter(|(t, &ty)| ty == TOKEN_CONTROL && (!byte_level || t.chars().all(in_byte_alphabet)) && !t.is_empty())
            .map(|(t, _)| AddedToken::from(t.to_string(), true).normalized(false))
            .collect();
        tokenizer
            .add_special_tokens(control)
            .map_err(|e| tok_error(keys, "tokenizer.ggml.token_type", e.to_string()))?;
        let user: Vec<AddedToken> = tokens
            .iter()
            .zip(types)
            .filter(|(t, &ty)| ty == TOKEN_USER_DEFINED && vocab.contains_key(**t) && !t.is_empty())
            .map(|(t, _)| AddedToken::from(t.to_string(), false).normalized(false))
            .collect();
        tokenizer.add_tokens(user).map_err(|e| tok_error(keys, "tokenizer.ggml.token_type", e.to_string()))?;
    }

    // BOS / EOS added around every encoding, as the file asks (SentencePiece vocabularies add BOS
    // unless they say otherwise).
    let add_bos = keys.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(!byte_level);
    let add_eos = keys.opt_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let mut single = Vec::new();
    let mut special = Vec::new();
    for (add, name, key) in
        [(add_bos, "bos", "tokenizer.ggml.bos_token_id"), (add_eos, "eos", "tokenizer.ggml.eos_token_id")]
    {
        if !add {
            continue;
        }
        let Some(&id) = special_ids.get(name) else {
            return Err(Error::GgufMissingKey { path: keys.path.to_path_buf(), key: key.into() });
        };
        let text = spelled[id as usize].clone();
        if text.is_empty() || text.contains(char::is_whitespace) || text.starts_with('$') || text.contains(':') {
            return Err(tok_error(keys, key, format!("token {id} `{text}` cannot be used in a template")));
        }
        special.push((text.clone(), id));
        single.push(text);
        if name == "bos" {
            single.push("$A".into());
        }
    }
    if !single.is_empty() {
        if !single.iter().any(|s| s == "$A") {
            single.insert(0, "$A".into());
        }
        let template = single.join(" ");
        let processor = TemplateProcessing::builder()
            .try_single(template.as_str())
            .and_then(|b| b.try_pair(format!("{template} $B:1")))
            .map_err(|e| tok_error(keys, "tokenizer.ggml.add_bos_token", e.to_string()))?
            .special_tokens(special)
            .build()
            .map_err(|e| tok_error(keys, "tokenizer.ggml.add_bos_token", e.to_string()))?;
        tokenizer.with_post_processor(Some(processor));
    }
    Ok(tokenizer)
}

/// SentencePiece merges implied by the token scores (transformers' `generate_merges`): every
/// split of a token into two tokens of the vocabulary, ranked by the merged token's score.
fn merges_from_scores(tokens: &[String], scores: &[f32], vocab: &HashMap<String, u32>) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut merges: Vec<(String, String, f32)> = Vec::new();
    for (token, &score) in tokens.iter().zip(scores) {
        if !seen.insert(token.as_str()) {
            continue;
        }
        let mut local: Vec<(&str, &str)> = token
            .char_indices()
            .skip(1)
            .map(|(i, _)| (&token[..i], &token[i..]))
            .filter(|(l, r)| vocab.contains_key(*l) && vocab.contains_key(*r))
            .collect();
        local.sort_by_key(|(l, r)| (vocab[*l], vocab[*r]));
        merges.extend(local.into_iter().map(|(l, r)| (l.to_string(), r.to_string(), score)));
    }
    // Descending by (score, left length, right length); stable like Python's sort.
    merges.sort_by(|a, b| {
        let ka = (a.2, a.0.chars().count(), a.1.chars().count());
        let kb = (b.2, b.0.chars().count(), b.1.chars().count());
        kb.0.total_cmp(&ka.0).then(kb.1.cmp(&ka.1)).then(kb.2.cmp(&ka.2))
    });
    merges.into_iter().map(|(l, r, _)| (l, r)).collect()
}
