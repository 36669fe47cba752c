//! The `Backend` trait: the transformer's own operations, implemented once per device.
//!
//! Activations are 2-D row-major f32 tensors `[rows, cols]`. A forward pass carries a *batch of
//! independent sequences* packed one after another along the rows, so every weight is read once per
//! call for all of them; [`AttentionSeq`] tells the attention operation where each sequence's rows are.

use std::ops::Range;

use crate::error::Result;
use crate::weights::HostTensor;

/// Where one sequence's rows lie in the packed query and key/value tensors of an attention call.
///
/// Query row `i` (0-based within the sequence) sits at key position `kv_len - q_len + i` and attends
/// to keys `0..=kv_len - q_len + i` (causal over past ++ new).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionSeq {
    /// First row of this sequence in the packed queries.
    pub q_start: usize,
    /// Number of new (query) tokens.
    pub q_len: usize,
    /// First row of this sequence in the packed keys and values.
    pub kv_start: usize,
    /// Number of keys (past ++ new); at least `q_len`.
    pub kv_len: usize,
}

/// Head layout of an attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadLayout {
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (each serves `num_heads / num_kv_heads` query heads).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
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

/// A compute device that can run a LLaMA-family transformer.
///
/// Every operation is stated in the transformer's terms; the model ([`crate::Model`]) is written
/// once over them. Implementations must be deterministic for the same inputs.
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

    /// Copies a checkpoint tensor to the device.
    fn upload_weight(&self, tensor: &HostTensor<'_>) -> Result<Self::Weight>;

    /// Makes an activation tensor from host data (`data.len() == rows * cols`).
    #[allow(clippy::wrong_self_convention)] // named for the direction of the copy, as `to_host`
    fn from_host(&self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor>;

    /// Reads a tensor back to the host, row-major.
    fn to_host(&self, x: &Self::Tensor) -> Result<Vec<f32>>;

    /// `(rows, cols)` of a tensor.
    fn dims(&self, x: &Self::Tensor) -> (usize, usize);

    /// Rows `ids` of the embedding table `[vocab, hidden]`. Ids are checked by the caller.
    fn embedding(&self, table: &Self::Weight, ids: &[u32]) -> Result<Self::Tensor>;

    /// `x @ weight^T (+ bias)`: `x` is `[rows, in]`, `weight` is `[out, in]`.
    fn linear(&self, x: &Self::Tensor, weight: &Self::Weight, bias: Option<&Self::Weight>) -> Result<Self::Tensor>;

    /// Row-wise RMS normalisation scaled by `weight`.
    fn rms_norm(&self, x: &Self::Tensor, weight: &Self::Weight, eps: f32) -> Result<Self::Tensor>;

    /// Rotary position embedding (half-split layout, as Hugging Face's `rotate_half`) applied to
    /// every head of every row; row `r` is at position `positions[r]`.
    fn rope(&self, x: &Self::Tensor, positions: &[u32], inv_freq: &[f32], head_dim: usize) -> Result<Self::Tensor>;

    /// Scaled dot-product attention for a packed batch: `q` is `[sum q_len, heads*head_dim]`
    /// (RoPE applied), `k`/`v` are `[sum kv_len, kv_heads*head_dim]` (RoPE applied to `k`).
    /// Causal within each sequence as [`AttentionSeq`] describes; GQA by head grouping.
    fn attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        seqs: &[AttentionSeq],
        heads: HeadLayout,
    ) -> Result<Self::Tensor>;

    /// SwiGLU gate: `silu(gate) * up`, elementwise.
    fn swiglu(&self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor>;

    /// Elementwise sum (the residual connection).
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

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
