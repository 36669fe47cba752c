//! Generations on blocking threads: admission to a bounded number of running generations with a
//! bounded queue, the worker that runs one through the reading policy, and the counters
//! `/health` reports.
//!
//! A worker sends its text through a channel; the receiving side ([`Generation`]) cancels the
//! work when it is dropped, so a client that goes away stops its generation at the library's next
//! check (between chunk batches of a FocusLLM read, between tokens).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use focusllm::{CancelToken, FinishReason, Sampling};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::stop::StopMatcher;
use crate::reading::Reader;

/// Why a finished choice ended, in OpenAI's two words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model chose an end token, or a stop string was met.
    Stop,
    /// `max_tokens` were generated.
    Length,
}

/// What a worker sends to the request it serves.
#[derive(Debug)]
pub enum Event {
    /// More text of the answer.
    Text(String),
    /// The generation ended normally; `tokens` were generated.
    Done {
        /// Why it ended.
        finish: Finish,
        /// Tokens generated.
        tokens: usize,
    },
    /// The generation failed (or was stopped by the server's shutdown).
    Failed(ApiError),
}

/// One generation asked of a worker.
#[derive(Debug, Clone)]
pub struct Job {
    /// The prompt's token ids.
    pub ids: Vec<u32>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How tokens are chosen.
    pub sampling: Sampling,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Generate past the end-of-sequence token.
    pub ignore_eos: bool,
}

/// The counters `/health` reports.
#[derive(Debug, Default)]
pub struct Stats {
    /// Generations running now.
    pub active: AtomicU64,
    /// Generations that ended normally (an end token, a stop string, `max_tokens`).
    pub completed: AtomicU64,
    /// Generations stopped because their client went away (or the server stopped).
    pub cancelled: AtomicU64,
    /// Generations that failed.
    pub failed: AtomicU64,
    /// Requests refused because the queue was full.
    pub rejected: AtomicU64,
}

/// Admission: at most `max_concurrent` generations run, at most `max_queue` wait for a turn, the
/// rest are refused.
#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    waiting: AtomicUsize,
    max_queue: usize,
}

/// Decrements the waiting count when a request leaves the queue, admitted or gone.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    /// A gate for `max_concurrent` (at least 1) running generations and `max_queue` waiting ones.
    pub fn new(max_concurrent: usize, max_queue: usize) -> Self {
        let max_concurrent = max_concurrent.max(1);
        Gate {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            waiting: AtomicUsize::new(0),
            max_queue,
        }
    }

    /// Requests waiting for a turn.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Waits for a turn to run: the permit ends the turn when dropped. Refused at once when the
    /// queue is full, and when the server is stopping.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(ApiError::shutting_down()),
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if before >= self.max_queue {
            return Err(ApiError::queue_full(self.max_concurrent, self.max_queue));
        }
        self.permits.clone().acquire_owned().await.map_err(|_| ApiError::shutting_down())
    }

    /// Refuses every request waiting or to come (the server is stopping).
    pub fn close(&self) {
        self.permits.close();
    }
}

/// The cancel tokens of the running generations, so that a shutdown can stop them all.
#[derive(Debug, Default)]
pub struct Running {
    tokens: Mutex<HashMap<u64, CancelToken>>,
    next: AtomicU64,
    stopping: AtomicBool,
}

impl Running {
    fn add(&self, token: CancelToken) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(id, token.clone());
        }
        // A generation registered after the shutdown began is stopped too.
        if self.stopping.load(Ordering::SeqCst) {
            token.cancel();
        }
        id
    }

    fn remove(&self, id: u64) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(&id);
        }
    }

    /// Whether the server is stopping.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Cancels every running generation and every one that starts from now on.
    pub fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Ok(tokens) = self.tokens.lock() {
            tokens.values().for_each(CancelToken::cancel);
        }
    }
}

/// What the workers share: the model with its reading policy, the counters and the registry of
/// running generations.
pub struct Engine {
    /// The loaded model and the policy prompts are read by.
    pub reader: Arc<Reader>,
    /// The counters of `/health`.
    pub stats: Stats,
    /// Running generations' cancel tokens.
    pub running: Running,
}

/// A running generation, seen from its request: the worker's events, and a cancel token fired
/// when this is dropped before the worker said it was done.
pub struct Generation {
    /// The worker's events, in order; closed after `Done` or `Failed`.
    pub events: mpsc::Receiver<Event>,
    cancel: CancelToken,
    done: bool,
}

