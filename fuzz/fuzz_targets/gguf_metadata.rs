//! Fuzzes what is built from a GGUF file's metadata, structure-aware: the target writes a valid
//! GGUF container (version 2 or 3) itself, with the real tensors of a fixture and metadata edited
//! from the fixture's by a list of operations decoded with `arbitrary` (set a key, drawn mostly
//! from those the reader uses: `general.*`, the `llama.` / `qwen2.` hyper-parameters,
//! `tokenizer.ggml.*`, `tokenizer.chat_template`, to a value of any GGUF type; remove a key; drop
//! a tensor). The first input byte picks the fixture: the tiny LLaMA file (byte-level BPE, chat
//! template), the tiny Mistral file (quantised tensors), the SentencePiece vocabulary (no tensors),
//! or the tiny LLaMA tensors with no metadata. Then, as `gguf_parse` does: `GgufFile::from_bytes`
//! (which must accept the container, and read back its keys), `config()`, `tokenizer()` with an
//! encoding and decoding, `chat_template()` rendered, every tensor read under its Hugging Face
//! name, and, where the configuration matches the tensors, the model loaded on the CPU backend and
//! run for a few tokens.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use focusllm_core::gguf::{GgmlType, GgufFile, MetaValue};
use focusllm_core::{prefill, ChatMessage, Control, Model, WeightSource};
use focusllm_cpu::{CpuBackend, CpuOptions};
use libfuzzer_sys::fuzz_target;

const FIXTURES: [&[u8]; 3] = [
    include_bytes!("../seeds/gguf_parse/tiny-llama.gguf"),
    include_bytes!("../../tests/fixtures/gguf/tiny-mistral.gguf"),
    include_bytes!("../../tests/fixtures/gguf/spm-vocab.gguf"),
];

/// Keys the reader looks up outside the `{arch}.` namespace.
const GENERAL_KEYS: &[&str] = &[
    "general.architecture",
    "general.alignment",
    "general.name",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
    "tokenizer.ggml.add_space_prefix",
    "tokenizer.chat_template",
];

/// Keys the reader looks up under `{arch}.`.
const ARCH_KEYS: &[&str] = &[
    "context_length",
    "embedding_length",
    "feed_forward_length",
    "block_count",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.layer_norm_rms_epsilon",
    "rope.dimension_count",
    "rope.freq_base",
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scale_linear",
    "vocab_size",
];

