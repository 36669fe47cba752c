//! Per-backend cache of compiled kernels: a source is compiled by NVRTC for the device's
//! architecture the first time one of its kernels is needed, loaded once, and kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use focusllm_core::Result;

use crate::error::{driver, err};
use crate::kernels::{self, KernelSource};

/// The compiled modules and looked-up functions of one backend.
pub(crate) struct Modules {
    ctx: Arc<CudaContext>,
    arch: String,
    modules: Mutex<HashMap<KernelSource, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl Modules {
    pub(crate) fn new(ctx: Arc<CudaContext>, arch: String) -> Self {
        Modules { ctx, arch, modules: Mutex::default(), functions: Mutex::default() }
    }

    /// The kernel called `name`, compiling and loading its source on first use.
    pub(crate) fn function(&self, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().expect("kernel cache poisoned").get(name) {
            return Ok(f.clone());
        }
        let source = KernelSource::of_kernel(name).ok_or_else(|| err(format!("no kernel called `{name}`")))?;
        let module = self.module(source)?;
        let f = module.load_function(name).map_err(|e| driver(&format!("cannot find kernel `{name}`"), e))?;
        self.functions.lock().expect("kernel cache poisoned").insert(name, f.clone());
        Ok(f)
    }

    fn module(&self, source: KernelSource) -> Result<Arc<CudaModule>> {
        // Held while compiling, so two threads never compile the same source twice.
        let mut modules = self.modules.lock().expect("kernel cache poisoned");
        if let Some(m) = modules.get(&source) {
            return Ok(m.clone());
        }
        let ptx = kernels::compile(source, &self.arch).map_err(|e| err(e.to_string()))?;
        let module = self
            .ctx
            .load_module(ptx)
            .map_err(|e| driver(&format!("cannot load the PTX of {} for {}", source.file_name(), self.arch), e))?;
        modules.insert(source, module.clone());
        Ok(module)
    }
}
