//! The uniformity metric of Wang & Isola.
//!
//! Wang, Isola. "Understanding Contrastive Representation Learning through
//! Alignment and Uniformity on the Hypersphere", ICML 2020, eq. (5)
//! (`L_uniform`).
//!
//! Input: `z [N, D]`, `N >= 2` embeddings. They are L2-normalised; the value
//! is `log mean_{i<j} exp(-t ||z_i - z_j||_2^2)` (lower is more uniform),
//! computed as a log-sum-exp over the `N (N - 1) / 2` pairs. For unit
//! vectors `||z_i - z_j||^2 = 2 - 2 z_i . z_j`. Output: a scalar.

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::common::{log_sum_exp_keepdim, matrix_dims};
use crate::losses::{l2_normalize, Loss, LossInputs};

/// Configuration of [`Uniformity`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UniformityConfig {
    /// The scale of the Gaussian potential: 2 (Wang & Isola 2020, section 4.1).
    pub t: f64,
}

impl Default for UniformityConfig {
    fn default() -> Self {
        UniformityConfig { t: 2.0 }
    }
}

/// The uniformity metric.
pub struct Uniformity {
    t: f64,
}

impl Uniformity {
    /// Builds the metric; `t` must be positive.
    pub fn new(cfg: UniformityConfig) -> Result<Self> {
        if !(cfg.t > 0.0 && cfg.t.is_finite()) {
            return Err(Error::invalid(
                "uniformity",
                format!("t must be a positive finite number, got {}", cfg.t),
            ));
        }
        Ok(Uniformity { t: cfg.t })
    }
}

impl Loss for Uniformity {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let z = inputs.get("uniformity", "z")?;
        let (n, _) = matrix_dims("uniformity", "z", z)?;
        if n < 2 {
            return Err(Error::Shape(format!(
                "uniformity: needs at least 2 embeddings, got {n}"
            )));
        }
        let z = l2_normalize(z)?;
        // -t ||z_i - z_j||^2 = 2t (z_i . z_j) - 2t
        let g = z.matmul(&z.t()?)?.flatten_all()?;
        let upper: Vec<u32> = (0..n)
            .flat_map(|i| ((i + 1)..n).map(move |j| (i * n + j) as u32))
            .collect();
        let pairs = upper.len();
        let idx = Tensor::from_vec(upper, pairs, z.device())?;
        let x = g
            .index_select(&idx, 0)?
            .affine(2.0 * self.t, -2.0 * self.t)?;
        let lse = log_sum_exp_keepdim(&x)?.squeeze(0)?;
        Ok((lse - (pairs as f64).ln())?)
    }
}

crate::register!(
    loss,
    "uniformity",
    "uniformity metric: log mean exp(-t ||z_i - z_j||^2) over pairs (Wang & Isola 2020)",
    |p| Ok(Box::new(Uniformity::new(p.extract()?)?))
);
