//! Stochastic gradient descent with momentum, as PyTorch's
//! `torch.optim.SGD` (Sutskever et al. 2013 for the Nesterov variant).
//!
//! For a variable `p` with gradient `g`, group weight decay `wd`, momentum
//! `mu`, dampening `d` and learning rate `lr`:
//!
//! ```text
//! g = g + wd * p                                   (L2 weight decay)
//! b = g                   at the variable's first step
//! b = mu * b + (1 - d) * g                         afterwards
//! g = g + mu * b  (nesterov)   or   g = b
//! p = p - lr * g
//! ```
//!
//! State: `momentum/<name>` (the buffer b, zeros until the first step) and
//! `sgd.t/<name>` (the number of steps the variable has taken).

use std::collections::{BTreeMap, HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::Tensor;

use super::{
    check_no_unexpected, count_tensor, load_count, load_tensor, slots, Optimizer, ParamGroup,
    SgdOptions, Slot,
};
use crate::error::{Error, Result};

/// SGD with momentum; see the module documentation.
pub struct Sgd {
    opts: SgdOptions,
    slots: Vec<Slot>,
    /// Momentum buffers (none when momentum is 0).
    buffers: Vec<Option<Tensor>>,
    /// Steps taken by each variable.
    steps: Vec<u64>,
}

impl Sgd {
    /// SGD over `groups`.
    pub fn new(groups: Vec<ParamGroup>, opts: SgdOptions) -> Result<Self> {
        if !(0.0..1.0).contains(&opts.momentum) {
            return Err(Error::invalid(
                "sgd",
                format!("momentum must be in [0, 1), got {}", opts.momentum),
            ));
        }
        if !(0.0..=1.0).contains(&opts.dampening) {
            return Err(Error::invalid(
                "sgd",
                format!("dampening must be in [0, 1], got {}", opts.dampening),
            ));
        }
        if opts.nesterov && (opts.momentum <= 0.0 || opts.dampening != 0.0) {
            return Err(Error::invalid(
                "sgd",
                "nesterov momentum needs momentum > 0 and dampening = 0",
            ));
        }
        let slots = slots(groups, "sgd")?;
        let n = slots.len();
        Ok(Sgd {
            opts,
            slots,
            buffers: vec![None; n],
            steps: vec![0; n],
        })
    }

    fn has_momentum(&self) -> bool {
        self.opts.momentum != 0.0
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let (mu, damp) = (self.opts.momentum, self.opts.dampening);
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(mut g) = slot.grad(grads)? else {
                continue;
            };
            let p = slot.value()?;
            if slot.weight_decay != 0.0 {
                g = (g + p.affine(slot.weight_decay, 0.0)?)?;
            }
            if mu != 0.0 {
                let b = match (&self.buffers[i], self.steps[i]) {
                    (Some(b), t) if t > 0 => (b.affine(mu, 0.0)? + g.affine(1.0 - damp, 0.0)?)?,
                    // a copy: the gradient may share storage with a variable
                    _ => g.copy()?,
                };
                g = if self.opts.nesterov {
                    (g + b.affine(mu, 0.0)?)?
                } else {
                    b.clone()
                };
                self.buffers[i] = Some(b);
            }
            slot.set(&(p - g.affine(lr, 0.0)?)?)?;
            self.steps[i] += 1;
        }
        Ok(())
    }

    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if self.has_momentum() {
                let b = match &self.buffers[i] {
                    Some(b) => b.clone(),
                    None => slot.zeros()?,
                };
                out.insert(format!("momentum/{}", slot.name), b);
            }
            out.insert(format!("sgd.t/{}", slot.name), count_tensor(self.steps[i])?);
        }
        super::master_state(&self.slots, &mut out);
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let mut expected = HashSet::new();
        let mut buffers = Vec::with_capacity(self.slots.len());
        let mut steps = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let tk = format!("sgd.t/{}", slot.name);
            let t = load_count(state, &tk)?;
            expected.insert(tk);
            if self.has_momentum() {
                let bk = format!("momentum/{}", slot.name);
                let b = load_tensor(state, &bk, slot)?;
                expected.insert(bk);
                buffers.push((t > 0).then_some(b));
            } else {
                buffers.push(None);
            }
            steps.push(t);
        }
        super::load_master_state(&self.slots, state, &mut expected)?;
        check_no_unexpected(state, &expected)?;
        self.buffers = buffers;
        self.steps = steps;
        Ok(())
    }
}
