//! Fuzzes the GGUF reader and everything built from a file's metadata: the header parser, the
//! model configuration, the tokenizer (built and used), the chat template (compiled and rendered),
//! and tensor reading (dequantisation and the q/k un-permutation) under Hugging Face names.
#![no_main]

use focusllm_core::gguf::GgufFile;
use focusllm_core::{ChatMessage, WeightSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec(), "fuzz.gguf") else { return };
    if let Ok(config) = file.config() {
        let _ = config.rope_inv_freq();
    }
    if let Ok(tokenizer) = file.tokenizer() {
        if let Ok(ids) = tokenizer.encode("Hello world, 123 <|im_start|> ünïcödé\n") {
            let _ = tokenizer.decode(&ids);
        }
    }
    if let Some(Ok(template)) = file.chat_template() {
        let _ = template.render(&[ChatMessage::new("user", "hi")], true);
    }
    let names: Vec<String> = file.header().tensors.iter().map(|t| t.name.clone()).collect();
    for name in names {
        if let Some(hf) = focusllm_core::gguf::names::gguf_to_hf(&name, file.architecture()) {
            let _ = file.tensor(&hf);
            let _ = file.shape(&hf);
        } else if let Some(info) = file.tensor_info(&name) {
            let _ = file.dequantize(info);
        }
    }
});
