//! A residual block: [`ConvBn`] layers (ReLU after all but the last), an
//! identity or projection shortcut, and `relu(branch + shortcut)` (He et
//! al., CVPR 2016). Basic blocks have two 3x3 layers, bottlenecks 1x1, 3x3,
//! 1x1.
//!
//! In training the whole block is one autograd node
//! ([`crate::ops::residual::residual_train`]); in evaluation the layers run
//! one by one with their running statistics.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::nn::conv_bn::ConvBn;
use crate::ops::add_relu::add_relu;
use crate::ops::residual::residual_train;

/// Layers, then the shortcut.
pub struct Residual {
    layers: Vec<ConvBn>,
    projection: Option<ConvBn>,
}

impl Residual {
    /// A block of `layers` (at least one) with a `projection` shortcut, or
    /// the identity when `None`.
    pub fn new(layers: Vec<ConvBn>, projection: Option<ConvBn>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::invalid("residual block", "needs at least one layer"));
        }
        Ok(Residual { layers, projection })
    }

    /// `relu(branch(x) + shortcut(x))`; in training with batch statistics,
    /// and the running averages updated.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            let last = self.layers.len() - 1;
            let mut y = x.clone();
            for (i, layer) in self.layers.iter().enumerate() {
                y = layer.forward(&y, false, i < last)?;
            }
            let shortcut = match &self.projection {
                Some(p) => p.forward(x, false, false)?,
                None => x.clone(),
            };
            return Ok(add_relu(&y, &shortcut)?);
        }
        let params: Vec<_> = self.layers.iter().map(ConvBn::params).collect();
        let projection = self.projection.as_ref().map(ConvBn::params);
        let out = residual_train(x, &params, projection.as_ref())?;
        for (layer, s) in self.layers.iter().chain(&self.projection).zip(&out.stats) {
            layer.bn().update_running(&s.mean, &s.var, s.count)?;
        }
        Ok(out.y)
    }
}
