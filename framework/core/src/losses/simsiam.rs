//! SimSiam's symmetric negative cosine similarity with stop-gradient.
//!
//! Chen, He. "Exploring Simple Siamese Representation Learning", CVPR 2021,
//! eq. (2)-(4).
//!
//! Inputs: `p0 [N, D]`, `p1 [N, D]`, the predictor's outputs for the two
//! views, and `z0 [N, D]`, `z1 [N, D]`, the projector's outputs, which are
//! stop-gradient (no gradient flows into them). The loss is
//! `-(cos(p0, z1) + cos(p1, z0)) / 2`, each cosine averaged over the batch
//! (lightly's `NegativeCosineSimilarity`); its minimum is -1. Output: a
//! scalar.

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::Result;
use crate::losses::common::{row_dot, same_shape};
use crate::losses::{l2_normalize, Loss, LossInputs};

/// Configuration of [`SimSiam`]: the loss has no hyper-parameters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSiamConfig {}

/// The SimSiam loss.
pub struct SimSiam;

impl SimSiam {
    /// Builds the loss.
    pub fn new(_cfg: SimSiamConfig) -> Result<Self> {
        Ok(SimSiam)
    }
}

/// Mean cosine similarity of the rows of `p` and the stop-gradient `z`.
pub(crate) fn mean_cosine_to_target(p: &Tensor, z: &Tensor) -> Result<Tensor> {
    let p = l2_normalize(p)?;
    let z = l2_normalize(&z.detach())?;
    Ok(row_dot(&p, &z)?.mean_all()?)
}

impl Loss for SimSiam {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let p0 = inputs.get("simsiam", "p0")?;
        let p1 = inputs.get("simsiam", "p1")?;
        let z0 = inputs.get("simsiam", "z0")?;
        let z1 = inputs.get("simsiam", "z1")?;
        same_shape("simsiam", ("p0", p0), ("z1", z1))?;
        same_shape("simsiam", ("p1", p1), ("z0", z0))?;
        same_shape("simsiam", ("p0", p0), ("p1", p1))?;
        let c = (mean_cosine_to_target(p0, z1)? + mean_cosine_to_target(p1, z0)?)?;
        Ok((c * -0.5)?)
    }
}

crate::register!(
    loss,
    "simsiam",
    "SimSiam's symmetric negative cosine similarity, targets stop-gradient (Chen & He 2021)",
    |p| Ok(Box::new(SimSiam::new(p.extract()?)?))
);
