//! The [`Backend`] contract, checked once: [`Checked`] validates every operation's shapes, ranks,
//! token ids and weight dimensions with core's typed errors, then calls the backend. Core reaches
//! backends only through it, so a backend implements kernels and buffers and checks only the
//! limits of its own device.

use std::ops::Range;

use crate::backend::{AttentionSeq, Backend, HeadLayout, KeyValues, RowSlice};
use crate::config::Activation;
use crate::error::{Error, Result};
use crate::weights::HostTensor;

/// A backend whose every operation is checked against the contract before it runs.
pub struct Checked<'a, B: Backend>(&'a B);

impl<B: Backend> Clone for Checked<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for Checked<'_, B> {}

/// `Ok` when `cond` holds, else a shape error of `op` described by `detail`.
fn ensure(cond: bool, op: &'static str, detail: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::Shape { op, detail: detail() })
    }
}

impl<'a, B: Backend> Checked<'a, B> {
    /// Wraps `backend`.
    pub fn new(backend: &'a B) -> Self {
        Checked(backend)
    }

    /// The unchecked backend.
    pub fn backend(&self) -> &'a B {
        self.0
    }

    /// [`Backend::upload_weight`] of a tensor of rank 1 or 2 whose bytes match its shape.
    pub fn upload_weight(&self, t: &HostTensor<'_>) -> Result<B::Weight> {
        ensure(matches!(t.shape.len(), 1 | 2), "upload_weight", || {
            format!("tensor `{}` has rank {}, expected 1 or 2", t.name, t.shape.len())
        })?;
        ensure(t.has_consistent_size(), "upload_weight", || {
            format!("tensor `{}` holds {} bytes for shape {:?} of {:?}", t.name, t.bytes.len(), t.shape, t.dtype)
        })?;
        self.0.upload_weight(t)
    }

    /// [`Backend::from_host`] of `rows * cols` values.
    pub fn from_host(&self, data: &[f32], rows: usize, cols: usize) -> Result<B::Tensor> {
        ensure(rows.checked_mul(cols) == Some(data.len()), "from_host", || {
            format!("{} values for a {rows}x{cols} tensor", data.len())
        })?;
        self.0.from_host(data, rows, cols)
    }

    /// [`Backend::to_host`].
    pub fn to_host(&self, x: &B::Tensor) -> Result<Vec<f32>> {
        self.0.to_host(x)
    }

    /// [`Backend::dims`].
    pub fn dims(&self, x: &B::Tensor) -> (usize, usize) {
        self.0.dims(x)
    }

    /// [`Backend::embedding`] of ids inside the table.
    pub fn embedding(&self, table: &B::Weight, ids: &[u32]) -> Result<B::Tensor> {
        let (vocab_size, _) = self.0.weight_dims(table);
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(Error::TokenOutOfRange { id, vocab_size });
        }
        self.0.embedding(table, ids)
    }

    /// [`Backend::linear`]: `x` as wide as the weight's input, the bias one value per output.
    pub fn linear(&self, x: &B::Tensor, weight: &B::Weight, bias: Option<&B::Weight>) -> Result<B::Tensor> {
        let (out, inp) = self.0.weight_dims(weight);
        let (_, cols) = self.0.dims(x);
        ensure(cols == inp, "linear", || format!("input width {cols} vs weight [{out}, {inp}]"))?;
        if let Some(bias) = bias {
            let dims = self.0.weight_dims(bias);
            ensure(dims == (1, out), "linear", || format!("bias of {dims:?} for {out} outputs"))?;
        }
        self.0.linear(x, weight, bias)
    }

    /// [`Backend::rms_norm`] with a scale vector as wide as `x`.
    pub fn rms_norm(&self, x: &B::Tensor, weight: &B::Weight, eps: f32) -> Result<B::Tensor> {
        let (_, cols) = self.0.dims(x);
        let dims = self.0.weight_dims(weight);
        ensure(dims == (1, cols), "rms_norm", || format!("weight of {dims:?} for rows of width {cols}"))?;
        self.0.rms_norm(x, weight, eps)
    }

    /// [`Backend::reshape`]: the same number of elements.
    pub fn reshape(&self, x: B::Tensor, rows: usize, cols: usize) -> Result<B::Tensor> {
        let (r, c) = self.0.dims(&x);
        ensure(rows.checked_mul(cols) == Some(r * c), "reshape", || format!("[{r}, {c}] as [{rows}, {cols}]"))?;
        self.0.reshape(x, rows, cols)
    }

    /// [`Backend::rope`]: one position per row, whole even-width heads, every position in the table.
    pub fn rope(&self, x: &B::Tensor, positions: &[u32], table: &B::Tensor, head_dim: usize) -> Result<B::Tensor> {
        let (rows, cols) = self.0.dims(x);
        let (table_rows, table_cols) = self.0.dims(table);
        ensure(positions.len() == rows, "rope", || format!("{} positions for {rows} rows", positions.len()))?;
        ensure(head_dim > 0 && head_dim.is_multiple_of(2) && cols % head_dim == 0, "rope", || {
            format!("width {cols} with head_dim {head_dim}")
        })?;
        ensure(table_cols == head_dim, "rope", || format!("table of width {table_cols} for head_dim {head_dim}"))?;
        if let Some(&p) = positions.iter().find(|&&p| p as usize >= table_rows) {
            return Err(Error::Shape { op: "rope", detail: format!("position {p} beyond a table of {table_rows}") });
        }
        self.0.rope(x, positions, table, head_dim)
    }

    /// [`Backend::attention`]: widths from `heads`, one key/value pair per sequence, every
    /// sequence inside the queries and its own keys/values, the sequences covering every query row.
    pub fn attention(
        &self,
        q: &B::Tensor,
        kv: &[KeyValues<'_, B::Tensor>],
        seqs: &[AttentionSeq],
        heads: HeadLayout,
    ) -> Result<B::Tensor> {
        let (q_rows, q_cols) = self.0.dims(q);
        let HeadLayout { num_heads, num_kv_heads, head_dim, scale, window } = heads;
        ensure(num_kv_heads > 0 && head_dim > 0 && num_heads % num_kv_heads == 0, "attention", || {
            format!("{num_heads} heads over {num_kv_heads} kv heads of width {head_dim}")
        })?;
        ensure(scale.is_finite() && window != Some(0), "attention", || format!("scale {scale}, window {window:?}"))?;
        ensure(q_cols == num_heads * head_dim, "attention", || format!("q width {q_cols} for {heads:?}"))?;
        ensure(kv.len() == seqs.len(), "attention", || {
            format!("{} key/value pairs for {} sequences", kv.len(), seqs.len())
        })?;
        for (s, pair) in seqs.iter().zip(kv) {
            let ((k_rows, k_cols), (v_rows, v_cols)) = (self.0.dims(pair.k), self.0.dims(pair.v));
            ensure(k_cols == num_kv_heads * head_dim && (v_rows, v_cols) == (k_rows, k_cols), "attention", || {
                format!("k [{k_rows}, {k_cols}] / v [{v_rows}, {v_cols}] for {heads:?}")
            })?;
            let inside = s.q_len <= s.kv_len
                && s.q_start.checked_add(s.q_len).is_some_and(|end| end <= q_rows)
                && s.kv_start.checked_add(s.kv_len).is_some_and(|end| end <= k_rows);
            ensure(inside, "attention", || format!("sequence {s:?} outside q rows {q_rows} / kv rows {k_rows}"))?;
        }
        // Inside, pairwise disjoint and summing to `q_rows`: every query row in exactly one sequence.
        let mut spans: Vec<_> = seqs.iter().map(|s| (s.q_start, s.q_start + s.q_len)).collect();
        spans.sort_unstable();
        let disjoint = spans.windows(2).all(|w| w[0].1 <= w[1].0);
        let covered = seqs.iter().map(|s| s.q_len).sum::<usize>();
        ensure(disjoint && covered == q_rows, "attention", || {
            format!("sequences cover {covered} of {q_rows} query rows (overlapping: {})", !disjoint)
        })?;
        self.0.attention(q, kv, seqs, heads)
    }

    /// [`Backend::glu`] of two tensors of one shape.
    pub fn glu(&self, gate: &B::Tensor, up: &B::Tensor, act: Activation) -> Result<B::Tensor> {
        self.same_dims("glu", gate, up)?;
        self.0.glu(gate, up, act)
    }

    /// [`Backend::scale`] by a finite factor.
    pub fn scale(&self, x: &B::Tensor, factor: f32) -> Result<B::Tensor> {
        ensure(factor.is_finite(), "scale", || format!("factor {factor}"))?;
        self.0.scale(x, factor)
    }

    /// [`Backend::add`] of two tensors of one shape.
    pub fn add(&self, a: &B::Tensor, b: &B::Tensor) -> Result<B::Tensor> {
        self.same_dims("add", a, b)?;
        self.0.add(a, b)
    }

    fn same_dims(&self, op: &'static str, a: &B::Tensor, b: &B::Tensor) -> Result<()> {
        let (da, db) = (self.0.dims(a), self.0.dims(b));
        ensure(da == db, op, || format!("{da:?} vs {db:?}"))
    }

    /// [`Backend::gather_rows`] of row ranges inside tensors of one width.
    pub fn gather_rows(&self, parts: &[RowSlice<'_, B::Tensor>]) -> Result<B::Tensor> {
        let width = parts.first().map(|p| self.0.dims(p.tensor).1);
        for p in parts {
            let (rows, cols) = self.0.dims(p.tensor);
            let fits = Some(cols) == width && p.rows.start <= p.rows.end && p.rows.end <= rows;
            ensure(fits, "gather_rows", || {
                format!("rows {:?} of a [{rows}, {cols}] tensor (width {width:?})", p.rows)
            })?;
        }
        self.0.gather_rows(parts)
    }

    /// [`Backend::scatter_rows`]: one source row per destination row, all inside `dst`.
    pub fn scatter_rows(&self, dst: &mut B::Tensor, rows: &[usize], src: &B::Tensor) -> Result<()> {
        let ((dst_rows, dst_cols), (src_rows, src_cols)) = (self.0.dims(dst), self.0.dims(src));
        let fits = src_cols == dst_cols && src_rows == rows.len() && rows.iter().all(|&r| r < dst_rows);
        ensure(fits, "scatter_rows", || {
            format!("{} rows of a [{src_rows}, {src_cols}] tensor into [{dst_rows}, {dst_cols}]", rows.len())
        })?;
        self.0.scatter_rows(dst, rows, src)
    }

    /// [`Backend::append_rows`] of rows inside `src`, as wide as `dst`.
    pub fn append_rows(&self, dst: &mut B::Tensor, src: &B::Tensor, rows: Range<usize>) -> Result<()> {
        let ((_, dst_cols), (src_rows, src_cols)) = (self.0.dims(dst), self.0.dims(src));
        let fits = src_cols == dst_cols && rows.start <= rows.end && rows.end <= src_rows;
        ensure(fits, "append_rows", || format!("rows {rows:?} of [{src_rows}, {src_cols}] onto width {dst_cols}"))?;
        self.0.append_rows(dst, src, rows)
    }

    /// [`Backend::truncate_rows`] to at most the rows `x` has.
    pub fn truncate_rows(&self, x: &mut B::Tensor, rows: usize) -> Result<()> {
        let (have, cols) = self.0.dims(x);
        ensure(rows <= have, "truncate_rows", || format!("{rows} rows of a [{have}, {cols}] tensor"))?;
        self.0.truncate_rows(x, rows)
    }

    /// [`Backend::run`].
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.0.run(f)
    }

    /// [`Backend::memory_available`].
    pub fn memory_available(&self) -> Option<u64> {
        self.0.memory_available()
    }
}
