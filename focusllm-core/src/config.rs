//! `ModelConfig`: the hyper-parameters of a decoder of a supported architecture, read from a Hugging
//! Face `config.json` (or built from GGUF metadata).

use std::path::Path;

use serde_json::{json, Map, Number, Value};

use crate::error::{Error, Result};

/// The architecture families this crate runs. The model is written once; what tells them apart is
/// the rest of the configuration (biases, norms, activation, per-layer attention), which each
/// family's parser sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// LLaMA 2/3, SmolLM2 and their relatives.
    Llama,
    /// Mistral-style models (the sliding window is not needed and is ignored).
    Mistral,
    /// Qwen2-style models: biases on the q/k/v projections.
    Qwen2,
    /// Qwen3-style models: each query and key head RMS-normalised before RoPE, no biases.
    Qwen3,
    /// Gemma 3 text models: GeGLU MLP, scaled embeddings, norms around both sublayers scaling by
    /// `1 + w`, q/k norms, sliding-window layers with their own RoPE base between global ones.
    Gemma3,
}

/// The activation of the gated MLP, `act(gate) * up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU): LLaMA, Mistral, Qwen.
    Silu,
    /// GELU, tanh approximation (GeGLU): Gemma.
    GeluTanh,
}

/// Which keys the attention of one layer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// Every earlier position (causal).
    Full,
    /// The last [`ModelConfig::sliding_window`] positions, the query's own included, with the
    /// local RoPE base ([`ModelConfig::rope_local_theta`]).
    Sliding,
}

/// How rotary position frequencies are rescaled for long contexts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (all frequencies scaled alike).
    Linear {
        /// The divisor.
        factor: f32,
    },
    /// LLaMA 3.1's wavelength-dependent rescaling.
    Llama3 {
        /// Scale applied to the low frequencies.
        factor: f32,
        /// Wavelength bound (as a fraction of the original context) below which frequencies are scaled.
        low_freq_factor: f32,
        /// Wavelength bound above which frequencies are kept.
        high_freq_factor: f32,
        /// The context length the model was trained with.
        original_max_position_embeddings: usize,
    },
}

/// The hyper-parameters of a decoder of one of the [`Architecture`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which family the checkpoint belongs to.
    pub architecture: Architecture,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (GQA when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Base of the rotary position frequencies.
    pub rope_theta: f32,
    /// Rescaling of the rotary frequencies.
    pub rope_scaling: RopeScaling,
    /// Epsilon of the RMS normalisations.
    pub rms_norm_eps: f32,
    /// Vocabulary size (rows of the embedding table).
    pub vocab_size: usize,
    /// Whether the output head reuses the embedding table.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry a bias.
    pub qkv_bias: bool,
    /// Whether the output projection carries a bias.
    pub o_bias: bool,
    /// Whether each query and key head is RMS-normalised with a weight of its own (`head_dim`
    /// values, `self_attn.q_norm` / `self_attn.k_norm`) before RoPE, as Qwen3 does.
    pub qk_norm: bool,
    /// Beginning-of-sequence token id, if the model has one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids (generation stops at any of them).
    pub eos_token_ids: Vec<u32>,
    /// The model's native context window.
    pub max_position_embeddings: usize,
    /// The gated MLP's activation.
    pub hidden_act: Activation,
    /// Whether token embeddings are multiplied by `sqrt(hidden_size)` (Gemma).
    pub scale_embeddings: bool,
    /// Whether the attention output and the MLP output are each RMS-normalised before their
    /// residual add (Gemma's `post_attention_layernorm` / `post_feedforward_layernorm`); the MLP's
    /// input norm is then `pre_feedforward_layernorm`.
    pub sandwich_norms: bool,
    /// Whether every RMSNorm scales by `1 + w` rather than `w` (Gemma, as stored in Hugging Face
    /// checkpoints; the model adds the 1 at load).
    pub norm_unit_offset: bool,
    /// Attention scores are scaled by `1 / sqrt(query_pre_attn_scalar)`; `None` means `head_dim`.
    pub query_pre_attn_scalar: Option<f32>,
    /// Positions a [`LayerType::Sliding`] layer attends to (the query's own included).
    pub sliding_window: Option<usize>,
    /// The attention of each layer (`num_layers` entries).
    pub layer_types: Vec<LayerType>,
    /// RoPE base of the sliding layers (unscaled); `None` when the model has none.
    pub rope_local_theta: Option<f32>,
}

