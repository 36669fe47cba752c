//! The compute kernels: WGSL sources, their compiled pipelines (built on first use and cached),
//! and one module per kernel family that records its dispatches (shapes are checked in core).

pub(crate) mod attention;
pub(crate) mod elementwise;
pub(crate) mod embedding;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod rope;
pub(crate) mod rows;

use std::sync::Arc;

use focusllm_core::Result;

use crate::context::{err, Context};
pub(crate) use crate::program::{Kernel, WeightType};

/// The WGSL source files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shader {
    Matmul,
    Matvec,
    Attention,
    RmsNorm,
    Rope,
    Elementwise,
    Embedding,
}

impl Shader {
    fn source(self) -> &'static str {
        match self {
            Shader::Matmul => include_str!("../shaders/matmul.wgsl"),
            Shader::Matvec => include_str!("../shaders/matvec.wgsl"),
            Shader::Attention => include_str!("../shaders/attention.wgsl"),
            Shader::RmsNorm => include_str!("../shaders/rms_norm.wgsl"),
            Shader::Rope => include_str!("../shaders/rope.wgsl"),
            Shader::Elementwise => include_str!("../shaders/elementwise.wgsl"),
            Shader::Embedding => include_str!("../shaders/embedding.wgsl"),
        }
    }
}

impl Shader {
    /// Whether the shader reads a weight matrix through `weight(i)` (its binding named `w`).
    fn reads_weights(self) -> bool {
        matches!(self, Shader::Matmul | Shader::Matvec | Shader::Embedding)
    }
}

/// The source compiled for `weight`: `wt` aliases the element type of the weight buffer (`enable
/// f16;` first where it is `f16`; `u32` words for quantised blocks), then for the shaders that read
/// weights `fn weight(i: u32) -> f32`, element `i` of the buffer `w` as f32, and `fn weight4(i)`,
/// elements `i..i + 4` (`i` a multiple of 4; one load of scale and quants for the block types that
/// have a reader of four), then the kernel's own constants (`consts`, WGSL declarations).
fn full_source(shader: Shader, weight: WeightType, consts: &str) -> String {
    let prelude = match weight {
        WeightType::F16 => "enable f16;\nalias wt = f16;\n",
        WeightType::F32 => "alias wt = f32;\n",
        _ => "alias wt = u32;\n",
    };
    let reader = match (shader.reads_weights(), weight) {
        (false, _) => String::new(),
        (true, WeightType::F32 | WeightType::F16) => concat!(
            "fn weight(i: u32) -> f32 { return f32(w[i]); }\n",
            "fn weight4(i: u32) -> vec4<f32> { return vec4<f32>(f32(w[i]), f32(w[i + 1u]), f32(w[i + 2u]), f32(w[i + 3u])); }\n"
        )
        .into(),
        (true, quantised) => {
            let name = format!("{quantised:?}").to_lowercase();
            let four = match quantised {
                WeightType::Q8_0 | WeightType::Q4_0 | WeightType::Q4_1 => format!("{name}_4(i)"),
                _ => format!("vec4<f32>({name}(i), {name}(i + 1u), {name}(i + 2u), {name}(i + 3u))"),
            };
            format!(
                "{}\nfn weight(i: u32) -> f32 {{ return {name}(i); }}\nfn weight4(i: u32) -> vec4<f32> {{ return {four}; }}\n",
                include_str!("../shaders/quant.wgsl")
            )
        }
    };
    format!("{prelude}{reader}{consts}\n{}", shader.source())
}

impl Context {
    /// The pipeline of `entry` in `shader`, compiled for weights of type `weight`.
    pub(crate) fn kernel(&self, shader: Shader, entry: &str, weight: WeightType) -> Result<Arc<Kernel>> {
        self.kernel_with(shader, entry, weight, "")
    }

    /// [`Context::kernel`] with module-scope constants `consts` (WGSL declarations) prepended.
    pub(crate) fn kernel_with(
        &self,
        shader: Shader,
        entry: &str,
        weight: WeightType,
        consts: &str,
    ) -> Result<Arc<Kernel>> {
        let name = format!("{shader:?}:{entry}:{weight:?}:{consts}");
        if let Some(k) = self.kernels.lock().unwrap_or_else(|p| p.into_inner()).get(&name) {
            return Ok(Arc::clone(k));
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&name),
            source: wgpu::ShaderSource::Wgsl(full_source(shader, weight, consts).into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&name),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(err(format!("compiling kernel {name}: {e}")));
        }
        let layout = pipeline.get_bind_group_layout(0);
        let kernel = Arc::new(Kernel { name: name.clone(), pipeline, layout });
        self.kernels.lock().unwrap_or_else(|p| p.into_inner()).insert(name, Arc::clone(&kernel));
        Ok(kernel)
    }
}
