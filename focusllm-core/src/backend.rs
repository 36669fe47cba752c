//! The `Backend` trait: the transformer's own operations, implemented once per device.
//!
//! Activations are 2-D row-major f32 tensors `[rows, cols]`. A forward pass carries a *batch of
//! independent sequences* packed one after another along the rows, so every weight is read once per
//! call for all of them; [`AttentionSeq`] tells the attention operation where each sequence's rows are.

use std::borrow::Cow;
use std::ops::Range;

use crate::config::Activation;
use crate::error::Result;
use crate::weights::HostTensor;

/// Where one sequence's rows lie in the packed queries of an attention call and in its own keys
/// and values ([`KeyValues`]).
///
/// Query row `i` (0-based within the sequence) sits at key position `p = kv_len - q_len + i` and
/// attends to keys `0..=p` (causal over past ++ new), or with a [`HeadLayout::window`] `w` to the
/// last `w` of them, `p + 1 - w..=p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionSeq {
    /// First row of this sequence in the packed queries.
    pub q_start: usize,
    /// Number of new (query) tokens.
    pub q_len: usize,
    /// First row of this sequence's keys and values in its [`KeyValues`] tensors.
    pub kv_start: usize,
    /// Number of keys (past ++ new); at least `q_len`.
    pub kv_len: usize,
}

/// The keys (RoPE applied) and values one sequence of an attention call reads, `[rows,
/// kv_heads*head_dim]` each: typically the sequence's own cache, read in place. Sequences may
/// share one pair (a packed batch), each at its own [`AttentionSeq::kv_start`].
#[derive(Debug)]
pub struct KeyValues<'a, T> {
    /// Keys, RoPE applied.
    pub k: &'a T,
    /// Values.
    pub v: &'a T,
}

impl<T> Clone for KeyValues<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for KeyValues<'_, T> {}

/// For a backend whose attention kernel reads one key and one value buffer: the sequences' keys
/// and values packed one after another, with the sequences re-addressed into them; when every
/// sequence already reads the same pair, that pair as it is and the sequences unchanged.
#[allow(clippy::type_complexity)] // the packed pair, borrowed or owned, and the new addresses
pub fn packed_key_values<'a, B: Backend>(
    backend: &B,
    kv: &[KeyValues<'a, B::Tensor>],
    seqs: &[AttentionSeq],
) -> Result<(Cow<'a, B::Tensor>, Cow<'a, B::Tensor>, Vec<AttentionSeq>)> {
    if let Some(first) = kv.first() {
        if kv.iter().all(|p| std::ptr::eq(p.k, first.k) && std::ptr::eq(p.v, first.v)) {
            return Ok((Cow::Borrowed(first.k), Cow::Borrowed(first.v), seqs.to_vec()));
        }
    }
    let mut packed = Vec::with_capacity(seqs.len());
    let mut row = 0;
    for s in seqs {
        packed.push(AttentionSeq { kv_start: row, ..*s });
        row += s.kv_len;
    }
    let part = |t: fn(&KeyValues<'a, B::Tensor>) -> &'a B::Tensor| -> Vec<RowSlice<'a, B::Tensor>> {
        kv.iter().zip(seqs).map(|(p, s)| RowSlice { tensor: t(p), rows: s.kv_start..s.kv_start + s.kv_len }).collect()
    };
    let k = backend.gather_rows(&part(|p| p.k))?;
    let v = backend.gather_rows(&part(|p| p.v))?;
    Ok((Cow::Owned(k), Cow::Owned(v), packed))
}

/// Head layout of an attention call, with the scale of its scores and the keys each query sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadLayout {
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (each serves `num_heads / num_kv_heads` query heads).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Factor of the scores `q . k` before the softmax (`1 / sqrt(head_dim)` for most models).
    pub scale: f32,
    /// With `Some(w)`, each query sees only the last `w` keys up to its own position (a sliding
    /// window layer); `None`: every earlier key.
    pub window: Option<usize>,
}

impl HeadLayout {
    /// Full causal attention scaled by `1 / sqrt(head_dim)`.
    pub fn new(num_heads: usize, num_kv_heads: usize, head_dim: usize) -> Self {
        HeadLayout { num_heads, num_kv_heads, head_dim, scale: 1.0 / (head_dim as f32).sqrt(), window: None }
    }