/// The widest attention head accepted: far past any model's (256 is the widest common one), and
/// small enough that the tables sized by it (RoPE frequencies) cannot exhaust memory.
const MAX_HEAD_DIM: usize = 4096;

/// The most layers accepted: far past any model's, and few enough that the per-layer tensor names
/// checked at load cannot exhaust memory.
const MAX_LAYERS: usize = 4096;

impl ModelConfig {
    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parses the text of a `config.json`; `path` is used only in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::json(path, e))?;
        let obj = value.as_object().ok_or_else(|| Error::InvalidConfig {
            key: path.display().to_string(),
            value: short(&value),
            reason: "config.json must be a JSON object".into(),
        })?;
        let keys = Keys { obj, path };

        let model_type = keys.string("model_type")?;
        let architecture = match model_type.as_str() {
            "llama" => Architecture::Llama,
            "mistral" => Architecture::Mistral,
            "qwen2" => Architecture::Qwen2,
            "qwen3" => Architecture::Qwen3,
            "gemma3_text" => Architecture::Gemma3,
            _ => {
                return Err(Error::UnsupportedModelType { path: path.to_path_buf(), model_type });
            }
        };
        let gemma = architecture == Architecture::Gemma3;
        let act_key = if gemma { "hidden_activation" } else { "hidden_act" };
        let hidden_act = match keys.opt_string(act_key)?.as_deref() {
            None if gemma => Activation::GeluTanh,
            None | Some("silu") => Activation::Silu,
            Some("gelu_pytorch_tanh") => Activation::GeluTanh,
            Some(other) => {
                return Err(invalid(act_key, &other, "supported: silu (SwiGLU), gelu_pytorch_tanh (GeGLU)"));
            }
        };
        for key in ["final_logit_softcapping", "attn_logit_softcapping"] {
            if let Some(v) = keys.get(key) {
                return Err(invalid(key, &short(v), "logit soft-capping is not supported"));
            }
        }

        let hidden_size = keys.usize("hidden_size")?;
        let num_layers = keys.usize("num_hidden_layers")?;
        check_layer_count(num_layers)?;
        let num_heads = keys.usize("num_attention_heads")?;
        let num_kv_heads = keys.opt_usize("num_key_value_heads")?.unwrap_or(num_heads);
        let head_dim = match keys.opt_usize("head_dim")? {
            Some(d) => d,
            None if num_heads > 0 => hidden_size / num_heads,
            None => 0,
        };
        let attention_bias = keys.opt_bool("attention_bias")?.unwrap_or(false);
        let (qkv_bias, o_bias) = match architecture {
            Architecture::Qwen2 => (true, false),
            _ => (attention_bias, attention_bias),
        };
        // Mistral's sliding window is not needed within its context and is ignored.
        let (sliding_window, layer_types, rope_local_theta) =
            if gemma { keys.gemma_layers(num_layers)? } else { (None, vec![LayerType::Full; num_layers], None) };
        let config = ModelConfig {
            architecture,
            hidden_size,
            intermediate_size: keys.usize("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rope_theta: keys.rope_theta()?,
            rope_scaling: keys.rope_scaling()?,
            rms_norm_eps: keys.f32("rms_norm_eps")?,
            vocab_size: keys.usize("vocab_size")?,
            tie_word_embeddings: keys.opt_bool("tie_word_embeddings")?.unwrap_or(gemma),
            qkv_bias,
            o_bias,
            qk_norm: matches!(architecture, Architecture::Qwen3 | Architecture::Gemma3),
            bos_token_id: keys.opt_ids("bos_token_id")?.and_then(|ids| ids.first().copied()),
            eos_token_ids: keys.opt_ids("eos_token_id")?.unwrap_or_default(),
            max_position_embeddings: keys.usize("max_position_embeddings")?,
            hidden_act,
            scale_embeddings: gemma,
            sandwich_norms: gemma,
            norm_unit_offset: gemma,
            query_pre_attn_scalar: if gemma { keys.opt_f32("query_pre_attn_scalar")? } else { None },
            sliding_window,
            layer_types,
            rope_local_theta,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values are mutually consistent (non-zero sizes, heads divide evenly, even head width).
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(invalid(key, &v, "must be positive"));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(invalid("num_key_value_heads", &self.num_kv_heads, "must divide num_attention_heads"));
        }
        // Every weight matrix's size in f32 bytes must be a number: a fuzzed file with billions of
        // heads overflowed the widths computed from it.
        let h = self.hidden_size;
        let matrices = [
            ("num_attention_heads", self.num_heads, self.num_heads.checked_mul(self.head_dim)),
            ("num_key_value_heads", self.num_kv_heads, self.num_kv_heads.checked_mul(self.head_dim)),
            ("intermediate_size", self.intermediate_size, Some(self.intermediate_size)),
            ("vocab_size", self.vocab_size, Some(self.vocab_size)),
        ];
        for (key, v, rows) in matrices {
            if rows.and_then(|r| r.checked_mul(h)).and_then(|n| n.checked_mul(4)).is_none() {
                return Err(invalid(key, &v, "its weight matrix would have more bytes than memory can address"));
            }
        }
        check_layer_count(self.num_layers)?;
        let factors = match self.rope_scaling {
            RopeScaling::Linear { factor } => vec![factor],
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, .. } => {
                vec![factor, low_freq_factor, high_freq_factor]
            }
            _ => Vec::new(),
        };
        if let Some(f) = factors.iter().find(|f| !f.is_finite() || **f <= 0.0) {
            return Err(invalid("rope_scaling", f, "factors must be finite positive numbers"));
        }
        if self.head_dim > MAX_HEAD_DIM {
            return Err(invalid("head_dim", &self.head_dim, "wider than any model's heads (at most 4096)"));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(invalid("head_dim", &self.head_dim, "rotary embedding needs an even width"));
        }
        if !self.rope_theta.is_finite() || self.rope_theta <= 0.0 {
            return Err(invalid("rope_theta", &self.rope_theta, "must be a finite positive number"));
        }
        if !self.rms_norm_eps.is_finite() || self.rms_norm_eps < 0.0 {
            return Err(invalid("rms_norm_eps", &self.rms_norm_eps, "must be a finite non-negative number"));
        }
        if let Some(&id) = self.eos_token_ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(invalid("eos_token_id", &id, "outside the vocabulary"));
        }
        if self.layer_types.len() != self.num_layers {
            return Err(invalid("layer_types", &self.layer_types.len(), "must give one type per layer"));
        }
        if self.layer_types.contains(&LayerType::Sliding) && self.sliding_window.is_none_or(|w| w == 0) {
            return Err(invalid(
                "sliding_window",
                &format!("{:?}", self.sliding_window),
                "sliding layers need a positive window",
            ));
        }
        for (key, v) in
            [("query_pre_attn_scalar", self.query_pre_attn_scalar), ("rope_local_base_freq", self.rope_local_theta)]
        {
            if let Some(v) = v.filter(|v| !v.is_finite() || *v <= 0.0) {
                return Err(invalid(key, &v, "must be a finite positive number"));
            }
        }
        Ok(())
    }

    /// This configuration as a Hugging Face `config.json` object, read back by
    /// [`ModelConfig::from_json_str`] as the same configuration (for writing a model directory, e.g.
    /// from a GGUF file's metadata). LLaMA and Mistral biases are all or none (`attention_bias`), as
    /// in transformers.
    pub fn to_hf_json(&self) -> Value {
        let (model_type, class) = match self.architecture {
            Architecture::Llama => ("llama", "LlamaForCausalLM"),
            Architecture::Mistral => ("mistral", "MistralForCausalLM"),
            Architecture::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
            Architecture::Qwen3 => ("qwen3", "Qwen3ForCausalLM"),
            Architecture::Gemma3 => ("gemma3_text", "Gemma3ForCausalLM"),
        };
        let rope_scaling = match self.rope_scaling {
            RopeScaling::None => Value::Null,
            RopeScaling::Linear { factor } => json!({ "rope_type": "linear", "factor": number(factor) }),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                json!({
                    "rope_type": "llama3",
                    "factor": number(factor),
                    "low_freq_factor": number(low_freq_factor),
                    "high_freq_factor": number(high_freq_factor),
                    "original_max_position_embeddings": original_max_position_embeddings,
                })
            }
        };
        let act = match self.hidden_act {
            Activation::Silu => "silu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
        };
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        let mut obj = json!({
            "architectures": [class],
            "model_type": model_type,
            "hidden_act": act,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rope_theta": number(self.rope_theta),
            "rope_scaling": rope_scaling,
            "rms_norm_eps": number(self.rms_norm_eps),
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "max_position_embeddings": self.max_position_embeddings,
        });
        if self.architecture != Architecture::Qwen2 {
            obj["attention_bias"] = json!(self.qkv_bias || self.o_bias);
        }
        if self.architecture == Architecture::Gemma3 {
            if let Some(o) = obj.as_object_mut() {
                o.remove("hidden_act");
            }
            obj["hidden_activation"] = json!(act);
            obj["query_pre_attn_scalar"] = self.query_pre_attn_scalar.map_or(Value::Null, number);
            obj["sliding_window"] = json!(self.sliding_window);
            obj["rope_local_base_freq"] = self.rope_local_theta.map_or(Value::Null, number);
            let types: Vec<&str> = self
                .layer_types
                .iter()
                .map(|t| match t {
                    LayerType::Full => "full_attention",
                    LayerType::Sliding => "sliding_attention",
                })
                .collect();
            obj["layer_types"] = json!(types);
        }
        obj
    }

    /// Every tensor a checkpoint of this configuration holds (Hugging Face names), with its shape.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (qd, kvd) = (self.q_dim(), self.kv_dim());
        let mut out =
            vec![("model.embed_tokens.weight".to_string(), vec![v, h]), ("model.norm.weight".to_string(), vec![h])];
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        for l in 0..self.num_layers {
            let mut add = |suffix: &str, shape: Vec<usize>| out.push((format!("model.layers.{l}.{suffix}"), shape));
            for norm in self.layer_norm_names() {
                add(norm, vec![h]);
            }
            add("self_attn.q_proj.weight", vec![qd, h]);
            add("self_attn.k_proj.weight", vec![kvd, h]);
            add("self_attn.v_proj.weight", vec![kvd, h]);
            add("self_attn.o_proj.weight", vec![h, qd]);
            if self.qk_norm {
                add("self_attn.q_norm.weight", vec![self.head_dim]);
                add("self_attn.k_norm.weight", vec![self.head_dim]);
            }
            if self.qkv_bias {
                add("self_attn.q_proj.bias", vec![qd]);
                add("self_attn.k_proj.bias", vec![kvd]);
                add("self_attn.v_proj.bias", vec![kvd]);
            }
            if self.o_bias {
                add("self_attn.o_proj.bias", vec![h]);
            }
            add("mlp.gate_proj.weight", vec![i, h]);
            add("mlp.up_proj.weight", vec![i, h]);
            add("mlp.down_proj.weight", vec![h, i]);
        }
        out
    }

    /// The RMSNorm weights of every layer (Hugging Face names after `model.layers.N.`): before
    /// attention, before the MLP, and with [`ModelConfig::sandwich_norms`] after each.
    pub fn layer_norm_names(&self) -> &'static [&'static str] {
        if self.sandwich_norms {
            &[
                "input_layernorm.weight",
                "pre_feedforward_layernorm.weight",
                "post_attention_layernorm.weight",
                "post_feedforward_layernorm.weight",
            ]
        } else {
            &["input_layernorm.weight", "post_attention_layernorm.weight"]
        }
    }

    /// How many keys layer `l` sees behind each query, its own included; `None` for all of them.
    pub fn layer_window(&self, l: usize) -> Option<usize> {
        match self.layer_types.get(l) {
            Some(LayerType::Sliding) => self.sliding_window,
            _ => None,
        }
    }

    /// The scale of attention scores, `1 / sqrt(query_pre_attn_scalar or head_dim)`.
    pub fn attention_scale(&self) -> f32 {
        1.0 / self.query_pre_attn_scalar.unwrap_or(self.head_dim as f32).sqrt()
    }

    /// Width of the concatenated query heads.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Width of the concatenated key (or value) heads.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// The rotary inverse frequencies (`head_dim / 2` of them), rescaled as configured.
    ///
    /// Computed in f32 as Hugging Face transformers does, so positions agree to the last bit.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let mut inv = plain_inv_freq(self.rope_theta, self.head_dim);
        match self.rope_scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => inv.iter_mut().for_each(|f| *f /= factor),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let old = original_max_position_embeddings as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                for f in inv.iter_mut() {
                    let wavelen = 2.0 * std::f32::consts::PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
        }
        inv
    }

    /// The sliding layers' inverse frequencies (base [`ModelConfig::rope_local_theta`], never
    /// rescaled), `None` when the model has no local base.
    pub fn rope_local_inv_freq(&self) -> Option<Vec<f32>> {
        self.rope_local_theta.map(|theta| plain_inv_freq(theta, self.head_dim))
    }
}

