//! Building a [`Model`] from a checkpoint: every tensor's presence and shape is checked against the
//! configuration before anything is uploaded to the device.

use crate::backend::Backend;
use crate::check::Checked;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::gguf::ROPE_FREQ_FACTORS;
use crate::model::{Attention, CandidateLinear, CandidateProjections, Layer, Linear, Mlp, Model, RopeTable};
use crate::weights::{HostTensor, WeightSource};

/// Checks that every required tensor is present with the right shape.
pub(crate) fn check_checkpoint(config: &ModelConfig, source: &dyn WeightSource) -> Result<()> {
    for (name, expected) in config.tensor_shapes() {
        match source.shape(&name) {
            None => {
                return Err(Error::MissingTensor { name, location: source.location().to_path_buf() });
            }
            Some(found) if found != expected => {
                return Err(Error::TensorShape { name, expected, found });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The model's RoPE inverse frequencies: the configuration's, each divided by its factor where the
/// checkpoint carries [`ROPE_FREQ_FACTORS`] (Llama 3.x GGUF files, as llama.cpp applies them).
fn rope_inv_freq(config: &ModelConfig, source: &dyn WeightSource) -> Result<Vec<f32>> {
    let mut inv_freq = config.rope_inv_freq();
    if let Some(t) = source.tensor(ROPE_FREQ_FACTORS)? {
        let factors = t.to_f32();
        if t.len() != inv_freq.len() || factors.len() != inv_freq.len() {
            return Err(Error::TensorShape { name: t.name, expected: vec![inv_freq.len()], found: t.shape });
        }
        if let Some(bad) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
            return Err(Error::InvalidConfig {
                key: ROPE_FREQ_FACTORS.into(),
                value: bad.to_string(),
                reason: "RoPE frequency factors must be finite and positive".into(),
            });
        }
        for (f, factor) in inv_freq.iter_mut().zip(factors) {
            *f /= factor;
        }
    }
    Ok(inv_freq)
}

/// Uploads one checked tensor.
fn upload<B: Backend>(backend: &B, source: &dyn WeightSource, name: &str) -> Result<B::Weight> {
    Checked::new(backend).upload_weight(&required(source, name)?)
}

fn required<'s>(source: &'s dyn WeightSource, name: &str) -> Result<HostTensor<'s>> {
    source
        .tensor(name)?
        .ok_or_else(|| Error::MissingTensor { name: name.to_string(), location: source.location().to_path_buf() })
}

/// Uploads an RMSNorm weight, as `1 + w` where the configuration's norms scale so (Gemma).
fn upload_norm<B: Backend>(
    backend: &B,
    config: &ModelConfig,
    source: &dyn WeightSource,
    name: &str,
) -> Result<B::Weight> {
    let tensor = required(source, name)?;
    if !config.norm_unit_offset {
        return Checked::new(backend).upload_weight(&tensor);
    }
    let shifted: Vec<f32> = tensor.to_f32().iter().map(|w| 1.0 + w).collect();
    Checked::new(backend).upload_weight(&HostTensor::from_f32(name, tensor.shape, &shifted))
}

fn linear<B: Backend>(backend: &B, source: &dyn WeightSource, prefix: &str, bias: bool) -> Result<Linear<B>> {
    Ok(Linear {
        weight: upload(backend, source, &format!("{prefix}.weight"))?,
        bias: if bias { Some(upload(backend, source, &format!("{prefix}.bias"))?) } else { None },
    })
}

impl<B: Backend> Model<B> {
    /// Checks a checkpoint against `config` and uploads its weights to `backend`.
    pub fn load(backend: B, config: ModelConfig, source: &dyn WeightSource) -> Result<Self> {
        config.validate()?;
        check_checkpoint(&config, source)?;
        let b = &backend;
        let norm = |name: &str| upload_norm(b, &config, source, name);
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let p = format!("model.layers.{l}");
            // Sandwich norms: the MLP's input norm is `pre_feedforward_layernorm`, and
            // `post_attention_layernorm` follows the attention (see `ModelConfig::layer_norm_names`).
            let (ffn_norm, post_attention_norm, post_ffn_norm) = if config.sandwich_norms {
                (
                    norm(&format!("{p}.pre_feedforward_layernorm.weight"))?,
                    Some(norm(&format!("{p}.post_attention_layernorm.weight"))?),
                    Some(norm(&format!("{p}.post_feedforward_layernorm.weight"))?),
                )
            } else {
                (norm(&format!("{p}.post_attention_layernorm.weight"))?, None, None)
            };
            layers.push(Layer {
                input_norm: norm(&format!("{p}.input_layernorm.weight"))?,
                ffn_norm,
                post_attention_norm,
                post_ffn_norm,
                attn: Attention {
                    q: linear(b, source, &format!("{p}.self_attn.q_proj"), config.qkv_bias)?,
                    k: linear(b, source, &format!("{p}.self_attn.k_proj"), config.qkv_bias)?,
                    v: linear(b, source, &format!("{p}.self_attn.v_proj"), config.qkv_bias)?,
                    o: linear(b, source, &format!("{p}.self_attn.o_proj"), config.o_bias)?,
                    q_norm: (config.qk_norm).then(|| norm(&format!("{p}.self_attn.q_norm.weight"))).transpose()?,
                    k_norm: (config.qk_norm).then(|| norm(&format!("{p}.self_attn.k_norm.weight"))).transpose()?,
                },
                mlp: Mlp {
                    gate: linear(b, source, &format!("{p}.mlp.gate_proj"), false)?,
                    up: linear(b, source, &format!("{p}.mlp.up_proj"), false)?,
                    down: linear(b, source, &format!("{p}.mlp.down_proj"), false)?,
                },
                candidate: CandidateProjections::default(),
            });
        }
        let embed = upload(b, source, "model.embed_tokens.weight")?;
        let norm = norm("model.norm.weight")?;
        let lm_head = if config.tie_word_embeddings { None } else { Some(upload(b, source, "lm_head.weight")?) };
        let rope = RopeTable::new(rope_inv_freq(&config, source)?);
        let rope_local = config.rope_local_inv_freq().map(RopeTable::new);
        let down = format!("model.layers.{}.mlp.down_proj.weight", config.num_layers - 1);
        let mut fingerprint = Fingerprint::new();
        for name in ["model.embed_tokens.weight", "model.norm.weight", &down] {
            fingerprint.tensor(source, name)?;
        }
        let weights_fingerprint = fingerprint.finish();
        let mut model = Model {
            backend,
            config,
            embed,
            layers,
            norm,
            lm_head,
            rope,
            rope_local,
            weights_fingerprint,
            candidates_fingerprint: None,
            chunk_store: super::ChunkStore::new(),
        };
        // A trained FocusLLM checkpoint ships its candidate projections beside the base weights.
        model.load_candidate_projections(source)?;
        Ok(model)
    }

    /// Loads candidate projections (`beacon_{q,k,v,o}_proj`, optionally `mlp.beacon_{up,down}_proj`)
    /// from `source` where present, each as a full `.weight` or as a low-rank delta `.lora_a`
    /// `[rank, in]` plus `.lora_b` `[out, rank]` over the ordinary projection; absent ones stay
    /// copies of the ordinary projections (no memory is duplicated for them). Returns how many
    /// projections were loaded.
    pub fn load_candidate_projections(&mut self, source: &dyn WeightSource) -> Result<usize> {
        let config = &self.config;
        let (h, i, qd, kvd) = (config.hidden_size, config.intermediate_size, config.q_dim(), config.kv_dim());
        // (slot, tensor prefix, expected weight shape, has bias)
        let mut loaded = 0;
        let mut fingerprint = Fingerprint::new();
        let mut new_layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let p = format!("model.layers.{l}");
            let specs = [
                (format!("{p}.self_attn.beacon_q_proj"), [qd, h], config.qkv_bias),
                (format!("{p}.self_attn.beacon_k_proj"), [kvd, h], config.qkv_bias),
                (format!("{p}.self_attn.beacon_v_proj"), [kvd, h], config.qkv_bias),
                (format!("{p}.self_attn.beacon_o_proj"), [h, qd], config.o_bias),
                (format!("{p}.mlp.beacon_up_proj"), [i, h], false),
                (format!("{p}.mlp.beacon_down_proj"), [h, i], false),
            ];
            let mut slots: [Option<CandidateLinear<B>>; 6] = Default::default();
            for (slot, (prefix, shape, bias)) in slots.iter_mut().zip(specs) {
                *slot = candidate_linear(&self.backend, source, &prefix, shape, bias)?;
                if slot.is_some() {
                    loaded += 1;
                    for part in ["weight", "bias", "lora_a", "lora_b"] {
                        fingerprint.tensor(source, &format!("{prefix}.{part}"))?;
                    }
                }
            }
            let [q, k, v, o, up, down] = slots;
            new_layers.push(CandidateProjections { q, k, v, o, up, down });
        }
        for (layer, candidate) in self.layers.iter_mut().zip(new_layers) {
            layer.candidate = candidate;
        }
        self.candidates_fingerprint = (loaded > 0).then(|| fingerprint.finish());
        Ok(loaded)
    }
}

