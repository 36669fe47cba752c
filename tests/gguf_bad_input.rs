//! Damaged GGUF files, built in the test from the small fixtures of
//! `scripts/make_gguf_fixtures.py`: each gets its own typed error (naming the key or tensor at
//! fault), never a panic.

mod common;

use common::fixture_dir;
use focusllm::gguf::{GgufFile, MetaValue};
use focusllm::{Error, Pipeline, WeightSource};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir("gguf").join(name)).unwrap()
}

/// A GGUF file as editable parts.
#[derive(Clone)]
struct Parts {
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    /// (name, dims, ggml type, data)
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    /// Override of the stored offsets (None: laid out contiguously, aligned).
    offsets: Option<Vec<u64>>,
}

impl Parts {
    fn from_file(bytes: &[u8]) -> Parts {
        let file = GgufFile::from_bytes(bytes.to_vec(), "fixture.gguf").unwrap();
        let header = file.header();
        Parts {
            version: header.version,
            metadata: header.metadata.clone(),
            tensors: header
                .tensors
                .iter()
                .map(|t| (t.name.clone(), t.dims.clone(), t.ggml_type.0, file.tensor_data(t).to_vec()))
                .collect(),
            offsets: None,
        }
    }

    fn set(&mut self, key: &str, value: MetaValue) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    fn remove(&mut self, key: &str) -> &mut Self {
        let before = self.metadata.len();
        self.metadata.retain(|(k, _)| k != key);
        assert_eq!(self.metadata.len() + 1, before, "{key} not in the fixture");
        self
    }

    fn get(&self, key: &str) -> &MetaValue {
        &self.metadata.iter().find(|(k, _)| k == key).unwrap().1
    }

