//! The chunk cache: raw key/value caches of FocusLLM memory chunks, found by the chunk's tokens,
//! so that a chunk read once is not read again by a later prompt or document holding the same
//! tokens (docs/algorithm.md, "Read once, ask many"). Bounded in bytes, least recently used out
//! first; off (a limit of 0 bytes) until [`Model::set_chunk_cache_limit`](super::Model::set_chunk_cache_limit).
//!
//! A chunk's raw cache depends on the model's weights and the chunk's tokens alone: the chunk
//! starts at position 0 of its own sequence, and the candidate projections act only on candidate
//! tokens, which a raw cache never holds.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lru::LruCache;

use crate::backend::Backend;

use super::KvCache;

/// What the chunk cache holds and has done since the model was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkCacheStats {
    /// Chunks held.
    pub chunks: usize,
    /// Bytes of the caches held.
    pub bytes: u64,
    /// The most bytes the cache holds (0: it is off).
    pub limit: u64,
    /// Chunks found in the cache.
    pub hits: u64,
    /// Chunks looked up and not found (then computed, and kept if they fit).
    pub misses: u64,
    /// Chunks dropped to make room, or because the limit was lowered.
    pub evictions: u64,
}

/// One chunk's raw cache with its size in bytes.
struct Entry<B: Backend> {
    cache: Arc<KvCache<B>>,
    bytes: u64,
}

struct Inner<B: Backend> {
    entries: LruCache<Vec<u32>, Entry<B>>,
    stats: ChunkCacheStats,
}

impl<B: Backend> Inner<B> {
    /// Drops least recently used chunks until the held bytes are within the limit.
    fn evict(&mut self) {
        while self.stats.bytes > self.stats.limit {
            let Some((_, entry)) = self.entries.pop_lru() else { break };
            self.stats.bytes -= entry.bytes;
            self.stats.evictions += 1;
        }
        self.stats.chunks = self.entries.len();
    }
}

/// The chunk cache of one model; shared by every thread generating with it.
pub(crate) struct ChunkStore<B: Backend> {
    inner: Mutex<Inner<B>>,
}

impl<B: Backend> ChunkStore<B> {
    /// An empty cache, off.
    pub(crate) fn new() -> Self {
        ChunkStore { inner: Mutex::new(Inner { entries: LruCache::unbounded(), stats: ChunkCacheStats::default() }) }
    }

    /// The state, also after a thread panicked holding it: every change to it is completed
    /// before the lock is released, so it is consistent whatever happened elsewhere.
    fn lock(&self) -> MutexGuard<'_, Inner<B>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether chunks are looked up and kept (the limit is above 0).
    pub(crate) fn enabled(&self) -> bool {
        self.lock().stats.limit > 0
    }

    /// Sets the most bytes held, dropping least recently used chunks past it (0 empties the
    /// cache and turns it off).
    pub(crate) fn set_limit(&self, bytes: u64) {
        let mut inner = self.lock();
        inner.stats.limit = bytes;
        inner.evict();
    }

    /// The chunk's raw cache, if held (it becomes the most recently used); counted as a hit or a
    /// miss. `None` without counting when the cache is off.
    pub(crate) fn get(&self, tokens: &[u32]) -> Option<Arc<KvCache<B>>> {
        let mut inner = self.lock();
        if inner.stats.limit == 0 {
            return None;
        }
        let found = inner.entries.get(tokens).map(|e| Arc::clone(&e.cache));
        match found {
            Some(_) => inner.stats.hits += 1,
            None => inner.stats.misses += 1,
        }
        found
    }

    /// Whether the chunk's raw cache is held (not counted, and not made more recently used).
    pub(crate) fn contains(&self, tokens: &[u32]) -> bool {
        self.lock().entries.contains(tokens)
    }

    /// Keeps a chunk's raw cache of `bytes` bytes as the most recently used, dropping the least
    /// recently used ones past the limit. A cache larger than the whole limit is not kept.
    pub(crate) fn insert(&self, tokens: &[u32], cache: Arc<KvCache<B>>, bytes: u64) {
        let mut inner = self.lock();
        if bytes > inner.stats.limit {
            return;
        }
        if let Some(old) = inner.entries.put(tokens.to_vec(), Entry { cache, bytes }) {
            inner.stats.bytes -= old.bytes;
        }
        inner.stats.bytes += bytes;
        inner.evict();
    }

    /// What the cache holds and has done.
    pub(crate) fn stats(&self) -> ChunkCacheStats {
        self.lock().stats
    }
}