    /// The first key (within its sequence) that a query at key position `pos` sees.
    pub fn first_key(&self, pos: usize) -> usize {
        self.window.map_or(0, |w| (pos + 1).saturating_sub(w))
    }
}

/// A range of rows of a tensor, one piece of a [`Backend::gather_rows`] call.
#[derive(Debug, Clone)]
pub struct RowSlice<'a, T> {
    /// The tensor to copy from.
    pub tensor: &'a T,
    /// The rows to copy.
    pub rows: Range<usize>,
}

/// The capacity, in rows, to give a row-appendable tensor (a KV cache) holding `rows` rows that
/// must now hold `needed`: room for an eighth of what it held (at least 64 rows) beyond `needed`.
/// Growth stays geometric, so appending one row at a time costs amortised O(1) copies, but a full
/// buffer is never doubled (the caches of many long chunks each gain a row or two per generated
/// token, and doubling them all would double the memory of exact decoding), and a cache filled in
/// one append (a prefill) gets only 64 spare rows.
pub fn grown_capacity(rows: usize, needed: usize) -> usize {
    needed.saturating_add((rows / 8).max(64))
}

/// A compute device that can run a decoder-only transformer of the supported architectures.
///
/// Every operation is stated in the transformer's terms; the model is written once over them.
/// Implementations must be deterministic for the same inputs.
///
/// Core calls a backend only through [`Checked`](crate::check::Checked), which validates shapes,
/// ranks, token ids and weight dimensions first, so an implementation may assume the shapes each
/// method states (it must still stay memory-safe, panicking rather than reading out of bounds, if
/// called directly with others). A backend checks only its own device limits.
pub trait Backend: Send + Sync + 'static {
    /// A 2-D f32 activation tensor `[rows, cols]` resident on the device. Clones behave as
    /// independent values: a write through one (`scatter_rows`, `append_rows`, `truncate_rows`)
    /// never shows in another (copy-on-write is fine), since KV caches are cloned and edited.
    type Tensor: Clone + Send + Sync;
    /// A weight (matrix `[out, in]` or vector `[n]`) resident on the device, in whatever
    /// precision the backend keeps it.
    type Weight: Send + Sync;

    /// Short name used in errors and logs ("cpu", "wgpu", ...).
    fn name(&self) -> &'static str;

    /// Copies a checkpoint tensor (rank 1 or 2, bytes consistent with its shape) to the device.
    fn upload_weight(&self, tensor: &HostTensor<'_>) -> Result<Self::Weight>;

    /// Makes an activation tensor from host data (`data.len() == rows * cols`).
    #[allow(clippy::wrong_self_convention)] // named for the direction of the copy, as `to_host`
    fn from_host(&self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor>;

    /// Reads a tensor back to the host, row-major.
    fn to_host(&self, x: &Self::Tensor) -> Result<Vec<f32>>;

    /// `(rows, cols)` of a tensor.
    fn dims(&self, x: &Self::Tensor) -> (usize, usize);

    /// `(rows, cols)` of a weight as uploaded: `[out, in]` for a matrix, `(1, n)` for a vector.
    fn weight_dims(&self, w: &Self::Weight) -> (usize, usize);

    /// Rows `ids` of the embedding table `[vocab, hidden]`; every id is below `vocab`.
    fn embedding(&self, table: &Self::Weight, ids: &[u32]) -> Result<Self::Tensor>;

    /// `x @ weight^T (+ bias)`: `x` is `[rows, in]`, `weight` is `[out, in]`.
    fn linear(&self, x: &Self::Tensor, weight: &Self::Weight, bias: Option<&Self::Weight>) -> Result<Self::Tensor>;

    /// Row-wise RMS normalisation scaled by `weight`.
    fn rms_norm(&self, x: &Self::Tensor, weight: &Self::Weight, eps: f32) -> Result<Self::Tensor>;

    /// Rotary position embedding (half-split layout, as Hugging Face's `rotate_half`) applied to
    /// every head of every row; row `r` is rotated by row `positions[r]` of `table`, a
    /// `[positions, head_dim]` tensor whose row `p` holds the cosines of `p`'s angles, then their
    /// sines; every position is below its row count. The table is the model's
    /// [`RopeTable`](crate::RopeTable), or one of angle differences that moves cached (rotated)
    /// keys to other positions.
    fn rope(&self, x: &Self::Tensor, positions: &[u32], table: &Self::Tensor, head_dim: usize) -> Result<Self::Tensor>;

    /// Scaled dot-product attention for a packed batch: `q` is `[sum q_len, heads*head_dim]`
    /// (RoPE applied); sequence `i` reads its keys and values from `kv[i]` (rows `kv_start..
    /// kv_start + kv_len`), so the caches of a batch are read where they are, not copied together.
    /// Causal within each sequence as [`AttentionSeq`] describes; GQA by head grouping.
    fn attention(
        &self,
        q: &Self::Tensor,
        kv: &[KeyValues<'_, Self::Tensor>],
        seqs: &[AttentionSeq],
        heads: HeadLayout,
    ) -> Result<Self::Tensor>;

    /// The gated MLP's activation: `act(gate) * up`, elementwise (SwiGLU with
    /// [`Activation::Silu`], GeGLU with [`Activation::GeluTanh`]).
    fn glu(&self, gate: &Self::Tensor, up: &Self::Tensor, act: Activation) -> Result<Self::Tensor>;

    /// `x * factor`, elementwise (Gemma's embedding scale).
    fn scale(&self, x: &Self::Tensor, factor: f32) -> Result<Self::Tensor>;

    /// Elementwise sum (the residual connection).
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// The same elements, in the same row-major order, as `rows` rows of `cols` (`rows * cols`
    /// is the tensor's element count, checked by core): no copy, the buffer is moved. Used to
    /// normalise each attention head of a row on its own (Qwen3's q/k norms).
    fn reshape(&self, x: Self::Tensor, rows: usize, cols: usize) -> Result<Self::Tensor>;

    /// Concatenates row ranges of tensors (all of the same width) along the sequence axis.
    fn gather_rows(&self, parts: &[RowSlice<'_, Self::Tensor>]) -> Result<Self::Tensor>;

    /// Overwrites rows `rows[i]` of `dst` with row `i` of `src`.
    fn scatter_rows(&self, dst: &mut Self::Tensor, rows: &[usize], src: &Self::Tensor) -> Result<()>;

    /// Appends rows `rows` of `src` to `dst` (amortised growth, for KV caches; grow the buffer to
    /// [`grown_capacity`] rows when it is full).
    fn append_rows(&self, dst: &mut Self::Tensor, src: &Self::Tensor, rows: Range<usize>) -> Result<()>;

    /// Runs `f`, a whole forward pass of operations on this backend, where the backend works
    /// best. The CPU backend runs it on its own thread pool, so that the hundreds of small
    /// operations of a decoding step do not each hand their work to another thread. The default
    /// calls `f` on the current thread.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R
    where
        Self: Sized,
    {
        f()
    }

    /// Bytes the backend can still allocate, when it can tell (used to refuse work that cannot fit
    /// with a typed error instead of failing midway).
    fn memory_available(&self) -> Option<u64> {
        None
    }

    /// Keeps only the first `rows` rows of `x` (e.g. to take a FocusLLM candidate out of a cache).
    /// The default copies; backends with capacity-based tensors override it to just shrink.
    fn truncate_rows(&self, x: &mut Self::Tensor, rows: usize) -> Result<()> {
        *x = self.gather_rows(&[RowSlice { tensor: x, rows: 0..rows }])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::grown_capacity;

    #[test]
    fn growth_is_geometric_but_never_doubles() {
        let (mut capacity, mut grows) = (0, 0);
        for len in 1..=100_000usize {
            if len > capacity {
                capacity = grown_capacity(len - 1, len);
                grows += 1;
            }
            assert!(capacity <= len + len / 8 + 64, "{capacity} rows held for {len}");
        }
        // Steps of 64 rows up to 512, then 1.125^n: about 53 reallocations, amortised O(1) per row.
        assert!(grows <= 70, "{grows} reallocations for 100000 single-row appends");
        assert_eq!(grown_capacity(1000, 1001), 1126);
        assert_eq!(grown_capacity(0, 2560), 2624, "a prefill gets 64 spare rows");
        assert_eq!(grown_capacity(usize::MAX, usize::MAX), usize::MAX);
    }
}
