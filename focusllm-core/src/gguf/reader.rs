//! The GGUF container (versions 2 and 3): header, metadata key/value pairs and tensor infos, parsed
//! from a byte buffer (normally a memory map) with every length and offset checked against it.
//!
//! Layout: magic `GGUF`, `u32` version, `u64` tensor count, `u64` metadata count, the metadata
//! (`string` key, `u32` value type, value), the tensor infos (`string` name, `u32` dimension count,
//! `u64` per dimension, innermost first, `u32` ggml type, `u64` offset), padding to
//! `general.alignment` (default 32), then the tensor data, each tensor at its offset from there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::quant::DType;

/// The default alignment of the tensor data section and of every tensor in it.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Deepest nesting of metadata arrays accepted (llama.cpp writes at most arrays of scalars).
const MAX_ARRAY_DEPTH: usize = 2;

/// Most dimensions a ggml tensor has.
const MAX_DIMS: u32 = 4;

/// A ggml tensor element type, by its number in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// 32-bit float.
    pub const F32: GgmlType = GgmlType(0);
    /// IEEE half precision.
    pub const F16: GgmlType = GgmlType(1);
    /// 4-bit blocks of 32 with an f16 scale: `x = (q - 8) * d`.
    pub const Q4_0: GgmlType = GgmlType(2);
    /// 4-bit blocks of 32 with f16 scale and minimum: `x = q * d + m`.
    pub const Q4_1: GgmlType = GgmlType(3);
    /// 8-bit blocks of 32 with an f16 scale: `x = q * d`.
    pub const Q8_0: GgmlType = GgmlType(8);
    /// bfloat16.
    pub const BF16: GgmlType = GgmlType(30);

    /// `(name, elements per block, bytes per block)` of every type ggml defines.
    const TABLE: &'static [(u32, &'static str, u64, u64)] = &[
        (0, "F32", 1, 4),
        (1, "F16", 1, 2),
        (2, "Q4_0", 32, 18),
        (3, "Q4_1", 32, 20),
        (6, "Q5_0", 32, 22),
        (7, "Q5_1", 32, 24),
        (8, "Q8_0", 32, 34),
        (9, "Q8_1", 32, 40),
        (10, "Q2_K", 256, 84),
        (11, "Q3_K", 256, 110),
        (12, "Q4_K", 256, 144),
        (13, "Q5_K", 256, 176),
        (14, "Q6_K", 256, 210),
        (15, "Q8_K", 256, 292),
        (16, "IQ2_XXS", 256, 66),
        (17, "IQ2_XS", 256, 74),
        (18, "IQ3_XXS", 256, 98),
        (19, "IQ1_S", 256, 50),
        (20, "IQ4_NL", 32, 18),
        (21, "IQ3_S", 256, 110),
        (22, "IQ2_S", 256, 82),
        (23, "IQ4_XS", 256, 136),
        (24, "I8", 1, 1),
        (25, "I16", 1, 2),
        (26, "I32", 1, 4),
        (27, "I64", 1, 8),
        (28, "F64", 1, 8),
        (29, "IQ1_M", 256, 56),
        (30, "BF16", 1, 2),
        (34, "TQ1_0", 256, 54),
        (35, "TQ2_0", 256, 66),
        (39, "MXFP4", 32, 17),
    ];

    fn entry(self) -> Option<&'static (u32, &'static str, u64, u64)> {
        Self::TABLE.iter().find(|e| e.0 == self.0)
    }

    /// The type's ggml name, or its number when ggml does not define it.
    pub fn name(self) -> String {
        self.entry().map_or_else(|| format!("#{}", self.0), |e| e.1.to_string())
    }

    /// `(elements per block, bytes per block)`, or `None` for a type ggml does not define.
    pub fn block(self) -> Option<(u64, u64)> {
        self.entry().map(|e| (e.2, e.3))
    }

    /// Whether this crate can read the type (see [`GgmlType::SUPPORTED`]).
    pub fn is_supported(self) -> bool {
        self.dtype().is_some()
    }

    /// The names of the types this crate reads, for error messages.
    pub const SUPPORTED: &'static str =
        "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS";

    /// The host element type this ggml type maps to, for the supported ones.
    pub fn dtype(self) -> Option<DType> {
        Some(match self.0 {
            0 => DType::F32,
            1 => DType::F16,
            30 => DType::BF16,
            8 => DType::Q8_0,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            6 => DType::Q5_0,
            7 => DType::Q5_1,
            10 => DType::Q2_K,
            11 => DType::Q3_K,
            12 => DType::Q4_K,
            13 => DType::Q5_K,
            14 => DType::Q6_K,
            20 => DType::IQ4_NL,
            23 => DType::IQ4_XS,
            _ => return None,
        })
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `float32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// `string` (invalid UTF-8 is replaced by U+FFFD).
    String(String),
    /// `array` of values of one type.
    Array(Vec<MetaValue>),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float64`.
    F64(f64),
}

