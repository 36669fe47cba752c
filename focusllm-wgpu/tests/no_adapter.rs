//! Without a (matching) adapter the backend fails with a typed error, never a panic. Needs no GPU.
//! This file is its own test process, so setting `WGPU_BACKEND` here does not affect other tests.

use focusllm_core::Error;
use focusllm_wgpu::{WgpuBackend, WgpuOptions};

#[test]
fn no_adapter_is_a_typed_error() {
    let n = WgpuBackend::adapters().len();
    match WgpuBackend::new(WgpuOptions { adapter: Some(n + 3) }) {
        Err(Error::Backend { backend: "wgpu", message }) => {
            assert!(message.contains("no adapter with index"), "{message}")
        }
        other => panic!("expected a wgpu backend error, got {other:?}"),
    }
    // Restrict wgpu to a graphics API this platform does not have: no adapter at all.
    let absent = if cfg!(target_os = "windows") { "metal" } else { "dx12" };
    std::env::set_var("WGPU_BACKEND", absent);
    assert!(WgpuBackend::adapters().is_empty());
    match WgpuBackend::new(WgpuOptions::default()) {
        Err(Error::Backend { backend: "wgpu", message }) => {
            assert!(message.contains("no GPU adapter found"), "{message}")
        }
        other => panic!("expected a wgpu backend error, got {other:?}"),
    }
}
