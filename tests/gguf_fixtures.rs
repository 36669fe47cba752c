//! GGUF reading against the small fixtures of `scripts/make_gguf_fixtures.py` (written by Python's
//! `gguf` package, llama.cpp's own writer):
//!
//! - every supported tensor type dequantises bit-identically to `gguf.quants.dequantize`;
//! - the tiny Mistral-style model converted as llama.cpp converts it (q/k permuted, f16 weights)
//!   loads to exactly the model of its Hugging Face directory: same configuration, same tokenizer
//!   ids, bit-identical logits, and within the tiny-model tolerance of transformers;
//! - a SentencePiece-style vocabulary tokenizes as transformers tokenizes it.

mod common;

use std::path::PathBuf;

use common::{fixture_dir, golden, load, max_abs_diff};
use focusllm::gguf::GgufFile;
use focusllm::{ChatMessage, LogitsFor, Pipeline, WeightSource};

fn gguf_fixture(name: &str) -> PathBuf {
    fixture_dir("gguf").join(name)
}

/// Checks every tensor `t.<TYPE>` of `fixture` (of `shape`) against what `gguf.quants.dequantize`
/// gave for it (`<fixture stem>_expected.safetensors`), bit for bit, through `GgufFile::dequantize`
/// and through the CPU backend's own layout (its rows, by embedding every row). Returns how many.
fn check_dequantization(fixture: &str, types: &[&str], shape: [usize; 2]) -> usize {
    let file = GgufFile::open(gguf_fixture(fixture)).unwrap();
    let stem = fixture.trim_end_matches(".gguf");
    let expected_bytes = std::fs::read(gguf_fixture(&format!("{stem}_expected.safetensors"))).unwrap();
    let expected = safetensors::SafeTensors::deserialize(&expected_bytes).unwrap();
    let cpu = common::cpu();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for ty in types {
        let name = format!("t.{ty}");
        let info = file.tensor_info(&name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(info.ggml_type.name(), *ty);
        assert_eq!(info.shape(), shape.to_vec());
        let view = expected.tensor(&name).unwrap();
        assert_eq!(view.shape(), &shape);
        let want: Vec<f32> =
            view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(bits(&file.dequantize(info).unwrap()), bits(&want), "{name}: dequantised");
        let t = focusllm::HostTensor {
            name: name.clone(),
            dtype: info.ggml_type.dtype().unwrap(),
            shape: info.shape(),
            bytes: file.tensor_data(info).into(),
        };
        let w = focusllm::Backend::upload_weight(&cpu, &t).unwrap();
        let ids: Vec<u32> = (0..shape[0] as u32).collect();
        let rows = focusllm::Backend::embedding(&cpu, &w, &ids).unwrap();
        assert_eq!(bits(&focusllm::Backend::to_host(&cpu, &rows).unwrap()), bits(&want), "{name}: CPU rows");
    }
    types.len()
}

#[test]
fn dequantization_matches_gguf_python_bit_for_bit() {
    assert_eq!(check_dequantization("types.gguf", &["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"], [3, 64]), 6);
}

#[test]
fn block_types_dequantize_as_gguf_python_bit_for_bit() {
    let types = ["Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"];
    assert_eq!(check_dequantization("blocks.gguf", &types, [4, 512]), 9);
}

#[test]
fn tiny_mistral_gguf_is_the_hf_model() {
    let gguf_path = gguf_fixture("tiny-mistral.gguf");
    let file = GgufFile::open(&gguf_path).unwrap();
    let hf = load("tiny-mistral");
    let from_gguf = Pipeline::load(&gguf_path, common::cpu()).unwrap();

    // Configuration: everything but the family name (GGUF calls Mistral `llama`).
    let (a, mut b) = (hf.model().config().clone(), from_gguf.model().config().clone());
    b.architecture = a.architecture;
    assert_eq!(a, b);
    assert_eq!(file.config().unwrap(), from_gguf.model().config().clone());

    // Every tensor the HF directory has, in HF layout: permutation undone, values identical.
    let hf_weights = focusllm::SafetensorsWeights::from_dir(fixture_dir("tiny-mistral")).unwrap();
    let mut names: Vec<&str> = hf_weights.names().collect();
    names.sort();
    for name in names {
        let want = hf_weights.tensor(name).unwrap().unwrap();
        let got = file.tensor(name).unwrap().unwrap_or_else(|| panic!("{name} missing from the GGUF"));
        assert_eq!(got.shape, want.shape, "{name}");
        assert_eq!(got.to_f32(), want.to_f32(), "{name}");
    }

    for case in golden("tiny-mistral") {
        assert_eq!(from_gguf.tokenizer().encode(&case.text).unwrap(), case.ids, "{:?}", case.text);
        let ids = &case.ids;
        let (m1, m2) = (hf.model(), from_gguf.model());
        let l1 = m1.forward_one(ids, &mut m1.new_cache(), LogitsFor::All).unwrap();
        let l2 = m2.forward_one(ids, &mut m2.new_cache(), LogitsFor::All).unwrap();
        assert_eq!(l1.data, l2.data, "{:?}: GGUF and HF loads differ", case.text);
        for (pos, expected) in case.logits.iter().enumerate() {
            let d = max_abs_diff(l2.row(pos), expected);
            assert!(d < 1e-4, "{:?} position {pos}: max |diff| vs transformers {d}", case.text);
        }
        let decoded = from_gguf.tokenizer().decode(&case.ids).unwrap();
        assert_eq!(decoded, hf.tokenizer().decode(&case.ids).unwrap());
    }
}

#[test]
fn llama3_gguf_with_rope_frequency_factors_is_the_hf_model() {
    // The HF model's llama3 RoPE scaling (original context 16 tokens, so every prompt is past it)
    // becomes the tensor `rope_freqs.weight` in the GGUF, as llama.cpp's converter writes it.
    let from_gguf = Pipeline::load(gguf_fixture("tiny-llama3.gguf"), common::cpu()).unwrap();
    let hf = load("tiny-llama");
    let (a, mut b) = (hf.model().config().clone(), from_gguf.model().config().clone());
    assert!(matches!(a.rope_scaling, focusllm::RopeScaling::Llama3 { .. }));
    assert_eq!(b.rope_scaling, focusllm::RopeScaling::None);
    b.rope_scaling = a.rope_scaling;
    assert_eq!(a, b);
    let mut worst = 0.0f32;
    for case in golden("tiny-llama") {
        let m = from_gguf.model();
        let logits = m.forward_one(&case.ids, &mut m.new_cache(), LogitsFor::All).unwrap();
        for (pos, expected) in case.logits.iter().enumerate() {
            worst = worst.max(max_abs_diff(logits.row(pos), expected));
        }
    }
    eprintln!("tiny-llama3.gguf: max |logit diff| against transformers {worst:.2e}");
    assert!(worst < 1e-4, "max |diff| vs transformers {worst}");

    // Without the factors (plain RoPE) the logits are another model's: the check above has teeth.
    struct NoFactors(GgufFile);
    impl WeightSource for NoFactors {
        fn tensor(&self, name: &str) -> focusllm::Result<Option<focusllm::HostTensor<'_>>> {
            if name == focusllm::gguf::ROPE_FREQ_FACTORS {
                return Ok(None);
            }
            self.0.tensor(name)
        }
        fn shape(&self, name: &str) -> Option<Vec<usize>> {
            self.0.shape(name)
        }
        fn location(&self) -> &std::path::Path {
            self.0.location()
        }
    }
    let file = NoFactors(GgufFile::open(gguf_fixture("tiny-llama3.gguf")).unwrap());
    let config = from_gguf.model().config().clone();
    let case = &golden("tiny-llama")[0];
    let plain = focusllm::Model::load(common::cpu(), config, &file).unwrap();
    let logits = plain.forward_one(&case.ids, &mut plain.new_cache(), LogitsFor::All).unwrap();
    let last = case.logits.len() - 1;
    assert!(max_abs_diff(logits.row(last), &case.logits[last]) > 1e-3);
}

