//! The routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`,
//! `GET /v1/models/{id}`, `GET /health`, and OpenAI-style answers for every other path and method.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};

use super::error::{no_route, wrong_method, ApiError};
use super::generate::{self, Engine, Event, Gate, Generation, Job};
use super::wire::{self, Answer, ApiJson, ChatRequest, CompletionRequest, Limits, Prompt, Settings};

/// How often an idle stream sends a comment line, so that a client gone during a long read is
/// noticed (the write fails) and its work cancelled.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Everything the handlers share.
pub struct App {
    /// The model, its reading policy, the counters.
    pub engine: Arc<Engine>,
    /// Admission of generations.
    pub gate: Gate,
    /// The name clients give as `model`.
    pub model: String,
    /// When the model was loaded, in Unix seconds (`created` of `/v1/models`).
    pub created: u64,
    /// Request limits and defaults.
    pub limits: Limits,
}

impl App {
    fn check_model(&self, asked: Option<&str>) -> Result<(), ApiError> {
        match asked {
            None => Err(ApiError::invalid("model", "you must provide a model parameter")),
            Some(name) if name == self.model => Ok(()),
            Some(name) => Err(ApiError::unknown_model(name, &self.model)),
        }
    }

    fn check_prompt(&self, tokens: usize, param: &str) -> Result<(), ApiError> {
        let limit = self.limits.max_prompt_tokens;
        if tokens > limit {
            return Err(ApiError::invalid(
                param,
                format!("the prompt has {tokens} tokens, more than this server reads ({limit}, --max-prompt-tokens)"),
            )
            .code("context_length_exceeded"));
        }
        self.engine.reader.check(tokens).map_err(|e| ApiError::from_cli(e, param))
    }

    fn model_object(&self) -> Value {
        json!({ "id": self.model, "object": "model", "created": self.created, "owned_by": "focusllm" })
    }
}

/// The router over `app`, taking request bodies up to `max_request_bytes`.
pub fn router(app: Arc<App>, max_request_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(app)
}

/// `GET /health`: the model, the counters and the chunk cache's.
async fn health(State(app): State<Arc<App>>) -> Json<Value> {
    let stats = &app.engine.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::SeqCst);
    Json(json!({
        "status": if app.engine.running.stopping() { "shutting_down" } else { "ok" },
        "model": app.model,
        "active": load(&stats.active),
        "queued": app.gate.waiting(),
        "completed": load(&stats.completed),
        "cancelled": load(&stats.cancelled),
        "failed": load(&stats.failed),
        "rejected": load(&stats.rejected),
        "chunk_cache": chunk_cache(app.engine.reader.llm().chunk_cache_stats()),
    }))
}

/// The chunk cache's counters, as `/health` reports them.
fn chunk_cache(c: focusllm::ChunkCacheStats) -> Value {
    json!({
        "chunks": c.chunks,
        "bytes": c.bytes,
        "limit_bytes": c.limit,
        "hits": c.hits,
        "misses": c.misses,
        "evictions": c.evictions,
    })
}

/// `GET /v1/models`: the one served model.
async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({ "object": "list", "data": [app.model_object()] }))
}

/// `GET /v1/models/{id}`.
async fn model(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if id != app.model {
        return Err(ApiError::unknown_model(&id, &app.model));
    }
    Ok(Json(app.model_object()))
}

/// Runs blocking work (tokenising a long document) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("tokenising failed: {e}")))
}

/// `POST /v1/chat/completions`: the conversation under the model's chat template, read as
/// `focusllm ask` reads a document.
async fn chat(State(app): State<Arc<App>>, ApiJson(request): ApiJson<ChatRequest>) -> Result<Response, ApiError> {
    app.check_model(request.model.as_deref())?;
    let settings = request.params.settings(&app.limits)?;
    let messages = wire::chat_messages(request.messages)?;
    let engine = app.engine.clone();
    let ids =
        blocking(move || engine.reader.chat_ids(&messages)).await?.map_err(|e| ApiError::from_cli(e, "messages"))?;
    app.check_prompt(ids.len(), "messages")?;
    respond(&app, Answer::new(true, &app.model), ids, settings).await
}

