//! Fuzzes chat templates (`ChatTemplate::new` + `render`, minijinja with transformers' settings
//! and a fuel limit). The input is split at its first NUL byte: the part before it, when not
//! empty, is a template source (lossy UTF-8) compiled and rendered; the part after it is decoded
//! with `arbitrary` into a conversation (roles mostly system / user / assistant / tool, any
//! contents, `add_generation_prompt`, the BOS / EOS texts of the input template), rendered by that
//! template and by real ones: the GGUF fixtures' template, and those of SmolLM2 (the default
//! model), Mistral Instruct (which raises on a wrong role order) and Llama 3. A rendering must end
//! in a string or a typed error, within the fuel: an input that renders for seconds is a finding.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use focusllm_core::gguf::GgufFile;
use focusllm_core::{ChatMessage, ChatTemplate};
use libfuzzer_sys::fuzz_target;

const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}\
{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}\
{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const MISTRAL: &str = "{{ bos_token }}{% for message in messages %}\
{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}\
{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'].strip() + ' [/INST]' }}\
{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}\
{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}\
{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}\
{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}\
{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

#[derive(Arbitrary, Debug)]
enum Role {
    System,
    User,
    Assistant,
    Tool,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Message {
    role: Role,
    content: String,
}

#[derive(Arbitrary, Debug)]
struct Conversation {
    add_generation_prompt: bool,
    bos_token: String,
    eos_token: String,
    messages: Vec<Message>,
}

/// The real templates; the first is the fixtures', whose output holds every message verbatim.
fn real_templates() -> &'static [ChatTemplate] {
    static REAL: OnceLock<Vec<ChatTemplate>> = OnceLock::new();
    REAL.get_or_init(|| {
        let file = GgufFile::from_bytes(include_bytes!("../seeds/gguf_parse/tiny-llama.gguf").to_vec(), "fixture")
            .expect("the GGUF fixture opens");
        let fixture = file.chat_template().expect("the fixture has a template").expect("it compiles");
        let new = |source: &str, bos: &str, eos: &str| ChatTemplate::new(source, bos, eos).expect("a real template");
        vec![
            fixture,
            new(SMOLLM2, "<|im_start|>", "<|im_end|>"),
            new(MISTRAL, "<s>", "</s>"),
            new(LLAMA3, "<|begin_of_text|>", "<|eot_id|>"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let (source, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(conversation) = Conversation::arbitrary_take_rest(Unstructured::new(rest)) else { return };
    let messages: Vec<ChatMessage> = conversation
        .messages
        .iter()
        .map(|m| {
            let role = match &m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
                Role::Other(s) => s.as_str(),
            };
            ChatMessage::new(role, m.content.clone())
        })
        .collect();
    let generation_prompt = conversation.add_generation_prompt;

    for (i, template) in real_templates().iter().enumerate() {
        let rendered = template.render(&messages, generation_prompt);
        if i == 0 {
            let text = rendered.expect("the fixtures' template renders any conversation");
            for m in &messages {
                assert!(text.contains(&m.content), "the rendering lacks a message's content");
            }
        }
    }

    if source.is_empty() {
        return;
    }
    let source = String::from_utf8_lossy(source);
    if let Ok(template) = ChatTemplate::new(source, conversation.bos_token, conversation.eos_token) {
        let _ = template.render(&messages, generation_prompt);
        let _ = template.render(&[], !generation_prompt);
    }
});
