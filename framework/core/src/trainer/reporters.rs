//! [`Reporters`]: the run's loggers (TensorBoard, progress, metrics.jsonl,
//! ...) as one sink that every loop writes to, and [`Interval`], the
//! training scalars averaged over each `train.log_every` steps.

use std::time::Instant;

use candle_core::{DType, Var};

use crate::error::Result;
use crate::logging::{ImageU8, Logger, RunInfo};
use crate::recipe::Recipe;
use crate::registry;

/// Every `[[logger]]` of a recipe.
pub struct Reporters {
    loggers: Vec<Box<dyn Logger>>,
}

impl Reporters {
    /// Builds the recipe's loggers for the run `info`.
    pub fn new(recipe: &Recipe, info: &RunInfo) -> Result<Reporters> {
        let loggers = recipe
            .logger
            .iter()
            .map(|l| (registry::logger(&l.name)?.build)(&l.params, info))
            .collect::<Result<_>>()?;
        Ok(Reporters { loggers })
    }

    fn each(&mut self, f: impl Fn(&mut dyn Logger) -> Result<()>) -> Result<()> {
        for l in self.loggers.iter_mut() {
            f(l.as_mut())?;
        }
        Ok(())
    }

    /// A line of text at `step`.
    pub fn message(&mut self, step: u64, text: &str) -> Result<()> {
        self.each(|l| l.message(step, text))
    }

    /// Scalars at `step`.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        self.each(|l| l.scalars(step, values))
    }

    /// Logs the evaluation before training (at step 0), `init` naming the
    /// starting point ("random initialisation").
    pub fn initial(&mut self, metrics: &[(String, f64)], init: &str) -> Result<()> {
        self.scalars(0, metrics)?;
        self.message(
            0,
            &format!("before training ({init}): {}", fmt_metrics(metrics)),
        )
    }

    /// An image at `step`.
    pub fn image(&mut self, step: u64, tag: &str, image: &ImageU8) -> Result<()> {
        self.each(|l| l.image(step, tag, image))
    }

    /// A histogram of each matrix or larger variable, as `weights/NAME`.
    pub fn weight_histograms(&mut self, step: u64, vars: &[(String, Var)]) -> Result<()> {
        for (name, var) in vars {
            if var.rank() > 1 {
                let v = var
                    .as_tensor()
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_vec1::<f32>()?;
                self.each(|l| l.histogram(step, &format!("weights/{name}"), &v))?;
            }
        }
        Ok(())
    }

    /// The run's end (or stop) with its final metrics.
    pub fn finish(&mut self, step: u64, metrics: &[(String, f64)]) -> Result<()> {
        self.each(|l| l.finish(step, metrics))
    }
}

/// `name = value` pairs on one line.
pub fn fmt_metrics(m: &[(String, f64)]) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} = {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The training scalars of the steps since the last report.
pub struct Interval {
    start: Instant,
    loss_sum: f64,
    steps: u64,
    examples: usize,
    data_wait: f64,
}

impl Default for Interval {
    fn default() -> Self {
        Interval {
            start: Instant::now(),
            loss_sum: 0.0,
            steps: 0,
            examples: 0,
            data_wait: 0.0,
        }
    }
}

impl Interval {
    /// Time the training thread waited for data.
    pub fn waited(&mut self, secs: f64) {
        self.data_wait += secs;
    }

    /// Examples that entered a step.
    pub fn examples(&mut self, n: usize) {
        self.examples += n;
    }

    /// A finished optimizer step and its loss.
    pub fn step(&mut self, loss: f64) {
        self.loss_sum += loss;
        self.steps += 1;
    }

    /// `train/loss` (the interval's mean), `train/lr`,
    /// `train/step_time_s`, `train/examples_per_s` and
    /// `train/data_wait_fraction` (the share of the interval the training
    /// thread waited for data); starts the next interval.
    pub fn take(&mut self, lr: f64) -> Vec<(String, f64)> {
        let secs = self.start.elapsed().as_secs_f64();
        let n = self.steps as f64;
        let s = vec![
            ("train/loss".to_string(), self.loss_sum / n),
            ("train/lr".to_string(), lr),
            ("train/step_time_s".to_string(), secs / n),
            (
                "train/examples_per_s".to_string(),
                self.examples as f64 / secs.max(1e-9),
            ),
            (
                "train/data_wait_fraction".to_string(),
                self.data_wait / secs.max(1e-9),
            ),
        ];
        *self = Interval::default();
        s
    }
}
