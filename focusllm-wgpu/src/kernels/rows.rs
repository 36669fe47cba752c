//! Row movement with buffer copies (no kernels): gather, scatter, and amortised append.

use std::ops::Range;
use std::sync::Arc;

use focusllm_core::{Result, RowSlice};

use crate::context::{err, Context};
use crate::tensor::WgpuTensor;

/// Concatenates row ranges of tensors of one width.
pub(crate) fn gather_rows(ctx: &Context, parts: &[RowSlice<'_, WgpuTensor>]) -> Result<WgpuTensor> {
    let cols = parts.first().map_or(0, |p| p.tensor.cols);
    let rows: usize = parts.iter().map(|p| p.rows.len()).sum();
    let row_bytes = cols as u64 * 4;
    let out = ctx.alloc(rows as u64 * row_bytes, "gather_rows output")?;
    let mut copies = Vec::with_capacity(parts.len());
    let mut at = 0u64;
    for p in parts {
        let n = p.rows.len() as u64 * row_bytes;
        copies.push((&**p.tensor.buf, p.rows.start as u64 * row_bytes, &*out, at, n));
        at += n;
    }
    ctx.copy(&copies)?;
    Ok(WgpuTensor::new(out, rows, cols))
}

/// Gives `t` a buffer of its own holding at least `capacity` rows (copying its valid rows), unless
/// it already has one: the copy-on-write step before an in-place write.
fn make_unique(ctx: &Context, t: &mut WgpuTensor, capacity: usize) -> Result<()> {
    if Arc::get_mut(&mut t.buf).is_some() && t.capacity_rows() >= capacity {
        return Ok(());
    }
    let buf = ctx.alloc(capacity as u64 * t.row_bytes(), "tensor storage")?;
    ctx.copy(&[(&t.buf, 0, &buf, 0, t.bytes())])?;
    t.buf = Arc::new(buf);
    Ok(())
}

/// Overwrites rows `rows[i]` of `dst` with row `i` of `src`.
pub(crate) fn scatter_rows(ctx: &Context, dst: &mut WgpuTensor, rows: &[usize], src: &WgpuTensor) -> Result<()> {
    if rows.is_empty() || dst.cols == 0 {
        return Ok(());
    }
    make_unique(ctx, dst, dst.rows)?;
    let rb = dst.row_bytes();
    let copies: Vec<_> =
        rows.iter().enumerate().map(|(i, &r)| (&**src.buf, i as u64 * rb, &**dst.buf, r as u64 * rb, rb)).collect();
    ctx.copy(&copies)
}

/// Appends rows `rows` of `src` to `dst`. Capacity grows by an eighth (`grown_capacity`, bounded by
/// the largest binding), so appending one row at a time costs amortised O(1) copies per row.
pub(crate) fn append_rows(ctx: &Context, dst: &mut WgpuTensor, src: &WgpuTensor, rows: Range<usize>) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let need = dst.rows + rows.len();
    let rb = dst.row_bytes();
    if dst.cols > 0 && (need > dst.capacity_rows() || Arc::get_mut(&mut dst.buf).is_none()) {
        let max_rows = (ctx.max_binding() / rb) as usize;
        if need > max_rows {
            return Err(err(format!(
                "append_rows: {need} rows of {rb} bytes exceed the adapter's largest storage binding ({} bytes)",
                ctx.max_binding()
            )));
        }
        let grown = focusllm_core::grown_capacity(dst.rows, need).min(max_rows);
        make_unique(ctx, dst, grown)?;
    }
    ctx.copy(&[(&src.buf, rows.start as u64 * rb, &dst.buf, dst.rows as u64 * rb, rows.len() as u64 * rb)])?;
    dst.rows = need;
    Ok(())
}

/// Keeps the first `rows` rows of `x`: only the host-side shape shrinks (the buffer, possibly shared
/// with clones, is untouched; a later in-place write copies it first if it is shared).
pub(crate) fn truncate_rows(x: &mut WgpuTensor, rows: usize) -> Result<()> {
    x.rows = rows;
    Ok(())
}