impl Generation {
    /// The next event; `None` when the worker has ended. After `Done` or `Failed` dropping this
    /// no longer cancels anything.
    pub async fn next(&mut self) -> Option<Event> {
        let event = self.events.recv().await;
        if matches!(event, None | Some(Event::Done { .. }) | Some(Event::Failed(_))) {
            self.done = true;
        }
        event
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.done {
            self.cancel.cancel();
        }
    }
}

/// Events a worker may send ahead of the request reading them.
const CHANNEL: usize = 32;

/// Keeps `Stats::active` and the registry right however the worker ends.
struct Turn<'a> {
    engine: &'a Engine,
    id: u64,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.engine.running.remove(self.id);
        self.engine.stats.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts `job` on a blocking thread, holding `permit` until the work has really stopped. The
/// last event is sent after the permit is given back and the counters are updated, so that a
/// client that has its answer finds the slot free and `/health` up to date.
pub fn start(engine: Arc<Engine>, permit: OwnedSemaphorePermit, job: Job) -> Generation {
    let (tx, events) = mpsc::channel(CHANNEL);
    let cancel = CancelToken::new();
    let token = cancel.clone();
    tokio::task::spawn_blocking(move || {
        engine.stats.active.fetch_add(1, Ordering::SeqCst);
        let turn = Turn { engine: &engine, id: engine.running.add(token.clone()) };
        let (outcome, last) = run(&engine.reader, &job, &token, &tx);
        // In this order, a counter seen updated means the slot is free, and `active` seen
        // lowered means the counters are updated.
        drop(permit);
        let stats = &engine.stats;
        let counter = match outcome {
            Outcome::Done => &stats.completed,
            Outcome::Cancelled => &stats.cancelled,
            Outcome::Failed => &stats.failed,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        drop(turn);
        let last = match (outcome, last) {
            (Outcome::Cancelled, _) if engine.running.stopping() => Some(Event::Failed(ApiError::shutting_down())),
            (_, last) => last,
        };
        // Nobody listening any more is no failure: the work is over either way.
        if let Some(last) = last {
            let _ = tx.blocking_send(last);
        }
    });
    Generation { events, cancel, done: false }
}

/// How a worker's generation ended.
enum Outcome {
    Done,
    Cancelled,
    Failed,
}

/// Runs one generation, sending its text through `tx`; stops when `cancel` fires or nobody
/// listens any more. Returns how it ended and the last event to send (`Done` or `Failed`).
fn run(reader: &Reader, job: &Job, cancel: &CancelToken, tx: &mpsc::Sender<Event>) -> (Outcome, Option<Event>) {
    let mut options = reader.options(job.ids.len(), job.max_tokens, job.sampling.clone(), Some(cancel.clone()), None);
    options.stop_at_eos = !job.ignore_eos;
    super::log(&format!("generating: {}, up to {} tokens", reader.describe(job.ids.len()), job.max_tokens));
    let fail = |e: &focusllm::Error| {
        if matches!(e, focusllm::Error::Cancelled) || cancel.is_cancelled() {
            return (Outcome::Cancelled, None);
        }
        super::log(&format!("generation failed: {e}"));
        (Outcome::Failed, Some(Event::Failed(ApiError::from_library(e))))
    };
    let mut stream = match reader.llm().generate_ids(&job.ids, &options) {
        Ok(stream) => stream,
        Err(e) => return fail(&e),
    };
    let mut stops = StopMatcher::new(job.stop.clone());
    let mut tokens = 0usize;
    let mut stopped = false;
    for token in stream.by_ref() {
        let token = match token {
            Ok(token) => token,
            Err(e) => return fail(&e),
        };
        tokens += 1;
        let (text, stop) = stops.push(&token.text);
        if !text.is_empty() && tx.blocking_send(Event::Text(text)).is_err() {
            cancel.cancel();
            return (Outcome::Cancelled, None);
        }
        if stop {
            stopped = true;
            break;
        }
    }
    let finish = match (stopped, stream.finish_reason()) {
        (true, _) | (false, Some(FinishReason::Stop(_))) => Finish::Stop,
        (false, Some(FinishReason::MaxTokens)) => Finish::Length,
        (false, Some(FinishReason::Cancelled)) => return (Outcome::Cancelled, None),
        (false, None) => Finish::Stop,
    };
    let rest = stops.finish();
    if !rest.is_empty() && tx.blocking_send(Event::Text(rest)).is_err() {
        return (Outcome::Cancelled, None);
    }
    (Outcome::Done, Some(Event::Done { finish, tokens }))
}
