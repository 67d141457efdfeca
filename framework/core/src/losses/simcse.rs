//! The SimCSE contrastive objective.
//!
//! Gao, Yao, Chen. "SimCSE: Simple Contrastive Learning of Sentence
//! Embeddings", EMNLP 2021, eq. (1) (unsupervised: two dropout views) and
//! eq. (5) (supervised: with hard negatives).
//!
//! Inputs: `z0 [N, D]` and `z1 [N, D]`, two embeddings of the same `N`
//! sentences; optionally `hard_negative [M, D]` (in the paper `M = N`, the
//! contradiction of sentence `i`, but any `M` works). The logits of row `i`
//! are the cosine similarities `cos(z0_i, z1_j) / t` for all `j`, followed by
//! `cos(z0_i, hard_negative_m) / t` when hard negatives are given; the loss
//! is the mean cross-entropy with target column `i`. Output: a scalar.

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::Result;
use crate::losses::common::{check_temperature, cross_entropy_diagonal, same_dim, same_shape};
use crate::losses::{l2_normalize, Loss, LossInputs};

/// Configuration of [`SimCse`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimCseConfig {
    /// Softmax temperature: 0.05 (Gao et al. 2021, section 3 and appendix).
    pub temperature: f64,
}

impl Default for SimCseConfig {
    fn default() -> Self {
        SimCseConfig { temperature: 0.05 }
    }
}

/// The SimCSE loss.
pub struct SimCse {
    temperature: f64,
}

impl SimCse {
    /// Builds the loss; the temperature must be positive.
    pub fn new(cfg: SimCseConfig) -> Result<Self> {
        check_temperature("simcse", "temperature", cfg.temperature)?;
        Ok(SimCse {
            temperature: cfg.temperature,
        })
    }
}

impl Loss for SimCse {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let z0 = inputs.get("simcse", "z0")?;
        let z1 = inputs.get("simcse", "z1")?;
        same_shape("simcse", ("z0", z0), ("z1", z1))?;
        let scale = 1.0 / self.temperature;
        let a = l2_normalize(z0)?;
        let b = l2_normalize(z1)?;
        let mut logits = (a.matmul(&b.t()?)? * scale)?;
        if let Some(hard) = inputs.opt("hard_negative") {
            same_dim("simcse", ("z0", z0), ("hard_negative", hard))?;
            let h = l2_normalize(hard)?;
            let extra = (a.matmul(&h.t()?)? * scale)?;
            logits = Tensor::cat(&[&logits, &extra], 1)?;
        }
        cross_entropy_diagonal(&logits)
    }
}

crate::register!(
    loss,
    "simcse",
    "SimCSE's in-batch cross-entropy over cosine similarities, optional hard negatives (Gao et al. 2021)",
    |p| Ok(Box::new(SimCse::new(p.extract()?)?))
);
