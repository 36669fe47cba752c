//! Bad input gets a typed error that names what is wrong, never a panic.

mod common;

use std::path::{Path, PathBuf};

use common::{cpu, fixture_dir, load};
use focusllm::{Error, GenerateOptions, LanguageModel, LogitsFor, Pipeline};

/// A private copy of a fixture directory that a test may damage.
struct Scratch(PathBuf);

impl Scratch {
    fn of(fixture: &str, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("focusllm-bad-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixture_dir(fixture)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn load(&self) -> Result<Pipeline<focusllm::cpu::CpuBackend>, Error> {
        Pipeline::load(&self.0, cpu())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Rewrites `model.safetensors` with `edit` applied to its (name, shape, f32 data) list.
fn rewrite_weights(path: &Path, edit: impl Fn(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> =
        st.tensors().into_iter().map(|(n, t)| (n, t.shape().to_vec(), t.data().to_vec())).collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn truncated_safetensors() {
    let s = Scratch::of("tiny-llama", "trunc");
    let file = s.path("model.safetensors");
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len / 2).unwrap();
    match s.load() {
        Err(Error::Safetensors { path, .. }) => assert_eq!(path, file),
        other => panic!("expected a safetensors error, got {:?}", other.err()),
    }
    // A file shorter than its own header length field.
    std::fs::write(&file, [1u8, 2, 3]).unwrap();
    assert!(matches!(s.load(), Err(Error::Safetensors { .. })));
}

#[test]
fn missing_tensor() {
    let s = Scratch::of("tiny-llama", "missing");
    rewrite_weights(&s.path("model.safetensors"), |t| t.retain(|(n, _, _)| n != "model.layers.1.mlp.up_proj.weight"));
    match s.load() {
        Err(Error::MissingTensor { name, .. }) => assert_eq!(name, "model.layers.1.mlp.up_proj.weight"),
        other => panic!("expected MissingTensor, got {:?}", other.err()),
    }
}

#[test]
fn wrong_tensor_shape() {
    let s = Scratch::of("tiny-llama", "shape");
    rewrite_weights(&s.path("model.safetensors"), |t| {
        let entry = t.iter_mut().find(|(n, _, _)| n == "model.layers.0.self_attn.k_proj.weight").unwrap();
        // Same number of values, transposed shape.
        entry.1 = vec![entry.1[1], entry.1[0]];
    });
    match s.load() {
        Err(Error::TensorShape { name, expected, found }) => {
            assert_eq!(name, "model.layers.0.self_attn.k_proj.weight");
            assert_eq!(expected, vec![32, 64]);
            assert_eq!(found, vec![64, 32]);
        }
        other => panic!("expected TensorShape, got {:?}", other.err()),
    }
}

#[test]
fn unknown_model_type_and_malformed_config() {
    let s = Scratch::of("tiny-llama", "config");
    let cfg = std::fs::read_to_string(s.path("config.json")).unwrap();
    std::fs::write(s.path("config.json"), cfg.replace("\"llama\"", "\"gpt_neox\"")).unwrap();
    match s.load() {
        Err(Error::UnsupportedModelType { model_type, .. }) => assert_eq!(model_type, "gpt_neox"),
        other => panic!("expected UnsupportedModelType, got {:?}", other.err()),
    }
    std::fs::write(s.path("config.json"), &cfg[..cfg.len() / 2]).unwrap();
    assert!(matches!(s.load(), Err(Error::Json { .. })));
    std::fs::write(s.path("config.json"), cfg.replace("\"num_hidden_layers\"", "\"layers\"")).unwrap();
    match s.load() {
        Err(Error::MissingConfigKey { key, .. }) => assert_eq!(key, "num_hidden_layers"),
        other => panic!("expected MissingConfigKey, got {:?}", other.err()),
    }
    std::fs::write(s.path("config.json"), cfg.replace("\"hidden_size\": 64", "\"hidden_size\": \"wide\"")).unwrap();
    assert!(matches!(s.load(), Err(Error::InvalidConfig { .. })));
}

#[test]
fn missing_and_corrupt_files() {
    let s = Scratch::of("tiny-llama", "files");
    std::fs::write(s.path("tokenizer.json"), "{ not a tokenizer").unwrap();
    assert!(matches!(s.load(), Err(Error::Tokenizer { .. })));
    std::fs::remove_file(s.path("tokenizer.json")).unwrap();
    assert!(matches!(s.load(), Err(Error::Io { .. })));
    assert!(matches!(Pipeline::load("/nonexistent/model/dir", cpu()), Err(Error::Io { .. })));
}

#[test]
fn token_id_out_of_range_and_empty_prompt() {
    let p = load("tiny-llama");
    let vocab = p.model().config().vocab_size as u32;
    let options = GenerateOptions::default();
    match p.generate_ids(&[0, 5, vocab], &options).err() {
        Some(Error::TokenOutOfRange { id, vocab_size }) => assert_eq!((id, vocab_size), (vocab, vocab as usize)),
        other => panic!("expected TokenOutOfRange, got {other:?}"),
    }
    assert!(matches!(p.generate_ids(&[], &options).err(), Some(Error::EmptyInput { .. })));
    assert!(matches!(p.generate("", &options).err(), Some(Error::EmptyInput { .. })));
    let mut cache = p.model().new_cache();
    assert!(matches!(
        p.model().forward_one(&[u32::MAX], &mut cache, LogitsFor::Last),
        Err(Error::TokenOutOfRange { .. })
    ));
    assert!(cache.is_empty(), "a rejected forward leaves the cache untouched");
}

#[test]
fn bad_sampling_options() {
    let p = load("tiny-llama");
    let options =
        GenerateOptions { sampling: focusllm::Sampling { top_p: 1.5, ..Default::default() }, ..Default::default() };
    assert!(matches!(p.generate("hi", &options).err(), Some(Error::InvalidOption { name: "top_p", .. })));
}

/// Inputs the fuzz targets (`fuzz/`) found panicking or exhausting memory, now typed errors.
#[test]
fn inputs_found_by_fuzzing() {
    // A truncated `tokenizer.json` made the `tokenizers` crate panic inside its deserializer.
    // So did a lone surrogate escaped in a decoder's string, and a `Precompiled` normalizer
    // without its map (refused alone or in a sequence, as its map is read unchecked). Each is
    // refused before `tokenizers` reads it.
    for bad in [
        &b"{\"decoder\":{"[..],
        b"{\"decoder\":{\"type\":\"ByteLevel\x01\"}}",
        b"{\"decoder\":\"\\uDC00\"}",
        b"{\"normalizer\":{\"type\":\"Precompiled\"}}",
        b"{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"AA\"}]}}",
    ] {
        match focusllm::Tokenizer::from_bytes(bad, "bad-tokenizer.json") {
            Err(Error::Tokenizer { path, message }) => {
                assert_eq!(path, Path::new("bad-tokenizer.json"));
                assert!(!message.contains("panicked"), "{}: {message}", String::from_utf8_lossy(bad));
            }
            other => panic!("expected a tokenizer error, got {other:?}"),
        }
    }
    // An infinite norm epsilon or RoPE base validated, then failed to write back as JSON.
    let config = std::fs::read_to_string(fixture_dir("tiny-llama").join("config.json")).unwrap();
    let path = Path::new("config.json");
    for (key, value) in
        [("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 1e205"), ("\"rope_theta\": 10000.0", "\"rope_theta\": 1e99")]
    {
        assert!(config.contains(key), "{key}");
        let err = focusllm::ModelConfig::from_json_str(&config.replace(key, value), path).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { .. }), "{value}: {err}");
    }
    // So did an infinite RoPE scaling factor.
    let linear = config.replace("\"factor\": 8.0", "\"factor\": 1e99");
    assert!(linear != config);
    let err = focusllm::ModelConfig::from_json_str(&linear, path).unwrap_err();
    assert!(err.to_string().contains("rope_scaling"), "{err}");
    // A head width of billions made the RoPE table allocate gigabytes, and a depth of billions
    // the tensor names checked at load.
    let wide = config.replace("\"head_dim\": 16", "\"head_dim\": 4000000000");
    let err = focusllm::ModelConfig::from_json_str(&wide, path).unwrap_err();
    assert!(err.to_string().contains("head_dim"), "{err}");
    let deep = config.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3000000000");
    let err = focusllm::ModelConfig::from_json_str(&deep, path).unwrap_err();
    assert!(err.to_string().contains("num_hidden_layers"), "{err}");
    // Billions of heads overflowed the query width computed from them.
    let heads = config
        .replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 9223372036854775806")
        .replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 1");
    let err = focusllm::ModelConfig::from_json_str(&heads, path).unwrap_err();
    assert!(err.to_string().contains("num_attention_heads"), "{err}");
    let vocab = config.replace("\"vocab_size\": 300", "\"vocab_size\": 18446744073709551615");
    let err = focusllm::ModelConfig::from_json_str(&vocab, path).unwrap_err();
    assert!(err.to_string().contains("vocab_size"), "{err}");
}
