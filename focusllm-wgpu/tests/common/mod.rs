//! Helpers shared by the wgpu tests: adapter gating, a seeded PRNG, CPU reference helpers, and the
//! workspace's fixture and golden-file readers (`focusllm-testdata`).
#![allow(dead_code, unused_imports)] // each test crate uses a part

use focusllm_core::Backend;
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

/// A small deterministic PRNG (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Largest |a - b| / (|b| + floor) over the elements: a relative error that does not blow up
/// near zero.
pub fn max_rel_diff(a: &[f32], b: &[f32], floor: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / (y.abs() + floor)).fold(0.0, f32::max)
}

/// Reads a tensor back.
pub fn host(b: &WgpuBackend, t: &<WgpuBackend as Backend>::Tensor) -> Vec<f32> {
    b.to_host(t).expect("read back")
}
