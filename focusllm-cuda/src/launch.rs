//! Launch shapes and the `launch!` macro that queues a kernel on the backend's stream.

use cudarc::driver::LaunchConfig;

/// Threads per block of the 1-D elementwise kernels.
pub(crate) const THREADS: u32 = 256;

/// A launch of `grid` blocks of `block` threads with `shared` bytes of dynamic shared memory.
pub(crate) fn config(grid: (u32, u32, u32), block: u32, shared: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: grid, block_dim: (block, 1, 1), shared_mem_bytes: shared }
}

/// One thread per element of `n`, in blocks of [`THREADS`].
pub(crate) fn per_element(n: usize) -> LaunchConfig {
    config(((n as u64).div_ceil(THREADS as u64).max(1) as u32, 1, 1), THREADS, 0)
}

/// Blocks needed to cover `n` by `per` (at least one).
pub(crate) fn blocks(n: usize, per: usize) -> u32 {
    n.div_ceil(per).max(1) as u32
}

/// `launch!(backend, "kernel", config; arg, arg, ...)` queues kernel `"kernel"` (compiled on first
/// use) with the arguments in order. Each argument's Rust type must match the kernel's parameter:
/// device pointers as `u64`, `int` as `i32`, `long long` as `i64`, `float` as `f32`.
macro_rules! launch {
    ($backend:expr, $name:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        let backend: &$crate::CudaBackend = $backend;
        let function = backend.modules.function($name)?;
        #[allow(unused_imports)]
        use cudarc::driver::PushKernelArg as _;
        let mut builder = backend.device.stream.launch_builder(&function);
        $(
            let arg = $arg;
            builder.arg(&arg);
        )*
        // SAFETY: the arguments match the kernel's signature (see each call site and the .cu
        // file); every pointer addresses a live buffer of this context large enough for the
        // extent the kernel is given; all work is ordered on the backend's one stream.
        unsafe { builder.launch($cfg) }
            .map_err(|e| $crate::error::driver(&format!("cannot launch kernel `{}`", $name), e))?;
    }};
}

pub(crate) use launch;
