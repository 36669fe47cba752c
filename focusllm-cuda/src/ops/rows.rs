//! Row copies: gather (concatenation), scatter (overwrite), append (amortised growth).

use std::ops::Range;
use std::sync::Arc;

use focusllm_core::{grown_capacity, Result, RowSlice};

use crate::launch::{blocks, config, launch, THREADS};
use crate::tensor::CudaTensor;
use crate::CudaBackend;

impl CudaBackend {
    pub(crate) fn op_gather_rows(&self, parts: &[RowSlice<'_, CudaTensor>]) -> Result<CudaTensor> {
        let cols = parts.first().map_or(0, |p| p.tensor.cols);
        let rows: usize = parts.iter().map(|p| p.rows.len()).sum();
        let out = self.alloc::<f32>("gathered rows", rows * cols)?;
        let mut at = 0;
        for p in parts {
            let n = p.rows.len() * cols;
            self.copy_dtod(self.ptr(&out, at), self.ptr(&p.tensor.buf, p.rows.start * cols), n * 4)?;
            at += n;
        }
        Ok(CudaTensor::new(out, rows, cols))
    }

    /// Makes `t`'s buffer its own (copying it if a clone shares it) with room for `capacity` rows.
    fn own_buffer(&self, t: &mut CudaTensor, capacity: usize) -> Result<()> {
        if Arc::get_mut(&mut t.buf).is_some() && t.capacity_rows() >= capacity {
            return Ok(());
        }
        let fresh = self.alloc::<f32>("tensor rows", capacity * t.cols)?;
        self.copy_dtod(self.ptr(&fresh, 0), self.ptr(&t.buf, 0), t.rows * t.cols * 4)?;
        t.buf = Arc::new(fresh);
        Ok(())
    }

    pub(crate) fn op_scatter_rows(&self, dst: &mut CudaTensor, rows: &[usize], src: &CudaTensor) -> Result<()> {
        if rows.is_empty() || dst.cols == 0 {
            return Ok(());
        }
        self.own_buffer(dst, dst.rows)?;
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx_dev = self.upload("scatter row indices", &idx)?;
        let cfg = config((rows.len() as u32, blocks(dst.cols, THREADS as usize), 1), THREADS, 0);
        launch!(self, "scatter_rows", cfg;
            self.ptr(&dst.buf, 0), self.ptr(&src.buf, 0), self.ptr(&idx_dev, 0), rows.len() as i32, dst.cols as i32);
        Ok(())
    }

    pub(crate) fn op_append_rows(&self, dst: &mut CudaTensor, src: &CudaTensor, rows: Range<usize>) -> Result<()> {
        let n = rows.len();
        if n == 0 {
            return Ok(());
        }
        let needed = dst.rows + n;
        if dst.cols > 0 {
            let unique = Arc::get_mut(&mut dst.buf).is_some();
            if !unique || dst.capacity_rows() < needed {
                self.own_buffer(dst, grown_capacity(dst.rows, needed))?;
            }
            let cols = dst.cols;
            self.copy_dtod(self.ptr(&dst.buf, dst.rows * cols), self.ptr(&src.buf, rows.start * cols), n * cols * 4)?;
        }
        dst.rows = needed;
        Ok(())
    }

    /// Shrinks the visible rows; the buffer (and its spare capacity) is kept, so nothing moves.
    /// A clone sharing the buffer still sees its own rows: the next in-place write copies first.
    pub(crate) fn op_truncate_rows(&self, x: &mut CudaTensor, rows: usize) -> Result<()> {
        x.rows = rows;
        Ok(())
    }
}
