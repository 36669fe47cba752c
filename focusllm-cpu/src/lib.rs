//! The focusllm [`Backend`] on multithreaded CPUs: f32 compute over f32 weights, f16/bf16 weights
//! (kept in 16 bits) and GGUF block-quantised weights (kept as small integers with f32 group
//! scales, decoded once at load); products through `gemm` (on panels widened from the stored form
//! when the weights are not f32) or, for a few activation rows, straight on the stored form;
//! everything else row-parallel with rayon on a pool of its own.
#![warn(missing_docs)]

mod attention;
mod attention_rows;
mod direct;
mod elementwise;
mod half_matrix;
mod halfdot;
mod matmul;
mod qdot;
mod quantized;
mod rope;
mod softmax;
mod system_memory;
mod tensor;
mod weight;

use std::ops::Range;

use focusllm_core::{
    grown_capacity, Activation, AttentionSeq, Backend, Error, HeadLayout, HostTensor, KeyValues, Result, RowSlice,
};

pub use direct::KERNEL_VARIABLE;
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
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend").field("threads", &self.threads()).finish()
    }
}

fn err(message: impl Into<String>) -> Error {
    Error::Backend { backend: "cpu", message: message.into() }
}

/// A vector weight (norm scale, bias) as the f32 values the kernels read; vectors are uploaded
/// dense, so anything else is a weight uploaded as a matrix.
fn dense<'w>(w: &'w CpuWeight, what: &str) -> Result<&'w CpuTensor> {
    w.dense().ok_or_else(|| err(format!("{what} is stored as a {:?} matrix, not an f32 vector", w.dims())))
}

impl CpuBackend {
    /// A backend with its own pool of `options.threads` workers.
    pub fn new(options: CpuOptions) -> Result<Self> {
        if options.threads == Some(0) {
            return Err(Error::InvalidOption { name: "threads", value: "0".into(), reason: "must be at least 1" });
        }
        if let Ok(level) = std::env::var(direct::KERNEL_VARIABLE) {
            if let Err(levels) = direct::Kernel::parse(&level) {
                return Err(err(format!(
                    "{}={level:?} names no kernel level; expected {levels}",
                    direct::KERNEL_VARIABLE
                )));
            }
        }
        let mut builder = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("focusllm-cpu-{i}"));
        if let Some(n) = options.threads {
            builder = builder.num_threads(n);
        }
        let pool = builder.build().map_err(|e| err(format!("cannot start thread pool: {e}")))?;
        Ok(CpuBackend { pool })
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
        if let Some(q) = QuantMatrix::from_host(t) {
            return Ok(CpuWeight::Quantized(q));
        }
        if let Some(h) = HalfMatrix::from_host(t) {
            return Ok(CpuWeight::Half(h));
        }
        let (rows, cols) = match t.shape.as_slice() {
            [r, c] => (*r, *c),
            _ => (1, t.len()),
        };
        Ok(CpuWeight::Dense(CpuTensor::new(t.to_f32(), rows, cols)))
    }

    fn from_host(&self, data: &[f32], rows: usize, cols: usize) -> Result<CpuTensor> {
        Ok(CpuTensor::new(data.to_vec(), rows, cols))
    }

    fn to_host(&self, x: &CpuTensor) -> Result<Vec<f32>> {
        Ok(x.data.clone())
    }

    fn dims(&self, x: &CpuTensor) -> (usize, usize) {
        x.dims()
    }

    fn weight_dims(&self, w: &CpuWeight) -> (usize, usize) {
        w.dims()
    }

    fn embedding(&self, table: &CpuWeight, ids: &[u32]) -> Result<CpuTensor> {
        Ok(self.pool.install(|| elementwise::embedding(table, ids)))
    }

    fn linear(&self, x: &CpuTensor, w: &CpuWeight, bias: Option<&CpuWeight>) -> Result<CpuTensor> {
        let bias = bias.map(|b| dense(b, "linear bias")).transpose()?;
        Ok(self.pool.install(|| matmul::linear(x, w, bias)))
    }

    fn rms_norm(&self, x: &CpuTensor, weight: &CpuWeight, eps: f32) -> Result<CpuTensor> {
        let weight = dense(weight, "rms_norm scale")?;
        Ok(self.pool.install(|| elementwise::rms_norm(x, weight, eps)))
    }

    fn rope(&self, x: &CpuTensor, positions: &[u32], table: &CpuTensor, head_dim: usize) -> Result<CpuTensor> {
        Ok(self.pool.install(|| rope::apply(x, positions, table, head_dim)))
    }

    fn attention(
        &self,
        q: &CpuTensor,
        kv: &[KeyValues<'_, CpuTensor>],
        seqs: &[AttentionSeq],
        h: HeadLayout,
    ) -> Result<CpuTensor> {
        Ok(self.pool.install(|| attention::attention(q, kv, seqs, h)))
    }

    fn glu(&self, gate: &CpuTensor, up: &CpuTensor, act: Activation) -> Result<CpuTensor> {
        Ok(self.pool.install(|| elementwise::glu(gate, up, act)))
    }

    fn scale(&self, x: &CpuTensor, factor: f32) -> Result<CpuTensor> {
        Ok(self.pool.install(|| elementwise::scale(x, factor)))
    }

    fn add(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        Ok(self.pool.install(|| elementwise::add(a, b)))
    }

    fn gather_rows(&self, parts: &[RowSlice<'_, CpuTensor>]) -> Result<CpuTensor> {
        let cols = parts.first().map_or(0, |p| p.tensor.cols);
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.rows.len()).sum::<usize>() * cols);
        for p in parts {
            data.extend_from_slice(&p.tensor.data[p.rows.start * cols..p.rows.end * cols]);
        }
        let rows = data.len() / cols.max(1);
        Ok(CpuTensor::new(data, rows, cols))
    }

    fn scatter_rows(&self, dst: &mut CpuTensor, rows: &[usize], src: &CpuTensor) -> Result<()> {
        let cols = dst.cols;
        for (i, &r) in rows.iter().enumerate() {
            dst.data[r * cols..(r + 1) * cols].copy_from_slice(src.row(i));
        }
        Ok(())
    }

    fn append_rows(&self, dst: &mut CpuTensor, src: &CpuTensor, rows: Range<usize>) -> Result<()> {
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
        system_memory::available()
    }

    fn reshape(&self, x: CpuTensor, rows: usize, cols: usize) -> Result<CpuTensor> {
        Ok(CpuTensor::new(x.data, rows, cols))
    }

    fn truncate_rows(&self, x: &mut CpuTensor, rows: usize) -> Result<()> {
        x.data.truncate(rows * x.cols);
        x.rows = rows;
        Ok(())
    }
}