#[test]
fn qwen3_gguf_loads_with_its_head_norms() {
    // Its logits are checked against llama.cpp in tests/llama_cpp_golden.rs.
    let pipeline = Pipeline::load(gguf_fixture("tiny-qwen3.gguf"), common::cpu()).unwrap();
    let config = pipeline.model().config();
    assert_eq!(config.architecture, focusllm::Architecture::Qwen3);
    assert!(config.qk_norm && !config.qkv_bias && config.head_dim == 16);
    let m = pipeline.model();
    let logits = m.forward_one(&[5, 6, 7], &mut m.new_cache(), LogitsFor::All).unwrap();
    assert!(logits.data.iter().all(|x| x.is_finite()) && logits.data.len() == 3 * config.vocab_size);
}

#[test]
fn gemma3_config_json_is_the_gguf_model() {
    // The same tiny Gemma 3 as a Hugging Face directory (`gemma3_text`, norms as w, the layer types
    // listed) and as llama.cpp's GGUF (norms stored as 1 + w, the pattern as per-layer flags, the
    // local RoPE base as `rope.freq_base_swa`): one model. The GGUF's logits are checked against
    // llama.cpp in tests/llama_cpp_golden.rs.
    let from_gguf = Pipeline::load(gguf_fixture("tiny-gemma3.gguf"), common::cpu()).unwrap();
    let hf = load("tiny-gemma3");
    let (a, mut b) = (hf.model().config().clone(), from_gguf.model().config().clone());
    use focusllm::{Activation, Architecture, LayerType};
    assert_eq!(a.architecture, Architecture::Gemma3);
    assert_eq!(a.layer_types, [LayerType::Sliding, LayerType::Sliding, LayerType::Full]);
    assert_eq!((a.sliding_window, a.rope_local_theta, a.hidden_act), (Some(24), Some(20000.0), Activation::GeluTanh));
    assert!(a.sandwich_norms && a.norm_unit_offset && a.scale_embeddings && a.qk_norm && a.tie_word_embeddings);
    // GGUF files carry no query_pre_attn_scalar (llama.cpp takes head_dim): the same scale here.
    assert_eq!((a.query_pre_attn_scalar, b.query_pre_attn_scalar), (Some(32.0), None));
    assert_eq!(a.attention_scale(), b.attention_scale());
    b.query_pre_attn_scalar = a.query_pre_attn_scalar;
    assert_eq!(a, b);
    let file = GgufFile::open(gguf_fixture("tiny-gemma3.gguf")).unwrap();
    let hf_weights = focusllm::SafetensorsWeights::from_dir(fixture_dir("tiny-gemma3")).unwrap();
    for name in hf_weights.names() {
        let want = hf_weights.tensor(name).unwrap().unwrap().to_f32();
        assert_eq!(file.tensor(name).unwrap().unwrap().to_f32(), want, "{name}: the GGUF serves HF values");
    }
    let ids: Vec<u32> = (0..120).map(|i| (i * 37 + 11) % 300).collect();
    let (m1, m2) = (hf.model(), from_gguf.model());
    let l1 = m1.forward_one(&ids, &mut m1.new_cache(), LogitsFor::All).unwrap();
    let l2 = m2.forward_one(&ids, &mut m2.new_cache(), LogitsFor::All).unwrap();
    assert_eq!(l1.data, l2.data, "GGUF and HF loads differ");
}

#[test]
fn tiny_mistral_chat_template_renders() {
    let file = GgufFile::open(gguf_fixture("tiny-mistral.gguf")).unwrap();
    let template = file.chat_template().expect("template present").unwrap();
    let messages = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")];
    assert_eq!(template.render(&messages, true).unwrap(), "<s>system\nBe brief.</s>\n<s>user\nHi</s>\n<s>assistant\n");
    assert_eq!(template.render(&messages[1..], false).unwrap(), "<s>user\nHi</s>\n");
    // The types fixture has no template.
    assert!(GgufFile::open(gguf_fixture("types.gguf")).unwrap().chat_template().is_none());
}

#[test]
fn sentencepiece_vocabulary_matches_transformers() {
    // `tokenizer.ggml.model` = llama: merges derived from the scores, byte fallback, `▁` prefix.
    let file = GgufFile::open(gguf_fixture("spm-vocab.gguf")).unwrap();
    let tokenizer = file.tokenizer().unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gguf_fixture("spm_expected.json")).unwrap()).unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(tokenizer.encode(text).unwrap(), ids, "{text:?}");
        assert_eq!(tokenizer.decode(&ids).unwrap(), case["decoded"].as_str().unwrap(), "{text:?}");
    }
}