#[derive(Arbitrary, Debug)]
enum Arch {
    Llama,
    Qwen2,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Key {
    General(u8),
    Arch(Arch, u8),
    Any(String),
}

impl Key {
    fn name(&self) -> String {
        match self {
            Key::General(i) => GENERAL_KEYS[*i as usize % GENERAL_KEYS.len()].to_string(),
            Key::Arch(arch, i) => {
                let arch = match arch {
                    Arch::Llama => "llama",
                    Arch::Qwen2 => "qwen2",
                    Arch::Other(s) => s.as_str(),
                };
                format!("{arch}.{}", ARCH_KEYS[*i as usize % ARCH_KEYS.len()])
            }
            Key::Any(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Scalar {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    /// A small count or id, as most keys take.
    Small(u8),
}

impl Scalar {
    fn value(self) -> MetaValue {
        match self {
            Scalar::U8(v) => MetaValue::U8(v),
            Scalar::I8(v) => MetaValue::I8(v),
            Scalar::U16(v) => MetaValue::U16(v),
            Scalar::I16(v) => MetaValue::I16(v),
            Scalar::U32(v) => MetaValue::U32(v),
            Scalar::I32(v) => MetaValue::I32(v),
            Scalar::F32(v) => MetaValue::F32(v),
            Scalar::Bool(v) => MetaValue::Bool(v),
            Scalar::String(v) => MetaValue::String(v),
            Scalar::U64(v) => MetaValue::U64(v),
            Scalar::I64(v) => MetaValue::I64(v),
            Scalar::F64(v) => MetaValue::F64(v),
            Scalar::Small(v) => MetaValue::U32(v.into()),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
    /// Arrays of arrays (the deepest nesting the reader accepts).
    Nested(Vec<Vec<u32>>),
}

impl Array {
    fn value(self) -> MetaValue {
        fn all<T>(items: Vec<T>, f: impl Fn(T) -> MetaValue) -> MetaValue {
            MetaValue::Array(items.into_iter().map(f).collect())
        }
        match self {
            Array::U8(v) => all(v, MetaValue::U8),
            Array::I8(v) => all(v, MetaValue::I8),
            Array::U16(v) => all(v, MetaValue::U16),
            Array::I16(v) => all(v, MetaValue::I16),
            Array::U32(v) => all(v, MetaValue::U32),
            Array::I32(v) => all(v, MetaValue::I32),
            Array::F32(v) => all(v, MetaValue::F32),
            Array::Bool(v) => all(v, MetaValue::Bool),
            Array::String(v) => all(v, MetaValue::String),
            Array::U64(v) => all(v, MetaValue::U64),
            Array::I64(v) => all(v, MetaValue::I64),
            Array::F64(v) => all(v, MetaValue::F64),
            Array::Nested(v) => all(v, |inner| all(inner, MetaValue::U32)),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Value {
    Scalar(Scalar),
    Array(Array),
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Sets a key (replacing its value, or adding it at the end).
    Set(Key, Value),
    /// Removes the pair at this index (modulo the count).
    Remove(u8),
    /// Drops the tensor at this index (modulo the count).
    DropTensor(u8),
}

#[derive(Arbitrary, Debug)]
struct Edits {
    version_2: bool,
    ops: Vec<Op>,
}

struct Tensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

struct Fixture {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<Tensor>,
}

fn fixtures() -> &'static [Fixture] {
    static PARSED: OnceLock<Vec<Fixture>> = OnceLock::new();
    PARSED.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|bytes| {
                let file = GgufFile::from_bytes(bytes.to_vec(), "fixture").expect("a GGUF fixture opens");
                let header = file.header();
                let tensors = header
                    .tensors
                    .iter()
                    .map(|t| Tensor {
                        name: t.name.clone(),
                        dims: t.dims.clone(),
                        ggml_type: t.ggml_type,
                        data: file.tensor_data(t).to_vec(),
                    })
                    .collect();
                Fixture { metadata: header.metadata.clone(), tensors }
            })
            .collect()
    })
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

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.extend(x.to_le_bytes()),
        MetaValue::U16(x) => out.extend(x.to_le_bytes()),
        MetaValue::I16(x) => out.extend(x.to_le_bytes()),
        MetaValue::U32(x) => out.extend(x.to_le_bytes()),
        MetaValue::I32(x) => out.extend(x.to_le_bytes()),
        MetaValue::F32(x) => out.extend(x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_string(out, s),
        MetaValue::Array(items) => {
            // Arrays are homogeneous; an empty one says strings.
            out.extend(items.first().map_or(8, type_id).to_le_bytes());
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

/// The alignment a reader takes from `general.alignment`: `Err` when the value is not one.
fn alignment(metadata: &[(String, MetaValue)]) -> Result<u64, ()> {
    match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => Ok(32),
        Some((_, v)) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= 1 << 20 => Ok(a),
            _ => Err(()),
        },
    }
}

fn pad(out: &mut Vec<u8>, alignment: u64) {
    while out.len() as u64 % alignment != 0 {
        out.push(0);
    }
}

/// A GGUF file: magic, version, counts, the pairs, the tensor infos, the aligned tensor data.
fn write_gguf(version: u32, metadata: &[(String, MetaValue)], tensors: &[&Tensor], alignment: u64) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(version.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_string(&mut out, key);
        out.extend(type_id(value).to_le_bytes());
        put_value(&mut out, value);
    }
    let mut offset = 0u64;
    for t in tensors {
        put_string(&mut out, &t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(t.ggml_type.0.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset = (offset + t.data.len() as u64).div_ceil(alignment) * alignment;
    }
    pad(&mut out, alignment);
    for t in tensors {
        out.extend(&t.data);
        pad(&mut out, alignment);
    }
    out
}

/// Loads the model on the CPU backend and runs three tokens and one decoding step.
fn run_model(file: &GgufFile, config: focusllm_core::ModelConfig) {
    let vocab = config.vocab_size as u32;
    let backend = CpuBackend::new(CpuOptions { threads: Some(1) }).expect("a one-thread CPU backend");
    let Ok(model) = Model::load(backend, config, file) else { return };
    let prompt = [0, 1 % vocab, 2 % vocab];
    let run = prefill(&model, &prompt, None, Control::default());
    if let Ok((mut decoder, logits)) = run {
        assert_eq!(logits.len(), vocab as usize);
        let _ = decoder.step(0);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(edits) = Edits::arbitrary_take_rest(Unstructured::new(rest)) else { return };
    let fixture = &fixtures()[if pick % 4 == 3 { 0 } else { usize::from(pick % 4) }];
    let mut metadata = if pick % 4 == 3 { Vec::new() } else { fixture.metadata.clone() };
    let mut tensors: Vec<&Tensor> = fixture.tensors.iter().collect();
    for op in edits.ops {
        match op {
            Op::Set(key, value) => {
                let key = key.name();
                let value = match value {
                    Value::Scalar(s) => s.value(),
                    Value::Array(a) => a.value(),
                };
                match metadata.iter_mut().find(|(k, _)| *k == key) {
                    Some(pair) => pair.1 = value,
                    None => metadata.push((key, value)),
                }
            }
            Op::Remove(i) if !metadata.is_empty() => {
                metadata.remove(i as usize % metadata.len());
            }
            Op::DropTensor(i) if !tensors.is_empty() => {
                tensors.remove(i as usize % tensors.len());
            }
            Op::Remove(_) | Op::DropTensor(_) => {}
        }
    }
    let version = if edits.version_2 { 2 } else { 3 };
    let Ok(align) = alignment(&metadata) else {
        let bytes = write_gguf(version, &metadata, &tensors, 32);
        assert!(GgufFile::from_bytes(bytes, "fuzz.gguf").is_err(), "an invalid general.alignment was accepted");
        return;
    };
    let bytes = write_gguf(version, &metadata, &tensors, align);
    let file = match GgufFile::from_bytes(bytes, "fuzz.gguf") {
        Ok(file) => file,
        Err(e) => panic!("a valid GGUF container was refused: {e}"),
    };
    let header = file.header();
    assert_eq!(header.metadata.len(), metadata.len());
    assert!(header.metadata.iter().zip(&metadata).all(|((a, _), (b, _))| a == b), "keys read back differ");
    assert_eq!(header.tensors.len(), tensors.len());

    if let Ok(tokenizer) = file.tokenizer() {
        if let Ok(ids) = tokenizer.encode("Hello world, 123 <|im_start|> ünïcödé\n") {
            let _ = tokenizer.decode(&ids);
        }
    }
    if let Some(Ok(template)) = file.chat_template() {
        let _ = template.render(&[ChatMessage::new("system", "be brief"), ChatMessage::new("user", "hi")], true);
    }
    let names: Vec<String> = header.tensors.iter().map(|t| t.name.clone()).collect();
    for name in names {
        if let Some(hf) = focusllm_core::gguf::names::gguf_to_hf(&name, file.architecture()) {
            let _ = file.tensor(&hf);
            let _ = file.shape(&hf);
        } else if let Some(info) = file.tensor_info(&name) {
            let _ = file.dequantize(info);
        }
    }
    if let Ok(config) = file.config() {
        let _ = config.rope_inv_freq();
        run_model(&file, config);
    }
});
