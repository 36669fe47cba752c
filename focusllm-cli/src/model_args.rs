//! The model flags every subcommand shares (`--model`, `--device`, `--threads`, `--adapter`,
//! `--no-adapter`) and how they become a loaded [`Llm`].

use std::path::{Path, PathBuf};

use focusllm::{Device, Llm};

use crate::error::CliError;

/// Which model to load, where, and with which candidate projections.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ModelArgs {
    /// A GGUF file or a Hugging Face model directory [default: the default model, fetched and
    /// cached on first use].
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,

    /// Where the model runs: cpu, wgpu[:N] or cuda[:N] (GPUs need a build with that feature).
    #[arg(long, value_name = "DEVICE", default_value = "cpu", value_parser = parse_device)]
    pub device: Device,

    /// CPU worker threads [default: every core]; `bench` takes a comma-separated list to compare.
    #[arg(long, value_name = "N", value_delimiter = ',')]
    pub threads: Vec<usize>,

    /// FocusLLM candidate projections to load (an adapter safetensors file) [default: the
    /// built-in adapter on the default model, none on another model].
    #[arg(long, value_name = "FILE", conflicts_with = "no_adapter")]
    pub adapter: Option<PathBuf>,

    /// Load no adapter, not even the built-in one: FocusLLM then reads by retrieval.
    #[arg(long)]
    pub no_adapter: bool,
}

/// Candidate projections to load into a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapter {
    /// The adapter trained for the default model, built into the binary (`focusllm-adapters`).
    BuiltIn,
    /// An adapter safetensors file.
    File(PathBuf),
}

impl Adapter {
    /// A name for messages: the file, or the built-in adapter's file name.
    pub fn name(&self) -> String {
        match self {
            Adapter::BuiltIn => format!("built-in {}", focusllm_adapters::SMOLLM2_135M_INSTRUCT_NAME),
            Adapter::File(path) => path.display().to_string(),
        }
    }

    /// Loads the projections into `llm`; returns how many were loaded.
    pub fn load_into(&self, llm: &mut Llm) -> Result<usize, CliError> {
        let loaded = match self {
            Adapter::BuiltIn => llm.load_adapter_bytes(focusllm_adapters::SMOLLM2_135M_INSTRUCT),
            Adapter::File(path) => {
                if !path.is_file() {
                    let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
                    return Err(CliError::Read { path: path.clone(), source });
                }
                llm.load_adapter(path)
            }
        };
        loaded.map_err(|e| CliError::Usage(format!("adapter {}: {e}", self.name())))
    }
}

/// Parses `--device` with the library's own parser.
fn parse_device(text: &str) -> Result<Device, String> {
    Device::parse(text).map_err(|_| "expected cpu, wgpu, wgpu:N, cuda or cuda:N".to_string())
}

impl ModelArgs {
    /// Whether the model is the default one (no `--model`).
    pub fn is_default_model(&self) -> bool {
        self.model.is_none()
    }

    /// The model's path: `--model`, checked to exist, else the default model (fetched if missing).
    pub fn model_path(&self) -> Result<PathBuf, CliError> {
        match &self.model {
            Some(path) if path.exists() => Ok(path.clone()),
            Some(path) => Err(CliError::ModelNotFound(path.clone())),
            None => Ok(focusllm::default_model::path()?),
        }
    }

    /// The device with `--threads` applied (one number: the list form is `bench`'s).
    pub fn device(&self) -> Result<Device, CliError> {
        match (&self.device, self.threads.as_slice()) {
            (Device::Cpu { .. }, []) => Ok(Device::Cpu { threads: None }),
            (Device::Cpu { .. }, [n]) => Ok(Device::Cpu { threads: Some(*n) }),
            (Device::Cpu { .. }, _) => {
                Err(CliError::Usage("--threads takes one number here (only bench compares a list)".into()))
            }
            (_, []) => Ok(self.device.clone()),
            (_, _) => Err(CliError::Usage("--threads applies to --device cpu only".into())),
        }
    }

    /// The adapter the reading policy loads: `--adapter FILE`, else the built-in one on the
    /// default model, none with `--no-adapter` or on another model.
    pub fn adapter(&self) -> Option<Adapter> {
        match (&self.adapter, self.no_adapter, self.is_default_model()) {
            (Some(file), _, _) => Some(Adapter::File(file.clone())),
            (None, false, true) => Some(Adapter::BuiltIn),
            _ => None,
        }
    }

    /// The adapter for commands whose `adapter-*` modes need one: as [`ModelArgs::adapter`], or an
    /// error that says which flag is missing.
    pub fn required_adapter(&self) -> Result<Adapter, CliError> {
        self.adapter().ok_or_else(|| {
            CliError::Usage(if self.no_adapter {
                "adapter-* modes need an adapter: drop --no-adapter".into()
            } else {
                "adapter-* modes with --model need --adapter FILE (the built-in one is for the default model)".into()
            })
        })
    }

    /// Loads the model on the chosen device, with `adapter`'s projections.
    pub fn load(&self, adapter: Option<&Adapter>) -> Result<Llm, CliError> {
        self.load_on(&self.model_path()?, self.device()?, adapter)
    }

    /// Loads the model at `path` on `device`, with `adapter`'s projections.
    pub fn load_on(&self, path: &Path, device: Device, adapter: Option<&Adapter>) -> Result<Llm, CliError> {
        let mut llm = Llm::load(path, device)?;
        if let Some(adapter) = adapter {
            adapter.load_into(&mut llm)?;
        }
        Ok(llm)
    }
}
