//! The spectral contrastive loss.
//!
//! HaoChen, Wei, Gaidon, Ma. "Provable Guarantees for Self-Supervised Deep
//! Learning with Spectral Contrastive Loss", NeurIPS 2021, eq. (2).
//!
//! Inputs: `z0 [N, D]`, `z1 [N, D]`, two views of the same `N` examples
//! (not normalised). The loss is
//! `-2 mean_i(z0_i . z1_i) + sum_{i != j} (z0_i . z1_j)^2 / (N (N - 1))`:
//! positive pairs are pulled together, the squared similarities of the
//! other pairs pushed to zero. Needs `N >= 2`. Output: a scalar.

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::common::{row_dot, same_shape};
use crate::losses::{Loss, LossInputs};

/// Configuration of [`Spectral`]: the loss has no hyper-parameters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpectralConfig {}

/// The spectral contrastive loss.
pub struct Spectral;

impl Spectral {
    /// Builds the loss.
    pub fn new(_cfg: SpectralConfig) -> Result<Self> {
        Ok(Spectral)
    }
}

impl Loss for Spectral {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let z0 = inputs.get("spectral", "z0")?;
        let z1 = inputs.get("spectral", "z1")?;
        let (n, _) = same_shape("spectral", ("z0", z0), ("z1", z1))?;
        if n < 2 {
            return Err(Error::Shape(format!(
                "spectral: needs at least 2 examples, got {n}"
            )));
        }
        let pos = row_dot(z0, z1)?;
        let all = z0.matmul(&z1.t()?)?.sqr()?.sum_all()?;
        let off = (all - pos.sqr()?.sum_all()?)?;
        let pairs = (n * (n - 1)) as f64;
        Ok(((pos.mean_all()? * -2.0)? + (off / pairs)?)?)
    }
}

crate::register!(
    loss,
    "spectral",
    "the spectral contrastive loss, -2 E[z.z+] + E[(z.z-)^2] (HaoChen et al. 2021)",
    |p| Ok(Box::new(Spectral::new(p.extract()?)?))
);
