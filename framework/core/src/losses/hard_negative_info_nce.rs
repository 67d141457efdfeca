//! Contrastive loss with hard negative sampling.
//!
//! Robinson, Chuang, Sra, Jegelka. "Contrastive Learning with Hard Negative
//! Samples", ICLR 2021, eq. (3)-(5) (the SimCLR form of their code).
//!
//! Inputs: `z0 [N, D]`, `z1 [N, D]`, two views of the same `N` examples. As
//! [`debiased_info_nce`](crate::losses::debiased_info_nce), but the sum of
//! the negatives `sum_k neg_k` is replaced by the importance-weighted
//! `sum_k w_k neg_k / mean_k w_k` with `w_k = neg_k^beta`, which puts more
//! weight on negatives close to the anchor (the weights are differentiated
//! through, as in the paper's code). With `beta = 0` it is the debiased loss.
//! Output: a scalar.

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::Result;
use crate::losses::common::{check_non_negative, check_temperature};
use crate::losses::debiased_info_nce::{check_tau_plus, debiased_loss};
use crate::losses::{Loss, LossInputs};

/// Configuration of [`HardNegativeInfoNce`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HardNegativeInfoNceConfig {
    /// Softmax temperature: 0.5 (Robinson et al. 2021, section 5.1, as SimCLR).
    pub temperature: f64,
    /// The class prior `tau+` of the debiasing, in [0, 1): 0.1 (Robinson et
    /// al. 2021, CIFAR-10).
    pub tau_plus: f64,
    /// The concentration `beta >= 0` of the hardness weights: 1.0 (Robinson
    /// et al. 2021, CIFAR-10).
    pub beta: f64,
}

impl Default for HardNegativeInfoNceConfig {
    fn default() -> Self {
        HardNegativeInfoNceConfig {
            temperature: 0.5,
            tau_plus: 0.1,
            beta: 1.0,
        }
    }
}

/// The hard-negative contrastive loss.
pub struct HardNegativeInfoNce {
    temperature: f64,
    tau_plus: f64,
    beta: f64,
}

impl HardNegativeInfoNce {
    /// Builds the loss; the temperature must be positive, `tau_plus` in
    /// [0, 1) and `beta >= 0`.
    pub fn new(cfg: HardNegativeInfoNceConfig) -> Result<Self> {
        check_temperature("hard_negative_info_nce", "temperature", cfg.temperature)?;
        check_tau_plus("hard_negative_info_nce", cfg.tau_plus)?;
        check_non_negative("hard_negative_info_nce", "beta", cfg.beta)?;
        Ok(HardNegativeInfoNce {
            temperature: cfg.temperature,
            tau_plus: cfg.tau_plus,
            beta: cfg.beta,
        })
    }
}

impl Loss for HardNegativeInfoNce {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        debiased_loss(
            "hard_negative_info_nce",
            inputs,
            self.temperature,
            self.tau_plus,
            self.beta,
        )
    }
}

crate::register!(
    loss,
    "hard_negative_info_nce",
    "debiased contrastive loss with hardness-weighted negatives, beta (Robinson et al. 2021)",
    |p| Ok(Box::new(HardNegativeInfoNce::new(p.extract()?)?))
);