impl MetaValue {
    /// The value type's GGUF name, for error messages (arrays include their element type).
    pub fn type_name(&self) -> String {
        match self {
            MetaValue::U8(_) => "uint8".into(),
            MetaValue::I8(_) => "int8".into(),
            MetaValue::U16(_) => "uint16".into(),
            MetaValue::I16(_) => "int16".into(),
            MetaValue::U32(_) => "uint32".into(),
            MetaValue::I32(_) => "int32".into(),
            MetaValue::F32(_) => "float32".into(),
            MetaValue::Bool(_) => "bool".into(),
            MetaValue::String(_) => "string".into(),
            MetaValue::Array(items) => match items.first() {
                Some(first) => format!("array of {}", first.type_name()),
                None => "empty array".into(),
            },
            MetaValue::U64(_) => "uint64".into(),
            MetaValue::I64(_) => "int64".into(),
            MetaValue::F64(_) => "float64".into(),
        }
    }

    /// The value as a non-negative integer, whatever its integer width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, whatever its integer width.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float (either float width).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// One tensor's description from the tensor-info section, with its data's checked byte range.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's GGUF name (e.g. `blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions as GGUF stores them: innermost (contiguous) first.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section, as stored.
    pub offset: u64,
    /// Absolute byte range of the data in the file (checked to lie inside it).
    pub range: std::ops::Range<usize>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn len(&self) -> usize {
        // Checked at parse time not to overflow.
        self.dims.iter().product::<u64>() as usize
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape in row-major (Hugging Face / PyTorch) order: outermost first.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// The parsed structure of a GGUF file: everything but the tensor data, which stays in the buffer.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, MetaValue)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Alignment of the data section.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

impl GgufHeader {
    /// Parses the header, metadata and tensor infos of `bytes`, checking every tensor's data range
    /// against the buffer. `path` names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        let mut r = Cursor { bytes, pos: 0, path };
        let magic = r.take(4, "magic")?;
        if magic != b"GGUF" {
            let found = [magic[0], magic[1], magic[2], magic[3]];
            return Err(Error::GgufBadMagic { path: path.to_path_buf(), found });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::GgufUnsupportedVersion { path: path.to_path_buf(), version });
        }
        let tensor_count = r.u64("tensor count")?;
        let kv_count = r.u64("metadata count")?;
        // Each pair takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor info at least
        // 8 + 4 + 4 + 8: counts beyond what the file can hold are rejected before allocating.
        let kv_count = r.bounded_count(kv_count, 13, "metadata count")?;
        let tensor_count = r.bounded_count(tensor_count, 24, "tensor count")?;

        let mut metadata = Vec::with_capacity(kv_count);
        let mut index = HashMap::with_capacity(kv_count);
        for i in 0..kv_count {
            let key = r.string(&format!("metadata key #{i}"))?;
            let ty = r.u32(&format!("type of metadata `{key}`"))?;
            let value = r.value(ty, &key, 0)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(r.invalid(format!("metadata key `{key}` appears twice")));
            }
            metadata.push((key, value));
        }

