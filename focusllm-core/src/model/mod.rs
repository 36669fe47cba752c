//! The decoder, written once over [`Backend`] for every architecture: what differs between them
//! (norm placement, activation, per-layer attention window and RoPE) is read from [`ModelConfig`].
//!
//! One [`Model::forward`] runs a batch of independent sequences packed along the rows. Each sequence
//! brings its own [`KvCache`] (keys cached rotated at positions `0..len`; a forward rotates only
//! its new keys, at `len..len + new`, and attends over the cache in place), may ask for its last
//! token to use the candidate projections (FocusLLM's candidate token), and chooses which
//! positions' logits it needs.

mod attention_mass;
mod chunk_store;
mod kv_cache;
mod load;
mod rope;

pub(crate) use attention_mass::MassProbe;
pub use chunk_store::ChunkCacheStats;
pub(crate) use chunk_store::ChunkStore;
pub use kv_cache::{KvCache, LayerKv};
pub use rope::{rope_table_rows, RopeTable};

use crate::backend::{AttentionSeq, Backend, HeadLayout, KeyValues, RowSlice};
use crate::check::Checked;
use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// A projection `x @ W^T + b` resident on the backend.
pub(crate) struct Linear<B: Backend> {
    /// `[out, in]` weight.
    pub weight: B::Weight,
    /// Optional `[out]` bias.
    pub bias: Option<B::Weight>,
}

impl<B: Backend> Linear<B> {
    fn forward(&self, backend: Checked<'_, B>, x: &B::Tensor) -> Result<B::Tensor> {
        backend.linear(x, &self.weight, self.bias.as_ref())
    }
}

/// The attention projections of one layer.
pub(crate) struct Attention<B: Backend> {
    /// Query projection.
    pub q: Linear<B>,
    /// Key projection.
    pub k: Linear<B>,
    /// Value projection.
    pub v: Linear<B>,
    /// Output projection.
    pub o: Linear<B>,
    /// The per-head RMSNorm weight of the queries (`head_dim` values), where the model has one.
    pub q_norm: Option<B::Weight>,
    /// The same for the keys.
    pub k_norm: Option<B::Weight>,
}

/// The gated MLP of one layer.
pub(crate) struct Mlp<B: Backend> {
    /// Gate projection (through the activation).
    pub gate: Linear<B>,
    /// Up projection.
    pub up: Linear<B>,
    /// Down projection.
    pub down: Linear<B>,
}

/// One candidate projection: a matrix of its own, or the ordinary projection plus a low-rank delta.
pub(crate) enum CandidateLinear<B: Backend> {
    /// A full `beacon_*_proj.weight` (and bias), as a trained FocusLLM checkpoint ships it.
    Full(Linear<B>),
    /// The ordinary projection plus `lora_b · lora_a`, as the project's trainer exports it; applied
    /// unmerged (two thin products on the candidate rows), so the ordinary weight is not copied.
    LowRank {
        /// `lora_a`, `[rank, in]`.
        a: B::Weight,
        /// `lora_b`, `[out, rank]`.
        b: B::Weight,
    },
}

/// FocusLLM's candidate projections of one layer; `None` means "same as the ordinary one"
/// (training-free mode, with no memory duplicated).
pub(crate) struct CandidateProjections<B: Backend> {
    /// `beacon_q_proj`.
    pub q: Option<CandidateLinear<B>>,
    /// `beacon_k_proj`.
    pub k: Option<CandidateLinear<B>>,
    /// `beacon_v_proj`.
    pub v: Option<CandidateLinear<B>>,
    /// `beacon_o_proj`.
    pub o: Option<CandidateLinear<B>>,
    /// `mlp.beacon_up_proj`.
    pub up: Option<CandidateLinear<B>>,
    /// `mlp.beacon_down_proj`.
    pub down: Option<CandidateLinear<B>>,
}

impl<B: Backend> Default for CandidateProjections<B> {
    fn default() -> Self {
        CandidateProjections { q: None, k: None, v: None, o: None, up: None, down: None }
    }
}

