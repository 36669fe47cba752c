//! A checkpoint of seeded random weights shaped by a [`ModelConfig`]: a model directory
//! (`config.json`, `model.safetensors`) for benchmarks and backend comparisons where the real
//! weights cannot be had, e.g. on a machine that must not download them. Same seed, same bytes.
//!
//! The values keep a forward pass well conditioned, so logits are neither flat nor saturated:
//! matrices are uniform with standard deviation `1/sqrt(fan_in)`, the embedding (and output head)
//! 0.1, normalisation weights `1 ± 0.1`, biases 0.02.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use half::{bf16, f16};
use serde_json::json;

use focusllm_core::{DType, Error, ModelConfig, Result};

/// Writes `config.json` and `model.safetensors` of random weights (in `dtype`, from `seed`) for
/// `config` into `dir`, creating it if needed. The tokenizer is the caller's to add.
pub fn write(config: &ModelConfig, dir: &Path, dtype: DType, seed: u64) -> Result<()> {
    config.validate()?;
    let (dtype_name, size) = match dtype {
        DType::F32 => ("F32", 4),
        DType::F16 => ("F16", 2),
        DType::BF16 => ("BF16", 2),
        _ => {
            return Err(Error::InvalidOption {
                name: "dtype",
                value: format!("{dtype:?}"),
                reason: "safetensors holds only F32, F16 and BF16",
            })
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let config_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config.to_hf_json()).map_err(|e| Error::json(&config_path, e))?;
    std::fs::write(&config_path, text).map_err(|e| Error::io(&config_path, e))?;

    let tensors = config.tensor_shapes();
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        json!({ "format": "pt", "content": "random weights", "seed": seed.to_string() }),
    );
    let mut offset = 0usize;
    for (name, shape) in &tensors {
        let bytes = shape.iter().product::<usize>() * size;
        header.insert(
            name.clone(),
            json!({ "dtype": dtype_name, "shape": shape, "data_offsets": [offset, offset + bytes] }),
        );
        offset += bytes;
    }
    let path = dir.join("model.safetensors");
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    // Pad the header with spaces so the data starts 8-byte aligned.
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let io = |e| Error::io(&path, e);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&path).map_err(io)?);
    out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    let mut buf = Vec::new();
    for (name, shape) in &tensors {
        let (centre, std) = distribution(name, shape);
        let mut rng = SplitMix64(seed ^ fnv1a(name.as_bytes()));
        let half_width = std * 3f32.sqrt();
        buf.clear();
        for _ in 0..shape.iter().product::<usize>() {
            let x = centre + half_width * (2.0 * rng.unit() - 1.0);
            match dtype {
                DType::F32 => buf.extend_from_slice(&x.to_le_bytes()),
                DType::F16 => buf.extend_from_slice(&f16::from_f32(x).to_le_bytes()),
                DType::BF16 => buf.extend_from_slice(&bf16::from_f32(x).to_le_bytes()),
                _ => unreachable!("refused above"),
            }
        }
        out.write_all(&buf).map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Centre and standard deviation of the values of tensor `name`.
fn distribution(name: &str, shape: &[usize]) -> (f32, f32) {
    if name.ends_with("norm.weight") {
        (1.0, 0.1 / 3f32.sqrt())
    } else if name.ends_with(".bias") {
        (0.0, 0.02)
    } else if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
        (0.0, 0.1)
    } else {
        (0.0, 1.0 / (shape[1] as f32).sqrt())
    }
}

/// FNV-1a of a tensor name: each tensor's stream depends on the seed and its name only.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// A small, fast, well-mixed generator (Steele et al.'s SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use focusllm_core::{SafetensorsWeights, WeightSource};

    fn tiny() -> ModelConfig {
        let text = r#"{"model_type":"llama","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-5,"vocab_size":50,
            "max_position_embeddings":128,"tie_word_embeddings":true}"#;
        ModelConfig::from_json_str(text, Path::new("config.json")).unwrap()
    }

    fn stats(v: &[f32]) -> (f32, f32) {
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32;
        (mean, var.sqrt())
    }

    #[test]
    fn writes_a_loadable_seeded_checkpoint() {
        let root = std::env::temp_dir().join(format!("focusllm-random-{}", std::process::id()));
        let config = tiny();
        for (sub, dtype, seed) in [("a", DType::F16, 7), ("b", DType::F16, 7), ("c", DType::F32, 8)] {
            write(&config, &root.join(sub), dtype, seed).unwrap();
        }
        let read = |sub: &str| std::fs::read(root.join(sub).join("model.safetensors")).unwrap();
        assert_eq!(read("a"), read("b"), "same seed, same bytes");
        assert_eq!(ModelConfig::from_file(root.join("a/config.json")).unwrap(), config);

        let w = SafetensorsWeights::from_dir(root.join("c")).unwrap();
        for (name, shape) in config.tensor_shapes() {
            assert_eq!(w.shape(&name), Some(shape), "{name}");
        }
        let q = w.tensor("model.layers.1.self_attn.q_proj.weight").unwrap().unwrap().to_f32();
        let (mean, std) = stats(&q);
        assert!(mean.abs() < 0.03 && (std - 32f32.powf(-0.5)).abs() < 0.02, "q_proj mean {mean} std {std}");
        let norm = w.tensor("model.norm.weight").unwrap().unwrap().to_f32();
        assert!(norm.iter().all(|x| (0.899..=1.101).contains(x)), "{norm:?}");
        let other = SafetensorsWeights::from_dir(root.join("a")).unwrap();
        let q16 = other.tensor("model.layers.1.self_attn.q_proj.weight").unwrap().unwrap().to_f32();
        assert_ne!(q, q16, "another seed, other values");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
