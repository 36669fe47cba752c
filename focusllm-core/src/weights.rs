//! Checkpoint reading: memory-mapped safetensors files (single or sharded), or safetensors bytes
//! already in memory, exposed as host tensors.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors};

use crate::error::{Error, Result};
use crate::quant::{self, DType};

/// A tensor's bytes on the host (borrowed from a memory map where possible), with its type and shape.
#[derive(Debug, Clone)]
pub struct HostTensor<'a> {
    /// The tensor's name in the checkpoint.
    pub name: String,
    /// Element type of `bytes`.
    pub dtype: DType,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Little-endian element data.
    pub bytes: Cow<'a, [u8]>,
}

impl HostTensor<'_> {
    /// A host tensor that owns f32 data (used for dequantised or derived weights).
    pub fn from_f32(name: impl Into<String>, shape: Vec<usize>, data: &[f32]) -> HostTensor<'static> {
        let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        HostTensor { name: name.into(), dtype: DType::F32, shape, bytes: Cow::Owned(bytes) }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements converted to f32 (quantised types dequantised exactly as ggml does). Bytes past
    /// the last whole block are ignored, so a tensor whose bytes do not match its shape (see
    /// [`HostTensor::has_consistent_size`]) converts to the wrong number of values, which every
    /// backend reports as an error.
    pub fn to_f32(&self) -> Vec<f32> {
        let (block_elems, block_bytes) = self.dtype.block();
        let blocks = self.bytes.len() / block_bytes;
        quant::dequantize(self.dtype, &self.bytes[..blocks * block_bytes], blocks * block_elems)
            .expect("whole blocks always convert")
    }

    /// Whether `bytes` holds exactly the elements of `shape` in `dtype`.
    pub fn has_consistent_size(&self) -> bool {
        self.dtype.bytes_for(self.len()) == Some(self.bytes.len())
    }
}

/// Anything that can hand out a checkpoint's tensors by name.
pub trait WeightSource {
    /// The tensor called `name`, or `None` when the checkpoint lacks it.
    fn tensor(&self, name: &str) -> Result<Option<HostTensor<'_>>>;

    /// Shape of the tensor called `name`, without touching its data.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;

    /// The file or directory the tensors come from (for error messages).
    fn location(&self) -> &Path;
}

/// The bytes of one safetensors file: a read-only memory map, or bytes the caller holds.
enum FileBytes {
    Mapped(Mmap),
    InMemory(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::InMemory(v) => v,
        }
    }
}

/// One safetensors file with its parsed header.
struct MappedFile {
    path: PathBuf,
    mmap: FileBytes,
    header_len: usize,
    metadata: Metadata,
}

impl MappedFile {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; a checkpoint modified while mapped is outside our contract,
        // as it is for every memory-mapping model loader.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path, FileBytes::Mapped(mmap))
    }

    fn parse(path: &Path, bytes: FileBytes) -> Result<Self> {
        let (header_len, metadata) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::Safetensors { path: path.to_path_buf(), reason: e.to_string() })?;
        Ok(MappedFile { path: path.to_path_buf(), mmap: bytes, header_len, metadata })
    }
}

/// The tensors of a Hugging Face checkpoint: `model.safetensors` or the shards of
/// `model.safetensors.index.json`, memory-mapped.
pub struct SafetensorsWeights {
    location: PathBuf,
    files: Vec<MappedFile>,
    /// Tensor name -> index into `files`.
    index: HashMap<String, usize>,
}

impl SafetensorsWeights {
    /// Opens the checkpoint in a model directory (single file or sharded index).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if index.exists() {
            Self::from_index(&index)
        } else {
            Self::from_files(dir, &[single])
        }
    }

    /// Opens a sharded checkpoint through its `*.safetensors.index.json`.
    pub fn from_index(index_path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let index: Index = serde_json::from_str(&text).map_err(|e| Error::json(index_path, e))?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<&String> = index.weight_map.values().collect();
        shards.sort();
        shards.dedup();
        let paths: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
        Self::from_files(index_path, &paths)
    }

    /// Opens a list of safetensors files as one checkpoint; `location` names it in errors.
    pub fn from_files(location: &Path, paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for path in paths {
            let file = MappedFile::open(path)?;
            for name in file.metadata.tensors().keys() {
                index.insert(name.clone(), files.len());
            }
            files.push(file);
        }
        Ok(SafetensorsWeights { location: location.to_path_buf(), files, index })
    }

    /// One safetensors file already in memory (e.g. an adapter built into a program with
    /// `include_bytes!`); `location` names it in errors.
    pub fn from_bytes(location: &Path, bytes: &[u8]) -> Result<Self> {
        let file = MappedFile::parse(location, FileBytes::InMemory(bytes.to_vec()))?;
        let index = file.metadata.tensors().keys().map(|name| (name.clone(), 0)).collect();
        Ok(SafetensorsWeights { location: location.to_path_buf(), files: vec![file], index })
    }

    /// Names of all tensors in the checkpoint.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// The `__metadata__` entry `key` of the first file that has it.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.files.iter().find_map(|f| f.metadata.metadata().as_ref()?.get(key).map(String::as_str))
    }

    /// The safetensors dtype, shape and bytes of tensor `name`, whatever its dtype (integer
    /// tensors included), borrowed from the map.
    pub(crate) fn raw(&self, name: &str) -> Option<(Dtype, &[usize], &[u8])> {
        let file = &self.files[*self.index.get(name)?];
        let info = file.metadata.info(name)?;
        let start = 8 + file.header_len + info.data_offsets.0;
        let end = 8 + file.header_len + info.data_offsets.1;
        // read_metadata has validated the offsets against the buffer, so this slice is in bounds.
        Some((info.dtype, &info.shape, &file.mmap[start..end]))
    }
}

impl WeightSource for SafetensorsWeights {
    fn tensor(&self, name: &str) -> Result<Option<HostTensor<'_>>> {
        let Some(&i) = self.index.get(name) else { return Ok(None) };
        let file = &self.files[i];
        let info = file.metadata.info(name).ok_or_else(|| Error::Safetensors {
            path: file.path.clone(),
            reason: format!("tensor `{name}` listed but absent"),
        })?;
        let dtype = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => return Err(Error::UnsupportedDtype { name: name.to_string(), dtype: format!("{other:?}") }),
        };
        let start = 8 + file.header_len + info.data_offsets.0;
        let end = 8 + file.header_len + info.data_offsets.1;
        // read_metadata has validated the offsets against the buffer, so this slice is in bounds.
        let bytes = &file.mmap[start..end];
        Ok(Some(HostTensor { name: name.to_string(), dtype, shape: info.shape.clone(), bytes: Cow::Borrowed(bytes) }))
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let &i = self.index.get(name)?;
        self.files[i].metadata.info(name).map(|info| info.shape.clone())
    }

    fn location(&self) -> &Path {
        &self.location
    }
}
