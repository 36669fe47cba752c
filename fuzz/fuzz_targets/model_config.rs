//! Fuzzes the reader of a Hugging Face `config.json` (`ModelConfig::from_json_str`, the input read
//! as lossy UTF-8) and everything computed from a configuration it accepts: `validate`, the tensor
//! list (`tensor_shapes`, with `q_dim` / `kv_dim`), the rotary frequencies (`rope_inv_freq`) and
//! `to_hf_json`, whose documented property is checked: it reads back as the same configuration.
#![no_main]

use std::path::Path;

use focusllm_core::ModelConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("config.json");
    let Ok(config) = ModelConfig::from_json_str(&text, path) else { return };
    config.validate().expect("from_json_str returned a configuration that does not validate");
    let _ = (config.q_dim(), config.kv_dim());
    let shapes = config.tensor_shapes();
    assert!(shapes.len() >= 2 + config.num_layers);
    let inv_freq = config.rope_inv_freq();
    assert_eq!(inv_freq.len(), config.head_dim / 2);
    let json = config.to_hf_json().to_string();
    match ModelConfig::from_json_str(&json, path) {
        Ok(back) => assert_eq!(back, config, "to_hf_json does not read back as the same configuration: {json}"),
        Err(e) => panic!("to_hf_json does not read back ({e}): {json}"),
    }
});
