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
