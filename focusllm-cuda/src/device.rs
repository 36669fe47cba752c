//! Opening a CUDA device: the driver and NVRTC are looked for first, so a machine without them
//! gets an error instead of the panic the binding would raise.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaStream};
use focusllm_core::Result;

use crate::error::{driver, err};
use crate::kernels;

/// An opened device: its context, the one stream every operation is queued on, and its properties.
pub(crate) struct Device {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) name: String,
    pub(crate) compute_capability: (i32, i32),
    pub(crate) multiprocessors: usize,
    /// Shared memory a block may opt in to, in bytes.
    pub(crate) max_shared_per_block: usize,
    /// Device memory in bytes.
    pub(crate) total_memory: usize,
}

/// Whether the CUDA driver library (`libcuda.so`) can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

impl Device {
    /// Opens device `ordinal`.
    pub(crate) fn open(ordinal: usize) -> Result<Device> {
        if !driver_present() {
            return Err(err("the CUDA driver library (libcuda.so) was not found: this machine has no NVIDIA driver, \
                 or it is not on the library search path"));
        }
        if !kernels::nvrtc_present() {
            return Err(err(
                "NVRTC (libnvrtc.so.13, CUDA 13) was not found: install it (e.g. `pip install nvidia-cuda-nvrtc`, \
                 see scripts/install_nvrtc.sh) and put its directory on LD_LIBRARY_PATH",
            ));
        }
        // A binding built for CUDA 13 panics when an older driver lacks one of its symbols: turn
        // that into an error too.
        match catch_unwind(AssertUnwindSafe(|| Self::open_checked(ordinal))) {
            Ok(result) => result,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown failure".into());
                Err(err(format!("cannot use the CUDA driver: {what}")))
            }
        }
    }

    fn open_checked(ordinal: usize) -> Result<Device> {
        let count = CudaContext::device_count().map_err(|e| driver("cannot initialise CUDA", e))?;
        if count <= 0 {
            return Err(err("no CUDA device is present"));
        }
        if ordinal >= count as usize {
            return Err(err(format!("no CUDA device {ordinal}: {count} present (ordinals 0..{count})")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| driver(&format!("cannot open CUDA device {ordinal}"), e))?;
        // SAFETY: every operation of this backend runs on the context's one stream, so the
        // binding's cross-stream event tracking is not needed (and would cost two events per
        // allocation). Set before the first allocation.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let name = ctx.name().map_err(|e| driver("cannot read the device name", e))?;
        let compute_capability =
            ctx.compute_capability().map_err(|e| driver("cannot read the compute capability", e))?;
        let attr = |a, what: &str| -> Result<usize> {
            ctx.attribute(a).map(|v| v.max(0) as usize).map_err(|e| driver(&format!("cannot read {what}"), e))
        };
        let multiprocessors =
            attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "the multiprocessor count")?;
        let max_shared_per_block =
            attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, "the shared memory limit")?;
        let total_memory = ctx.total_mem().map_err(|e| driver("cannot read the device's memory size", e))?;
        Ok(Device { ctx, stream, name, compute_capability, multiprocessors, max_shared_per_block, total_memory })
    }

    /// NVRTC architecture of the device, e.g. `sm_90`.
    pub(crate) fn arch(&self) -> String {
        kernels::arch_for(self.compute_capability.0, self.compute_capability.1)
    }

    /// `(free, total)` device memory in bytes.
    pub(crate) fn memory(&self) -> Result<(usize, usize)> {
        self.ctx.mem_get_info().map_err(|e| driver("cannot read the device's memory", e))
    }
}
