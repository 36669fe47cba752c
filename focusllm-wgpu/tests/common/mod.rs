//! Helpers shared by the wgpu tests: adapter gating and the backend's weight storage; the seeded
//! PRNG, references and comparisons, fixtures and goldens come from `focusllm-testdata`.
#![allow(dead_code, unused_imports)] // each test crate uses a part

use focusllm_core::Backend;
pub use focusllm_testdata::conformance::Storage;
pub use focusllm_testdata::golden::{golden, Case};
pub use focusllm_testdata::{fixture_dir, focus_golden, max_abs_diff, FIXTURES};
use focusllm_wgpu::{WgpuBackend, WgpuConfig, WgpuOptions};

/// Opens a wgpu backend for a test, or decides the test cannot run here.
///
/// The adapter is a native-API one (Vulkan, Metal, DX12; never GL, whose adapter in the CI image
/// lacks f16), GPUs before software ones; `FOCUSLLM_WGPU_ADAPTER=N` picks one by index instead.
/// When none is found or it cannot be opened, the test prints why and returns `None` (skips) —
/// unless `FOCUSLLM_TEST_STRICT=1` (set by CI), where it fails.
pub fn backend_with(config: WgpuConfig) -> Option<WgpuBackend> {
    let skip = |why: String| -> Option<WgpuBackend> {
        if focusllm_testdata::strict() {
            panic!("FOCUSLLM_TEST_STRICT=1 and no usable wgpu adapter: {why}");
        }
        eprintln!(
            "skipping wgpu test: {why} (install mesa-vulkan-drivers and libvulkan1 for a software Vulkan adapter)"
        );
        None
    };
    let adapters = WgpuBackend::adapters();
    let chosen = match std::env::var("FOCUSLLM_WGPU_ADAPTER").ok().and_then(|v| v.parse::<usize>().ok()) {
        Some(i) => adapters.iter().find(|a| a.index == i),
        None => adapters.iter().filter(|a| a.backend != "Gl").min_by_key(|a| (a.device_type == "Cpu", !a.shader_f16)),
    };
    let Some(adapter) = chosen else {
        return skip(format!("no Vulkan/Metal/DX12 adapter among {adapters:?}"));
    };
    match WgpuBackend::with_config(WgpuOptions { adapter: Some(adapter.index) }, config) {
        Ok(b) => Some(b),
        Err(e) => skip(format!("cannot open adapter {adapter:?}: {e}")),
    }
}

/// [`backend_with`] with the default configuration (f16 weights where the adapter allows).
pub fn backend() -> Option<WgpuBackend> {
    backend_with(WgpuConfig::default())
}

/// How `b` keeps weights, for the conformance suite: f16 matrices where it uses f16 weights.
pub fn storage(b: &WgpuBackend) -> Storage {
    Storage::f16_matrices_if(b.f16_weights())
}

/// Reads a tensor back.
pub fn host(b: &WgpuBackend, t: &<WgpuBackend as Backend>::Tensor) -> Vec<f32> {
    b.to_host(t).expect("read back")
}
