//! Turning driver and NVRTC failures into focusllm's typed [`Error`].

use cudarc::driver::{sys::CUresult, DriverError};
use focusllm_core::Error;

/// The backend's name in errors.
pub(crate) const NAME: &str = "cuda";

/// An `Error::Backend` of this backend.
pub(crate) fn err(message: impl Into<String>) -> Error {
    Error::Backend { backend: NAME, message: message.into() }
}

/// A driver call `what` failed.
pub(crate) fn driver(what: &str, e: DriverError) -> Error {
    err(format!("{what}: {e}"))
}

/// Whether a driver error means the device ran out of memory.
pub(crate) fn is_out_of_memory(e: &DriverError) -> bool {
    e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY
}

/// Bytes in a human unit.
pub(crate) fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// The out-of-memory error: says what was being allocated, how much, and what the device had.
pub(crate) fn out_of_memory(what: &str, requested: usize, free_total: Option<(usize, usize)>) -> Error {
    let have = match free_total {
        Some((free, total)) => format!("; {} free of {} on the device", human_bytes(free), human_bytes(total)),
        None => String::new(),
    };
    err(format!("out of device memory: {what} needs {requested} bytes ({}){have}", human_bytes(requested)))
}

/// Returns `Ok` if `cond`, else a backend error with the message `what()`.
pub(crate) fn check(cond: bool, what: impl FnOnce() -> String) -> focusllm_core::Result<()> {
    if cond {
        Ok(())
    } else {
        Err(err(what()))
    }
}
