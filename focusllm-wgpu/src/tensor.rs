//! Device-resident tensors: activations ([`WgpuTensor`], f32, pooled, shape kept on the host) and
//! weights ([`WgpuWeight`], quantised blocks, f16 or f32, split into row ranges that each fit one
//! binding).

use std::sync::Arc;

use focusllm_core::{DType, HostTensor, Result};
use half::{bf16, f16};
use wgpu::util::DeviceExt;

use crate::context::{err, Context};
use crate::pool::PooledBuffer;
use crate::program::WeightType;

/// A 2-D row-major f32 activation `[rows, cols]` resident on the device.
///
/// Cloning is cheap (the buffer is shared); the operations that write in place
/// ([`focusllm_core::Backend::scatter_rows`], [`focusllm_core::Backend::append_rows`]) copy a shared
/// buffer first, so clones never see each other's writes. The buffer may hold more rows than
/// `rows` (capacity kept for appends).
#[derive(Clone)]
pub struct WgpuTensor {
    pub(crate) buf: Arc<PooledBuffer>,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl std::fmt::Debug for WgpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuTensor")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("capacity_rows", &self.capacity_rows())
            .finish()
    }
}

impl WgpuTensor {
    pub(crate) fn new(buf: PooledBuffer, rows: usize, cols: usize) -> Self {
        WgpuTensor { buf: Arc::new(buf), rows, cols }
    }

    /// `(rows, cols)`, known on the host without touching the device.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Rows the underlying buffer can hold without reallocating.
    pub fn capacity_rows(&self) -> usize {
        if self.cols == 0 {
            usize::MAX
        } else {
            (self.buf.size() / (self.cols as u64 * 4)) as usize
        }
    }

    /// Bytes of one row.
    pub(crate) fn row_bytes(&self) -> u64 {
        self.cols as u64 * 4
    }

    /// Bytes of the valid rows.
    pub(crate) fn bytes(&self) -> u64 {
        self.rows as u64 * self.row_bytes()
    }
}

/// One row range of a weight, in a buffer of its own.
pub(crate) struct WeightPart {
    pub(crate) buffer: wgpu::Buffer,
    /// First row of the weight held by this part.
    pub(crate) start: usize,
    /// Rows held.
    pub(crate) rows: usize,
}

/// A checkpoint weight on the device: a matrix `[rows, cols]` (a vector is one row).
///
/// Quantised matrices (every GGUF block type the crate reads) keep their blocks, read in place by
/// the shaders;
/// other matrices are kept in f16 where the adapter has `SHADER_F16` (unless f32 is asked for);
/// vectors (norm weights, biases) always in f32. A matrix larger than the adapter's largest
/// storage binding is split into row ranges, each in its own buffer.
pub struct WgpuWeight {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) dtype: WeightType,
    pub(crate) parts: Vec<WeightPart>,
}

impl std::fmt::Debug for WgpuWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuWeight")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("dtype", &self.dtype())
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl WgpuWeight {
    /// `(rows, cols)`; a vector is `(1, len)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Whether the elements are stored as f16.
    pub fn is_f16(&self) -> bool {
        self.dtype == WeightType::F16
    }

    /// The element type kept on the device: F32, F16, or the checkpoint's quantised type.
    pub fn dtype(&self) -> DType {
        self.dtype.dtype()
    }

    /// Number of buffers the weight is split into (1 unless it exceeds one binding).
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// The single f32 buffer of a vector weight (norm weight, bias).
    pub(crate) fn vector(&self, what: &str, len: usize) -> Result<&wgpu::Buffer> {
        match (&*self.parts, self.dtype) {
            ([part], WeightType::F32) if self.rows * self.cols == len => Ok(&part.buffer),
            _ => Err(err(format!(
                "{what}: expected an f32 vector of {len} values, got a {:?} weight [{}, {}] in {} part(s)",
                self.dtype,
                self.rows,
                self.cols,
                self.parts.len()
            ))),
        }
    }
}

/// Element data of a host tensor in the type the device keeps.
enum Converted<'a> {
    F32(Vec<f32>),
    F16(Vec<u16>),
    /// Quantised blocks, as the checkpoint holds them.
    Blocks(&'a [u8]),
}

fn convert<'a>(t: &'a HostTensor<'_>, to: WeightType) -> Converted<'a> {
    let b = &t.bytes;
    match to {
        WeightType::F32 => Converted::F32(t.to_f32()),
        WeightType::F16 => Converted::F16(match t.dtype {
            DType::F16 => b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect(),
            DType::BF16 => {
                b.chunks_exact(2).map(|c| f16::from_f32(bf16::from_le_bytes([c[0], c[1]]).to_f32()).to_bits()).collect()
            }
            DType::F32 => b
                .chunks_exact(4)
                .map(|c| f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_bits())
                .collect(),
            // Quantised rows that are not whole blocks.
            _ => t.to_f32().into_iter().map(|x| f16::from_f32(x).to_bits()).collect(),
        }),
        _ => Converted::Blocks(b),
    }
}

/// The type a weight is kept in: quantised matrices keep their blocks when each row is whole
/// blocks (GGUF's always are); other matrices f16 where the context keeps f16, else f32; vectors f32.
fn stored_type(ctx: &Context, t: &HostTensor<'_>, matrix: bool, cols: usize) -> WeightType {
    let whole_blocks = cols > 0 && cols.is_multiple_of(t.dtype.block().0);
    match WeightType::blocks(t.dtype) {
        Some(blocks) if matrix && whole_blocks => blocks,
        _ if matrix && ctx.f16_weights => WeightType::F16,
        _ => WeightType::F32,
    }
}

/// Bytes of `data[start..end]`, padded with zeros to a multiple of 4.
fn part_bytes<T: bytemuck::Pod>(data: &[T], start: usize, end: usize) -> Vec<u8> {
    let mut bytes = bytemuck::cast_slice(&data[start..end]).to_vec();
    bytes.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
    bytes
}

/// Copies a checkpoint tensor to the device (converted to f16 where the context keeps f16 weights).
pub(crate) fn upload_weight(ctx: &Context, t: &HostTensor<'_>) -> Result<WgpuWeight> {
    ctx.check()?;
    let (rows, cols, matrix) = match t.shape.as_slice() {
        [r, c] => (*r, *c, true),
        _ => (1, t.len(), false),
    };
    let dtype = stored_type(ctx, t, matrix, cols);
    let row_bytes = match dtype {
        WeightType::F32 => cols * 4,
        WeightType::F16 => cols * 2,
        _ => t.dtype.bytes_for(cols).unwrap_or(0),
    }
    .max(1) as u64;
    let limit = if matrix { ctx.max_weight_part } else { ctx.max_binding() };
    if row_bytes > limit {
        return Err(err(format!(
            "tensor `{}`: one row of {row_bytes} bytes exceeds the largest binding ({limit} bytes)",
            t.name
        )));
    }
    let rows_per_part = ((limit / row_bytes) as usize).max(1);
    let data = convert(t, dtype);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < rows || parts.is_empty() {
        let end = (start + rows_per_part).min(rows);
        let bytes = match &data {
            Converted::F32(d) => part_bytes(d, start * cols, end * cols),
            Converted::F16(d) => part_bytes(d, start * cols, end * cols),
            Converted::Blocks(d) => part_bytes(d, start * row_bytes as usize, end * row_bytes as usize),
        };
        let buffer = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(&t.name),
            contents: &bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        });
        parts.push(WeightPart { buffer, start, rows: end - start });
        start = end;
        if rows == 0 {
            break;
        }
    }
    Ok(WgpuWeight { rows, cols, dtype, parts })
}
