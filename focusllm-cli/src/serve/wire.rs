//! OpenAI's wire format: the request bodies of `/v1/chat/completions` and `/v1/completions` as
//! the server reads them (unknown fields ignored), their checks, and the JSON objects it answers
//! with.

use axum::extract::{FromRequest, Request};
use axum::Json;
use focusllm::{ChatMessage, Sampling};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::generate::Finish;

/// A JSON body whose refusals (malformed JSON, wrong content type, wrong field types, too large)
/// are answered as [`ApiError`]s instead of axum's plain-text rejections.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// The body of `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The served model's name.
    pub model: Option<String>,
    /// The conversation.
    pub messages: Option<Vec<MessageIn>>,
    /// Everything both endpoints take.
    #[serde(flatten)]
    pub params: Params,
}

/// The body of `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// The served model's name.
    pub model: Option<String>,
    /// The text (or token ids) to continue.
    pub prompt: Option<Prompt>,
    /// Everything both endpoints take.
    #[serde(flatten)]
    pub params: Params,
}

/// The generation fields both endpoints take.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    /// Most tokens to generate (the older name).
    pub max_tokens: Option<i64>,
    /// Most tokens to generate (the newer name; wins over `max_tokens`).
    pub max_completion_tokens: Option<i64>,
    /// Softmax temperature in [0, 2]; 0 is greedy.
    pub temperature: Option<f64>,
    /// Nucleus sampling mass in [0, 1]; 0 is greedy.
    pub top_p: Option<f64>,
    /// Keep only the `top_k` most likely tokens (an extension OpenAI lacks; 0 or -1 disables).
    pub top_k: Option<i64>,
    /// Penalty on repeated tokens as in transformers (an extension; 1 disables).
    pub repetition_penalty: Option<f64>,
    /// Seed of the sampler, for reproducible sampling.
    pub seed: Option<i64>,
    /// Answer as server-sent events.
    pub stream: Option<bool>,
    /// `{"include_usage": true}` adds a last chunk with the token counts.
    pub stream_options: Option<StreamOptions>,
    /// Strings that end the text (not included).
    pub stop: Option<Stop>,
    /// Choices per request: only 1.
    pub n: Option<i64>,
    /// Generate past the end-of-sequence token (an extension, as vLLM's).
    pub ignore_eos: Option<bool>,
    /// Log-probabilities: not supported.
    pub logprobs: Option<Value>,
    /// `/v1/completions`: echo the prompt; not supported.
    pub echo: Option<bool>,
    /// `/v1/completions`: candidates to rank; only 1.
    pub best_of: Option<i64>,
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices.
    pub include_usage: Option<bool>,
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `prompt`: text, one text in a list, or token ids.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// The prompt's text.
    Text(String),
    /// Texts, of which the server takes exactly one.
    Texts(Vec<String>),
    /// Token ids.
    Ids(Vec<u32>),
    /// Lists of token ids, of which the server takes exactly one.
    IdLists(Vec<Vec<u32>>),
}

/// One message of `messages`.
#[derive(Debug, Deserialize)]
pub struct MessageIn {
    /// `system`, `developer`, `user`, `assistant`, ...
    pub role: String,
    /// Its text, or parts of which only text parts are taken; may be null on an assistant turn.
    pub content: Option<Content>,
}

/// A message's `content`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type": "text", "text": ...}`).
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    /// The part's type; only `text` is taken.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    pub text: Option<String>,
}

/// The limits and defaults requests are checked against.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
    /// The most `max_tokens` a request may ask for.
    pub max_tokens_limit: usize,
    /// The most tokens a prompt may have.
    pub max_prompt_tokens: usize,
    /// The temperature when a request gives none.
    pub default_temperature: f32,
}

/// The most stop strings a request may give.
const MAX_STOPS: usize = 16;

/// What a request asks of a generation, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How tokens are chosen.
    pub sampling: Sampling,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Generate past the end-of-sequence token.
    pub ignore_eos: bool,
    /// Answer as server-sent events.
    pub stream: bool,
    /// Send the usage chunk at the end of a stream.
    pub include_usage: bool,
}

