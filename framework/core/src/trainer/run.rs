//! [`Run`]: what every training loop starts from — the recipe, its run
//! directory and checkpoints, the device, and the command line's
//! `--max-steps`, `--resume` and stop request — and what it ends with
//! (`results.json`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use candle_core::{Device, Tensor, Var};

use super::{Checkpoints, Reporters, Stepper, TrainOptions, RECIPE, RESULTS};
use crate::checkpoint;
use crate::error::{Error, Result};
use crate::logging::RunInfo;
use crate::nn::init::VarStore;
use crate::recipe::Recipe;

/// One training run of a recipe.
pub struct Run<'a> {
    /// The resolved recipe.
    pub recipe: &'a Recipe,
    /// The command line's options.
    pub opts: &'a TrainOptions,
    /// The device the run trains on (`--device`, else the recipe's).
    pub device: Device,
    /// The run directory's checkpoints.
    pub checkpoints: Checkpoints,
}

impl<'a> Run<'a> {
    /// Checks the run directory against `--resume` (a directory with a
    /// checkpoint is continued only with it; `--resume` needs one) and
    /// creates it; selects the device.
    pub fn open(recipe: &'a Recipe, opts: &'a TrainOptions) -> Result<Run<'a>> {
        let device = crate::device::select(opts.device.as_deref().unwrap_or(&recipe.device))?;
        let dir = &opts.run_dir;
        let checkpoints = Checkpoints::new(dir.clone(), recipe);
        if checkpoints.exist() && !opts.resume {
            return Err(Error::Recipe(format!(
                "{} already holds a checkpoint: pass --resume to continue it, or --out to start a new run elsewhere",
                dir.display()
            )));
        }
        if opts.resume && !checkpoints.exist() {
            return Err(Error::Recipe(format!(
                "--resume: no checkpoint at {}",
                checkpoints.latest().display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Run {
            recipe,
            opts,
            device,
            checkpoints,
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &PathBuf {
        &self.opts.run_dir
    }

    /// The step this process stops at: the schedule's `total_steps`, or
    /// `--max-steps` when smaller.
    pub fn stop_at(&self, total_steps: u64) -> u64 {
        self.opts
            .max_steps
            .map_or(total_steps, |m| m.min(total_steps))
    }

    /// Whether a stop was requested (a signal): the loop then ends after
    /// the current step with a checkpoint.
    pub fn stop_requested(&self) -> bool {
        self.opts
            .stop
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// With `--resume`: restores the newest checkpoint that verifies into
    /// the variables and the stepper and returns its step, the lines to log
    /// and the method's state (for its `load_state`); else step 0.
    pub fn resume(
        &self,
        store: &VarStore,
        stepper: &mut Stepper,
    ) -> Result<(u64, Vec<String>, HashMap<String, Tensor>)> {
        if !self.opts.resume {
            return Ok((0, Vec::new(), HashMap::new()));
        }
        self.checkpoints.restore(&self.device, store, stepper)
    }

    /// Writes the resolved recipe into the run directory and builds the
    /// loggers for a run of `stop_at` steps from `start_step`, each of
    /// `batch_size` examples.
    pub fn reporters(&self, stop_at: u64, start_step: u64, batch_size: usize) -> Result<Reporters> {
        let recipe_text = self.recipe.to_toml_string();
        checkpoint::write_atomic(&self.dir().join(RECIPE), recipe_text.as_bytes())?;
        let info = RunInfo {
            run_dir: self.dir().clone(),
            name: self.recipe.name.clone(),
            total_steps: stop_at,
            start_step,
            recipe_toml: recipe_text,
            hparams: self.recipe.flat_settings().into_iter().collect(),
            batch_size,
        };
        Reporters::new(self.recipe, &info)
    }

    /// A short description of the device, for the run's first line.
    pub fn device_name(&self) -> String {
        if self.device.is_cpu() {
            "cpu".to_string()
        } else {
            format!("{:?}", self.device)
        }
    }

    /// Logs the run's first line — the recipe's name, `what` (the data and
    /// the steps), the trainable tensors and parameters and the device —
    /// and then `notes` (what `--resume` found).
    pub fn announce(
        &self,
        report: &mut Reporters,
        step: u64,
        what: &str,
        trainable: &[(String, Var)],
        notes: &[String],
    ) -> Result<()> {
        let line = format!(
            "run `{}`: {what} | {} trainable tensors, {} parameters | {}",
            self.recipe.name,
            trainable.len(),
            trainable.iter().map(|(_, v)| v.elem_count()).sum::<usize>(),
            self.device_name()
        );
        report.message(step, &line)?;
        for note in notes {
            report.message(step, note)?;
        }
        Ok(())
    }

    /// Ends a run stopped on request at `step` (its checkpoint written):
    /// says how to continue it and closes the loggers.
    pub fn finish_stopped(
        &self,
        report: &mut Reporters,
        step: u64,
        stop_at: u64,
        metrics: &[(String, f64)],
    ) -> Result<()> {
        let text = format!(
            "stopped on request at step {step} of {stop_at}: checkpoint written to {}; continue with --resume",
            self.checkpoints.latest().display()
        );
        report.message(step, &text)?;
        report.finish(step, metrics)
    }

    /// Writes `results.json`: the final and initial metrics and the
    /// training loop's wall-clock time.
    pub fn write_results(
        &self,
        step: u64,
        metrics: &[(String, f64)],
        init: &[(String, f64)],
        train_seconds: f64,
    ) -> Result<()> {
        let to_map = |m: &[(String, f64)]| m.iter().cloned().collect::<BTreeMap<String, f64>>();
        let v = serde_json::json!({
            "step": step,
            "train_seconds": train_seconds,
            "final": to_map(metrics),
            "init": to_map(init),
        });
        checkpoint::write_atomic(&self.dir().join(RESULTS), format!("{v:#}\n").as_bytes())
    }
}
