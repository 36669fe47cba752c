//! Tensor names: llama.cpp's GGUF names (`blk.0.attn_q.weight`) and Hugging Face's
//! (`model.layers.0.self_attn.q_proj.weight`), in both directions, for the file's
//! `general.architecture` (Gemma names its norms differently).

/// Per-layer parts: (GGUF stem, Hugging Face stem).
const LAYER_PARTS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
];

/// Per-layer parts of architectures with norms after the sublayers too (Gemma), looked up before
/// [`LAYER_PARTS`]: there `post_attention_layernorm` follows attention, `ffn_norm` is the MLP's.
const SANDWICH_PARTS: &[(&str, &str)] = &[
    ("post_attention_norm", "post_attention_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
];

/// Whether `arch` (a GGUF `general.architecture`) names its layers' norms as [`SANDWICH_PARTS`].
fn sandwich(arch: &str) -> bool {
    matches!(arch, "gemma2" | "gemma3")
}

/// The per-layer name pairs of `arch`, the first match wins.
fn layer_parts(arch: &str) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    let first: &[(&str, &str)] = if sandwich(arch) { SANDWICH_PARTS } else { &[] };
    first.iter().chain(LAYER_PARTS)
}

/// Whole-model parts: (GGUF stem, Hugging Face stem). Llama 3.x files carry RoPE frequency
/// factors as a tensor, which Hugging Face checkpoints express in their configuration instead; it
/// keeps its GGUF name ([`ROPE_FREQ_FACTORS`]) on both sides.
const GLOBAL_PARTS: &[(&str, &str)] = &[
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
    ("rope_freqs", "rope_freqs"),
];

/// The tensor of per-frequency RoPE divisors (`head_dim / 2` values) of Llama 3.x GGUF files.
pub const ROPE_FREQ_FACTORS: &str = "rope_freqs.weight";

fn split_suffix(name: &str) -> Option<(&str, &str)> {
    let dot = name.rfind('.')?;
    let suffix = &name[dot + 1..];
    matches!(suffix, "weight" | "bias").then(|| (&name[..dot], suffix))
}

/// The Hugging Face name of a GGUF tensor of a file of architecture `arch`, or `None` for
/// tensors with no counterpart.
pub fn gguf_to_hf(name: &str, arch: &str) -> Option<String> {
    let (stem, suffix) = split_suffix(name)?;
    if let Some(rest) = stem.strip_prefix("blk.") {
        let (layer, part) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let (_, hf) = layer_parts(arch).find(|(g, _)| *g == part)?;
        return Some(format!("model.layers.{layer}.{hf}.{suffix}"));
    }
    let (_, hf) = GLOBAL_PARTS.iter().find(|(g, _)| *g == stem)?;
    Some(format!("{hf}.{suffix}"))
}

/// The GGUF name of a Hugging Face tensor in a file of architecture `arch`, or `None` for names
/// llama.cpp has no counterpart for.
pub fn hf_to_gguf(name: &str, arch: &str) -> Option<String> {
    let (stem, suffix) = split_suffix(name)?;
    if let Some(rest) = stem.strip_prefix("model.layers.") {
        let (layer, part) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let (g, _) = layer_parts(arch).find(|(_, h)| *h == part)?;
        return Some(format!("blk.{layer}.{g}.{suffix}"));
    }
    let (g, _) = GLOBAL_PARTS.iter().find(|(_, h)| *h == stem)?;
    Some(format!("{g}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for (g, h) in [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output.weight", "lm_head.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("blk.12.attn_q.weight", "model.layers.12.self_attn.q_proj.weight"),
            ("blk.0.attn_k.bias", "model.layers.0.self_attn.k_proj.bias"),
            ("blk.3.ffn_down.weight", "model.layers.3.mlp.down_proj.weight"),
            ("blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"),
            (ROPE_FREQ_FACTORS, ROPE_FREQ_FACTORS),
        ] {
            assert_eq!(gguf_to_hf(g, "llama").as_deref(), Some(h));
            assert_eq!(hf_to_gguf(h, "llama").as_deref(), Some(g));
        }
        assert_eq!(gguf_to_hf("blk.0.attn_rot_embd.weight", "llama"), None);
        assert_eq!(hf_to_gguf("model.layers.x.self_attn.q_proj.weight", "llama"), None);
        assert_eq!(hf_to_gguf("model.layers.0.self_attn.beacon_q_proj.weight", "llama"), None);
    }

    #[test]
    fn gemma_norms_keep_their_places() {
        for (g, h) in [
            ("blk.1.attn_norm.weight", "model.layers.1.input_layernorm.weight"),
            ("blk.1.post_attention_norm.weight", "model.layers.1.post_attention_layernorm.weight"),
            ("blk.1.ffn_norm.weight", "model.layers.1.pre_feedforward_layernorm.weight"),
            ("blk.1.post_ffw_norm.weight", "model.layers.1.post_feedforward_layernorm.weight"),
            ("blk.1.attn_q_norm.weight", "model.layers.1.self_attn.q_norm.weight"),
            ("blk.1.ffn_up.weight", "model.layers.1.mlp.up_proj.weight"),
        ] {
            assert_eq!(gguf_to_hf(g, "gemma3").as_deref(), Some(h));
            assert_eq!(hf_to_gguf(h, "gemma3").as_deref(), Some(g));
        }
        assert_eq!(gguf_to_hf("blk.1.post_ffw_norm.weight", "llama"), None);
    }
}
