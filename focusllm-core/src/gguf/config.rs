//! GGUF metadata (`general.architecture` and the `{arch}.*` keys) to a [`ModelConfig`].

use crate::config::{
    check_layer_count, sliding_pattern, Activation, Architecture, LayerType, ModelConfig, RopeScaling,
};
use crate::error::{Error, Result};

use super::{MetaKeys, MetaValue};

/// Builds the model configuration from a GGUF file's metadata and tensor list.
pub(crate) fn model_config(keys: &MetaKeys<'_>) -> Result<ModelConfig> {
    let arch_name = keys.string("general.architecture")?;
    let architecture = match arch_name {
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        "qwen3" => Architecture::Qwen3,
        "gemma3" => Architecture::Gemma3,
        other => {
            return Err(Error::UnsupportedModelType { path: keys.path.to_path_buf(), model_type: other.to_string() });
        }
    };
    let k = |suffix: &str| format!("{arch_name}.{suffix}");

    let hidden_size = keys.usize(&k("embedding_length"))?;
    let num_heads = keys.usize(&k("attention.head_count"))?;
    let num_kv_heads = keys.opt_usize(&k("attention.head_count_kv"))?.unwrap_or(num_heads);
    let head_dim = match keys.opt_usize(&k("attention.key_length"))? {
        Some(d) => d,
        None if num_heads > 0 => hidden_size / num_heads,
        None => 0,
    };
    if let Some(v) = keys.opt_usize(&k("attention.value_length"))? {
        if v != head_dim {
            return Err(keys.wrong(&k("attention.value_length"), &format!("equal to the key length {head_dim}"), &v));
        }
    }
    if let Some(rot) = keys.opt_usize(&k("rope.dimension_count"))? {
        if rot != head_dim {
            return Err(keys.wrong(
                &k("rope.dimension_count"),
                &format!("the head width {head_dim} (partial rotary embeddings are not supported)"),
                &rot,
            ));
        }
    }

    // Llama 3.x's frequency factors are a tensor (`rope_freqs.weight`), applied by the model at load.
    let rope_scaling = rope_scaling(keys, arch_name)?;

    let vocab_size = match keys.opt_usize(&k("vocab_size"))? {
        Some(v) => v,
        None => match keys.header.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
            Some(tokens) => tokens.len(),
            None => keys
                .header
                .tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .map(|v| v as usize)
                .ok_or_else(|| Error::GgufMissingKey { path: keys.path.to_path_buf(), key: k("vocab_size") })?,
        },
    };

    let has = |name: &str| keys.header.tensor(name).is_some();
    let qkv_bias = matches!(architecture, Architecture::Qwen2) || has("blk.0.attn_q.bias");
    let o_bias = has("blk.0.attn_output.bias");

    let mut eos_token_ids = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(id) = keys.opt_u32(key)? {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }

    let num_layers = keys.usize(&k("block_count"))?;
    check_layer_count(num_layers)?;
    let gemma = architecture == Architecture::Gemma3;
    if let Some(cap) = keys.opt_f32(&k("final_logit_softcapping"))?.filter(|&c| c != 0.0) {
        return Err(keys.wrong(&k("final_logit_softcapping"), "0 (logit soft-capping is not supported)", &cap));
    }
    let (sliding_window, layer_types, rope_local_theta) = if gemma {
        gemma_layers(keys, arch_name, num_layers)?
    } else {
        (None, vec![LayerType::Full; num_layers], None)
    };
    // llama.cpp scales Gemma 3's queries by 1/sqrt(head_dim), except the 27B model's (62 layers),
    // whose query_pre_attn_scalar is hidden_size / num_heads.
    let query_pre_attn_scalar = (gemma && num_layers == 62 && num_heads > 0).then(|| (hidden_size / num_heads) as f32);

    let config = ModelConfig {
        architecture,
        hidden_size,
        intermediate_size: keys.usize(&k("feed_forward_length"))?,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        rope_theta: keys.opt_f32(&k("rope.freq_base"))?.unwrap_or(10_000.0),
        rope_scaling,
        rms_norm_eps: keys.f32(&k("attention.layer_norm_rms_epsilon"))?,
        vocab_size,
        tie_word_embeddings: !has("output.weight"),
        qkv_bias,
        o_bias,
        qk_norm: has("blk.0.attn_q_norm.weight"),
        bos_token_id: keys.opt_u32("tokenizer.ggml.bos_token_id")?,
        eos_token_ids,
        max_position_embeddings: keys.usize(&k("context_length"))?,
        hidden_act: if gemma { Activation::GeluTanh } else { Activation::Silu },
        scale_embeddings: gemma,
        sandwich_norms: gemma,
        norm_unit_offset: gemma,
        query_pre_attn_scalar,
        sliding_window,
        layer_types,
        rope_local_theta,
    };
    config.validate()?;
    Ok(config)
}

