//! Loggers: TensorBoard event files, `metrics.jsonl`, the progress bar.

pub mod grid;
pub mod jsonl;
pub mod progress;
pub mod tensorboard;
pub mod tensorboard_logger;

use std::path::PathBuf;

use crate::error::Result;

pub use tensorboard::ImageU8;

/// What loggers know about the run.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The run's name.
    pub name: String,
    /// Optimizer steps planned.
    pub total_steps: u64,
    /// The step the run starts at (non-zero when resumed).
    pub start_step: u64,
    /// The resolved recipe, as TOML.
    pub recipe_toml: String,
    /// Flat resolved settings, for hyper-parameter tables.
    pub hparams: Vec<(String, toml::Value)>,
    /// Examples per optimizer step.
    pub batch_size: usize,
}

/// A sink for training records.
pub trait Logger: Send {
    /// Scalars at `step`.
    fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()>;
    /// A histogram of `values` at `step`.
    fn histogram(&mut self, _step: u64, _tag: &str, _values: &[f32]) -> Result<()> {
        Ok(())
    }
    /// An image at `step`.
    fn image(&mut self, _step: u64, _tag: &str, _image: &ImageU8) -> Result<()> {
        Ok(())
    }
    /// A message (evaluation results, warnings) at `step`.
    fn message(&mut self, _step: u64, _text: &str) -> Result<()> {
        Ok(())
    }
    /// The end of the run, with the final metrics.
    fn finish(&mut self, _step: u64, _metrics: &[(String, f64)]) -> Result<()> {
        Ok(())
    }
}