/// One candidate projection from `source`: a full matrix `{prefix}.weight` (`shape` = `[out, in]`),
/// a low-rank delta `{prefix}.lora_a` / `{prefix}.lora_b`, or `None` when neither is there.
fn candidate_linear<B: Backend>(
    backend: &B,
    source: &dyn WeightSource,
    prefix: &str,
    shape: [usize; 2],
    bias: bool,
) -> Result<Option<CandidateLinear<B>>> {
    let [out, inp] = shape;
    let weight = format!("{prefix}.weight");
    let (a_name, b_name) = (format!("{prefix}.lora_a"), format!("{prefix}.lora_b"));
    let missing = |name: String| Error::MissingTensor { name, location: source.location().to_path_buf() };
    match (source.shape(&weight), source.shape(&a_name), source.shape(&b_name)) {
        (None, None, None) => Ok(None),
        (Some(found), None, None) => {
            if found != shape {
                return Err(Error::TensorShape { name: weight, expected: shape.to_vec(), found });
            }
            let has_bias = bias && source.shape(&format!("{prefix}.bias")).is_some();
            Ok(Some(CandidateLinear::Full(linear(backend, source, prefix, has_bias)?)))
        }
        (None, Some(a), Some(b)) => {
            let rank = a.first().copied().unwrap_or(0).max(1);
            if a != [rank, inp] {
                return Err(Error::TensorShape { name: a_name, expected: vec![rank, inp], found: a });
            }
            if b != [out, rank] {
                return Err(Error::TensorShape { name: b_name, expected: vec![out, rank], found: b });
            }
            Ok(Some(CandidateLinear::LowRank {
                a: upload(backend, source, &a_name)?,
                b: upload(backend, source, &b_name)?,
            }))
        }
        (None, Some(_), None) => Err(missing(b_name)),
        (None, None, Some(_)) => Err(missing(a_name)),
        (Some(_), _, _) => Err(Error::InvalidConfig {
            key: weight,
            value: "a full matrix beside lora_a/lora_b".to_string(),
            reason: "a candidate projection is given either in full or as a low-rank delta".to_string(),
        }),
    }
}

/// How many leading bytes of a tensor go into a fingerprint.
const FINGERPRINT_BYTES: usize = 1 << 16;

/// FNV-1a (64 bits) over tensors' names, dtypes, shapes and leading bytes: stable across
/// platforms and Rust versions, as a fingerprint saved in a file must be.
pub(crate) struct Fingerprint(u64);

impl Fingerprint {
    pub(crate) fn new() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Adds the tensor `name` of `source`, if it has one.
    fn tensor(&mut self, source: &dyn WeightSource, name: &str) -> Result<()> {
        let Some(t) = source.tensor(name)? else { return Ok(()) };
        self.bytes(name.as_bytes());
        self.bytes(format!("{:?}{:?}", t.dtype, t.shape).as_bytes());
        self.bytes(&t.bytes[..t.bytes.len().min(FINGERPRINT_BYTES)]);
        Ok(())
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}
