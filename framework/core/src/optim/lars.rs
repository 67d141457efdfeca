//! Layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017), as used
//! by SimCLR (Chen et al. 2020) and BYOL (Grill et al. 2020).
//!
//! For a variable `p` with gradient `g`, group weight decay `wd`, momentum
//! `mu`, trust coefficient `eta` and learning rate `lr`:
//!
//! ```text
//! d = g + wd * p
//! q = eta * ||p|| / (||d|| + eps)    if the group adapts and both norms are > 0
//! q = 1                              otherwise
//! b = mu * b + q * d                 (b starts at zero)
//! p = p - lr * b
//! ```
//!
//! Groups without adaptation (biases and normalisation parameters by
//! default, which also get no weight decay) thus get plain momentum SGD.
//! The learning rate multiplies the buffer rather than entering it, as in
//! BYOL's optax implementation; with a constant rate this equals SimCLR's
//! formulation.
//!
//! State: `momentum/<name>` (the buffer b).

use std::collections::{BTreeMap, HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::Tensor;

use super::{check_no_unexpected, load_tensor, slots, LarsOptions, Optimizer, ParamGroup, Slot};
use crate::error::{Error, Result};

/// LARS; see the module documentation.
pub struct Lars {
    opts: LarsOptions,
    slots: Vec<Slot>,
    /// Momentum buffers (none until the variable's first step, i.e. zero).
    buffers: Vec<Option<Tensor>>,
}

impl Lars {
    /// LARS over `groups`.
    pub fn new(groups: Vec<ParamGroup>, opts: LarsOptions) -> Result<Self> {
        if !(0.0..1.0).contains(&opts.momentum) {
            return Err(Error::invalid(
                "lars",
                format!("momentum must be in [0, 1), got {}", opts.momentum),
            ));
        }
        if !(opts.trust_coefficient > 0.0 && opts.trust_coefficient.is_finite()) {
            return Err(Error::invalid(
                "lars",
                format!(
                    "trust_coefficient must be positive, got {}",
                    opts.trust_coefficient
                ),
            ));
        }
        if !(opts.eps >= 0.0 && opts.eps.is_finite()) {
            return Err(Error::invalid(
                "lars",
                format!("eps must be non-negative, got {}", opts.eps),
            ));
        }
        let slots = slots(groups, "lars")?;
        let n = slots.len();
        Ok(Lars {
            opts,
            slots,
            buffers: vec![None; n],
        })
    }
}

/// The trust ratio `eta * ||p|| / (||d|| + eps)`, or 1 where either norm is
/// 0, as a one-element tensor on the device (no host synchronisation).
pub fn trust_ratio(p: &Tensor, d: &Tensor, eta: f64, eps: f64) -> Result<Tensor> {
    let pn = p.sqr()?.sum_all()?.sqrt()?.reshape(1)?;
    let dn = d.sqr()?.sum_all()?.sqrt()?.reshape(1)?;
    let ratio = (pn.affine(eta, 0.0)? / dn.affine(1.0, eps)?)?;
    let both = (pn.gt(0.0)? * dn.gt(0.0)?)?;
    Ok(both.where_cond(&ratio, &ratio.ones_like()?)?)
}

impl Optimizer for Lars {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let (mu, eta, eps) = (
            self.opts.momentum,
            self.opts.trust_coefficient,
            self.opts.eps,
        );
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(mut d) = slot.grad(grads)? else {
                continue;
            };
            let p = slot.value()?;
            if slot.weight_decay != 0.0 {
                d = (d + p.affine(slot.weight_decay, 0.0)?)?;
            }
            if slot.lars_adapt {
                let q = trust_ratio(&p, &d, eta, eps)?;
                d = d.broadcast_mul(&q)?;
            }
            let b = match &self.buffers[i] {
                Some(b) => (b.affine(mu, 0.0)? + d)?,
                // mu * 0 + d; a copy, as d may share storage with a variable
                None => d.copy()?,
            };
            slot.set(&(p - b.affine(lr, 0.0)?)?)?;
            self.buffers[i] = Some(b);
        }
        Ok(())
    }

    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let b = match &self.buffers[i] {
                Some(b) => b.clone(),
                None => slot.zeros()?,
            };
            out.insert(format!("momentum/{}", slot.name), b);
        }
        super::master_state(&self.slots, &mut out);
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let mut expected = HashSet::new();
        let mut buffers = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let key = format!("momentum/{}", slot.name);
            buffers.push(Some(load_tensor(state, &key, slot)?));
            expected.insert(key);
        }
        super::load_master_state(&self.slots, state, &mut expected)?;
        check_no_unexpected(state, &expected)?;
        self.buffers = buffers;
        Ok(())
    }
}
