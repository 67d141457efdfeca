//! The trainer: the pieces every training loop is made of, and the loop
//! over epochs of a data set that runs the vision, text and multimodal
//! recipes.
//!
//! ```text
//! Run          recipe, run directory, device, --max-steps / --resume / stop request, results.json
//! Experiment   what the recipe builds: variables, method (encoder, heads, loss), data, views, evaluators
//! Stepper      loss -> backward (scaled, accumulated) -> clip -> Optimizer::step at the schedule's lr
//! Checkpoints  save / rotate / keep the best / restore, each piece handing over its own state
//! Reporters    the loggers (TensorBoard, progress, metrics.jsonl); Interval: the averaged train/* scalars
//! monitor      the collapse monitor and the two views' alignment, uniformity and RankMe
//!
//! epochs::train   DataSource ─Loader─▶ views ─Method::step─▶ Stepper ─▶ Method::after_step
//!                 every N steps: reporters, checkpoint; every N epochs and at the end: evaluators
//! ```

mod checkpoints;
mod epochs;
mod experiment;
pub mod monitor;
mod reporters;
mod run;
mod stepper;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use checkpoints::Checkpoints;
pub use epochs::train;
pub use experiment::{evaluate_run, export_run, preview_views, Experiment};
pub use monitor::spread;
pub use reporters::{fmt_metrics, Interval, Reporters};
pub use run::Run;
pub use stepper::{StepReport, Stepper};

/// The file name of a run's checkpoint.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The file name of the resolved recipe in a run directory.
pub const RECIPE: &str = "recipe.toml";
/// The file name of the final results in a run directory.
pub const RESULTS: &str = "results.json";

/// Options of `parallax train`.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Stop once this many optimizer steps are done (the schedule is unchanged).
    pub max_steps: Option<u64>,
    /// Continue from the run directory's checkpoint.
    pub resume: bool,
    /// Overrides the recipe's device.
    pub device: Option<String>,
    /// Set (e.g. by a signal handler) to stop the run after the current
    /// optimizer step, with a checkpoint: the outcome is then `stopped`.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// Optimizer steps done.
    pub step: u64,
    /// Final metrics (last loss, evaluator results).
    pub metrics: Vec<(String, f64)>,
    /// Evaluator results at random initialisation (fresh runs only).
    pub init_metrics: Vec<(String, f64)>,
    /// The run directory.
    pub run_dir: PathBuf,
    /// The run stopped early on [`TrainOptions::stop`], after writing a
    /// checkpoint (no final evaluation, no `results.json`).
    pub stopped: bool,
}
