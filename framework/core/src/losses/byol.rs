//! BYOL's regression loss between predictions and target projections.
//!
//! Grill et al. "Bootstrap Your Own Latent: A New Approach to
//! Self-Supervised Learning", NeurIPS 2020, eq. (2) and the symmetrised loss
//! of section 3.1.
//!
//! Inputs: `p0 [N, D]`, `p1 [N, D]`, the online network's predictions for
//! the two views, and `z0 [N, D]`, `z1 [N, D]`, the target network's
//! projections, which are stop-gradient (no gradient flows into them). The
//! loss is `mean(2 - 2 cos(p0, z1)) + mean(2 - 2 cos(p1, z0))`, the squared
//! distance of the L2-normalised vectors, summed over both directions.
//! Output: a scalar.

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::Result;
use crate::losses::common::same_shape;
use crate::losses::simsiam::mean_cosine_to_target;
use crate::losses::{Loss, LossInputs};

/// Configuration of [`Byol`]: the loss has no hyper-parameters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ByolConfig {}

/// The BYOL loss.
pub struct Byol;

impl Byol {
    /// Builds the loss.
    pub fn new(_cfg: ByolConfig) -> Result<Self> {
        Ok(Byol)
    }
}

impl Loss for Byol {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let p0 = inputs.get("byol", "p0")?;
        let p1 = inputs.get("byol", "p1")?;
        let z0 = inputs.get("byol", "z0")?;
        let z1 = inputs.get("byol", "z1")?;
        same_shape("byol", ("p0", p0), ("z1", z1))?;
        same_shape("byol", ("p1", p1), ("z0", z0))?;
        same_shape("byol", ("p0", p0), ("p1", p1))?;
        let c = (mean_cosine_to_target(p0, z1)? + mean_cosine_to_target(p1, z0)?)?;
        Ok(c.affine(-2.0, 4.0)?)
    }
}

crate::register!(
    loss,
    "byol",
    "BYOL's symmetric 2 - 2 cos regression onto stop-gradient targets (Grill et al. 2020)",
    |p| Ok(Box::new(Byol::new(p.extract()?)?))
);
