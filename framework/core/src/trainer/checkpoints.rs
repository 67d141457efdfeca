//! [`Checkpoints`]: a run's checkpoints as every loop writes and restores
//! them — the rotation of the last `train.keep_checkpoints`, the best by
//! `train.best_metric`, and `--resume` from the newest that verifies. Each
//! stateful piece hands over its own state: the variables, the
//! [`Stepper`] (optimizer and loss scaler) and the method (EMA targets,
//! queues, centres).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::Stepper;
use crate::checkpoint::{self, CheckpointMeta, Found, Rotation};
use crate::error::{Error, Result};
use crate::nn::init::VarStore;
use crate::recipe::{BestMode, Recipe};

/// The checkpoints of one run directory.
pub struct Checkpoints {
    rotation: Rotation,
    seed: u64,
    name: String,
    best_metric: Option<String>,
    best_mode: BestMode,
}

impl Checkpoints {
    /// The checkpoints of `recipe`'s run in `dir`.
    pub fn new(dir: PathBuf, recipe: &Recipe) -> Checkpoints {
        Checkpoints {
            rotation: Rotation {
                dir,
                keep: recipe.train.keep_checkpoints,
            },
            seed: recipe.seed,
            name: recipe.name.clone(),
            best_metric: recipe.train.best_metric.clone(),
            best_mode: recipe.train.best_mode,
        }
    }

    /// Whether the directory holds any checkpoint of the rotation.
    pub fn exist(&self) -> bool {
        self.rotation.exists()
    }

    /// The latest checkpoint's path.
    pub fn latest(&self) -> PathBuf {
        self.rotation.latest()
    }

    fn meta(&self, step: u64) -> CheckpointMeta {
        CheckpointMeta {
            step,
            seed: self.seed,
            name: self.name.clone(),
            format: 1,
        }
    }

    /// Writes the state after `step` optimizer steps (rotating the older).
    pub fn save(
        &self,
        step: u64,
        store: &VarStore,
        stepper: &Stepper,
        method_state: &BTreeMap<String, Tensor>,
    ) -> Result<()> {
        self.rotation.save(
            &self.meta(step),
            &store.tensors(),
            &stepper.state()?,
            method_state,
        )
    }

    /// After an evaluation: writes `checkpoint-best.safetensors` when the
    /// recipe's `train.best_metric` is among `metrics` and improves on the
    /// best so far; returns a line to log when it did.
    pub fn keep_best(
        &self,
        step: u64,
        store: &VarStore,
        stepper: &Stepper,
        method_state: &BTreeMap<String, Tensor>,
        metrics: &[(String, f64)],
    ) -> Result<Option<String>> {
        let Some(name) = &self.best_metric else {
            return Ok(None);
        };
        let Some((_, value)) = metrics.iter().find(|(k, _)| k == name) else {
            return Ok(None);
        };
        if let Some((old_name, old)) = self.rotation.best_value() {
            if old_name == *name && !self.best_mode.improves(*value, old) {
                return Ok(None);
            }
        }
        self.rotation.save_best(
            &self.meta(step),
            &store.tensors(),
            &stepper.state()?,
            method_state,
            name,
            *value,
        )?;
        Ok(Some(format!(
            "best {name} so far ({value:.4}) at step {step}: {}",
            self.rotation.best().display()
        )))
    }

    /// Restores the newest checkpoint that verifies into the variables
    /// and the stepper; returns its step, lines to log (the files skipped
    /// and why, the one taken) and the method's state for the method to
    /// load.
    pub fn restore(
        &self,
        device: &Device,
        store: &VarStore,
        stepper: &mut Stepper,
    ) -> Result<(u64, Vec<String>, HashMap<String, Tensor>)> {
        let found = checkpoint::load_newest(&self.rotation, device)?;
        let mut notes = Vec::new();
        for (path, why) in &found.skipped {
            notes.push(format!("--resume: skipping {}: {why}", path.display()));
        }
        notes.push(format!(
            "--resume: continuing from {} (step {})",
            found.path.display(),
            found.checkpoint.meta.step
        ));
        if found.checkpoint.meta.seed != self.seed {
            return Err(Error::Recipe(format!(
                "--resume: the checkpoint was made with seed {}, the recipe has seed {}",
                found.checkpoint.meta.seed, self.seed
            )));
        }
        found.assign_to(store)?;
        let ck = found.checkpoint;
        stepper.load_state(ck.optim)?;
        Ok((ck.meta.step, notes, ck.method))
    }
}

/// The newest checkpoint of a finished run in `run_dir` (kept by
/// `recipe`'s rotation) that verifies, for evaluation or export; the newer
/// files that did not verify are named on stderr.
pub fn load_finished(run_dir: &Path, recipe: &Recipe, device: &Device) -> Result<Found> {
    let rotation = Rotation {
        dir: run_dir.to_path_buf(),
        keep: recipe.train.keep_checkpoints,
    };
    let found = checkpoint::load_newest(&rotation, device)?;
    for (path, why) in &found.skipped {
        eprintln!("warning: skipping {}: {why}", path.display());
    }
    Ok(found)
}
