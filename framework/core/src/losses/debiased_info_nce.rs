//! Debiased contrastive loss.
//!
//! Chuang, Robinson, Lin, Torralba, Jegelka. "Debiased Contrastive
//! Learning", NeurIPS 2020, eq. (6)-(7) (the SimCLR form of their code).
//!
//! Inputs: `z0 [N, D]`, `z1 [N, D]`, two views of the same `N` examples.
//! As in SimCLR the `2N` embeddings are L2-normalised and each has one
//! positive (the other view) and `M = 2N - 2` negatives. With
//! `pos = exp(s_pos / t)` and `neg_k = exp(s_k / t)`, the negative term is
//! corrected for the expected share `tau_plus` of same-class samples among
//! the negatives:
//! `Ng = max((sum_k neg_k - tau_plus M pos) / (1 - tau_plus), M e^{-1/t})`
//! and the loss is `mean(-log(pos / (pos + Ng)))`. With `tau_plus = 0` it is
//! NT-Xent. Output: a scalar.
//!
//! Everything is computed in log space, shifted by each row's largest term,
//! so that small temperatures cannot overflow.

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::common::{check_temperature, mask_value, same_shape};
use crate::losses::{l2_normalize, log_sum_exp_rows, Loss, LossInputs};

/// Configuration of [`DebiasedInfoNce`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebiasedInfoNceConfig {
    /// Softmax temperature: 0.5 (Chuang et al. 2020, section 6, as SimCLR).
    pub temperature: f64,
    /// The class prior `tau+`, the probability that a negative shares the
    /// anchor's class, in [0, 1): 0.1 (Chuang et al. 2020, CIFAR-10).
    pub tau_plus: f64,
}

impl Default for DebiasedInfoNceConfig {
    fn default() -> Self {
        DebiasedInfoNceConfig {
            temperature: 0.5,
            tau_plus: 0.1,
        }
    }
}

/// The debiased contrastive loss.
pub struct DebiasedInfoNce {
    temperature: f64,
    tau_plus: f64,
}

/// Checks that `tau_plus` is in [0, 1).
pub(crate) fn check_tau_plus(loss: &str, tau_plus: f64) -> Result<()> {
    if !(0.0..1.0).contains(&tau_plus) {
        return Err(Error::invalid(
            loss,
            format!("tau_plus must be in [0, 1), got {tau_plus}"),
        ));
    }
    Ok(())
}

impl DebiasedInfoNce {
    /// Builds the loss; the temperature must be positive and `tau_plus` in
    /// [0, 1).
    pub fn new(cfg: DebiasedInfoNceConfig) -> Result<Self> {
        check_temperature("debiased_info_nce", "temperature", cfg.temperature)?;
        check_tau_plus("debiased_info_nce", cfg.tau_plus)?;
        Ok(DebiasedInfoNce {
            temperature: cfg.temperature,
            tau_plus: cfg.tau_plus,
        })
    }
}

/// The debiased loss of `z0`, `z1`, with the negatives reweighted by
/// `w = neg^beta` (normalised to mean 1) when `beta > 0`: the common core of
/// `debiased_info_nce` (`beta = 0`) and `hard_negative_info_nce`.
pub(crate) fn debiased_loss(
    loss: &str,
    inputs: &LossInputs,
    temperature: f64,
    tau_plus: f64,
    beta: f64,
) -> Result<Tensor> {
    let z0 = inputs.get(loss, "z0")?;
    let z1 = inputs.get(loss, "z1")?;
    let (n, _) = same_shape(loss, ("z0", z0), ("z1", z1))?;
    if n < 2 {
        return Err(Error::Shape(format!(
            "{loss}: needs at least 2 examples (2 negatives per anchor), got {n}"
        )));
    }
    let m2 = 2 * n;
    let negatives = (m2 - 2) as f64;
    let dev = z0.device();
    let z = l2_normalize(&Tensor::cat(&[z0, z1], 0)?)?;
    let logits = (z.matmul(&z.t()?)? / temperature)?;
    let partner: Vec<u32> = (0..m2).map(|i| ((i + n) % m2) as u32).collect();
    let pos = logits
        .gather(&Tensor::from_vec(partner.clone(), (m2, 1), dev)?, 1)?
        .squeeze(1)?;
    // additive mask of the anchor itself and its positive
    let big = mask_value(z.dtype());
    let mut mask = vec![0f64; m2 * m2];
    for (i, &p) in partner.iter().enumerate() {
        mask[i * m2 + i] = big;
        mask[i * m2 + p as usize] = big;
    }
    let mask = Tensor::from_vec(mask, (m2, m2), dev)?.to_dtype(z.dtype())?;
    // log of the (reweighted) sum of the negatives
    let log_neg = if beta == 0.0 {
        log_sum_exp_rows(&(&logits + &mask)?)?
    } else {
        let num = log_sum_exp_rows(&((&logits * (1.0 + beta))? + &mask)?)?;
        let den = log_sum_exp_rows(&((&logits * beta)? + &mask)?)?;
        ((num - den)? + negatives.ln())?
    };
    // shift each row by its largest term (no gradient through the shift)
    let shift = pos.detach().maximum(&log_neg.detach())?;
    let pos_s = (&pos - &shift)?;
    let neg_s = (&log_neg - &shift)?.exp()?;
    let raw = ((neg_s - (pos_s.exp()? * (tau_plus * negatives))?)? / (1.0 - tau_plus))?;
    let floor = (shift.affine(-1.0, -1.0 / temperature)?.exp()? * negatives)?;
    let ng = raw.maximum(&floor)?;
    let per_anchor = ((pos_s.exp()? + ng)?.log()? - pos_s)?;
    Ok(per_anchor.mean_all()?)
}

impl Loss for DebiasedInfoNce {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        debiased_loss(
            "debiased_info_nce",
            inputs,
            self.temperature,
            self.tau_plus,
            0.0,
        )
    }
}

crate::register!(
    loss,
    "debiased_info_nce",
    "debiased contrastive loss correcting for false negatives with a class prior tau_plus (Chuang et al. 2020)",
    |p| Ok(Box::new(DebiasedInfoNce::new(p.extract()?)?))
);