/// `POST /v1/completions`: a continuation of the prompt's text (or token ids).
async fn completions(
    State(app): State<Arc<App>>,
    ApiJson(request): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    app.check_model(request.model.as_deref())?;
    let settings = request.params.settings(&app.limits)?;
    let one = |n: usize| if n == 1 { Ok(()) } else { Err(ApiError::invalid("prompt", "give exactly one prompt")) };
    let text = match request.prompt {
        None => return Err(ApiError::invalid("prompt", "the request has no `prompt`")),
        Some(Prompt::Text(text)) => text,
        Some(Prompt::Texts(mut texts)) => {
            one(texts.len())?;
            texts.remove(0)
        }
        Some(Prompt::Ids(ids)) => return completions_of(&app, ids, settings).await,
        Some(Prompt::IdLists(mut lists)) => {
            one(lists.len())?;
            return completions_of(&app, lists.remove(0), settings).await;
        }
    };
    let engine = app.engine.clone();
    let ids = blocking(move || engine.reader.llm().tokenizer().encode(&text))
        .await?
        .map_err(|e| ApiError::from_library(&e).param("prompt"))?;
    completions_of(&app, ids, settings).await
}

async fn completions_of(app: &Arc<App>, ids: Vec<u32>, settings: Settings) -> Result<Response, ApiError> {
    if ids.is_empty() {
        return Err(ApiError::invalid("prompt", "the prompt is empty"));
    }
    app.check_prompt(ids.len(), "prompt")?;
    respond(app, Answer::new(false, &app.model), ids, settings).await
}

/// Waits for a turn, starts the generation, and answers with the whole text or a stream of it.
async fn respond(app: &Arc<App>, answer: Answer, ids: Vec<u32>, settings: Settings) -> Result<Response, ApiError> {
    if app.engine.running.stopping() {
        return Err(ApiError::shutting_down());
    }
    let permit = app.gate.enter().await.inspect_err(|e| {
        if e.code == Some("queue_full") {
            app.engine.stats.rejected.fetch_add(1, Ordering::SeqCst);
        }
    })?;
    let prompt_tokens = ids.len();
    let job = Job {
        ids,
        max_tokens: settings.max_tokens,
        sampling: settings.sampling.clone(),
        stop: settings.stop.clone(),
        ignore_eos: settings.ignore_eos,
    };
    let mut generation = generate::start(app.engine.clone(), permit, job);
    if settings.stream {
        return Ok(Sse::new(events(generation, answer, prompt_tokens, settings.include_usage))
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
            .into_response());
    }
    let mut text = String::new();
    loop {
        match generation.next().await {
            Some(Event::Text(piece)) => text.push_str(&piece),
            Some(Event::Done { finish, tokens }) => {
                return Ok(Json(answer.complete(&text, finish, prompt_tokens, tokens)).into_response())
            }
            Some(Event::Failed(e)) => return Err(e),
            None => return Err(ApiError::internal("the generation ended without an answer")),
        }
    }
}

fn data(value: &Value) -> sse::Event {
    sse::Event::default().data(value.to_string())
}

/// The server-sent events of a streamed answer: the chunks, the finish chunk, the usage chunk
/// when asked, `[DONE]`; a failure is one `{"error": ...}` event. Dropping the stream (the client
/// went away) drops the [`Generation`], which cancels the work.
fn events(
    generation: Generation,
    answer: Answer,
    prompt_tokens: usize,
    include_usage: bool,
) -> impl Stream<Item = Result<sse::Event, Infallible>> {
    let head = answer.first_chunk().map(|chunk| data(&chunk));
    let body = stream::unfold(Some((generation, answer)), move |state| async move {
        let (mut generation, answer) = state?;
        let last = match generation.next().await {
            Some(Event::Text(text)) => {
                let chunk = data(&answer.text_chunk(&text));
                return Some((vec![chunk], Some((generation, answer))));
            }
            Some(Event::Done { finish, tokens }) => {
                let mut last = vec![data(&answer.finish_chunk(finish))];
                if include_usage {
                    last.push(data(&answer.usage_chunk(prompt_tokens, tokens)));
                }
                last.push(sse::Event::default().data("[DONE]"));
                last
            }
            Some(Event::Failed(e)) => vec![data(&e.body())],
            None => vec![data(&ApiError::internal("the generation ended without an answer").body())],
        };
        Some((last, None))
    });
    stream::iter(head).chain(body.flat_map(stream::iter)).map(Ok)
}
