//! The focusllm [`Backend`] on multithreaded CPUs: f32 compute over f32 weights, f16/bf16 weights
//! (kept in 16 bits) and Q8_0/Q4_0/Q4_1 weights (kept in their blocks); products through `gemm`
//! (on panels widened from the stored form when the weights are not f32) or, for a few activation
//! rows, straight on the stored form; everything else row-parallel with rayon on a pool of its own.
#![warn(missing_docs)]

mod attention;
mod direct;
mod elementwise;
mod half_matrix;
mod halfdot;
mod matmul;
mod qdot;
mod quantized;
mod rope;
mod softmax;
mod tensor;
mod weight;

use std::ops::Range;

use focusllm_core::{grown_capacity, AttentionSeq, Backend, Error, HeadLayout, HostTensor, Result, RowSlice};

pub use half_matrix::HalfMatrix;
pub use quantized::QuantMatrix;
pub use tensor::CpuTensor;
pub use weight::CpuWeight;

/// Options of the CPU backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuOptions {
    /// Worker threads; `None` uses every available core.
    pub threads: Option<usize>,
}

/// The CPU backend. Each instance owns a rayon thread pool, so two models can run side by side
/// with their own thread counts.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    rope: rope::RopeCache,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend").field("threads", &self.threads()).finish()
    }
}

fn err(message: impl Into<String>) -> Error {
    Error::Backend { backend: "cpu", message: message.into() }
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(err(what()))
    }
}