/// Gemma 3's per-layer attention, as llama.cpp reads it: the window, the layers that slide
/// (`attention.sliding_window_pattern`, a list of per-layer flags or a period, every 6th layer
/// global by default; no window: no sliding layers) and their RoPE base (`rope.freq_base_swa`,
/// 10000 by default).
fn gemma_layers(
    keys: &MetaKeys<'_>,
    arch: &str,
    num_layers: usize,
) -> Result<(Option<usize>, Vec<LayerType>, Option<f32>)> {
    let window_key = format!("{arch}.attention.sliding_window");
    let pattern_key = format!("{arch}.attention.sliding_window_pattern");
    let Some(window) = keys.opt_usize(&window_key)?.filter(|&w| w > 0) else {
        return Ok((None, vec![LayerType::Full; num_layers], None));
    };
    let types = match keys.header.get(&pattern_key).and_then(MetaValue::as_array) {
        Some(flags) => {
            if flags.len() != num_layers {
                return Err(keys.wrong(&pattern_key, &format!("{num_layers} flags"), &flags.len()));
            }
            // Flags as bools or integers (non-zero: sliding), as llama.cpp reads them.
            flags
                .iter()
                .map(|f| match f.as_bool().or_else(|| f.as_i64().map(|i| i != 0)) {
                    Some(true) => Ok(LayerType::Sliding),
                    Some(false) => Ok(LayerType::Full),
                    None => Err(keys.wrong(&pattern_key, "array of bool", &format!("array of {}", f.type_name()))),
                })
                .collect::<Result<Vec<_>>>()?
        }
        None => sliding_pattern(num_layers, keys.opt_usize(&pattern_key)?.unwrap_or(6)),
    };
    let local = keys.opt_f32(&format!("{arch}.rope.freq_base_swa"))?.unwrap_or(10_000.0);
    Ok((Some(window), types, Some(local)))
}

fn rope_scaling(keys: &MetaKeys<'_>, arch: &str) -> Result<RopeScaling> {
    let type_key = format!("{arch}.rope.scaling.type");
    let factor_key = format!("{arch}.rope.scaling.factor");
    let kind = keys.opt_string(&type_key)?;
    let factor = keys.opt_f32(&factor_key)?;
    let legacy = keys.opt_f32(&format!("{arch}.rope.scale_linear"))?;
    match (kind, factor, legacy) {
        (None | Some("none"), _, None) => Ok(RopeScaling::None),
        (None, _, Some(f)) | (Some("linear"), Some(f), _) if f > 0.0 => {
            Ok(if f == 1.0 { RopeScaling::None } else { RopeScaling::Linear { factor: f } })
        }
        (Some("linear"), None, None) => Err(Error::GgufMissingKey { path: keys.path.to_path_buf(), key: factor_key }),
        (Some("linear"), Some(f), _) | (None, _, Some(f)) => Err(keys.wrong(&factor_key, "a positive factor", &f)),
        (Some(other), _, _) => {
            Err(keys.wrong(&type_key, "none or linear (other RoPE scalings are not supported)", &other))
        }
    }
}
