//! What long-running work is handed besides its input: a [`CancelToken`] another thread can
//! trigger, a [`ProgressCallback`] that receives [`Progress`] reports, and the memory budget its
//! caches must fit, joined in a [`Control`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag that cancels generation from another thread; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder of this token to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`CancelToken::cancel`] has been called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Progress of long work, reported through a [`ProgressCallback`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// Prefill: `done` of `total` steps (FocusLLM: memory chunks condensed, plus the local forward).
    Prefill {
        /// Steps finished.
        done: usize,
        /// Steps in all.
        total: usize,
    },
    /// Generation: tokens so far and the rate since the first one.
    Generated {
        /// Tokens generated so far.
        tokens: usize,
        /// Tokens per second since the first generated token.
        tokens_per_second: f64,
    },
}

/// A function called with [`Progress`] reports; cheap to clone.
#[derive(Clone)]
pub struct ProgressCallback(pub Arc<dyn Fn(Progress) + Send + Sync>);

impl ProgressCallback {
    /// Wraps a closure.
    pub fn new(f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        ProgressCallback(Arc::new(f))
    }
}

impl std::fmt::Debug for ProgressCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressCallback")
    }
}

/// Cancellation, progress reporting and the memory budget handed to long-running work.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Checked between units of work.
    pub cancel: Option<CancelToken>,
    /// Called after each unit of work.
    pub progress: Option<ProgressCallback>,
    /// Most bytes the work's key/value caches may take, below whatever the backend reports free;
    /// `None`: only the backend's limit. Work that would not fit is refused before it starts.
    pub memory_budget: Option<u64>,
    /// Tokens the caller may generate after the prefill: the memory check counts their cache rows.
    pub reserve_tokens: usize,
}

impl Control {
    /// Whether cancellation was requested.
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }

    /// Reports progress, if anyone listens.
    pub fn report(&self, progress: Progress) {
        if let Some(cb) = &self.progress {
            (cb.0)(progress);
        }
    }
}
