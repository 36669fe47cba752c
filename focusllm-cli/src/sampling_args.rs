//! The sampling flags of the commands that answer (`ask`, `chat`); greedy decoding by default.

use focusllm::Sampling;

use crate::error::CliError;

/// How each answer token is chosen.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Sampling")]
pub struct SamplingArgs {
    /// Softmax temperature; 0 decodes greedily.
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0: all).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub top_k: usize,
    /// Keep the fewest tokens whose probability reaches P (1: all).
    #[arg(long, value_name = "P", default_value_t = 1.0)]
    pub top_p: f32,
    /// Penalty over 1 on tokens already in the prompt or the answer (1: none).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Seed of the sampler, for reproducible answers.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The library's [`Sampling`], checked.
    pub fn sampling(&self) -> Result<Sampling, CliError> {
        let sampling = Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        };
        sampling.validate()?;
        Ok(sampling)
    }
}
