//! Prompts under a model's chat template, shared by every command that asks the model something.

use focusllm::{ChatMessage, Llm};

/// Renders a one-turn chat with the model's template when it has one: returns the header
/// (everything before the user's text) and the rest (the user's text, the end of the turn, the
/// assistant's header, then `assistant_prefix`, words the answer is made to start with).
pub fn chat_prompt(llm: &Llm, user: &str, assistant_prefix: &str) -> Option<(String, String)> {
    let template = llm.chat_template()?;
    let marker = "\u{0}FOCUSLLM-USER\u{0}";
    let rendered = template.render(&[ChatMessage::new("user", marker)], true).ok()?;
    let (header, rest) = rendered.split_once(marker)?;
    Some((header.to_string(), format!("{user}{rest}{assistant_prefix}")))
}

/// The length in tokens of the chat header of `llm`'s template (0 without a template): what
/// `--prefix header` keeps in front of every chunk's query.
pub fn header_len(llm: &Llm) -> usize {
    chat_prompt(llm, "", "").and_then(|(header, _)| llm.tokenizer().encode(&header).ok()).map_or(0, |ids| ids.len())
}

/// The text a document and a question about it make as the user's turn.
pub fn document_question(document: &str, question: &str) -> String {
    format!("{document}\n\n{question}")
}
