//! Seeded (inverted) dropout.
//!
//! Candle's `candle_nn::ops::dropout` draws its mask from the device RNG,
//! which cannot be seeded on the CPU, so a run that uses it is not
//! reproducible. [`dropout`] draws the mask from the project's [`Rng`]
//! instead: the same generator state gives the same mask. Kept elements are
//! scaled by `1/(1 − p)`, so that `E[y] = x` and evaluation needs no
//! rescaling. The product `x · mask` is an ordinary Candle op, so the
//! gradient is `mask / (1 − p)` without a custom backward.

use crate::nn::encoder::ForwardCtx;
use crate::rng::Rng;
use candle_core::{bail, Result, Tensor};

/// Checks a drop probability: finite, in `[0, 1)`.
fn check_p(p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        bail!("dropout: the drop probability must be in [0, 1), got {p}")
    }
    Ok(())
}

/// Inverted dropout of `x`: each element is zeroed with probability `p` and
/// the others are scaled by `1/(1 − p)`; one uniform draw from `rng` per
/// element, in the row-major order of `x`'s shape. `p = 0` returns `x`
/// unchanged (and draws nothing); `p` outside `[0, 1)` is an error.
pub fn dropout(x: &Tensor, p: f64, rng: &mut Rng) -> Result<Tensor> {
    check_p(p)?;
    if p == 0.0 {
        return Ok(x.clone());
    }
    let keep: Vec<u8> = (0..x.elem_count())
        .map(|_| u8::from(rng.uniform() as f64 >= p))
        .collect();
    let mask = Tensor::from_vec(keep, x.shape(), x.device())?
        .to_dtype(x.dtype())?
        .affine(1.0 / (1.0 - p), 0.0)?;
    x.mul(&mask)
}

/// A dropout layer: [`dropout`] with the forward context's generator in
/// training mode, the identity in evaluation mode.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    p: f64,
}

impl Dropout {
    /// A layer that drops with probability `p` (in `[0, 1)`).
    pub fn new(p: f64) -> Result<Self> {
        check_p(p)?;
        Ok(Self { p })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Applies the layer to `x`.
    pub fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        if ctx.train {
            dropout(x, self.p, &mut ctx.rng)
        } else {
            Ok(x.clone())
        }
    }
}