impl Params {
    /// Checks the fields against `limits` and turns them into generation settings.
    pub fn settings(&self, limits: &Limits) -> Result<Settings, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("n", "only n = 1 is supported"));
        }
        if self.best_of.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("best_of", "only best_of = 1 is supported"));
        }
        if self.echo == Some(true) {
            return Err(ApiError::invalid("echo", "echo is not supported"));
        }
        match &self.logprobs {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Number(n)) if n.as_u64() == Some(0) => {}
            Some(_) => return Err(ApiError::invalid("logprobs", "log-probabilities are not supported")),
        }
        let (param, asked) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(n), _) => ("max_completion_tokens", Some(n)),
            (None, n) => ("max_tokens", n),
        };
        let max_tokens = match asked {
            None => limits.default_max_tokens,
            Some(n) if n < 1 => return Err(ApiError::invalid(param, format!("{param} must be at least 1, not {n}"))),
            Some(n) if n as u64 > limits.max_tokens_limit as u64 => {
                return Err(ApiError::invalid(
                    param,
                    format!(
                        "{param} is {n}; this server generates at most {} tokens (--max-tokens-limit)",
                        limits.max_tokens_limit
                    ),
                ))
            }
            Some(n) => n as usize,
        };
        let mut temperature = match self.temperature {
            None => limits.default_temperature,
            Some(t) if t.is_finite() && (0.0..=2.0).contains(&t) => t as f32,
            Some(t) => return Err(ApiError::invalid("temperature", format!("temperature must be in [0, 2], not {t}"))),
        };
        let top_p = match self.top_p {
            None => 1.0,
            Some(p) if p.is_finite() && (0.0..=1.0).contains(&p) => p as f32,
            Some(p) => return Err(ApiError::invalid("top_p", format!("top_p must be in [0, 1], not {p}"))),
        };
        // No token survives a nucleus of mass 0 but the likeliest one: greedy.
        if top_p == 0.0 {
            temperature = 0.0;
        }
        let top_k = match self.top_k {
            None | Some(-1) => 0,
            Some(k) if k >= 0 => k as usize,
            Some(k) => return Err(ApiError::invalid("top_k", format!("top_k must be -1 or at least 0, not {k}"))),
        };
        let repetition_penalty = match self.repetition_penalty {
            None => 1.0,
            Some(r) if r.is_finite() && r > 0.0 => r as f32,
            Some(r) => {
                return Err(ApiError::invalid("repetition_penalty", format!("repetition_penalty must be > 0, not {r}")))
            }
        };
        let seed = self.seed.map_or_else(random_u64, |s| s as u64);
        let sampling =
            Sampling { temperature, top_k, top_p: if top_p == 0.0 { 1.0 } else { top_p }, repetition_penalty, seed };
        let stop: Vec<String> = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(list)) => list.clone(),
        };
        if stop.len() > MAX_STOPS {
            return Err(ApiError::invalid("stop", format!("at most {MAX_STOPS} stop strings, not {}", stop.len())));
        }
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
        Ok(Settings {
            max_tokens,
            sampling,
            stop,
            ignore_eos: self.ignore_eos.unwrap_or(false),
            stream: self.stream.unwrap_or(false),
            include_usage: self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
        })
    }
}

