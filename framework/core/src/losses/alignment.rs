//! The alignment metric of Wang & Isola.
//!
//! Wang, Isola. "Understanding Contrastive Representation Learning through
//! Alignment and Uniformity on the Hypersphere", ICML 2020, eq. (4)
//! (`L_align`).
//!
//! Inputs: `z0 [N, D]`, `z1 [N, D]`, embeddings of positive pairs. Both are
//! L2-normalised; the value is `mean_i ||z0_i - z1_i||_2^alpha` (lower is
//! better). It is differentiable, so it also serves as a loss term.
//! Output: a scalar.

use candle_core::{Tensor, D};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::common::same_shape;
use crate::losses::{l2_normalize, Loss, LossInputs};

/// Configuration of [`Alignment`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlignmentConfig {
    /// The exponent of the distance: 2 (Wang & Isola 2020, section 4.1).
    pub alpha: f64,
}

impl Default for AlignmentConfig {
    fn default() -> Self {
        AlignmentConfig { alpha: 2.0 }
    }
}

/// The alignment metric.
pub struct Alignment {
    alpha: f64,
}

impl Alignment {
    /// Builds the metric; `alpha` must be positive.
    pub fn new(cfg: AlignmentConfig) -> Result<Self> {
        if !(cfg.alpha > 0.0 && cfg.alpha.is_finite()) {
            return Err(Error::invalid(
                "alignment",
                format!("alpha must be a positive finite number, got {}", cfg.alpha),
            ));
        }
        Ok(Alignment { alpha: cfg.alpha })
    }
}

impl Loss for Alignment {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let z0 = inputs.get("alignment", "z0")?;
        let z1 = inputs.get("alignment", "z1")?;
        same_shape("alignment", ("z0", z0), ("z1", z1))?;
        let sq = (l2_normalize(z0)? - l2_normalize(z1)?)?
            .sqr()?
            .sum(D::Minus1)?;
        let d = if self.alpha == 2.0 {
            sq
        } else {
            // ||x||^alpha = (||x||^2)^(alpha / 2); the floor keeps the
            // gradient finite (zero) for identical pairs.
            sq.clamp(1e-12, f64::INFINITY)?.powf(self.alpha / 2.0)?
        };
        Ok(d.mean_all()?)
    }
}

crate::register!(
    loss,
    "alignment",
    "alignment metric: mean ||z0 - z1||^alpha of normalised positive pairs (Wang & Isola 2020)",
    |p| Ok(Box::new(Alignment::new(p.extract()?)?))
);