/// One decoder layer.
pub(crate) struct Layer<B: Backend> {
    /// RMSNorm before attention.
    pub input_norm: B::Weight,
    /// RMSNorm before the MLP.
    pub ffn_norm: B::Weight,
    /// RMSNorm of the attention output before its residual add (sandwich norms).
    pub post_attention_norm: Option<B::Weight>,
    /// RMSNorm of the MLP output before its residual add (sandwich norms).
    pub post_ffn_norm: Option<B::Weight>,
    /// Attention projections.
    pub attn: Attention<B>,
    /// MLP projections.
    pub mlp: Mlp<B>,
    /// Candidate-token projections.
    pub candidate: CandidateProjections<B>,
}

/// Which positions of a sequence need logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    /// None (e.g. a FocusLLM chunk whose cache is all that matters).
    None,
    /// Only the last new token.
    Last,
    /// Every new token.
    All,
    /// The last `n` new tokens (all of them when fewer), e.g. the query of a FocusLLM chunk
    /// forward whose likelihood scores the chunk.
    Tail(usize),
}

/// One sequence of a batched forward.
pub struct SeqInput<'a, B: Backend> {
    /// The new tokens.
    pub tokens: &'a [u32],
    /// The sequence's cache: read as the past, and the new tokens' keys/values appended to it.
    pub cache: &'a mut KvCache<B>,
    /// How many of the trailing new tokens are candidate tokens (use the candidate projections);
    /// FocusLLM chunk forwards use one or more, ordinary forwards 0.
    pub candidates: usize,
    /// Which positions' logits to return.
    pub logits: LogitsFor,
}

/// Logits of some positions of one sequence, `[rows, vocab]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    /// Number of positions.
    pub rows: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// The values.
    pub data: Vec<f32>,
}

impl Logits {
    /// Logits of the `i`-th returned position.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }

    /// Logits of the last returned position, if any.
    pub fn last(&self) -> Option<&[f32]> {
        self.rows.checked_sub(1).map(|i| self.row(i))
    }
}

/// A decoder of one of the supported architectures, resident on a backend.
pub struct Model<B: Backend> {
    pub(crate) backend: B,
    pub(crate) config: ModelConfig,
    pub(crate) embed: B::Weight,
    pub(crate) layers: Vec<Layer<B>>,
    pub(crate) norm: B::Weight,
    /// `None` when the output head is tied to the embedding table.
    pub(crate) lm_head: Option<B::Weight>,
    /// cos/sin per position, on the device.
    pub(crate) rope: RopeTable<B>,
    /// The same for the sliding layers' own RoPE base, where the model has one.
    pub(crate) rope_local: Option<RopeTable<B>>,
    /// Fingerprint of the weights, taken from the checkpoint's bytes at load.
    pub(crate) weights_fingerprint: u64,
    /// Fingerprint of the candidate projections loaded, `None` when there are none.
    pub(crate) candidates_fingerprint: Option<u64>,
    /// FocusLLM chunks' raw caches found by their tokens (off until given a limit).
    pub(crate) chunk_store: ChunkStore<B>,
}

fn layer_kv<'c, B: Backend>(seq: &'c SeqInput<'_, B>, layer: usize) -> &'c LayerKv<B> {
    seq.cache.layers[layer].as_ref().expect("filled before use")
}

/// What every layer of one forward reads besides its input: the packing and the layer's RoPE table.
struct Pass<'p, B: Backend> {
    packing: &'p Packing,
    rope: &'p B::Tensor,
}

/// Row bookkeeping of a packed batch.
struct Packing {
    /// Per sequence: first packed row and number of new tokens.
    spans: Vec<(usize, usize)>,
    /// Packed rows that use the candidate projections.
    candidate_rows: Vec<usize>,
    /// Position of each packed query row.
    q_positions: Vec<u32>,
}

impl<B: Backend> Model<B> {
    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// A fingerprint of the checkpoint's weights (a hash of the leading bytes, dtype and shape of
    /// the embedding table, the final norm and the last layer's down projection, as stored in the
    /// checkpoint), the same on every backend. It tells two checkpoints apart, e.g. to refuse a
    /// saved [`focus::Document`](crate::focus::Document) from another model; it is no checksum.
    pub fn weights_fingerprint(&self) -> u64 {
        self.weights_fingerprint
    }

    /// A fingerprint of the loaded candidate projections (a hash of the names, dtypes, shapes and
    /// leading bytes of their tensors), `None` when none is loaded (they are copies of the
    /// ordinary projections).
    pub fn candidates_fingerprint(&self) -> Option<u64> {
        self.candidates_fingerprint
    }

