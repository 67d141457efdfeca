//! Adam with decoupled weight decay (Loshchilov & Hutter 2019), as
//! PyTorch's `torch.optim.AdamW` without `amsgrad`.
//!
//! For a variable `p` with gradient `g`, group weight decay `wd`, betas
//! `(b1, b2)`, `eps` and learning rate `lr`, at the variable's step `t`
//! (counted from 1):
//!
//! ```text
//! p = p * (1 - lr * wd)                            (decoupled weight decay)
//! m = b1 * m + (1 - b1) * g
//! v = b2 * v + (1 - b2) * g^2
//! p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//!
//! State: `adam.m/<name>`, `adam.v/<name>` (zeros before the first step)
//! and `adam.t/<name>` (the variable's step count t).

use std::collections::{BTreeMap, HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::Tensor;

use super::{
    check_no_unexpected, count_tensor, load_count, load_tensor, slots, AdamWOptions, Optimizer,
    ParamGroup, Slot,
};
use crate::error::{Error, Result};

/// AdamW; see the module documentation.
pub struct AdamW {
    opts: AdamWOptions,
    slots: Vec<Slot>,
    /// First moment estimates (none before the variable's first step).
    m: Vec<Option<Tensor>>,
    /// Second moment estimates.
    v: Vec<Option<Tensor>>,
    /// Steps taken by each variable.
    t: Vec<u64>,
}

impl AdamW {
    /// AdamW over `groups`.
    pub fn new(groups: Vec<ParamGroup>, opts: AdamWOptions) -> Result<Self> {
        let (b1, b2) = opts.betas;
        if !(0.0..1.0).contains(&b1) || !(0.0..1.0).contains(&b2) {
            return Err(Error::invalid(
                "adamw",
                format!("betas must be in [0, 1), got ({b1}, {b2})"),
            ));
        }
        if !(opts.eps >= 0.0 && opts.eps.is_finite()) {
            return Err(Error::invalid(
                "adamw",
                format!("eps must be non-negative, got {}", opts.eps),
            ));
        }
        let slots = slots(groups, "adamw")?;
        let n = slots.len();
        Ok(AdamW {
            opts,
            slots,
            m: vec![None; n],
            v: vec![None; n],
            t: vec![0; n],
        })
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let (b1, b2) = self.opts.betas;
        let eps = self.opts.eps;
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(g) = slot.grad(grads)? else { continue };
            let mut p = slot.value()?;
            if slot.weight_decay != 0.0 {
                p = p.affine(1.0 - lr * slot.weight_decay, 0.0)?;
            }
            let t = self.t[i] + 1;
            let g_m = g.affine(1.0 - b1, 0.0)?;
            let g_v = g.sqr()?.affine(1.0 - b2, 0.0)?;
            let (m, v) = match (&self.m[i], &self.v[i]) {
                (Some(m), Some(v)) => ((m.affine(b1, 0.0)? + g_m)?, (v.affine(b2, 0.0)? + g_v)?),
                _ => (g_m, g_v),
            };
            let bc1 = 1.0 - b1.powf(t as f64);
            let bc2 = 1.0 - b2.powf(t as f64);
            let denom = v.sqrt()?.affine(1.0 / bc2.sqrt(), eps)?;
            let update = (m.affine(lr / bc1, 0.0)? / denom)?;
            slot.set(&(p - update)?)?;
            self.m[i] = Some(m);
            self.v[i] = Some(v);
            self.t[i] = t;
        }
        Ok(())
    }

    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let or_zeros = |x: &Option<Tensor>| -> Result<Tensor> {
                match x {
                    Some(x) => Ok(x.clone()),
                    None => slot.zeros(),
                }
            };
            out.insert(format!("adam.m/{}", slot.name), or_zeros(&self.m[i])?);
            out.insert(format!("adam.v/{}", slot.name), or_zeros(&self.v[i])?);
            out.insert(format!("adam.t/{}", slot.name), count_tensor(self.t[i])?);
        }
        super::master_state(&self.slots, &mut out);
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let n = self.slots.len();
        let mut expected = HashSet::new();
        let (mut ms, mut vs, mut ts) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for slot in &self.slots {
            let keys = [
                format!("adam.m/{}", slot.name),
                format!("adam.v/{}", slot.name),
                format!("adam.t/{}", slot.name),
            ];
            let m = load_tensor(state, &keys[0], slot)?;
            let v = load_tensor(state, &keys[1], slot)?;
            let t = load_count(state, &keys[2])?;
            ms.push((t > 0).then_some(m));
            vs.push((t > 0).then_some(v));
            ts.push(t);
            expected.extend(keys);
        }
        super::load_master_state(&self.slots, state, &mut expected)?;
        check_no_unexpected(state, &expected)?;
        self.m = ms;
        self.v = vs;
        self.t = ts;
        Ok(())
    }
}
