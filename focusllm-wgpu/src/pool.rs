//! A pool of device buffers: activations are allocated and freed at every operation, so freed
//! buffers are kept by size class and handed out again instead of being reallocated.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use wgpu::BufferUsages;

/// Usage of activation buffers: bound as storage, copied from and to.
pub(crate) const TENSOR_USAGE: BufferUsages =
    BufferUsages::STORAGE.union(BufferUsages::COPY_SRC).union(BufferUsages::COPY_DST);
/// Usage of the small parameter blocks of each dispatch.
pub(crate) const UNIFORM_USAGE: BufferUsages = BufferUsages::UNIFORM.union(BufferUsages::COPY_DST);

/// Smallest buffer the pool hands out, in bytes.
const MIN_BYTES: u64 = 256;

/// Freed buffers by (size, usage), and how many bytes they hold.
#[derive(Default)]
struct FreeLists {
    by_key: HashMap<(u64, u32), Vec<wgpu::Buffer>>,
    bytes: u64,
}

/// The pool. Shared (through `Arc`) by every buffer it handed out, which return on drop.
pub(crate) struct BufferPool {
    device: wgpu::Device,
    free: Mutex<FreeLists>,
    /// Freed bytes kept at most; beyond it freed buffers are released to the driver.
    max_free_bytes: u64,
}

impl BufferPool {
    pub(crate) fn new(device: wgpu::Device, max_free_bytes: u64) -> Self {
        BufferPool { device, free: Mutex::new(FreeLists::default()), max_free_bytes }
    }

    /// The size class of a request: powers of two up to 4 KiB, then steps of an eighth of the
    /// enclosing power of two (at most 12.5% waste). Never above `cap` unless `bytes` is.
    fn size_class(bytes: u64, cap: u64) -> u64 {
        let bytes = bytes.max(MIN_BYTES);
        let p = bytes.next_power_of_two();
        let class = if p <= 4096 {
            p
        } else {
            let step = p / 8;
            bytes.div_ceil(step) * step
        };
        if class > cap {
            bytes.div_ceil(4) * 4
        } else {
            class
        }
    }

    /// A buffer of at least `bytes` bytes (rounded to its size class, kept at most `cap` where
    /// possible) with `usage`. Its contents are unspecified.
    pub(crate) fn take(self: &Arc<Self>, bytes: u64, usage: BufferUsages, cap: u64) -> PooledBuffer {
        let size = Self::size_class(bytes, cap);
        let key = (size, usage.bits());
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            let buffer = free.by_key.get_mut(&key).and_then(Vec::pop);
            if buffer.is_some() {
                free.bytes -= size;
            }
            buffer
        };
        let buffer = reused.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("focusllm pooled buffer"),
                size,
                usage,
                mapped_at_creation: false,
            })
        });
        PooledBuffer { buffer: Some(buffer), size, usage, pool: Arc::clone(self) }
    }

    fn give_back(&self, buffer: wgpu::Buffer, size: u64, usage: BufferUsages) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.bytes + size > self.max_free_bytes {
            return; // dropped: released to the driver once the GPU is done with it
        }
        free.bytes += size;
        free.by_key.entry((size, usage.bits())).or_default().push(buffer);
    }

    /// Bytes currently held in free lists.
    pub(crate) fn free_bytes(&self) -> u64 {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

/// A buffer on loan from the pool; goes back to it when dropped.
///
/// Safe to recycle as soon as the last handle drops: every operation submits its commands before
/// returning, and the queue executes submissions (and staged writes) in order, so a later user of
/// the recycled buffer runs after every earlier reader.
pub(crate) struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    size: u64,
    usage: BufferUsages,
    pool: Arc<BufferPool>,
}

impl PooledBuffer {
    /// Size in bytes (the size class, at least what was asked).
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

impl Deref for PooledBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("present until drop")
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(buffer, self.size, self.usage);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BufferPool;

    #[test]
    fn size_classes_round_up_with_bounded_waste() {
        assert_eq!(BufferPool::size_class(1, u64::MAX), 256);
        assert_eq!(BufferPool::size_class(3000, u64::MAX), 4096);
        assert_eq!(BufferPool::size_class(4097, u64::MAX), 5120);
        for bytes in [5000u64, 70_000, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = BufferPool::size_class(bytes, u64::MAX);
            assert!(c >= bytes && (c - bytes) * 8 <= bytes.next_power_of_two(), "{bytes} -> {c}");
        }
        // Never rounded past the binding cap when the request itself fits.
        assert_eq!(BufferPool::size_class(1000, 1000), 1000);
    }
}
