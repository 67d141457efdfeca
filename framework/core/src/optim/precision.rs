//! Mixed-precision training: the encoder computes in bf16 or f16, the
//! optimizer updates f32 master weights.
//!
//! Micikevicius et al., "Mixed Precision Training", ICLR 2018: the weights
//! the forward and backward passes read are half-precision copies of f32
//! master weights; the update is computed and accumulated in f32 (small
//! updates would round away in 16 bits), and with f16 the loss is scaled
//! before the backward pass so that small gradients do not underflow, then
//! unscaled in f32. The scale is dynamic, as PyTorch's `GradScaler`: it
//! starts at 2^16, halves (and the step is skipped) when a gradient
//! overflows, and doubles after 2000 steps without overflow. bf16 has f32's
//! exponent range and needs no scaling.
//!
//! The pieces: the encoder is built in the compute dtype and wrapped in
//! [`crate::nn::cast::CastEncoder`] (inputs cast in, representations cast
//! back to f32, so heads and losses stay in f32); the optimizers keep an
//! f32 master copy of every half-precision variable (`master/<name>` in
//! their checkpoint state); [`LossScaler`] scales the loss and turns each
//! backward pass's gradients into f32.

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The dtype the encoder computes in (`[train] precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (the default).
    #[default]
    F32,
    /// The encoder in bfloat16, f32 master weights, no loss scaling.
    Bf16,
    /// The encoder in float16, f32 master weights, dynamic loss scaling.
    F16,
}

impl Precision {
    /// The encoder's dtype.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// Whether the encoder computes in a half-precision type.
    pub fn is_mixed(self) -> bool {
        self != Precision::F32
    }
}

/// The first f16 loss scale: 2^16 (PyTorch's `GradScaler`).
pub const INIT_SCALE: f64 = 65536.0;
/// Steps without overflow before the scale doubles.
pub const GROWTH_INTERVAL: u64 = 2000;
/// Checkpoint entries of the scaler.
const SCALE_KEY: &str = "loss_scale/scale";
const GOOD_KEY: &str = "loss_scale/good_steps";

/// Scales the loss before the backward pass and brings the gradients back
/// to f32, unscaled; for f16 it also adapts the scale to overflows.
#[derive(Clone, Debug)]
pub struct LossScaler {
    precision: Precision,
    scale: f64,
    good_steps: u64,
}

impl LossScaler {
    /// A scaler for `precision` (scale 1 except for f16).
    pub fn new(precision: Precision) -> Self {
        let scale = match precision {
            Precision::F16 => INIT_SCALE,
            _ => 1.0,
        };
        LossScaler {
            precision,
            scale,
            good_steps: 0,
        }
    }

    /// The current loss scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// `loss · scale` (the loss itself when the scale is 1).
    pub fn scale_loss(&self, loss: &Tensor) -> Result<Tensor> {
        Ok(if self.scale == 1.0 {
            loss.clone()
        } else {
            (loss * self.scale)?
        })
    }

    /// Replaces the gradient of every half-precision variable of `vars` in
    /// `grads` by its f32 value divided by the scale (f32 variables' are
    /// divided in place when the scale is not 1).
    pub fn unscale(&self, grads: &mut GradStore, vars: &[Var]) -> Result<()> {
        for v in vars {
            let Some(g) = grads.get(v.as_tensor()) else {
                continue;
            };
            let half = matches!(g.dtype(), DType::BF16 | DType::F16);
            if !half && self.scale == 1.0 {
                continue;
            }
            let g = g.detach().to_dtype(DType::F32)?;
            let g = if self.scale == 1.0 {
                g
            } else {
                (g * (1.0 / self.scale))?
            };
            grads.insert(v.as_tensor(), g);
        }
        Ok(())
    }

    /// Records whether this step's gradients (their global norm) were
    /// finite and returns whether the optimizer should step. With f16 an
    /// overflow halves the scale and skips the step; 2000 good steps in a
    /// row double it; an overflow at scale 1 is not an overflow the scale
    /// can cure, and is an error (the run diverged). Without loss scaling
    /// every step counts.
    pub fn update(&mut self, grad_norm: f64) -> Result<bool> {
        if self.precision != Precision::F16 {
            return Ok(true);
        }
        if grad_norm.is_finite() {
            self.good_steps += 1;
            if self.good_steps >= GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            Ok(true)
        } else if self.scale <= 1.0 {
            Err(Error::Diverged(format!(
                "the f16 gradients are not finite (norm {grad_norm}) even at loss scale 1"
            )))
        } else {
            self.scale = (self.scale * 0.5).max(1.0);
            self.good_steps = 0;
            Ok(false)
        }
    }

    /// Whether [`LossScaler::update`] needs the gradient norm (only f16
    /// checks for overflow).
    pub fn checks_overflow(&self) -> bool {
        self.precision == Precision::F16
    }

    /// The scaler's checkpoint entries (none unless f16).
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        if self.precision == Precision::F16 {
            out.insert(
                SCALE_KEY.to_string(),
                Tensor::new(&[self.scale], &Device::Cpu)?,
            );
            out.insert(
                GOOD_KEY.to_string(),
                Tensor::new(&[self.good_steps as f64], &Device::Cpu)?,
            );
        }
        Ok(out)
    }

    /// Takes the scaler's entries out of `state` (a checkpoint's optimizer
    /// state) and restores them; a checkpoint without them (f32 or bf16,
    /// or older) leaves the initial scale.
    pub fn take_state(&mut self, state: &mut HashMap<String, Tensor>) -> Result<()> {
        let read = |t: Tensor, key: &str| -> Result<f64> {
            let v = t
                .flatten_all()?
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?;
            match v.as_slice() {
                [x] if x.is_finite() && *x >= 0.0 => Ok(*x),
                _ => Err(Error::invalid(
                    "optimizer state",
                    format!("entry `{key}` must hold one finite non-negative number"),
                )),
            }
        };
        if let Some(t) = state.remove(SCALE_KEY) {
            let s = read(t, SCALE_KEY)?;
            if self.precision == Precision::F16 && s >= 1.0 {
                self.scale = s;
            }
        }
        if let Some(t) = state.remove(GOOD_KEY) {
            let g = read(t, GOOD_KEY)?;
            if self.precision == Precision::F16 {
                self.good_steps = g as u64;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_scale_halves_on_overflow_and_grows_after_good_steps() {
        let mut s = LossScaler::new(Precision::F16);
        assert_eq!(s.scale(), INIT_SCALE);
        assert!(
            !s.update(f64::INFINITY).unwrap(),
            "an overflow skips the step"
        );
        assert_eq!(s.scale(), INIT_SCALE / 2.0);
        assert!(!s.update(f64::NAN).unwrap());
        assert_eq!(s.scale(), INIT_SCALE / 4.0);
        for _ in 0..GROWTH_INTERVAL - 1 {
            assert!(s.update(1.0).unwrap());
        }
        assert_eq!(s.scale(), INIT_SCALE / 4.0);
        assert!(s.update(1.0).unwrap());
        assert_eq!(s.scale(), INIT_SCALE / 2.0, "doubles after 2000 good steps");
        // halving stops at 1, where an overflow is divergence
        for _ in 0..15 {
            assert!(!s.update(f64::INFINITY).unwrap());
        }
        assert_eq!(s.scale(), 1.0);
        let err = s.update(f64::INFINITY).unwrap_err().to_string();
        assert!(err.contains("loss scale 1"), "{err}");
        // bf16 never scales nor skips
        let mut b = LossScaler::new(Precision::Bf16);
        assert!(b.update(f64::INFINITY).unwrap());
        assert_eq!(b.scale(), 1.0);
        assert!(b.state().unwrap().is_empty());
    }

    #[test]
    fn unscale_gives_f32_gradients_divided_by_the_scale() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(
            &Tensor::new(&[1e-3f32, -2e-3, 1.0], &dev)
                .unwrap()
                .to_dtype(DType::F16)
                .unwrap(),
        )
        .unwrap();
        let s = LossScaler::new(Precision::F16);
        let w32 = w.as_tensor().to_dtype(DType::F32).unwrap();
        let loss = w32.sqr().unwrap().sum_all().unwrap();
        let mut grads = s.scale_loss(&loss).unwrap().backward().unwrap();
        assert_eq!(grads.get(w.as_tensor()).unwrap().dtype(), DType::F16);
        s.unscale(&mut grads, std::slice::from_ref(&w)).unwrap();
        let g = grads.get(w.as_tensor()).unwrap();
        assert_eq!(g.dtype(), DType::F32);
        // 2^16 · 2w fits f16 (max 65504) for the small weights, and
        // overflows for w = 1: the scaler sees that as a non-finite norm
        let v = g.to_vec1::<f32>().unwrap();
        let w = w32.to_vec1::<f32>().unwrap();
        for i in 0..2 {
            assert!(
                (v[i] - 2.0 * w[i]).abs() <= 2e-3 * (2.0 * w[i]).abs(),
                "{v:?}"
            );
        }
        assert!(!v[2].is_finite(), "{v:?}");
        // the state round-trips
        let mut t = s.clone();
        assert!(!t.update(f64::INFINITY).unwrap());
        let mut st: HashMap<String, Tensor> = t.state().unwrap().into_iter().collect();
        st.insert("other".into(), Tensor::new(&[1f32], &dev).unwrap());
        let mut u = LossScaler::new(Precision::F16);
        u.take_state(&mut st).unwrap();
        assert_eq!(u.scale(), INIT_SCALE / 2.0);
        assert_eq!(st.len(), 1, "only the scaler's entries are taken");
    }

    #[test]
    fn master_weights_keep_updates_that_bf16_rounds_away() {
        use crate::optim::sgd::Sgd;
        use crate::optim::{Optimizer, ParamGroup, SgdOptions};
        let dev = Device::Cpu;
        let one = Tensor::ones(4, DType::BF16, &dev).unwrap();
        let w = Var::from_tensor(&one).unwrap();
        let group = || ParamGroup {
            vars: vec![("w".to_string(), w.clone())],
            weight_decay: 0.0,
            lars_adapt: false,
        };
        let plain = SgdOptions {
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
        };
        let mut opt = Sgd::new(vec![group()], plain.clone()).unwrap();
        // a constant gradient of 1 and lr 1e-4: each step is far below
        // bf16's spacing just under 1 (2^-8), 100 steps add up to 0.01
        for _ in 0..100 {
            let loss = w
                .as_tensor()
                .to_dtype(DType::F32)
                .unwrap()
                .sum_all()
                .unwrap();
            let g = loss.backward().unwrap();
            opt.step(&g, 1e-4).unwrap();
        }
        let st = opt.state().unwrap();
        let master = st["master/w"].to_vec1::<f32>().unwrap();
        assert!((master[0] - 0.99).abs() < 1e-5, "master {master:?}");
        let v = w
            .as_tensor()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(v[0] < 0.995, "the bf16 weight follows the master: {v:?}");
        assert_eq!(
            v[0],
            Tensor::new(&[master[0]], &dev)
                .unwrap()
                .to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0],
            "the weight is the master rounded to bf16"
        );
        // a fresh optimizer restores the master from the state, not from the
        // rounded weight
        w.set(&one).unwrap();
        let mut again = Sgd::new(vec![group()], plain).unwrap();
        let st: HashMap<String, Tensor> = st.into_iter().collect();
        again.load_state(&st).unwrap();
        let back = again.state().unwrap()["master/w"].to_vec1::<f32>().unwrap();
        assert_eq!(back, master);
        assert!(
            w.as_tensor()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0]
                < 0.995
        );
    }
}
