//! Batch normalisation over channels (`[B, C, ...]`) on the project's fused
//! kernels ([`crate::ops::batch_norm`]), with an optional fused ReLU.
//!
//! Ioffe & Szegedy, "Batch Normalization", ICML 2015. Variables have
//! Candle's / PyTorch's names (`weight`, `bias`, `running_mean`,
//! `running_var`), so checkpoints keep their layout. Running statistics
//! follow PyTorch: momentum 0.1, unbiased variance.

use candle_core::{Tensor, Var};
use candle_nn::init::Init;
use candle_nn::VarBuilder;

use crate::error::Result;
use crate::ops::batch_norm::{batch_norm_eval, batch_norm_relu_train, batch_norm_train};

/// Batch norm with learnable scale and shift.
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    /// `channels` features, eps 1e-5, momentum 0.1 (PyTorch's defaults).
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_scale(channels, 1.0, vb)
    }

    /// Like [`BatchNorm::new`] with the scale initialised to `scale` (0 for
    /// a residual branch that starts as the identity).
    pub fn with_scale(channels: usize, scale: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(scale))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean =
            Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?)?;
        let running_var =
            Var::from_tensor(&vb.get_with_hints(channels, "running_var", Init::Const(1.0))?)?;
        Ok(BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            eps: 1e-5,
            momentum: 0.1,
        })
    }

    /// Normalises `x` (batch statistics in training, running ones in
    /// evaluation), then applies ReLU when `relu` is set.
    pub fn forward(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        if !train {
            let y = batch_norm_eval(
                x,
                &self.weight,
                &self.bias,
                self.running_mean.as_tensor(),
                self.running_var.as_tensor(),
                self.eps,
            )?;
            return Ok(if relu { y.relu()? } else { y });
        }
        let (y, mean, var) = if relu {
            batch_norm_relu_train(x, &self.weight, &self.bias, self.eps)?
        } else {
            batch_norm_train(x, &self.weight, &self.bias, self.eps)?
        };
        self.update_running(&mean, &var, x.elem_count() / x.dim(1)?)?;
        Ok(y)
    }

    /// The learnable scale `[C]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The learnable shift `[C]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The epsilon added to the variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Moves the running statistics towards a batch's `mean` and biased
    /// `var` (`[C]` each) over `count` values per channel (PyTorch's rule:
    /// momentum 0.1, the variance made unbiased).
    pub fn update_running(&self, mean: &Tensor, var: &Tensor, count: usize) -> Result<()> {
        let n = count as f64;
        let m = self.momentum;
        let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (var * (m * unbiased))?)?;
        self.running_mean.set(&rm.detach())?;
        self.running_var.set(&rv.detach())?;
        Ok(())
    }
}
