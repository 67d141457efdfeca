//! Target networks updated by an exponential moving average of the online
//! network: MoCo's momentum encoder (He et al. 2020, eq. 2), BYOL's target
//! (Grill et al. 2020, section 3.1) and DINO's teacher (Caron et al. 2021,
//! section 3.1).
//!
//! A target component is built under the prefix `target.` with the same
//! names as its online twin (`target.encoder.conv1.weight` follows
//! `encoder.conv1.weight`), starts as a copy of it and is never touched by
//! the optimizer ([`is_target`]); after each step it moves towards the
//! online weights: `target = m target + (1 - m) online`. Batch-norm running
//! statistics are not averaged: the target's own forward passes keep them.

use candle_core::Var;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::methods::MethodCtx;
use crate::nn::encoder::{Encoder, EncoderCtx};
use crate::nn::init::VarStore;
use crate::registry;

/// The prefix of target variables.
pub const PREFIX: &str = "target.";

/// Whether the variable `name` belongs to a target network (updated by EMA,
/// not by the optimizer).
pub fn is_target(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// How the momentum moves over training.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MomentumSchedule {
    /// Constant (MoCo: 0.999).
    Constant,
    /// From the base value to 1 along a cosine (BYOL, DINO):
    /// `m_k = 1 - (1 - m_0) (cos(pi k / K) + 1) / 2`.
    Cosine,
}

/// The momentum at `step` of `total` steps.
pub fn momentum_at(base: f64, schedule: MomentumSchedule, step: u64, total: u64) -> f64 {
    match schedule {
        MomentumSchedule::Constant => base,
        MomentumSchedule::Cosine => {
            let t = if total == 0 {
                1.0
            } else {
                (step as f64 / total as f64).min(1.0)
            };
            1.0 - (1.0 - base) * ((std::f64::consts::PI * t).cos() + 1.0) / 2.0
        }
    }
}

/// Checks a momentum value from a recipe.
pub fn check_momentum(value: f64) -> std::result::Result<(), String> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("must be in [0, 1], got {value}"))
    }
}

/// The pairs (online, target) of variables of a method's target networks.
pub struct TargetNetwork {
    pairs: Vec<(Var, Var)>,
}

impl TargetNetwork {
    /// Pairs every variable under `target.` with its online twin and copies
    /// the online values into the target. Call after building both.
    pub fn link(store: &VarStore) -> Result<Self> {
        let mut pairs = Vec::new();
        for (name, target) in store.named_vars() {
            let Some(online_name) = name.strip_prefix(PREFIX) else {
                continue;
            };
            if name.ends_with("running_mean") || name.ends_with("running_var") {
                continue;
            }
            let online = store.get_var(online_name).ok_or_else(|| {
                Error::Recipe(format!(
                    "target variable `{name}` has no online twin `{online_name}`"
                ))
            })?;
            if online.dims() != target.dims() {
                return Err(Error::Shape(format!(
                    "target variable `{name}` has shape {:?}, `{online_name}` {:?}",
                    target.dims(),
                    online.dims()
                )));
            }
            // the online encoder may compute in bf16/f16 (mixed precision);
            // the target keeps f32, so that small EMA steps do not round away
            target.set(&online.as_tensor().to_dtype(target.dtype())?)?;
            pairs.push((online, target));
        }
        if pairs.is_empty() {
            return Err(Error::Recipe("no target-network variables to link".into()));
        }
        Ok(TargetNetwork { pairs })
    }

    /// `target = m target + (1 - m) online` for every pair.
    pub fn update(&self, m: f64) -> Result<()> {
        for (online, target) in &self.pairs {
            let t = target.as_tensor();
            let o = online.as_tensor().detach().to_dtype(t.dtype())?;
            let new = ((t * m)? + (o * (1.0 - m))?)?;
            target.set(&new)?;
        }
        Ok(())
    }

    /// Number of paired variables.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether no variables are paired.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Builds a copy of the recipe's encoder under `target.encoder`.
pub fn target_encoder(ctx: &MethodCtx) -> Result<Box<dyn Encoder>> {
    let spec = &ctx.encoder_spec;
    (registry::encoder(&spec.name)?.build)(
        &spec.params,
        &EncoderCtx {
            meta: ctx.meta.clone(),
        },
        ctx.vb.pp("target").pp("encoder"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn cosine_schedule_runs_from_base_to_one() {
        let m = |s| momentum_at(0.996, MomentumSchedule::Cosine, s, 100);
        assert!((m(0) - 0.996).abs() < 1e-12);
        assert!((m(50) - 0.998).abs() < 1e-12);
        assert!((m(100) - 1.0).abs() < 1e-12);
        assert_eq!(momentum_at(0.99, MomentumSchedule::Constant, 70, 100), 0.99);
    }

    #[test]
    fn link_copies_and_update_moves_towards_online() {
        let store = VarStore::new(1);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let online = candle_nn::linear(3, 2, vb.pp("head")).unwrap();
        let _target = candle_nn::linear(3, 2, vb.pp("target").pp("head")).unwrap();
        let tw = store.get_var("target.head.weight").unwrap();
        let ow = store.get_var("head.weight").unwrap();
        assert_ne!(
            tw.as_tensor().to_vec2::<f32>().unwrap(),
            ow.as_tensor().to_vec2::<f32>().unwrap(),
            "different names draw different initial values"
        );
        let net = TargetNetwork::link(&store).unwrap();
        assert_eq!(net.len(), 2);
        assert_eq!(
            tw.as_tensor().to_vec2::<f32>().unwrap(),
            ow.as_tensor().to_vec2::<f32>().unwrap()
        );
        // move the online weights, then average with m = 0.75
        let before = tw.as_tensor().to_vec2::<f32>().unwrap();
        ow.set(&(ow.as_tensor() + 4.0).unwrap()).unwrap();
        net.update(0.75).unwrap();
        let after = tw.as_tensor().to_vec2::<f32>().unwrap();
        for (a, b) in after.iter().flatten().zip(before.iter().flatten()) {
            assert!((a - (b + 1.0)).abs() < 1e-5, "{a} vs {b} + 1");
        }
        let _ = online;
        assert!(is_target("target.head.weight") && !is_target("head.weight"));
    }
}
