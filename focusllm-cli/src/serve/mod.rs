//! `focusllm serve`: an OpenAI-compatible HTTP server over the reading policy of `focusllm ask`.
//!
//! Routes: `POST /v1/chat/completions` and `POST /v1/completions` (whole answers, or server-sent
//! events with `"stream": true`), `GET /v1/models`, `GET /health` (the counters). One model is
//! loaded and shared by every request; a long document in a conversation is read with FocusLLM
//! exactly as `ask` reads it ([`Reader::chat_ids`], [`Reader::options`]). Generation runs on
//! blocking threads, at most `--max-concurrent` at once with `--max-queue` more waiting (429
//! past that); a client that disconnects cancels its generation. Every refusal is an OpenAI-style
//! error body. When it is ready the server prints `listening on http://HOST:PORT` on stdout;
//! Ctrl-C (or SIGTERM) cancels the running generations and stops it.

mod error;
mod generate;
mod handlers;
mod stop;
mod wire;

pub use error::ApiError;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::error::CliError;
use crate::focus_args::FocusArgs;
use crate::model_args::ModelArgs;
use crate::reading::Reader;
use crate::sizes::DEFAULT_CHUNK_CACHE_MIB;

/// The name the default model is served under.
const DEFAULT_MODEL_NAME: &str = "SmolLM2-135M-Instruct";

/// How long a shutdown waits for the generations it cancelled to wind down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Flags of `focusllm serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The model to serve.
    #[command(flatten)]
    pub model: ModelArgs,
    /// How long prompts are read.
    #[command(flatten)]
    pub focus: FocusArgs,
    /// The address to listen on.
    #[arg(long, help_heading = "Server", default_value = "127.0.0.1")]
    pub host: String,
    /// The port to listen on (0: one the system chooses, printed when ready).
    #[arg(long, help_heading = "Server", default_value_t = 8080)]
    pub port: u16,
    /// The name clients give as `model` [default: the model file's or directory's name;
    /// SmolLM2-135M-Instruct for the default model].
    #[arg(long, help_heading = "Server", value_name = "NAME")]
    pub served_model_name: Option<String>,
    /// Generations running at once; more wait in the queue.
    #[arg(long, help_heading = "Server", value_name = "N", default_value_t = 1)]
    pub max_concurrent: usize,
    /// Requests waiting for a turn; past that the server answers 429.
    #[arg(long, help_heading = "Server", value_name = "N", default_value_t = 16)]
    pub max_queue: usize,
    /// The most tokens a prompt may have (after the chat template); longer ones get a 400.
    #[arg(long, help_heading = "Server", value_name = "N", default_value_t = 131_072)]
    pub max_prompt_tokens: usize,
    /// `max_tokens` of a request that gives none.
    #[arg(long, help_heading = "Server", value_name = "N", default_value_t = 256)]
    pub default_max_tokens: usize,
    /// The most `max_tokens` a request may ask for; more gets a 400.
    #[arg(long, help_heading = "Server", value_name = "N", default_value_t = 8192)]
    pub max_tokens_limit: usize,
    /// The temperature of a request that gives none (OpenAI's default is 1; 0 is greedy).
    #[arg(long, help_heading = "Server", value_name = "T", default_value_t = 1.0)]
    pub default_temperature: f32,
    /// The largest request body taken, in bytes (a long document is sent whole).
    #[arg(long, help_heading = "Server", value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_request_bytes: usize,
    /// Memory for FocusLLM chunks kept between requests, in MiB: a long document sent again (a
    /// follow-up question, a growing conversation) reuses the chunks already read (0: off).
    #[arg(long, help_heading = "Server", value_name = "MIB", default_value_t = DEFAULT_CHUNK_CACHE_MIB)]
    pub chunk_cache_mib: u64,
}

impl ServeArgs {
    /// The name the model is served under: `--served-model-name`, else the model file's name
    /// without its extension or the model directory's name.
    pub fn model_name(&self) -> String {
        if let Some(name) = &self.served_model_name {
            return name.clone();
        }
        let Some(path) = &self.model.model else { return DEFAULT_MODEL_NAME.to_string() };
        let name = if path.is_dir() { path.file_name() } else { path.file_stem() };
        name.or_else(|| path.file_name()).map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into())
    }

    /// Refuses limits the server cannot work with.
    fn check(&self) -> Result<(), CliError> {
        let positive = [
            ("--max-concurrent", self.max_concurrent),
            ("--max-prompt-tokens", self.max_prompt_tokens),
            ("--default-max-tokens", self.default_max_tokens),
            ("--max-tokens-limit", self.max_tokens_limit),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(CliError::Usage(format!("{flag} must be at least 1")));
        }
        if self.default_max_tokens > self.max_tokens_limit {
            return Err(CliError::Usage(format!(
                "--default-max-tokens {} is over --max-tokens-limit {}",
                self.default_max_tokens, self.max_tokens_limit
            )));
        }
        let t = self.default_temperature;
        if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
            return Err(CliError::Usage(format!("--default-temperature must be in [0, 2], not {t}")));
        }
        Ok(())
    }
}

/// A line on stderr; a closed stderr is not worth stopping the server for.
fn log(line: &str) {
    let _ = writeln!(std::io::stderr(), "focusllm serve: {line}");
}

/// Loads the model, listens, prints `listening on http://HOST:PORT` on stdout, and serves until
/// Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), CliError> {
    args.check()?;
    let model = args.model_name();
    log(&format!("loading {model}"));
    let reader = Arc::new(Reader::load(&args.model, &args.focus)?);
    reader.llm().set_chunk_cache_limit(args.chunk_cache_mib.saturating_mul(1 << 20));
    let engine =
        Arc::new(generate::Engine { reader, stats: generate::Stats::default(), running: generate::Running::default() });
    let app = Arc::new(handlers::App {
        engine: engine.clone(),
        gate: generate::Gate::new(args.max_concurrent, args.max_queue),
        model,
        created: wire::unix_time(),
        limits: wire::Limits {
            default_max_tokens: args.default_max_tokens,
            max_tokens_limit: args.max_tokens_limit,
            max_prompt_tokens: args.max_prompt_tokens,
            default_temperature: args.default_temperature,
        },
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("focusllm-serve")
        .build()
        .map_err(|source| CliError::Server { what: "cannot start its runtime".into(), source })?;
    let served = runtime.block_on(serve(app, &args));
    // Cancelled generations stop at their next check; do not wait for longer than that.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    served
}

async fn serve(app: Arc<handlers::App>, args: &ServeArgs) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|source| CliError::Server { what: format!("cannot listen on {}:{}", args.host, args.port), source })?;
    let address = listener.local_addr().map_err(|source| CliError::Server { what: "cannot listen".into(), source })?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{address}")
            .and_then(|()| out.flush())
            .map_err(|e| CliError::Terminal(e.to_string()))?;
    }
    log(&format!("serving {} on http://{address}", app.model));
    let router = handlers::router(app.clone(), args.max_request_bytes);
    axum::serve(listener, router)
        .with_graceful_shutdown(stopped(app))
        .await
        .map_err(|source| CliError::Server { what: "failed".into(), source })
}

/// Resolves on Ctrl-C or SIGTERM, after refusing new work and cancelling the running generations.
async fn stopped(app: Arc<handlers::App>) {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler: serve until the process is killed.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    log("shutting down");
    app.gate.close();
    app.engine.running.stop_all();
}