impl CpuBackend {
    /// A backend with its own pool of `options.threads` workers.
    pub fn new(options: CpuOptions) -> Result<Self> {
        if options.threads == Some(0) {
            return Err(Error::InvalidOption { name: "threads", value: "0".into(), reason: "must be at least 1" });
        }
        let mut builder = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("focusllm-cpu-{i}"));
        if let Some(n) = options.threads {
            builder = builder.num_threads(n);
        }
        let pool = builder.build().map_err(|e| err(format!("cannot start thread pool: {e}")))?;
        Ok(CpuBackend { pool, rope: rope::RopeCache::default() })
    }

    /// A backend using every available core.
    pub fn with_all_cores() -> Result<Self> {
        Self::new(CpuOptions::default())
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Weight = CpuWeight;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn upload_weight(&self, t: &HostTensor<'_>) -> Result<CpuWeight> {
        let (rows, cols) = match t.shape.as_slice() {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            other => return Err(err(format!("tensor `{}` has rank {}, expected 1 or 2", t.name, other.len()))),
        };
        check(t.has_consistent_size(), || format!("tensor `{}` holds {} bytes for shape {:?} of {:?}", t.name, t.bytes.len(), t.shape, t.dtype))?;
        if let Some(q) = QuantMatrix::from_host(t) {
            return Ok(CpuWeight::Quantized(q));
        }
        if let Some(h) = HalfMatrix::from_host(t) {
            return Ok(CpuWeight::Half(h));
        }
        Ok(CpuWeight::Dense(CpuTensor::new(t.to_f32(), rows, cols)))
    }

    fn from_host(&self, data: &[f32], rows: usize, cols: usize) -> Result<CpuTensor> {
        check(data.len() == rows * cols, || format!("{} values for a {rows}x{cols} tensor", data.len()))?;
        Ok(CpuTensor::new(data.to_vec(), rows, cols))
    }

    fn to_host(&self, x: &CpuTensor) -> Result<Vec<f32>> {
        Ok(x.data.clone())
    }

    fn dims(&self, x: &CpuTensor) -> (usize, usize) {
        x.dims()
    }

    fn embedding(&self, table: &CpuWeight, ids: &[u32]) -> Result<CpuTensor> {
        let (vocab_size, _) = table.dims();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(Error::TokenOutOfRange { id, vocab_size });
        }
        Ok(self.pool.install(|| elementwise::embedding(table, ids)))
    }

    fn linear(&self, x: &CpuTensor, w: &CpuWeight, bias: Option<&CpuWeight>) -> Result<CpuTensor> {
        let (rows, cols) = w.dims();
        check(x.cols == cols, || format!("linear: input width {} vs weight [{rows}, {cols}]", x.cols))?;
        let bias = match bias {
            Some(b) => Some(b.dense().filter(|b| b.data.len() == rows).ok_or_else(|| {
                err(format!("linear: bias of {:?} for {rows} outputs", b.dims()))
            })?),
            None => None,
        };
        Ok(self.pool.install(|| matmul::linear(x, w, bias)))
    }

    fn rms_norm(&self, x: &CpuTensor, weight: &CpuWeight, eps: f32) -> Result<CpuTensor> {
        let weight = weight.dense().filter(|w| w.data.len() == x.cols);
        let weight = weight.ok_or_else(|| err(format!("rms_norm: weight is not a vector of width {}", x.cols)))?;
        Ok(self.pool.install(|| elementwise::rms_norm(x, weight, eps)))
    }

    fn rope(&self, x: &CpuTensor, positions: &[u32], inv_freq: &[f32], head_dim: usize) -> Result<CpuTensor> {
        check(positions.len() == x.rows, || format!("rope: {} positions for {} rows", positions.len(), x.rows))?;
        check(head_dim > 0 && head_dim % 2 == 0 && x.cols % head_dim == 0 && inv_freq.len() == head_dim / 2, || {
            format!("rope: width {} with head_dim {head_dim} and {} frequencies", x.cols, inv_freq.len())
        })?;
        Ok(self.pool.install(|| self.rope.apply(x, positions, inv_freq, head_dim)))
    }

    fn attention(&self, q: &CpuTensor, k: &CpuTensor, v: &CpuTensor, seqs: &[AttentionSeq], h: HeadLayout) -> Result<CpuTensor> {
        check(h.num_kv_heads > 0 && h.num_heads % h.num_kv_heads == 0, || format!("attention: {} heads over {} kv heads", h.num_heads, h.num_kv_heads))?;
        check(q.cols == h.num_heads * h.head_dim, || format!("attention: q width {}", q.cols))?;
        check(k.cols == h.num_kv_heads * h.head_dim && v.cols == k.cols && v.rows == k.rows, || {
            format!("attention: k [{}, {}] / v [{}, {}]", k.rows, k.cols, v.rows, v.cols)
        })?;
        for s in seqs {
            check(
                s.q_len <= s.kv_len && s.q_start + s.q_len <= q.rows && s.kv_start + s.kv_len <= k.rows,
                || format!("attention: sequence {s:?} outside q rows {} / kv rows {}", q.rows, k.rows),
            )?;
        }
        check(seqs.iter().map(|s| s.q_len).sum::<usize>() == q.rows, || "attention: sequences do not cover every query row".into())?;
        Ok(self.pool.install(|| attention::attention(q, k, v, seqs, h)))
    }

    fn swiglu(&self, gate: &CpuTensor, up: &CpuTensor) -> Result<CpuTensor> {
        check(gate.dims() == up.dims(), || format!("swiglu: {:?} vs {:?}", gate.dims(), up.dims()))?;
        Ok(self.pool.install(|| elementwise::swiglu(gate, up)))
    }

    fn add(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        check(a.dims() == b.dims(), || format!("add: {:?} vs {:?}", a.dims(), b.dims()))?;
        Ok(self.pool.install(|| elementwise::add(a, b)))
    }

    fn gather_rows(&self, parts: &[RowSlice<'_, CpuTensor>]) -> Result<CpuTensor> {
        let cols = parts.first().map_or(0, |p| p.tensor.cols);
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.rows.len()).sum::<usize>() * cols);
        for p in parts {
            check(p.tensor.cols == cols && p.rows.start <= p.rows.end && p.rows.end <= p.tensor.rows, || {
                format!("gather_rows: rows {:?} of a [{}, {}] tensor (width {cols})", p.rows, p.tensor.rows, p.tensor.cols)
            })?;
            data.extend_from_slice(&p.tensor.data[p.rows.start * cols..p.rows.end * cols]);
        }
        let rows = data.len() / cols.max(1);
        Ok(CpuTensor::new(data, rows, cols))
    }

    fn scatter_rows(&self, dst: &mut CpuTensor, rows: &[usize], src: &CpuTensor) -> Result<()> {
        check(src.cols == dst.cols && src.rows == rows.len() && rows.iter().all(|&r| r < dst.rows), || {
            format!("scatter_rows: {} rows of width {} into [{}, {}]", rows.len(), src.cols, dst.rows, dst.cols)
        })?;
        let cols = dst.cols;
        for (i, &r) in rows.iter().enumerate() {
            dst.data[r * cols..(r + 1) * cols].copy_from_slice(src.row(i));
        }
        Ok(())
    }

    fn append_rows(&self, dst: &mut CpuTensor, src: &CpuTensor, rows: Range<usize>) -> Result<()> {
        check(src.cols == dst.cols && rows.end <= src.rows, || {
            format!("append_rows: rows {rows:?} of [{}, {}] onto width {}", src.rows, src.cols, dst.cols)
        })?;
        let add = &src.data[rows.start * src.cols..rows.end * src.cols];
        if dst.data.capacity() - dst.data.len() < add.len() {
            // Not the doubling `Vec` would do (see `grown_capacity`).
            let capacity = grown_capacity(dst.rows, dst.rows + rows.len()) * dst.cols;
            dst.data.reserve_exact(capacity - dst.data.len());
        }
        dst.data.extend_from_slice(add);
        dst.rows += rows.len();
        Ok(())
    }

    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        // Inside the pool, every operation's own `install` runs inline.
        self.pool.install(f)
    }

    fn memory_available(&self) -> Option<u64> {
        // Linux: MemAvailable of /proc/meminfo; elsewhere unknown.
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kb: u64 = info.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    }

    fn truncate_rows(&self, x: &mut CpuTensor, rows: usize) -> Result<()> {
        check(rows <= x.rows, || format!("truncate_rows: {rows} rows of a [{}, {}] tensor", x.rows, x.cols))?;
        x.data.truncate(rows * x.cols);
        x.rows = rows;
        Ok(())
    }
}
