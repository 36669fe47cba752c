//! The backend conformance suite (`focusllm_testdata::conformance`) on wgpu, once per weight
//! precision: every operation against its f64 host reference, the contract's typed errors, and
//! the tiny models against the transformers and FocusLLM goldens. With f16 weights (the default
//! where the adapter has `SHADER_F16`) dense matrices are held to the values rounded to f16 and
//! to the checkpoint's within the suite's f16 tolerances.
//!
//! Skips without a usable adapter (fails then under `FOCUSLLM_TEST_STRICT=1`; see `common`).

mod common;

/// Weights in f32: every weight exactly as the checkpoint holds it.
mod f32_weights {
    use focusllm_wgpu::{WeightPrecision, WgpuConfig};

    use crate::common::{backend_with, storage};

    focusllm_testdata::conformance_tests!(
        backend_with(WgpuConfig { precision: WeightPrecision::F32, ..Default::default() }),
        storage
    );
}

/// The default precision: dense matrices in f16 where the adapter allows.
mod default_precision {
    use crate::common::{backend, storage};

    focusllm_testdata::conformance_tests!(backend(), storage);
}