    fn tensor_mut(&mut self, name: &str) -> &mut (String, Vec<u64>, u32, Vec<u8>) {
        self.tensors.iter_mut().find(|t| t.0 == name).unwrap()
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            out.extend(type_id(value).to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        for (i, (name, dims, ty, data)) in self.tensors.iter().enumerate() {
            put_str(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            let stored = self.offsets.as_ref().map_or(offset, |o| o[i]);
            out.extend(stored.to_le_bytes());
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        for (_, _, _, data) in &self.tensors {
            out.extend(data);
            while !out.len().is_multiple_of(32) {
                out.push(0);
            }
        }
        out
    }

    fn open(&self) -> focusllm::Result<GgufFile> {
        GgufFile::from_bytes(self.bytes(), "damaged.gguf")
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn type_id(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend(x.to_le_bytes()),
        MetaValue::I16(x) => out.extend(x.to_le_bytes()),
        MetaValue::U32(x) => out.extend(x.to_le_bytes()),
        MetaValue::I32(x) => out.extend(x.to_le_bytes()),
        MetaValue::F32(x) => out.extend(x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(*x as u8),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(items) => {
            out.extend(items.first().map_or(4, type_id).to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        MetaValue::U64(x) => out.extend(x.to_le_bytes()),
        MetaValue::I64(x) => out.extend(x.to_le_bytes()),
        MetaValue::F64(x) => out.extend(x.to_le_bytes()),
    }
}

fn tiny() -> Parts {
    Parts::from_file(&fixture("tiny-mistral.gguf"))
}

fn strings(v: &MetaValue) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

#[test]
fn rebuilt_fixture_is_valid() {
    // The writer above round-trips the fixture, so every failure below comes from the damage alone.
    let parts = tiny();
    let file = parts.open().unwrap();
    file.config().unwrap();
    file.tokenizer().unwrap();
    assert_eq!(parts.bytes(), fixture("tiny-mistral.gguf"));
    Pipeline::load_gguf(fixture_dir("gguf").join("tiny-mistral.gguf"), common::cpu()).unwrap();
}

#[test]
fn bad_magic() {
    let mut bytes = fixture("tiny-mistral.gguf");
    bytes[..4].copy_from_slice(b"GGML");
    match GgufFile::from_bytes(bytes, "x.gguf") {
        Err(Error::GgufBadMagic { found, .. }) => assert_eq!(&found, b"GGML"),
        other => panic!("unexpected {other:?}"),
    }
    // A file that is not GGUF at all, through the public loader.
    let path = fixture_dir("tiny-llama").join("config.json");
    assert!(matches!(Pipeline::load_gguf(&path, common::cpu()), Err(Error::GgufBadMagic { .. })));
}

#[test]
fn unsupported_version() {
    for version in [0u32, 1, 4, u32::MAX] {
        let mut parts = tiny();
        parts.version = version;
        match parts.open() {
            Err(Error::GgufUnsupportedVersion { version: v, .. }) => assert_eq!(v, version),
            other => panic!("version {version}: unexpected {other:?}"),
        }
    }
    let mut v2 = tiny();
    v2.version = 2;
    v2.open().unwrap().config().unwrap();
}

#[test]
fn truncated_at_every_header_byte_and_through_the_data() {
    let bytes = fixture("tiny-mistral.gguf");
    let file = GgufFile::from_bytes(bytes.clone(), "x").unwrap();
    let data_offset = file.header().data_offset as usize;
    let mut cuts: Vec<usize> = (0..data_offset).collect();
    cuts.extend((data_offset..bytes.len()).step_by(97));
    cuts.push(bytes.len() - 1);
    let (mut truncated, mut out_of_bounds) = (0, 0);
    for cut in cuts {
        match GgufFile::from_bytes(bytes[..cut].to_vec(), "cut.gguf") {
            Err(Error::GgufTruncated { file_len, offset, needed, .. }) => {
                assert_eq!(file_len, cut as u64);
                assert!(offset + needed > file_len, "cut {cut}");
                truncated += 1;
            }
            Err(Error::GgufTensorOutOfBounds { end, file_len, .. }) => {
                assert!(end > file_len);
                out_of_bounds += 1;
            }
            other => panic!("cut at {cut}: unexpected {other:?}"),
        }
    }
    assert!(truncated > 1000 && out_of_bounds > 100, "{truncated} {out_of_bounds}");
    // Specific points: inside the magic, the counts, and the last tensor's data.
    assert!(matches!(GgufFile::from_bytes(bytes[..2].to_vec(), "x"), Err(Error::GgufTruncated { .. })));
    assert!(matches!(GgufFile::from_bytes(bytes[..12].to_vec(), "x"), Err(Error::GgufTruncated { .. })));
    let last = file.header().tensors.iter().max_by_key(|t| t.range.end).unwrap().name.clone();
    match GgufFile::from_bytes(bytes[..bytes.len() - 1].to_vec(), "x") {
        Err(Error::GgufTensorOutOfBounds { tensor, .. }) => assert_eq!(tensor, last),
        other => panic!("unexpected {other:?}"),
    }
    // An empty file on disk.
    let dir = std::env::temp_dir().join(format!("focusllm-gguf-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(GgufFile::open(&empty), Err(Error::GgufTruncated { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn absurd_counts_are_rejected_before_allocating() {
    let bytes = tiny().bytes();
    for (at, what) in [(8, "tensor count"), (16, "metadata count")] {
        let mut b = bytes.clone();
        b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        match GgufFile::from_bytes(b, "x") {
            Err(Error::GgufTruncated { what: w, .. }) => assert!(w.contains(what), "{w}"),
            other => panic!("{what}: unexpected {other:?}"),
        }
    }
    // A string length of 2^63 in the first key.
    let mut b = bytes.clone();
    b[24..32].copy_from_slice(&(1u64 << 63).to_le_bytes());
    assert!(matches!(GgufFile::from_bytes(b, "x"), Err(Error::GgufTruncated { .. })));
}

#[test]
fn unsupported_tensor_type() {
    // A type ggml defines but this crate does not dequantise (IQ2_XXS: 256 elements in 66 bytes);
    // the message names it and lists what is supported.
    let mut parts = tiny();
    let t = parts.tensor_mut("blk.0.ffn_up.weight");
    assert_eq!(t.1, vec![32, 64]);
    t.1 = vec![256, 8];
    t.2 = 16;
    t.3 = vec![0u8; 8 * 66];
    let file = parts.open().unwrap();
    match file.tensor("model.layers.0.mlp.up_proj.weight") {
        Err(e @ Error::GgufUnsupportedTensorType { .. }) => {
            let message = e.to_string();
            let Error::GgufUnsupportedTensorType { tensor, ggml_type, .. } = e else { unreachable!() };
            assert_eq!(tensor, "blk.0.ffn_up.weight");
            assert_eq!(ggml_type, "IQ2_XXS");
            assert!(
                message.contains("IQ2_XXS") && message.contains("supported: F32,") && message.contains("Q4_K"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // A type number ggml does not define: the data size is unknown, so opening fails.
    let mut parts = tiny();
    parts.tensor_mut("blk.1.ffn_down.weight").2 = 99;
    match parts.open() {
        Err(Error::GgufUnsupportedTensorType { tensor, ggml_type, .. }) => {
            assert_eq!(tensor, "blk.1.ffn_down.weight");
            assert_eq!(ggml_type, "#99");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn metadata_key_missing() {
    for key in [
        "general.architecture",
        "llama.embedding_length",
        "llama.block_count",
        "llama.attention.layer_norm_rms_epsilon",
    ] {
        let mut parts = tiny();
        parts.remove(key);
        match parts.open().unwrap().config() {
            Err(Error::GgufMissingKey { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{key}: unexpected {other:?}"),
        }
    }
    for key in ["tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges"] {
        let mut parts = tiny();
        parts.remove(key);
        match parts.open().unwrap().tokenizer() {
            Err(Error::GgufMissingKey { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{key}: unexpected {other:?}"),
        }
    }
}

#[test]
fn metadata_key_of_the_wrong_type() {
    let cases: Vec<(&str, MetaValue)> = vec![
        ("llama.block_count", MetaValue::String("two".into())),
        ("llama.embedding_length", MetaValue::I32(-32)),
        ("llama.attention.layer_norm_rms_epsilon", MetaValue::Bool(true)),
        ("general.architecture", MetaValue::U32(1)),
        ("llama.rope.freq_base", MetaValue::String("500".into())),
    ];
    for (key, value) in cases {
        let mut parts = tiny();
        parts.set(key, value);
        match parts.open().unwrap().config() {
            Err(Error::GgufWrongType { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{key}: unexpected {other:?}"),
        }
    }
    let mut parts = tiny();
    parts.set("tokenizer.ggml.tokens", MetaValue::Array(vec![MetaValue::U32(1), MetaValue::U32(2)]));
    assert!(
        matches!(parts.open().unwrap().tokenizer(), Err(Error::GgufWrongType { key, .. }) if key == "tokenizer.ggml.tokens")
    );
    let mut parts = tiny();
    parts.set("tokenizer.ggml.add_bos_token", MetaValue::U8(1));
    assert!(
        matches!(parts.open().unwrap().tokenizer(), Err(Error::GgufWrongType { key, .. }) if key == "tokenizer.ggml.add_bos_token")
    );
    let mut parts = tiny();
    parts.set("general.alignment", MetaValue::U32(3));
    assert!(matches!(parts.open(), Err(Error::GgufWrongType { key, .. }) if key == "general.alignment"));
    let mut parts = tiny();
    parts.set("tokenizer.chat_template", MetaValue::U32(3));
    assert!(matches!(parts.open().unwrap().chat_template(), Some(Err(Error::GgufWrongType { .. }))));
    let mut parts = tiny();
    parts.set("tokenizer.chat_template", MetaValue::String("{% for m in messages %}".into()));
    assert!(matches!(parts.open().unwrap().chat_template(), Some(Err(Error::ChatTemplate { .. }))));
}

#[test]
fn tensor_data_out_of_bounds() {
    let n = tiny().tensors.len();
    let last_offset = {
        let file = tiny().open().unwrap();
        file.header().tensors.iter().map(|t| t.offset).max().unwrap()
    };
    for (i, offset) in [(0, last_offset + 4096), (n - 1, u64::MAX - 31), (n / 2, 1u64 << 62)] {
        let mut parts = tiny();
        let file = parts.open().unwrap();
        let mut offsets: Vec<u64> = file.header().tensors.iter().map(|t| t.offset).collect();
        offsets[i] = offset;
        parts.offsets = Some(offsets);
        match parts.open() {
            Err(Error::GgufTensorOutOfBounds { tensor, .. }) => assert_eq!(tensor, parts.tensors[i].0),
            other => panic!("offset {offset}: unexpected {other:?}"),
        }
    }
    // Dimensions whose product overflows, and ones that do not but exceed the file.
    let mut parts = tiny();
    parts.tensor_mut("output_norm.weight").1 = vec![1 << 40, 1 << 40];
    assert!(matches!(parts.open(), Err(Error::GgufInvalid { reason, .. }) if reason.contains("output_norm.weight")));
    let mut parts = tiny();
    parts.tensor_mut("output_norm.weight").1 = vec![1 << 20, 1 << 20];
    assert!(matches!(parts.open(), Err(Error::GgufTensorOutOfBounds { tensor, .. }) if tensor == "output_norm.weight"));
    // A misaligned offset.
    let mut parts = tiny();
    let mut offsets: Vec<u64> = parts.open().unwrap().header().tensors.iter().map(|t| t.offset).collect();
    offsets[1] += 2;
    parts.offsets = Some(offsets);
    assert!(matches!(parts.open(), Err(Error::GgufInvalid { .. })));
}

#[test]
fn shapes_that_disagree_with_the_config() {
    // The tensor lies inside the file but its shape is not what the metadata implies.
    let mut parts = tiny();
    parts.set("llama.feed_forward_length", MetaValue::U32(96));
    let path = std::env::temp_dir().join(format!("focusllm-gguf-shape-{}.gguf", std::process::id()));
    std::fs::write(&path, parts.bytes()).unwrap();
    let result = Pipeline::load(&path, common::cpu());
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(result, Err(Error::TensorShape { .. })), "{:?}", result.err());
}

#[test]
fn inconsistent_tokenizer_metadata() {
    fn expect(parts: &Parts, key: &str) {
        match parts.open().unwrap().tokenizer() {
            Err(Error::GgufTokenizer { key: k, reason, .. }) => assert_eq!(k, key, "{reason}"),
            other => panic!("{key}: unexpected {other:?}"),
        }
    }
    // token_type / scores of a different length than tokens.
    let mut parts = tiny();
    let mut types = parts.get("tokenizer.ggml.token_type").as_array().unwrap().to_vec();
    types.pop();
    parts.set("tokenizer.ggml.token_type", MetaValue::Array(types));
    expect(&parts, "tokenizer.ggml.token_type");
    let mut parts = tiny();
    parts.set("tokenizer.ggml.scores", MetaValue::Array(vec![MetaValue::F32(0.0); 7]));
    expect(&parts, "tokenizer.ggml.scores");
    // A merge naming a token the vocabulary lacks, and a malformed merge.
    for bad in ["zz qq", "nospace", "a b c"] {
        let mut parts = tiny();
        let mut merges = strings(parts.get("tokenizer.ggml.merges"));
        merges[3] = bad.to_string();
        parts.set("tokenizer.ggml.merges", MetaValue::Array(merges.into_iter().map(MetaValue::String).collect()));
        expect(&parts, "tokenizer.ggml.merges");
    }
    // Special ids outside the vocabulary.
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"] {
        let mut parts = tiny();
        parts.set(key, MetaValue::U32(300));
        expect(&parts, key);
    }
    // Unknown tokenizer model or pre-tokenizer, empty vocabulary.
    let mut parts = tiny();
    parts.set("tokenizer.ggml.model", MetaValue::String("wordpiece".into()));
    expect(&parts, "tokenizer.ggml.model");
    let mut parts = tiny();
    parts.set("tokenizer.ggml.pre", MetaValue::String("no-such-pre".into()));
    expect(&parts, "tokenizer.ggml.pre");
    let mut parts = tiny();
    parts.set("tokenizer.ggml.tokens", MetaValue::Array(vec![]));
    expect(&parts, "tokenizer.ggml.tokens");
}

#[test]
fn architecture_and_config_values() {
    let mut parts = tiny();
    parts.set("general.architecture", MetaValue::String("gpt2".into()));
    assert!(
        matches!(parts.open().unwrap().config(), Err(Error::UnsupportedModelType { model_type, .. }) if model_type == "gpt2")
    );
    let mut parts = tiny();
    parts.set("llama.rope.scaling.type", MetaValue::String("yarn".into()));
    assert!(
        matches!(parts.open().unwrap().config(), Err(Error::GgufWrongType { key, .. }) if key == "llama.rope.scaling.type")
    );
    let mut parts = tiny();
    parts.set("llama.attention.head_count_kv", MetaValue::U32(3));
    assert!(matches!(parts.open().unwrap().config(), Err(Error::InvalidConfig { .. })));
    // A q projection whose rows do not split into the heads: the permutation cannot be undone.
    let mut parts = tiny();
    parts.set("llama.attention.head_count", MetaValue::U32(5));
    let file = parts.open().unwrap();
    assert!(matches!(file.tensor("model.layers.0.self_attn.q_proj.weight"), Err(Error::GgufInvalid { .. })));
}
