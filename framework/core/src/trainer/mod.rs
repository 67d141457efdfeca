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
//! train           runs the recipe's `train.loop`:
//! epochs          DataSource ─Loader─▶ views ─Method::step─▶ Stepper ─▶ Method::after_step
//!                 every N steps: reporters, checkpoint; every N epochs and at the end: evaluators
//! full_graph      one Graph ─GraphMethod::step (views of the whole graph)─▶ Stepper, a step per epoch
//! ```

mod checkpoints;
mod epochs;
mod experiment;
pub mod full_graph;
pub mod monitor;
mod reporters;
mod run;
mod stepper;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use checkpoints::Checkpoints;
pub use epochs::EpochLoop;
pub use experiment::{evaluate_run, export_run, preview_views, Experiment};
pub use monitor::spread;
pub use reporters::{fmt_metrics, Interval, Reporters};
pub use run::Run;
pub use stepper::{StepReport, Stepper};

use crate::error::{Error, Result};

/// Whether an evaluator run every `every` epochs (0: only at the end) is
/// due after `epoch`.
fn due(every: usize, epoch: u64) -> bool {
    every != 0 && epoch % every as u64 == 0
}
use crate::recipe::Recipe;
use crate::registry;

/// The name of the epoch loop, `train.loop`'s default.
pub const EPOCHS: &str = "epochs";

/// A training loop (`train.loop`), built from the pieces above.
pub trait TrainingLoop {
    /// Trains `recipe`; see [`TrainOptions`].
    fn train(&self, recipe: &Recipe, opts: &TrainOptions) -> Result<TrainOutcome>;
    /// Runs the evaluators of a finished run (its resolved `recipe`, read
    /// from `run_dir`) on its checkpoint (`parallax eval`).
    fn evaluate(
        &self,
        recipe: &Recipe,
        run_dir: &Path,
        device: Option<&str>,
    ) -> Result<Vec<(String, f64)>>;
}

/// Trains `recipe` with the loop its `train.loop` names.
pub fn train(recipe: &Recipe, opts: &TrainOptions) -> Result<TrainOutcome> {
    let entry = registry::training_loop(&recipe.train.train_loop)
        .map_err(|e| Error::Recipe(format!("train.loop: {e}")))?;
    (entry.build)().train(recipe, opts)
}

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
