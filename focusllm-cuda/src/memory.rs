//! Allocation and copies, with out-of-memory reported as an error that says how much was asked.

use cudarc::driver::{result as cu, CudaSlice, DevicePtr, DeviceRepr};
use focusllm_core::Result;

use crate::error::{driver, is_out_of_memory, out_of_memory};
use crate::tensor::WeightData;
use crate::CudaBackend;

impl CudaBackend {
    /// Allocates `len` (at least one) uninitialised elements for `what`.
    pub(crate) fn alloc<T: DeviceRepr>(&self, what: &str, len: usize) -> Result<CudaSlice<T>> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| out_of_memory(what, usize::MAX, self.device.memory().ok()))?;
        if bytes > self.device.total_memory {
            return Err(out_of_memory(what, bytes, self.device.memory().ok()));
        }
        // SAFETY: every caller writes the elements it later reads (kernels write their outputs
        // in full; copies fill the rows that become visible).
        match unsafe { self.device.stream.alloc::<T>(len.max(1)) } {
            Ok(s) => Ok(s),
            Err(e) if is_out_of_memory(&e) => Err(out_of_memory(what, bytes, self.device.memory().ok())),
            Err(e) => Err(driver(&format!("cannot allocate {bytes} bytes for {what}"), e)),
        }
    }

    /// Copies host data to a new device buffer.
    pub(crate) fn upload<T: DeviceRepr>(&self, what: &str, data: &[T]) -> Result<CudaSlice<T>> {
        let mut dst = self.alloc::<T>(what, data.len())?;
        if !data.is_empty() {
            let mut view = dst.slice_mut(0..data.len());
            self.device.stream.memcpy_htod(data, &mut view).map_err(|e| driver(&format!("cannot upload {what}"), e))?;
        }
        Ok(dst)
    }

    /// Raw device address of element `offset` of `s` (for kernel arguments and raw copies).
    pub(crate) fn ptr<T>(&self, s: &CudaSlice<T>, offset: usize) -> u64 {
        let (p, _sync) = s.device_ptr(&self.device.stream);
        p + (offset * std::mem::size_of::<T>()) as u64
    }

    /// Raw device address of a weight's first element.
    pub(crate) fn weight_ptr(&self, data: &WeightData) -> u64 {
        match data {
            WeightData::F32(s) => self.ptr(s, 0),
            WeightData::F16(s) | WeightData::BF16(s) => self.ptr(s, 0),
            WeightData::Blocks(_, s) => self.ptr(s, 0),
        }
    }

    /// Queues a device-to-device copy of `bytes` bytes.
    pub(crate) fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.device.ctx.bind_to_thread().map_err(|e| driver("cannot bind the CUDA context", e))?;
        // SAFETY: callers pass addresses inside live buffers of this context with `bytes` to spare;
        // the copy is ordered on the backend's one stream with every kernel touching them.
        unsafe { cu::memcpy_dtod_async(dst, src, bytes, self.device.stream.cu_stream()) }
            .map_err(|e| driver("device-to-device copy failed", e))
    }
}