/// `1 / theta^(2i / dim)` for `i < dim / 2`, the exponent in f32 as transformers computes it.
fn plain_inv_freq(theta: f32, dim: usize) -> Vec<f32> {
    let base = theta as f64;
    (0..dim / 2)
        .map(|i| {
            let exponent = ((2 * i) as f32 / dim as f32) as f64;
            (1.0 / base.powf(exponent)) as f32
        })
        .collect()
}

fn invalid(key: &str, value: &dyn std::fmt::Display, reason: &str) -> Error {
    Error::InvalidConfig { key: key.to_string(), value: value.to_string(), reason: reason.to_string() }
}

/// An f32 as the JSON number of its shortest decimal form (1e-5, not 9.999999747378752e-6).
fn number(x: f32) -> Value {
    x.to_string().parse::<f64>().ok().and_then(Number::from_f64).map_or(Value::Null, Value::Number)
}

fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 60 {
        s.truncate(s.char_indices().take_while(|(i, _)| *i < 60).last().map_or(0, |(i, c)| i + c.len_utf8()));
        s.push('…');
    }
    s
}

/// Typed access to the keys of a config object, with errors naming the key.
struct Keys<'a> {
    obj: &'a Map<String, Value>,
    path: &'a Path,
}

impl Keys<'_> {
    fn get(&self, key: &'static str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn require(&self, key: &'static str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::MissingConfigKey { path: self.path.to_path_buf(), key })
    }

    fn string(&self, key: &'static str) -> Result<String> {
        let v = self.require(key)?;
        v.as_str().map(str::to_string).ok_or_else(|| invalid(key, &short(v), "expected a string"))
    }

    fn opt_string(&self, key: &'static str) -> Result<Option<String>> {
        self.get(key).map(|_| self.string(key)).transpose()
    }

    fn usize(&self, key: &'static str) -> Result<usize> {
        let v = self.require(key)?;
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| invalid(key, &short(v), "expected a non-negative integer"))
    }

    fn opt_usize(&self, key: &'static str) -> Result<Option<usize>> {
        self.get(key).map(|_| self.usize(key)).transpose()
    }

    fn f32(&self, key: &'static str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64().map(|x| x as f32).ok_or_else(|| invalid(key, &short(v), "expected a number"))
    }

    fn opt_f32(&self, key: &'static str) -> Result<Option<f32>> {
        self.get(key).map(|_| self.f32(key)).transpose()
    }

    fn opt_bool(&self, key: &'static str) -> Result<Option<bool>> {
        self.get(key).map(|v| v.as_bool().ok_or_else(|| invalid(key, &short(v), "expected true or false"))).transpose()
    }

    /// A token id given as an integer or a list of integers.
    fn opt_ids(&self, key: &'static str) -> Result<Option<Vec<u32>>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let one = |x: &Value| x.as_u64().and_then(|n| u32::try_from(n).ok());
        let ids = match v {
            Value::Array(items) => items.iter().map(one).collect::<Option<Vec<_>>>(),
            other => one(other).map(|id| vec![id]),
        };
        ids.map(Some).ok_or_else(|| invalid(key, &short(v), "expected a token id or a list of them"))
    }

    /// Gemma 3's per-layer attention: the window, the type of every layer (`layer_types`, else
    /// every `sliding_window_pattern`-th layer global, 6 by default), the local RoPE base.
    fn gemma_layers(&self, num_layers: usize) -> Result<(Option<usize>, Vec<LayerType>, Option<f32>)> {
        let window = self.opt_usize("sliding_window")?;
        let types = match self.get("layer_types") {
            Some(v) => {
                let items = v.as_array().ok_or_else(|| invalid("layer_types", &short(v), "expected a list"))?;
                items
                    .iter()
                    .map(|t| match t.as_str() {
                        Some("full_attention") => Ok(LayerType::Full),
                        Some("sliding_attention") => Ok(LayerType::Sliding),
                        _ => Err(invalid("layer_types", &short(t), "supported: full_attention, sliding_attention")),
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            None => {
                let pattern = self.opt_usize("sliding_window_pattern")?.unwrap_or(6);
                sliding_pattern(num_layers, pattern)
            }
        };
        let local = self.opt_f32("rope_local_base_freq")?.or(Some(10_000.0));
        Ok((window, types, local))
    }

    /// The `rope_parameters` object (transformers 5) if present, else `rope_scaling` (4.x).
    fn rope_object(&self) -> Result<Option<(&'static str, &Map<String, Value>)>> {
        for key in ["rope_parameters", "rope_scaling"] {
            if let Some(v) = self.get(key) {
                let obj = v.as_object().ok_or_else(|| invalid(key, &short(v), "expected an object"))?;
                return Ok(Some((key, obj)));
            }
        }
        Ok(None)
    }

    fn rope_theta(&self) -> Result<f32> {
        if let Some((_, obj)) = self.rope_object()? {
            if let Some(theta) = (Keys { obj, path: self.path }).opt_f32("rope_theta")? {
                return Ok(theta);
            }
        }
        Ok(self.opt_f32("rope_theta")?.unwrap_or(10_000.0))
    }

    fn rope_scaling(&self) -> Result<RopeScaling> {
        let Some((_, obj)) = self.rope_object()? else { return Ok(RopeScaling::None) };
        let sub = Keys { obj, path: self.path };
        let kind = match (sub.opt_string("rope_type")?, sub.opt_string("type")?) {
            (Some(kind), _) | (None, Some(kind)) => kind,
            (None, None) => "default".to_string(),
        };
        match kind.as_str() {
            "default" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear { factor: positive_f32(&sub, "factor")? }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: positive_f32(&sub, "factor")?,
                low_freq_factor: positive_f32(&sub, "low_freq_factor")?,
                high_freq_factor: positive_f32(&sub, "high_freq_factor")?,
                original_max_position_embeddings: sub.usize("original_max_position_embeddings")?,
            }),
            other => Err(invalid("rope_scaling.rope_type", &other, "supported: default, linear, llama3")),
        }
    }
}

