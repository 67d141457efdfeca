//! A bias-free convolution followed by batch norm (+ ReLU): the layer that
//! ResNets are made of (He et al., CVPR 2016).

use candle_core::Tensor;

use crate::error::Result;
use crate::nn::batch_norm::BatchNorm;
use crate::ops::conv2d::{conv2d_with, Conv2dConfig};
use crate::ops::residual::ConvBnParams;

/// Convolution `[O, C, kh, kw]` without bias, then [`BatchNorm`] over `O`.
pub struct ConvBn {
    weight: Tensor,
    cfg: Conv2dConfig,
    bn: BatchNorm,
}

impl ConvBn {
    /// The layer from its kernel, convolution settings and batch norm.
    pub fn new(weight: Tensor, cfg: Conv2dConfig, bn: BatchNorm) -> Self {
        ConvBn { weight, cfg, bn }
    }

    /// `bn(conv(x))`, with ReLU when `relu`; batch statistics (and running
    /// averages updated) when `train`.
    pub fn forward(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let y = conv2d_with(x, &self.weight, &self.cfg)?;
        self.bn.forward(&y, train, relu)
    }

    /// The batch norm.
    pub fn bn(&self) -> &BatchNorm {
        &self.bn
    }

    /// The parameters as the fused residual op takes them.
    pub fn params(&self) -> ConvBnParams<'_> {
        ConvBnParams {
            conv: &self.weight,
            cfg: self.cfg,
            bn_weight: self.bn.weight(),
            bn_bias: self.bn.bias(),
            eps: self.bn.eps(),
        }
    }
}
