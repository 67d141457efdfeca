//! 1-D convolution as the project's 2-D convolution on a height-1 image.
//!
//! Candle 0.11.1's `Tensor::conv1d` has a wrong kernel gradient, and a
//! wrong input gradient at padding 0 (see `candle_defect_*` in
//! `tests/gradcheck_conv.rs`). [`conv1d`] runs `x: [B,C,L]` as
//! `[B,C,1,L]` through [`super::conv2d::conv2d_with`] with a `1×k` kernel,
//! stride, padding and dilation on the width axis only (the reason that
//! op takes per-axis settings), and reshapes back. The reshapes are views
//! of contiguous tensors, so no data is copied.

use super::conv2d::{conv2d_with, Conv2dConfig};
use candle_core::{bail, Result, Tensor};

/// The hyper-parameters of a 1-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dConfig {
    /// Step between output positions.
    pub stride: usize,
    /// Zeros added on both ends of the input.
    pub padding: usize,
    /// Spacing between kernel taps (1: a dense kernel).
    pub dilation: usize,
    /// Channel groups, as in [`Conv2dConfig::groups`].
    pub groups: usize,
}

impl Default for Conv1dConfig {
    /// Stride 1, no padding, no dilation, one group.
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

impl Conv1dConfig {
    /// The equivalent 2-D configuration for a `[B,C,1,L]` input.
    pub fn as_2d(&self) -> Conv2dConfig {
        Conv2dConfig {
            stride: (1, self.stride),
            padding: (0, self.padding),
            dilation: (1, self.dilation),
            groups: self.groups,
        }
    }
}

/// 1-D convolution without bias, `x: [B,C,L]`, `w: [O,C/groups,k]`: returns
/// a contiguous `[B,O,Lo]`, `Lo = (L + 2·padding − dilation·(k−1) − 1)/stride + 1`.
/// Differentiable (first order) in `x` and `w`. On devices or dtypes
/// without a kernel it runs [`super::conv2d::conv2d_composite`] (Candle's
/// conv2d made exact) on the height-1 image, not Candle's conv1d.
pub fn conv1d(x: &Tensor, w: &Tensor, cfg: &Conv1dConfig) -> Result<Tensor> {
    let (b, c, l) = x.dims3()?;
    let (o, cg, k) = w.dims3()?;
    if cfg.stride == 0 || cfg.dilation == 0 || k == 0 {
        bail!(
            "conv1d: stride, dilation and kernel size must be positive, got {cfg:?} and kernel {k}"
        )
    }
    // conv2d_with dispatches: the kernel, f32 for 16-bit CPU tensors, or
    // off the CPU its exact composite (not Candle's conv1d)
    let w4 = w.reshape((o, cg, 1, k))?;
    let y = conv2d_with(&x.reshape((b, c, 1, l))?, &w4, &cfg.as_2d())?;
    let (_, _, _, lo) = y.dims4()?;
    y.reshape((b, o, lo))
}