/// Refuses a layer count no model has, before anything sized by it (per-layer lists, tensor names)
/// is allocated.
pub(crate) fn check_layer_count(num_layers: usize) -> Result<()> {
    if num_layers > MAX_LAYERS {
        return Err(invalid("num_hidden_layers", &num_layers, "deeper than any model (at most 4096 layers)"));
    }
    Ok(())
}

/// Every `pattern`-th layer global, the others sliding (`pattern` 0: all sliding), as Gemma 3
/// and llama.cpp lay them out.
pub(crate) fn sliding_pattern(num_layers: usize, pattern: usize) -> Vec<LayerType> {
    (0..num_layers)
        .map(|l| if pattern == 0 || l % pattern < pattern - 1 { LayerType::Sliding } else { LayerType::Full })
        .collect()
}

fn positive_f32(keys: &Keys<'_>, key: &'static str) -> Result<f32> {
    let v = keys.f32(key)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(invalid(key, &v, "must be positive"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelConfig> {
        ModelConfig::from_json_str(text, Path::new("config.json"))
    }

    const BASE: &str = r#"{"model_type":"llama","hidden_size":64,"intermediate_size":128,
        "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-5,
        "vocab_size":100,"max_position_embeddings":256,"eos_token_id":[2,3]}"#;

    #[test]
    fn parses_defaults_and_lists() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.eos_token_ids, vec![2, 3]);
        assert_eq!(c.rope_scaling, RopeScaling::None);
        assert!(!c.qkv_bias);
    }

    #[test]
    fn missing_key_is_named() {
        let text = BASE.replace(r#""vocab_size":100,"#, "");
        match parse(&text) {
            Err(Error::MissingConfigKey { key, .. }) => assert_eq!(key, "vocab_size"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn hf_json_round_trips() {
        let mut configs = vec![parse(BASE).unwrap()];
        let mut c = parse(BASE).unwrap();
        c.architecture = Architecture::Qwen2;
        c.qkv_bias = true;
        c.tie_word_embeddings = true;
        c.bos_token_id = Some(1);
        c.eos_token_ids = vec![2];
        c.rope_scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        configs.push(c.clone());
        c.architecture = Architecture::Mistral;
        c.o_bias = true;
        c.rope_scaling = RopeScaling::Linear { factor: 2.5 };
        c.rms_norm_eps = 1e-6;
        c.rope_theta = 1e6;
        configs.push(c.clone());
        c.architecture = Architecture::Qwen3;
        (c.qkv_bias, c.o_bias, c.qk_norm) = (false, false, true);
        configs.push(c);
        configs.push(parse(GEMMA).unwrap());
        for c in configs {
            let text = c.to_hf_json().to_string();
            assert_eq!(parse(&text).unwrap(), c, "{text}");
        }
        // Shortest decimal forms: 1e-5, not the f32's 9.999999747378752e-6.
        assert_eq!(parse(BASE).unwrap().to_hf_json()["rms_norm_eps"].as_f64(), Some(1e-5));
    }

    #[test]
    fn qwen3_normalises_query_and_key_heads() {
        let c = parse(&BASE.replace(r#""model_type":"llama""#, r#""model_type":"qwen3""#)).unwrap();
        assert_eq!(c.architecture, Architecture::Qwen3);
        assert!(c.qk_norm && !c.qkv_bias && !c.o_bias);
        let shapes = c.tensor_shapes();
        assert!(shapes.contains(&("model.layers.1.self_attn.q_norm.weight".to_string(), vec![16])));
        assert!(shapes.contains(&("model.layers.0.self_attn.k_norm.weight".to_string(), vec![16])));
        assert!(!parse(BASE).unwrap().qk_norm);
    }

    #[test]
    fn tensor_list_follows_the_config() {
        let c = parse(BASE).unwrap();
        let shapes = c.tensor_shapes();
        assert_eq!(shapes.len(), 3 + 2 * 9);
        assert!(shapes.contains(&("model.layers.1.self_attn.k_proj.weight".to_string(), vec![32, 64])));
        assert!(shapes.contains(&("lm_head.weight".to_string(), vec![100, 64])));
    }

    #[test]
    fn unknown_type_and_bad_heads() {
        assert!(matches!(parse(&BASE.replace("llama", "gpt2")), Err(Error::UnsupportedModelType { .. })));
        let text = BASE.replace(r#""num_key_value_heads":2"#, r#""num_key_value_heads":3"#);
        assert!(matches!(parse(&text), Err(Error::InvalidConfig { .. })));
        assert!(matches!(parse("{not json"), Err(Error::Json { .. })));
        assert!(matches!(parse("[1,2]"), Err(Error::InvalidConfig { .. })));
        // A trillion layers is refused before any per-layer list is allocated.
        let deep = BASE.replace(r#""num_hidden_layers":2"#, r#""num_hidden_layers":1000000000000"#);
        assert!(matches!(parse(&deep), Err(Error::InvalidConfig { key, .. }) if key == "num_hidden_layers"));
    }

    const GEMMA: &str = r#"{"model_type":"gemma3_text","hidden_size":64,"intermediate_size":128,
        "num_hidden_layers":8,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":32,
        "rms_norm_eps":1e-6,"vocab_size":100,"max_position_embeddings":256,"sliding_window":16,
        "query_pre_attn_scalar":32,"rope_theta":1000000.0,"eos_token_id":[1,5]}"#;

    #[test]
    fn gemma3_layers_slide_between_global_ones() {
        let c = parse(GEMMA).unwrap();
        assert_eq!(c.architecture, Architecture::Gemma3);
        // No `layer_types`: every 6th layer global, the local base 10000.
        let sliding: Vec<bool> = c.layer_types.iter().map(|t| *t == LayerType::Sliding).collect();
        assert_eq!(sliding, [true, true, true, true, true, false, true, true]);
        assert_eq!((c.layer_window(0), c.layer_window(5)), (Some(16), None));
        assert_eq!(c.rope_local_theta, Some(10_000.0));
        assert_eq!(c.rope_local_inv_freq().unwrap()[1], 10_000f32.powf(-2.0 / 32.0));
        assert!(c.tie_word_embeddings && c.qk_norm && c.sandwich_norms && c.norm_unit_offset);
        assert_eq!(c.hidden_act, Activation::GeluTanh);
        let shapes = c.tensor_shapes();
        assert!(shapes.contains(&("model.layers.7.post_feedforward_layernorm.weight".to_string(), vec![64])));
        assert!(!shapes.iter().any(|(n, _)| n == "lm_head.weight"));
        // Soft-capping (Gemma 2) and a sliding layer without a window are refused by name.
        let capped = GEMMA.replace(r#""sliding_window":16"#, r#""sliding_window":16,"final_logit_softcapping":30.0"#);
        assert!(matches!(parse(&capped), Err(Error::InvalidConfig { key, .. }) if key == "final_logit_softcapping"));
        let unwindowed = GEMMA.replace(r#""sliding_window":16,"#, "");
        assert!(matches!(parse(&unwindowed), Err(Error::InvalidConfig { key, .. }) if key == "sliding_window"));
        let listed = GEMMA.replace(
            r#""sliding_window":16"#,
            r#""sliding_window":16,"layer_types":["full_attention","sliding_attention","full_attention","full_attention","sliding_attention","full_attention","full_attention","full_attention"]"#,
        );
        assert_eq!(parse(&listed).unwrap().layer_window(1), Some(16));
        assert_eq!(parse(&listed).unwrap().layer_window(0), None);
    }
}
