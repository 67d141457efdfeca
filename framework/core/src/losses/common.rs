//! Helpers shared by the losses.

use candle_core::{Tensor, D};

use crate::error::Result;

/// L2-normalises the rows of `x` (with a small floor on the norm).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::INFINITY)?;
    Ok(x.broadcast_div(&norm)?)
}

/// Row-wise log-sum-exp of `x [N, M]`, stable for large values.
pub fn log_sum_exp_rows(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let s = x.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok((s + max)?.squeeze(D::Minus1)?)
}

