//! The CUDA C sources of the backend and their compilation to PTX with NVRTC.
//!
//! Every kernel file is compiled on its own, with `common.cuh` prepended (so no include path or
//! CUDA header is needed), for the architecture of the device that will run it. This module needs
//! NVRTC only, not a GPU: the CI test compiles every source for `sm_80` and `sm_90` with it.

use cudarc::nvrtc::{self, CompileError, CompileOptions, Ptx};

/// Definitions shared by every kernel source.
const COMMON: &str = include_str!("kernels/common.cuh");

/// One CUDA C source file of the crate and the kernels (`extern "C"` functions) it defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelSource {
    /// Embedding (every weight type), RMSNorm, RoPE, SwiGLU, residual add, row scatter.
    Elementwise,
    /// Products against weights: GEMV, CUDA-core tiles, tensor-core tiles.
    Matmul,
    /// Fused causal attention and the merge of its key splits.
    Attention,
}

impl KernelSource {
    /// Every source of the crate.
    pub const ALL: [KernelSource; 3] = [KernelSource::Elementwise, KernelSource::Matmul, KernelSource::Attention];

    /// File name under `src/kernels/`.
    pub fn file_name(self) -> &'static str {
        match self {
            KernelSource::Elementwise => "elementwise.cu",
            KernelSource::Matmul => "matmul.cu",
            KernelSource::Attention => "attention.cu",
        }
    }

    /// The file's text (without the shared prelude).
    pub fn text(self) -> &'static str {
        match self {
            KernelSource::Elementwise => include_str!("kernels/elementwise.cu"),
            KernelSource::Matmul => include_str!("kernels/matmul.cu"),
            KernelSource::Attention => include_str!("kernels/attention.cu"),
        }
    }

    /// Names of the kernels the file defines.
    pub fn kernels(self) -> &'static [&'static str] {
        match self {
            KernelSource::Elementwise => &[
                "embedding_f32",
                "embedding_f16",
                "embedding_bf16",
                "embedding_q8_0",
                "embedding_q4_0",
                "embedding_q4_1",
                "embedding_q5_0",
                "embedding_q5_1",
                "embedding_q2_k",
                "embedding_q3_k",
                "embedding_q4_k",
                "embedding_q5_k",
                "embedding_q6_k",
                "embedding_iq4_nl",
                "embedding_iq4_xs",
                "rms_norm",
                "rope",
                "swiglu",
                "geglu",
                "scale",
                "add",
                "scatter_rows",
            ],
            KernelSource::Matmul => &[
                "linear_gemv_f32",
                "linear_gemv_f16",
                "linear_gemv_bf16",
                "linear_gemv_q8_0",
                "linear_gemv_q4_0",
                "linear_gemv_q4_1",
                "linear_gemv_q5_0",
                "linear_gemv_q5_1",
                "linear_gemv_q2_k",
                "linear_gemv_q3_k",
                "linear_gemv_q4_k",
                "linear_gemv_q5_k",
                "linear_gemv_q6_k",
                "linear_gemv_iq4_nl",
                "linear_gemv_iq4_xs",
                "linear_tiled_f32",
                "linear_tiled_f16",
                "linear_tiled_bf16",
                "linear_tiled_q8_0",
                "linear_tiled_q4_0",
                "linear_tiled_q4_1",
                "linear_tiled_q5_0",
                "linear_tiled_q5_1",
                "linear_tiled_q2_k",
                "linear_tiled_q3_k",
                "linear_tiled_q4_k",
                "linear_tiled_q5_k",
                "linear_tiled_q6_k",
                "linear_tiled_iq4_nl",
                "linear_tiled_iq4_xs",
                "linear_mma_f16",
                "linear_mma_bf16",
            ],
            KernelSource::Attention => &["attention", "attention_combine"],
        }
    }

    /// The source that defines kernel `name`.
    pub fn of_kernel(name: &str) -> Option<KernelSource> {
        Self::ALL.into_iter().find(|s| s.kernels().contains(&name))
    }

    /// The kernel `{family}_{suffix}` (e.g. `linear_gemv` and `q4_1`), if the file defines it.
    pub fn kernel(self, family: &str, suffix: &str) -> Option<&'static str> {
        self.kernels()
            .iter()
            .copied()
            .find(|name| name.strip_prefix(family).and_then(|rest| rest.strip_prefix('_')) == Some(suffix))
    }

    /// The complete translation unit handed to NVRTC.
    pub fn program(self) -> String {
        format!("{COMMON}\n// ---- {} ----\n{}", self.file_name(), self.text())
    }
}

/// Architectures NVRTC is asked for by name (`arch: Some("sm_90")`); others go through an option.
const KNOWN_ARCHS: [&str; 16] = [
    "sm_75", "sm_80", "sm_86", "sm_87", "sm_88", "sm_89", "sm_90", "sm_100", "sm_101", "sm_103", "sm_110", "sm_120",
    "sm_121", "sm_90a", "sm_100a", "sm_120a",
];

/// The NVRTC architecture name of compute capability `major.minor`, e.g. `sm_90`.
pub fn arch_for(major: i32, minor: i32) -> String {
    format!("sm_{major}{minor}")
}

/// Whether NVRTC (`libnvrtc.so.13` on Linux) can be loaded from the library search path.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { nvrtc::sys::is_culib_present() }
}

/// NVRTC's version `(major, minor)`, or `None` when it cannot be loaded.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    if !nvrtc_present() {
        return None;
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; the call writes two integers.
    let status = unsafe { nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    (status == nvrtc::sys::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
}

/// Why compiling a source failed.
#[derive(Debug, Clone)]
pub struct KernelCompileError {
    /// The source file.
    pub file: &'static str,
    /// The architecture asked for.
    pub arch: String,
    /// NVRTC's log or error.
    pub message: String,
}

impl std::fmt::Display for KernelCompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NVRTC could not compile {} for {}: {}", self.file, self.arch, self.message)
    }
}

impl std::error::Error for KernelCompileError {}

fn describe(e: CompileError) -> String {
    match e {
        CompileError::CompileError { nvrtc, options, log } => {
            format!("{nvrtc:?} with options {options:?}:\n{}", log.to_string_lossy())
        }
        other => format!("{other:?}"),
    }
}

/// Compiles `source` to PTX for `arch` (e.g. `"sm_90"`). Needs NVRTC, not a GPU; returns an error
/// (never panics) when NVRTC cannot be loaded.
pub fn compile(source: KernelSource, arch: &str) -> Result<Ptx, KernelCompileError> {
    let fail = |message: String| KernelCompileError { file: source.file_name(), arch: arch.to_string(), message };
    if !nvrtc_present() {
        return Err(fail("NVRTC (libnvrtc) is not on the library search path".into()));
    }
    let named = KNOWN_ARCHS.iter().copied().find(|a| *a == arch);
    let mut options = vec!["--std=c++17".to_string(), "--fmad=true".to_string()];
    if named.is_none() {
        options.push(format!("--gpu-architecture={arch}"));
    }
    let opts =
        CompileOptions { arch: named, options, name: Some(source.file_name().to_string()), ..Default::default() };
    nvrtc::compile_ptx_with_opts(source.program(), opts).map_err(|e| fail(describe(e)))
}

/// Compiles every source for `arch`, returning each file with the size of its PTX text.
pub fn compile_all(arch: &str) -> Result<Vec<(&'static str, usize)>, KernelCompileError> {
    KernelSource::ALL.iter().map(|&s| compile(s, arch).map(|ptx| (s.file_name(), ptx.to_src().len()))).collect()
}