    /// Sets the most bytes of the chunk cache: FocusLLM memory chunks' raw key/value caches kept
    /// by their tokens, so that a chunk met again (the same document asked again, in a prompt or
    /// through [`focus::Document::read`](crate::focus::Document::read)) is not computed again.
    /// Least recently used chunks go first; 0 (the default) empties the cache and turns it off.
    /// The bytes are host or device memory, wherever the backend keeps its caches.
    pub fn set_chunk_cache_limit(&self, bytes: u64) {
        self.chunk_store.set_limit(bytes);
    }

    /// What the chunk cache holds and has done.
    pub fn chunk_cache_stats(&self) -> ChunkCacheStats {
        self.chunk_store.stats()
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend behind the contract's checks, as the model calls it.
    pub(crate) fn checked(&self) -> Checked<'_, B> {
        Checked::new(&self.backend)
    }

    /// An empty cache sized for this model.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.config.num_layers)
    }

    /// Checks every token id is inside the vocabulary.
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        let vocab_size = self.config.vocab_size;
        match tokens.iter().find(|&&id| id as usize >= vocab_size) {
            Some(&id) => Err(Error::TokenOutOfRange { id, vocab_size }),
            None => Ok(()),
        }
    }

    /// Runs one sequence: appends `tokens` to `cache` and returns the requested logits.
    pub fn forward_one(&self, tokens: &[u32], cache: &mut KvCache<B>, logits: LogitsFor) -> Result<Logits> {
        let mut batch = [SeqInput { tokens, cache, candidates: 0, logits }];
        Ok(self.forward(&mut batch)?.remove(0))
    }

    /// Runs a batch of independent sequences in one pass (each weight read once for all of them),
    /// appending each sequence's new keys/values to its cache. Returns one [`Logits`] per sequence.
    pub fn forward(&self, batch: &mut [SeqInput<'_, B>]) -> Result<Vec<Logits>> {
        self.forward_probed(batch, None)
    }

    /// [`Model::forward_one`] that also records in `probe` the attention mass the last new token
    /// puts on some cached rows.
    pub(crate) fn forward_one_probed(
        &self,
        tokens: &[u32],
        cache: &mut KvCache<B>,
        logits: LogitsFor,
        probe: &mut MassProbe,
    ) -> Result<Logits> {
        let mut batch = [SeqInput { tokens, cache, candidates: 0, logits }];
        Ok(self.forward_probed(&mut batch, Some(probe))?.remove(0))
    }

    /// [`Model::forward`], recording in `probe`, if any, the attention mass of the first
    /// sequence's last new token.
    fn forward_probed(&self, batch: &mut [SeqInput<'_, B>], mut probe: Option<&mut MassProbe>) -> Result<Vec<Logits>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let packing = self.pack(batch)?;
        let b = self.checked();
        // Keys sit at positions `0..past + new` of each sequence; queries among them.
        let positions = batch.iter().map(|s| s.cache.len + s.tokens.len()).max().unwrap_or(0);
        b.run(|| {
            let rope = self.rope.covering(b, positions)?;
            let local = self.rope_local.as_ref().map(|t| t.covering(b, positions)).transpose()?;
            let ids: Vec<u32> = batch.iter().flat_map(|s| s.tokens.iter().copied()).collect();
            let mut h = b.embedding(&self.embed, &ids)?;
            if self.config.scale_embeddings {
                h = b.scale(&h, (self.config.hidden_size as f32).sqrt())?;
            }
            for (l, layer) in self.layers.iter().enumerate() {
                let table = match (&local, self.config.layer_window(l)) {
                    (Some(local), Some(_)) => &local.table,
                    _ => &rope.table,
                };
                let pass = Pass { packing: &packing, rope: table };
                h = self.layer_forward(l, layer, &h, batch, &pass, probe.as_deref_mut())?;
            }
            self.head(&h, batch, &packing)
        })
    }

    fn pack(&self, batch: &[SeqInput<'_, B>]) -> Result<Packing> {
        let mut spans = Vec::with_capacity(batch.len());
        let mut candidate_rows = Vec::new();
        let mut q_positions = Vec::new();
        let mut row = 0;
        for seq in batch {
            if seq.tokens.is_empty() {
                return Err(Error::EmptyInput { what: "a forward's token sequence" });
            }
            if seq.cache.layers.len() != self.config.num_layers {
                return Err(Error::InvalidOption {
                    name: "cache",
                    value: format!("{} layers", seq.cache.layers.len()),
                    reason: "the cache was made for another model",
                });
            }
            self.check_tokens(seq.tokens)?;
            let n = seq.tokens.len();
            let past = seq.cache.len;
            q_positions.extend((past..past + n).map(|p| p as u32));
            spans.push((row, n));
            row += n;
            if seq.candidates > n {
                return Err(Error::InvalidOption {
                    name: "candidates",
                    value: seq.candidates.to_string(),
                    reason: "more candidate tokens than new tokens",
                });
            }
            candidate_rows.extend(row - seq.candidates..row);
        }
        Ok(Packing { spans, candidate_rows, q_positions })
    }

    /// `linear`, with the candidate rows routed through `candidate` when it exists.
    fn project(
        &self,
        x: &B::Tensor,
        ordinary: &Linear<B>,
        candidate: Option<&CandidateLinear<B>>,
        candidate_rows: &[usize],
    ) -> Result<B::Tensor> {
        let b = self.checked();
        let mut y = ordinary.forward(b, x)?;
        match (candidate, candidate_rows.is_empty()) {
            (None, _) | (_, true) => {}
            (Some(CandidateLinear::Full(cand)), false) => {
                let xc = gather(b, x, candidate_rows)?;
                let yc = cand.forward(b, &xc)?;
                b.scatter_rows(&mut y, candidate_rows, &yc)?;
            }
            (Some(CandidateLinear::LowRank { a, b: up }), false) => {
                let xc = gather(b, x, candidate_rows)?;
                let delta = b.linear(&b.linear(&xc, a, None)?, up, None)?;
                let yc = b.add(&gather(b, &y, candidate_rows)?, &delta)?;
                b.scatter_rows(&mut y, candidate_rows, &yc)?;
            }
        }
        Ok(y)
    }

    /// `x` (`[rows, heads * head_dim]`) with each head RMS-normalised by `weight`, or `x` itself
    /// when the model has no such norm.
    fn head_norm(&self, x: B::Tensor, weight: Option<&B::Weight>) -> Result<B::Tensor> {
        let Some(weight) = weight else { return Ok(x) };
        let b = self.checked();
        let (rows, cols) = b.dims(&x);
        let d = self.config.head_dim;
        let heads = b.reshape(x, rows * cols / d, d)?;
        b.reshape(b.rms_norm(&heads, weight, self.config.rms_norm_eps)?, rows, cols)
    }

    fn layer_forward(
        &self,
        l: usize,
        layer: &Layer<B>,
        h: &B::Tensor,
        batch: &mut [SeqInput<'_, B>],
        pass: &Pass<'_, B>,
        probe: Option<&mut MassProbe>,
    ) -> Result<B::Tensor> {
        let (packing, rope) = (pass.packing, pass.rope);
        let b = self.checked();
        let c = &self.config;
        let cand = &layer.candidate;
        let rows = &packing.candidate_rows;

        let x = b.rms_norm(h, &layer.input_norm, c.rms_norm_eps)?;
        let q = self.project(&x, &layer.attn.q, cand.q.as_ref(), rows)?;
        let k = self.project(&x, &layer.attn.k, cand.k.as_ref(), rows)?;
        let v = self.project(&x, &layer.attn.v, cand.v.as_ref(), rows)?;
        let q = self.head_norm(q, layer.attn.q_norm.as_ref())?;
        let k = self.head_norm(k, layer.attn.k_norm.as_ref())?;

        // Rotate the new queries and keys at their positions (past..past + n), append the keys and
        // values to each cache, and attend over each cache where it is.
        let q = b.rope(&q, &packing.q_positions, rope, c.head_dim)?;
        let k = b.rope(&k, &packing.q_positions, rope, c.head_dim)?;
        let mut seqs = Vec::with_capacity(batch.len());
        for (seq, &(start, n)) in batch.iter_mut().zip(&packing.spans) {
            let range = start..start + n;
            match &mut seq.cache.layers[l] {
                Some(kv) => {
                    b.append_rows(&mut kv.k, &k, range.clone())?;
                    b.append_rows(&mut kv.v, &v, range)?;
                }
                slot @ None => {
                    *slot = Some(LayerKv {
                        k: b.gather_rows(&[RowSlice { tensor: &k, rows: range.clone() }])?,
                        v: b.gather_rows(&[RowSlice { tensor: &v, rows: range }])?,
                    });
                }
            }
            // The cache's token count is bumped after the last layer, so `len` is still the past here.
            seqs.push(AttentionSeq { q_start: start, q_len: n, kv_start: 0, kv_len: seq.cache.len + n });
        }
        let kv: Vec<KeyValues<'_, B::Tensor>> = batch
            .iter()
            .map(|s| {
                let kv = layer_kv(s, l);
                KeyValues { k: &kv.k, v: &kv.v }
            })
            .collect();
        let heads = HeadLayout {
            scale: c.attention_scale(),
            window: c.layer_window(l),
            ..HeadLayout::new(c.num_heads, c.num_kv_heads, c.head_dim)
        };
        let attn = b.attention(&q, &kv, &seqs, heads)?;
        if let (Some(probe), Some(&(start, n))) = (probe, packing.spans.first()) {
            probe.add_layer(&b.to_host(&gather(b, &q, &[start + n - 1])?)?, &b.to_host(kv[0].k)?, heads);
        }
        drop(kv);
        if l + 1 == c.num_layers {
            for (seq, &(_, n)) in batch.iter_mut().zip(&packing.spans) {
                seq.cache.len += n;
            }
        }
        let o = self.project(&attn, &layer.attn.o, cand.o.as_ref(), rows)?;
        let h = b.add(h, &self.post_norm(o, layer.post_attention_norm.as_ref())?)?;

        let x = b.rms_norm(&h, &layer.ffn_norm, c.rms_norm_eps)?;
        let gate = layer.mlp.gate.forward(b, &x)?;
        let up = self.project(&x, &layer.mlp.up, cand.up.as_ref(), rows)?;
        let act = b.glu(&gate, &up, c.hidden_act)?;
        let down = self.project(&act, &layer.mlp.down, cand.down.as_ref(), rows)?;
        b.add(&h, &self.post_norm(down, layer.post_ffn_norm.as_ref())?)
    }

    /// A sublayer's output RMS-normalised by `weight` before its residual add, or as it is when
    /// the model has no such norm.
    fn post_norm(&self, x: B::Tensor, weight: Option<&B::Weight>) -> Result<B::Tensor> {
        match weight {
            Some(w) => self.checked().rms_norm(&x, w, self.config.rms_norm_eps),
            None => Ok(x),
        }
    }

    /// Final norm and output head on the requested rows only.
    fn head(&self, h: &B::Tensor, batch: &[SeqInput<'_, B>], packing: &Packing) -> Result<Vec<Logits>> {
        let b = self.checked();
        let vocab = self.config.vocab_size;
        let mut parts = Vec::new();
        let mut counts = Vec::with_capacity(batch.len());
        for (seq, &(start, n)) in batch.iter().zip(&packing.spans) {
            let rows = match seq.logits {
                LogitsFor::None => start..start,
                LogitsFor::Last => start + n - 1..start + n,
                LogitsFor::All => start..start + n,
                LogitsFor::Tail(k) => start + n - k.min(n)..start + n,
            };
            counts.push(rows.len());
            if !rows.is_empty() {
                parts.push(RowSlice { tensor: h, rows });
            }
        }
        if parts.is_empty() {
            return Ok(counts.iter().map(|_| Logits { rows: 0, vocab, data: Vec::new() }).collect());
        }
        let x = b.gather_rows(&parts)?;
        let x = b.rms_norm(&x, &self.norm, self.config.rms_norm_eps)?;
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let all = b.to_host(&b.linear(&x, head, None)?)?;
        let mut out = Vec::with_capacity(counts.len());
        let mut offset = 0;
        for rows in counts {
            out.push(Logits { rows, vocab, data: all[offset * vocab..(offset + rows) * vocab].to_vec() });
            offset += rows;
        }
        Ok(out)
    }
}

/// The given rows of `x`, packed.
fn gather<B: Backend>(b: Checked<'_, B>, x: &B::Tensor, rows: &[usize]) -> Result<B::Tensor> {
    let parts: Vec<_> = rows.iter().map(|&r| RowSlice { tensor: x, rows: r..r + 1 }).collect();
    b.gather_rows(&parts)
}
