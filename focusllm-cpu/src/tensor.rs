//! `CpuTensor`: a row-major 2-D f32 matrix in host memory.

/// A row-major `[rows, cols]` f32 matrix; vectors are one row.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTensor {
    pub(crate) data: Vec<f32>,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl CpuTensor {
    /// A matrix from row-major data; `data.len()` must be `rows * cols`.
    pub(crate) fn new(data: Vec<f32>, rows: usize, cols: usize) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        CpuTensor { data, rows, cols }
    }

    /// Row `r`.
    #[inline]
    pub(crate) fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The elements, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}

/// Dot product with eight independent accumulators so the compiler vectorises it.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0;
    for i in chunks * 8..n {
        tail += a[i] * b[i];
    }
    acc.iter().sum::<f32>() + tail
}

/// `out += p * v`, vectorisable.
#[inline]
pub(crate) fn axpy(out: &mut [f32], p: f32, v: &[f32]) {
    for (o, &x) in out.iter_mut().zip(v) {
        *o += p * x;
    }
}
