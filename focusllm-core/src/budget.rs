//! Memory checks made before work starts: the bytes of the key/value caches a piece of work will
//! hold, against what the backend reports free and the caller's budget
//! ([`Control::memory_budget`]).

use crate::backend::Backend;
use crate::control::Control;
use crate::error::{Error, Result};
use crate::model::Model;

/// Bytes of the key/value caches of `tokens` positions: every layer, keys and values, in f32.
pub(crate) fn cache_bytes<B: Backend>(model: &Model<B>, tokens: usize) -> u64 {
    let c = model.config();
    tokens as u64 * (c.num_layers * c.kv_dim() * 2 * std::mem::size_of::<f32>()) as u64
}

/// Refuses, with [`Error::OutOfMemory`], work whose caches of `tokens` positions do not fit in
/// the smaller of the backend's free memory and `control`'s budget; `what` names those caches.
pub(crate) fn ensure_fits<B: Backend>(
    model: &Model<B>,
    tokens: usize,
    control: &Control,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let needed = cache_bytes(model, tokens);
    let (available, limit) = match (model.backend().memory_available(), control.memory_budget) {
        (Some(free), Some(budget)) if budget < free => (budget, "the memory budget"),
        (Some(free), _) => (free, "free on the backend"),
        (None, Some(budget)) => (budget, "the memory budget"),
        (None, None) => return Ok(()),
    };
    if needed > available {
        return Err(Error::OutOfMemory { what: what(), needed, available, limit });
    }
    Ok(())
}
