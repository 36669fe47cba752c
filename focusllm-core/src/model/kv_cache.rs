//! Per-sequence key/value cache. Keys are kept *before* RoPE, so each forward can place the cached
//! tokens at fresh positions (docs/algorithm.md: what lets a FocusLLM candidate move between contexts).

use crate::backend::{Backend, RowSlice};
use crate::check::Checked;
use crate::error::{Error, Result};

/// Keys and values of one layer, `[len, kv_heads*head_dim]` each, keys without RoPE.
pub struct LayerKv<B: Backend> {
    /// Keys before rotary embedding.
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

impl<B: Backend> KvCache<B> {
    fn filled_layers(&self) -> Result<Vec<&LayerKv<B>>> {
        self.layers
            .iter()
            .map(|l| l.as_ref().ok_or_else(|| cache_error(format!("empty layer in a cache of {} tokens", self.len))))
            .collect()
    }

    /// Moves the last `n` tokens out into a cache of their own (FocusLLM takes the candidate's
    /// keys/values out of a chunk's cache this way).
    pub fn split_off_last(&mut self, backend: &B, n: usize) -> Result<KvCache<B>> {
        let backend = Checked::new(backend);
        if n > self.len || self.len == 0 {
            return Err(cache_error(format!("split {n} of {} tokens", self.len)));
        }
        let keep = self.len - n;
        let mut tail = Vec::with_capacity(self.layers.len());
        for kv in self.layers.iter_mut() {
            let kv = kv.as_mut().ok_or_else(|| cache_error("empty layer".into()))?;
            let rows = keep..keep + n;
            tail.push(LayerKv {
                k: backend.gather_rows(&[RowSlice { tensor: &kv.k, rows: rows.clone() }])?,
                v: backend.gather_rows(&[RowSlice { tensor: &kv.v, rows }])?,
            });
            backend.truncate_rows(&mut kv.k, keep)?;
            backend.truncate_rows(&mut kv.v, keep)?;
        }
        self.len = keep;
        Ok(KvCache::from_layers(tail, n))
    }

    /// Concatenates caches along the sequence (e.g. the candidates of every chunk).
    pub(crate) fn concat(backend: &B, parts: &[&KvCache<B>]) -> Result<KvCache<B>> {
        let backend = Checked::new(backend);
        let Some(first) = parts.first() else { return Err(cache_error("concatenating no caches".into())) };
        let layers = first.layers.len();
        let filled: Vec<Vec<&LayerKv<B>>> = parts.iter().map(|c| c.filled_layers()).collect::<Result<_>>()?;
        if filled.iter().any(|f| f.len() != layers) {
            return Err(cache_error("caches of different models".into()));
        }
        let mut out = Vec::with_capacity(layers);
        for l in 0..layers {
            let ks: Vec<_> =
                filled.iter().map(|f| RowSlice { tensor: &f[l].k, rows: 0..backend.dims(&f[l].k).0 }).collect();
            let vs: Vec<_> =
                filled.iter().map(|f| RowSlice { tensor: &f[l].v, rows: 0..backend.dims(&f[l].v).0 }).collect();
            out.push(LayerKv { k: backend.gather_rows(&ks)?, v: backend.gather_rows(&vs)? });
        }
        Ok(KvCache::from_layers(out, parts.iter().map(|c| c.len).sum()))
    }

    /// Appends the tokens of `other` after this cache's.
    pub(crate) fn extend(&mut self, backend: &B, other: &KvCache<B>) -> Result<()> {
        let backend = Checked::new(backend);
        if self.len == 0 {
            *self = other.clone();
            return Ok(());
        }
        let src = other.filled_layers()?;
        if src.len() != self.layers.len() {
            return Err(cache_error("caches of different models".into()));
        }
        for (dst, src) in self.layers.iter_mut().zip(src) {
            let dst = dst.as_mut().ok_or_else(|| cache_error("empty layer".into()))?;
            backend.append_rows(&mut dst.k, &src.k, 0..other.len)?;
            backend.append_rows(&mut dst.v, &src.v, 0..other.len)?;
        }
        self.len += other.len;
        Ok(())
    }

    /// Overwrites tokens `start..start + other.len()` with those of `other` (FocusLLM's cached-local
    /// decoding refreshes the candidates at the front of the local cache this way).
    pub(crate) fn overwrite(&mut self, backend: &B, start: usize, other: &KvCache<B>) -> Result<()> {
        let backend = Checked::new(backend);
        if start + other.len > self.len {
            return Err(cache_error(format!("overwrite {}..{} of {} tokens", start, start + other.len, self.len)));
        }
        let rows: Vec<usize> = (start..start + other.len).collect();
        let src = other.filled_layers()?;
        for (dst, src) in self.layers.iter_mut().zip(src) {
            let dst = dst.as_mut().ok_or_else(|| cache_error("empty layer".into()))?;
            backend.scatter_rows(&mut dst.k, &rows, &src.k)?;
            backend.scatter_rows(&mut dst.v, &rows, &src.v)?;
        }
        Ok(())
    }
}
