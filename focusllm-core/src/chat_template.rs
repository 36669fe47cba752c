//! Chat templates (`tokenizer.chat_template`, Jinja) rendered with minijinja, configured as
//! transformers renders them: `trim_blocks`, `lstrip_blocks`, Python string methods, and the
//! `raise_exception` function.

use minijinja::{context, Environment, ErrorKind};
use serde::Serialize;

use crate::error::{Error, Result};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// A model's chat template with the special tokens it may refer to.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

const NAME: &str = "chat_template";

/// Instructions a template may execute per rendering (a chat template needs a few per message).
const FUEL: u64 = 20_000_000;

fn template_error(e: minijinja::Error) -> Error {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::ChatTemplate { message }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` / `eos_token` are the texts the template sees under those names.
    pub fn new(source: impl Into<String>, bos_token: impl Into<String>, eos_token: impl Into<String>) -> Result<Self> {
        let template = ChatTemplate { source: source.into(), bos_token: bos_token.into(), eos_token: eos_token.into() };
        template.environment()?;
        Ok(template)
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text the template sees as `bos_token`.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The text the template sees as `eos_token`.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    fn environment(&self) -> Result<Environment<'_>> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // A template comes from the model file: bound the work it may do.
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template(NAME, &self.source).map_err(template_error)?;
        Ok(env)
    }

    /// Renders a conversation; `add_generation_prompt` appends the header of the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let env = self.environment()?;
        let template = env.get_template(NAME).map_err(template_error)?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(template_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_loops_and_python_methods() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{{ m['role'] | upper }}:{{ m.content.strip() }}\n{% endfor %}\
             {% if add_generation_prompt %}A:{% endif %}",
            "<s>",
            "</s>",
        )
        .unwrap();
        let out = t.render(&[ChatMessage::new("user", "  hi ")], true).unwrap();
        assert_eq!(out, "USER:hi\nA:");
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(Error::ChatTemplate { .. })));
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}", "", "").unwrap();
        match t.render(&[], false) {
            Err(Error::ChatTemplate { message }) => assert!(message.contains("no system role"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
