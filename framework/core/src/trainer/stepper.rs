//! [`Stepper`]: the optimizer step every training loop shares — the
//! backward pass of each micro-batch's loss (scaled for mixed precision,
//! accumulated over `train.accumulate` micro-batches), gradient clipping,
//! the learning rate from the schedule, the optimizer's update, and the
//! skipped step when f16 gradients overflow.

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::Result;
use crate::optim::precision::LossScaler;
use crate::optim::schedule::Schedule;
use crate::optim::{self, clip, Optimizer};
use crate::recipe::Recipe;

/// What one optimizer step did.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// The learning rate of the step.
    pub lr: f64,
    /// The gradients' global norm before clipping; NaN when it was not
    /// needed (no clipping, no loss scaler, not asked for).
    pub grad_norm: f64,
    /// False when the loss scaler skipped the update (f16 overflow).
    pub applied: bool,
}

/// The optimizer with its schedule, loss scaler and the gradients of the
/// step in progress.
pub struct Stepper {
    opt: Box<dyn Optimizer>,
    scaler: LossScaler,
    schedule: Schedule,
    vars: Vec<Var>,
    grad_clip: Option<f64>,
    grads: Option<GradStore>,
    skipped: u64,
}

impl Stepper {
    /// The recipe's `[optimizer]` over `trainable` (in parameter groups),
    /// its schedule over `total_steps` steps of which `steps_per_epoch`
    /// make an epoch, and `train.precision`'s loss scaler.
    pub fn new(
        recipe: &Recipe,
        trainable: Vec<(String, Var)>,
        total_steps: u64,
        steps_per_epoch: u64,
    ) -> Result<Stepper> {
        let spec = optim::parse(&recipe.optimizer.name, &recipe.optimizer.params)?;
        let vars = trainable.iter().map(|(_, v)| v.clone()).collect();
        let opt = optim::build(&spec, optim::param_groups(trainable, &spec))?;
        let schedule = Schedule::new(&spec.schedule, spec.lr, total_steps, steps_per_epoch);
        Ok(Stepper {
            opt,
            scaler: LossScaler::new(recipe.train.precision),
            schedule,
            vars,
            grad_clip: recipe.train.grad_clip,
            grads: None,
            skipped: 0,
        })
    }

    /// Whether the loss scaler checks gradients for overflow (f16): a
    /// non-finite loss then skips the step instead of ending the run.
    pub fn checks_overflow(&self) -> bool {
        self.scaler.checks_overflow()
    }

    /// The loss scale (1 without f16).
    pub fn loss_scale(&self) -> f64 {
        self.scaler.scale()
    }

    /// Steps the loss scaler skipped so far in this process.
    pub fn skipped_steps(&self) -> u64 {
        self.skipped
    }

    /// The backward pass of one micro-batch's `loss`, divided by `parts`
    /// (the micro-batches of the step); its gradients are added to the
    /// step's.
    pub fn backward(&mut self, loss: &Tensor, parts: usize) -> Result<()> {
        let divided;
        let loss = if parts > 1 {
            divided = (loss / parts as f64)?;
            &divided
        } else {
            loss
        };
        let mut g = self.scaler.scale_loss(loss)?.backward()?;
        // mixed precision: f32, unscaled gradients from here on
        self.scaler.unscale(&mut g, &self.vars)?;
        match self.grads.as_mut() {
            None => self.grads = Some(g),
            Some(acc) => clip::accumulate(acc, &g, &self.vars)?,
        }
        Ok(())
    }

    /// Ends optimizer step `step` (0-based): clips the accumulated
    /// gradients, computes their norm when `want_norm` (or when clipping
    /// or the loss scaler needs it), and updates the variables at the
    /// schedule's learning rate unless the loss scaler skips the step.
    /// `None` when no micro-batch was given since the last step.
    pub fn update(&mut self, step: u64, want_norm: bool) -> Result<Option<StepReport>> {
        let Some(mut grads) = self.grads.take() else {
            return Ok(None);
        };
        let grad_norm = match self.grad_clip {
            Some(max) => clip::clip_grad_norm(&mut grads, &self.vars, max)?,
            None if want_norm || self.scaler.checks_overflow() => {
                clip::grad_norm(&grads, &self.vars)?
            }
            None => f64::NAN,
        };
        let lr = self.schedule.lr_at(step);
        let applied = self.scaler.update(grad_norm)?;
        if applied {
            self.opt.step(&grads, lr)?;
        } else {
            self.skipped += 1;
        }
        Ok(Some(StepReport {
            lr,
            grad_norm,
            applied,
        }))
    }

    /// The optimizer's and the loss scaler's state, for a checkpoint.
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut state = self.opt.state()?;
        state.extend(self.scaler.state()?);
        Ok(state)
    }

    /// Restores what [`Stepper::state`] saved.
    pub fn load_state(&mut self, mut state: HashMap<String, Tensor>) -> Result<()> {
        self.scaler.take_state(&mut state)?;
        self.opt.load_state(&state)
    }
}