        let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= 1 << 20 => a,
                _ => {
                    return Err(Error::GgufWrongType {
                        path: path.to_path_buf(),
                        key: "general.alignment".into(),
                        expected: "a power of two up to 2^20".into(),
                        found: format!("{} {v:?}", v.type_name()),
                    })
                }
            },
        };

        let mut raw = Vec::with_capacity(tensor_count);
        let mut tensor_index = HashMap::with_capacity(tensor_count);
        for i in 0..tensor_count {
            let name = r.string(&format!("name of tensor #{i}"))?;
            let n_dims = r.u32(&format!("dimension count of tensor `{name}`"))?;
            if n_dims > MAX_DIMS {
                return Err(r.invalid(format!("tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(r.u64(&format!("dimension {d} of tensor `{name}`"))?);
            }
            let ggml_type = GgmlType(r.u32(&format!("type of tensor `{name}`"))?);
            let offset = r.u64(&format!("offset of tensor `{name}`"))?;
            if tensor_index.insert(name.clone(), raw.len()).is_some() {
                return Err(r.invalid(format!("tensor `{name}` appears twice")));
            }
            raw.push((name, dims, ggml_type, offset));
        }

        let file_len = bytes.len() as u64;
        let data_offset =
            align_up(r.pos as u64, alignment).ok_or_else(|| r.invalid("data section offset overflows".into()))?;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ggml_type, offset) in raw {
            let Some((block_elems, block_bytes)) = ggml_type.block() else {
                return Err(Error::GgufUnsupportedTensorType {
                    path: path.to_path_buf(),
                    tensor: name,
                    ggml_type: ggml_type.name(),
                });
            };
            let count = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            let Some(count) = count.filter(|&c| usize::try_from(c).is_ok()) else {
                return Err(r.invalid(format!("tensor `{name}`: element count of {dims:?} overflows")));
            };
            let row = dims.first().copied().unwrap_or(1);
            if row % block_elems != 0 {
                return Err(r.invalid(format!(
                    "tensor `{name}`: row length {row} is not a multiple of the {} block size {block_elems}",
                    ggml_type.name()
                )));
            }
            if offset % alignment != 0 {
                return Err(r.invalid(format!(
                    "tensor `{name}`: offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            let size = (count / block_elems).checked_mul(block_bytes);
            let start = data_offset.checked_add(offset);
            let end = match (start, size) {
                (Some(s), Some(n)) => s.checked_add(n),
                _ => None,
            };
            match (start, end) {
                (Some(start), Some(end)) if end <= file_len => {
                    tensors.push(TensorInfo { name, dims, ggml_type, offset, range: start as usize..end as usize });
                }
                _ => {
                    return Err(Error::GgufTensorOutOfBounds {
                        path: path.to_path_buf(),
                        tensor: name,
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        file_len,
                    })
                }
            }
        }
        Ok(GgufHeader { version, metadata, tensors, alignment, data_offset, index, tensor_index })
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The tensor info called `name` (a GGUF name).
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    Some(x.checked_add(alignment - 1)? / alignment * alignment)
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    fn invalid(&self, reason: String) -> Error {
        Error::GgufInvalid { path: self.path(), reason }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::GgufTruncated {
                path: self.path(),
                what: what.to_string(),
                offset: self.pos as u64,
                needed: n as u64,
                file_len: self.bytes.len() as u64,
            });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items each at least `min_size` bytes long, rejected as truncation when the rest of
    /// the file cannot hold that many.
    fn bounded_count(&self, count: u64, min_size: u64, what: &str) -> Result<usize> {
        let needed = count.checked_mul(min_size);
        match needed {
            Some(n) if n <= self.remaining() as u64 => Ok(count as usize),
            _ => Err(Error::GgufTruncated {
                path: self.path(),
                what: format!("{what} {count}"),
                offset: self.pos as u64,
                needed: needed.unwrap_or(u64::MAX),
                file_len: self.bytes.len() as u64,
            }),
        }
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let len = self.bounded_count(len, 1, what)?;
        let bytes = self.take(len, what)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetaValue> {
        let what = || format!("value of metadata `{key}`");
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(&what())?[0]),
            1 => MetaValue::I8(self.array::<1>(&what())?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(&what())?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(&what())?)),
            4 => MetaValue::U32(u32::from_le_bytes(self.array(&what())?)),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(&what())?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(&what())?)),
            7 => match self.array::<1>(&what())?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(self.invalid(format!("metadata `{key}`: bool byte {b} is neither 0 nor 1"))),
            },
            8 => MetaValue::String(self.string(&what())?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.invalid(format!("metadata `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}")));
                }
                let elem = self.u32(&format!("element type of metadata `{key}`"))?;
                let count = self.u64(&format!("length of metadata `{key}`"))?;
                let min = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => return Err(self.invalid(format!("metadata `{key}`: unknown array element type {other}"))),
                };
                let count = self.bounded_count(count, min, &format!("length of metadata `{key}`"))?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(u64::from_le_bytes(self.array(&what())?)),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(&what())?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(&what())?)),
            other => return Err(self.invalid(format!("metadata `{key}`: unknown value type {other}"))),
        })
    }
}
