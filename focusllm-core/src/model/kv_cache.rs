//! Per-sequence key/value cache. Keys are kept *before* RoPE, so each forward can place the cached
//! tokens at fresh positions (DESIGN §2: what lets a FocusLLM candidate move between contexts).

use crate::backend::Backend;

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
    pub fn from_layers(layers: Vec<LayerKv<B>>, len: usize) -> Self {
        KvCache { layers: layers.into_iter().map(Some).collect(), len }
    }
}
