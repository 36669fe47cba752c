//! Per-sequence key/value cache. Keys are kept rotated at their positions `0..len`, so a forward
//! rotates only its new keys and reads the cache in place; a cache's tokens moved to other
//! positions (a FocusLLM candidate taken out of its chunk and placed in the local context) are
//! rotated by the difference of the angles (docs/algorithm.md).

use std::borrow::Cow;

use crate::backend::{Backend, RowSlice};
use crate::error::{Error, Result};

use super::rope::rope_shift_rows;
use super::{Model, RopeTable};

/// Keys and values of one layer, `[len, kv_heads*head_dim]` each, key row `p` rotated at position `p`.
pub struct LayerKv<B: Backend> {
    /// Keys, rotary embedding applied at their positions in the cache.
    pub k: B::Tensor,
    /// Values.
    pub v: B::Tensor,
}

impl<B: Backend> Clone for LayerKv<B> {
    fn clone(&self) -> Self {
        LayerKv { k: self.k.clone(), v: self.v.clone() }
    }
}

/// The cached keys and values of one sequence, for every layer.
pub struct KvCache<B: Backend> {
    pub(crate) layers: Vec<Option<LayerKv<B>>>,
    pub(crate) len: usize,
}

impl<B: Backend> Clone for KvCache<B> {
    fn clone(&self) -> Self {
        KvCache { layers: self.layers.clone(), len: self.len }
    }
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model of `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        KvCache { layers: (0..num_layers).map(|_| None).collect(), len: 0 }
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cached keys and values of `layer`, if any token is cached.
    pub fn layer(&self, layer: usize) -> Option<&LayerKv<B>> {
        self.layers.get(layer).and_then(Option::as_ref)
    }

    /// Builds a cache from per-layer keys/values holding `len` tokens each (e.g. FocusLLM candidates).
    pub(crate) fn from_layers(layers: Vec<LayerKv<B>>, len: usize) -> Self {
        KvCache { layers: layers.into_iter().map(Some).collect(), len }
    }
}

fn cache_error(message: String) -> Error {
    Error::InvalidOption { name: "cache", value: message, reason: "inconsistent key/value cache operation" }
}

/// A move of cached tokens from positions `from[r]` to `to[r]`, built once and applied to the
/// keys of every layer (values carry no position).
struct Shift<B: Backend> {
    /// Per row, the rotation from the old position to the new one.
    table: B::Tensor,
    /// The same with the sliding layers' RoPE base, where the model has one.
    local: Option<B::Tensor>,
    /// `0..n`: row `r` takes row `r` of the table.
    rows: Vec<u32>,
    head_dim: usize,
}

impl<B: Backend> Shift<B> {
    /// The move of `n` tokens from `from..from + n` to `to..to + n`, or `None` when they stay.
    fn new(model: &Model<B>, from: usize, to: usize, n: usize) -> Result<Option<Self>> {
        if from == to {
            return Ok(None);
        }
        Self::rows(model, &(from..from + n).collect::<Vec<_>>(), &(to..to + n).collect::<Vec<_>>())
    }

    /// The move of token `r` from `old[r]` to `new[r]`, or `None` when none moves.
    fn rows(model: &Model<B>, old: &[usize], new: &[usize]) -> Result<Option<Self>> {
        if old == new {
            return Ok(None);
        }
        let n = old.len();
        let head_dim = 2 * model.rope.inv_freq().len();
        let table =
            |rope: &RopeTable<B>| model.checked().from_host(&rope_shift_rows(rope.inv_freq(), old, new), n, head_dim);
        let local = model.rope_local.as_ref().map(table).transpose()?;
        Ok(Some(Shift { table: table(&model.rope)?, local, rows: (0..n as u32).collect(), head_dim }))
    }

    /// Keys `k` of layer `l` moved (borrowed as they are when nothing moves).
    fn keys<'t>(shift: &Option<Self>, model: &Model<B>, l: usize, k: &'t B::Tensor) -> Result<Cow<'t, B::Tensor>> {
        let Some(s) = shift else { return Ok(Cow::Borrowed(k)) };
        let table = match (&s.local, model.config.layer_window(l)) {
            (Some(local), Some(_)) => local,
            _ => &s.table,
        };
        Ok(Cow::Owned(model.checked().rope(k, &s.rows, table, s.head_dim)?))
    }
}

impl<B: Backend> KvCache<B> {
    fn filled_layers(&self) -> Result<Vec<&LayerKv<B>>> {
        self.layers
            .iter()
            .map(|l| l.as_ref().ok_or_else(|| cache_error(format!("empty layer in a cache of {} tokens", self.len))))
            .collect()
    }

    /// Moves the last `n` tokens out into a cache of their own, where they sit at positions
    /// `0..n` (FocusLLM takes the candidate's keys/values out of a chunk's cache this way).
    pub fn split_off_last(&mut self, model: &Model<B>, n: usize) -> Result<KvCache<B>> {
        let backend = model.checked();
        if n > self.len || self.len == 0 {
            return Err(cache_error(format!("split {n} of {} tokens", self.len)));
        }
        let keep = self.len - n;
        let shift = Shift::new(model, keep, 0, n)?;
        let mut tail = Vec::with_capacity(self.layers.len());
        for (l, kv) in self.layers.iter_mut().enumerate() {
            let kv = kv.as_mut().ok_or_else(|| cache_error("empty layer".into()))?;
            let rows = keep..keep + n;
            let k = backend.gather_rows(&[RowSlice { tensor: &kv.k, rows: rows.clone() }])?;
            tail.push(LayerKv {
                k: Shift::keys(&shift, model, l, &k)?.into_owned(),
                v: backend.gather_rows(&[RowSlice { tensor: &kv.v, rows }])?,
            });
            backend.truncate_rows(&mut kv.k, keep)?;
            backend.truncate_rows(&mut kv.v, keep)?;
        }
        self.len = keep;
        Ok(KvCache::from_layers(tail, n))
    }

    /// Concatenates caches along the sequence (e.g. the candidates of every chunk), each part's
    /// tokens moved to where they now sit.
    pub(crate) fn concat(model: &Model<B>, parts: &[&KvCache<B>]) -> Result<KvCache<B>> {
        let backend = model.checked();
        let Some(first) = parts.first() else { return Err(cache_error("concatenating no caches".into())) };
        let layers = first.layers.len();
        let filled: Vec<Vec<&LayerKv<B>>> = parts.iter().map(|c| c.filled_layers()).collect::<Result<_>>()?;
        if filled.iter().any(|f| f.len() != layers) {
            return Err(cache_error("caches of different models".into()));
        }
        let mut offset = 0;
        let mut shifts = Vec::with_capacity(parts.len());
        for part in parts {
            shifts.push(Shift::new(model, 0, offset, part.len)?);
            offset += part.len;
        }
        let mut out = Vec::with_capacity(layers);
        for l in 0..layers {
            let keys: Vec<Cow<'_, B::Tensor>> = filled
                .iter()
                .zip(&shifts)
                .map(|(f, shift)| Shift::keys(shift, model, l, &f[l].k))
                .collect::<Result<_>>()?;
            let ks: Vec<_> = keys.iter().map(|k| RowSlice { tensor: &**k, rows: 0..backend.dims(k).0 }).collect();
            let vs: Vec<_> =
                filled.iter().map(|f| RowSlice { tensor: &f[l].v, rows: 0..backend.dims(&f[l].v).0 }).collect();
            out.push(LayerKv { k: backend.gather_rows(&ks)?, v: backend.gather_rows(&vs)? });
        }
        Ok(KvCache::from_layers(out, offset))
    }

    /// Appends the tokens of `other` after this cache's, moved to where they now sit.
    pub(crate) fn extend(&mut self, model: &Model<B>, other: &KvCache<B>) -> Result<()> {
        let backend = model.checked();
        if self.len == 0 {
            *self = other.clone();
            return Ok(());
        }
        let src = other.filled_layers()?;
        if src.len() != self.layers.len() {
            return Err(cache_error("caches of different models".into()));
        }
        let shift = Shift::new(model, 0, self.len, other.len)?;
        for (l, (dst, src)) in self.layers.iter_mut().zip(src).enumerate() {
            let dst = dst.as_mut().ok_or_else(|| cache_error("empty layer".into()))?;
            backend.append_rows(&mut dst.k, &*Shift::keys(&shift, model, l, &src.k)?, 0..other.len)?;
            backend.append_rows(&mut dst.v, &src.v, 0..other.len)?;
        }
        self.len += other.len;
        Ok(())
    }

    /// Overwrites token `rows[i]` with token `i` of `other`, moved there (FocusLLM's cached-local
    /// decoding refreshes candidates in the local cache this way).
    pub(crate) fn overwrite(&mut self, model: &Model<B>, rows: &[usize], other: &KvCache<B>) -> Result<()> {
        let backend = model.checked();
        if rows.len() != other.len || rows.iter().any(|&r| r >= self.len) {
            return Err(cache_error(format!(
                "overwrite {} rows with {} tokens of {}",
                rows.len(),
                other.len,
                self.len
            )));
        }
        let shift = Shift::rows(model, &(0..other.len).collect::<Vec<_>>(), rows)?;
        let src = other.filled_layers()?;
        for (l, (dst, src)) in self.layers.iter_mut().zip(src).enumerate() {
            let dst = dst.as_mut().ok_or_else(|| cache_error("empty layer".into()))?;
            backend.scatter_rows(&mut dst.k, rows, &*Shift::keys(&shift, model, l, &src.k)?)?;
            backend.scatter_rows(&mut dst.v, rows, &src.v)?;
        }
        Ok(())
    }
}