/// The conversation of a chat request as the library's messages; `developer` turns are system
/// turns, content parts other than text are refused.
pub fn chat_messages(messages: Option<Vec<MessageIn>>) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(messages) = messages else {
        return Err(ApiError::invalid("messages", "the request has no `messages`"));
    };
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` is empty: a conversation needs at least one message"));
    }
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(text)) => text,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                &format!("messages[{i}].content"),
                                format!("content parts of type `{kind}` are not supported (only text)"),
                            ))
                        }
                    }
                }
                text
            }
        };
        let role = if m.role == "developer" { "system".to_string() } else { m.role };
        out.push(ChatMessage::new(role, content));
    }
    Ok(out)
}

/// A `chat.completion` or `text_completion` id: the prefix and random hex digits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}{:08x}", random_u64(), random_u64() as u32)
}

/// A random number from the standard library's per-process hash keys (no generator needed).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// Seconds since the Unix epoch.
pub fn unix_time() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// OpenAI's name for why a choice ended.
pub fn finish_name(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

/// `usage`.
pub fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// Which endpoint an answer is for, with the fields every object of one answer shares.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `true`: `/v1/chat/completions`; `false`: `/v1/completions`.
    pub chat: bool,
    /// `chatcmpl-...` or `cmpl-...`.
    pub id: String,
    /// When the request was taken, in Unix seconds.
    pub created: u64,
    /// The served model's name.
    pub model: String,
}

impl Answer {
    /// The fields of an answer to a chat request (`chat`) or a completion request.
    pub fn new(chat: bool, model: &str) -> Self {
        Answer {
            chat,
            id: new_id(if chat { "chatcmpl" } else { "cmpl" }),
            created: unix_time(),
            model: model.to_string(),
        }
    }

    fn object(&self, choices: Value, object: &str) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        })
    }

    /// The whole answer of a request that did not stream.
    pub fn complete(&self, text: &str, finish: Finish, prompt_tokens: usize, completion_tokens: usize) -> Value {
        let choice = if self.chat {
            json!({
                "index": 0,
                "message": { "role": "assistant", "content": text, "refusal": null },
                "logprobs": null,
                "finish_reason": finish_name(finish),
            })
        } else {
            json!({ "index": 0, "text": text, "logprobs": null, "finish_reason": finish_name(finish) })
        };
        let mut object = self.object(json!([choice]), if self.chat { "chat.completion" } else { "text_completion" });
        object["usage"] = usage(prompt_tokens, completion_tokens);
        object
    }

    fn chunk(&self, choice: Value) -> Value {
        self.object(json!([choice]), if self.chat { "chat.completion.chunk" } else { "text_completion" })
    }

    /// The first chunk of a chat stream: the assistant's role and empty content (none for
    /// completions).
    pub fn first_chunk(&self) -> Option<Value> {
        self.chat.then(|| {
            self.chunk(json!({
                "index": 0,
                "delta": { "role": "assistant", "content": "" },
                "logprobs": null,
                "finish_reason": null,
            }))
        })
    }

    /// A chunk carrying `text`.
    pub fn text_chunk(&self, text: &str) -> Value {
        if self.chat {
            self.chunk(json!({ "index": 0, "delta": { "content": text }, "logprobs": null, "finish_reason": null }))
        } else {
            self.chunk(json!({ "index": 0, "text": text, "logprobs": null, "finish_reason": null }))
        }
    }

    /// The chunk that ends the choice.
    pub fn finish_chunk(&self, finish: Finish) -> Value {
        let reason = finish_name(finish);
        if self.chat {
            self.chunk(json!({ "index": 0, "delta": {}, "logprobs": null, "finish_reason": reason }))
        } else {
            self.chunk(json!({ "index": 0, "text": "", "logprobs": null, "finish_reason": reason }))
        }
    }

    /// The last chunk with `stream_options.include_usage`: no choices, the token counts.
    pub fn usage_chunk(&self, prompt_tokens: usize, completion_tokens: usize) -> Value {
        let mut object = self.object(json!([]), if self.chat { "chat.completion.chunk" } else { "text_completion" });
        object["usage"] = usage(prompt_tokens, completion_tokens);
        object
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { default_max_tokens: 16, max_tokens_limit: 100, max_prompt_tokens: 1000, default_temperature: 1.0 }
    }

    fn params(body: Value) -> Params {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn settings_check_ranges_and_name_the_field() {
        let s = params(json!({"max_tokens": 8, "temperature": 0, "seed": 3, "stop": "x"})).settings(&limits()).unwrap();
        assert_eq!((s.max_tokens, s.sampling.temperature, s.sampling.seed, s.stop), (8, 0.0, 3, vec!["x".to_string()]));
        for (body, param) in [
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_completion_tokens": 101}), "max_completion_tokens"),
            (json!({"temperature": -1}), "temperature"),
            (json!({"top_p": 1.5}), "top_p"),
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
        ] {
            let e = params(body).settings(&limits()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param));
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        }
        let greedy = params(json!({"top_p": 0})).settings(&limits()).unwrap();
        assert_eq!((greedy.sampling.temperature, greedy.sampling.top_p), (0.0, 1.0));
    }

    #[test]
    fn messages_take_text_parts_and_refuse_others() {
        let m: Vec<MessageIn> = serde_json::from_value(json!([
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null},
        ]))
        .unwrap();
        let out = chat_messages(Some(m)).unwrap();
        assert_eq!(out[0], ChatMessage::new("system", "be brief"));
        assert_eq!(out[1].content, "ab");
        let m: Vec<MessageIn> =
            serde_json::from_value(json!([{"role": "user", "content": [{"type": "image_url"}]}])).unwrap();
        assert!(chat_messages(Some(m)).is_err());
        assert_eq!(chat_messages(None).unwrap_err().param.as_deref(), Some("messages"));
    }
}
