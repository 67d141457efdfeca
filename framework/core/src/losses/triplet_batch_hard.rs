//! Triplet losses with in-batch mining from labels.
//!
//! - `batch_hard` (default): Hermans, Beyer, Leibe. "In Defense of the
//!   Triplet Loss for Person Re-Identification", 2017, eq. (5): for each
//!   anchor, the farthest sample of its label and the nearest sample of
//!   another label.
//! - `semi_hard`: Schroff, Kalenichenko, Philbin. "FaceNet", CVPR 2015,
//!   section 3.2: every anchor-positive pair with the nearest negative that
//!   is farther than the positive; where no negative is farther, the
//!   farthest negative (the convention of TensorFlow Addons'
//!   `triplet_semihard_loss`).
//! - `batch_all`: Hermans et al. 2017, eq. (6) "BA≠0": every valid triplet,
//!   averaged over the triplets with a non-zero loss.
//!
//! Inputs: `embeddings [N, D]` and integer `labels [N]`. Distances are
//! Euclidean and unnormalised. The loss is the mean of
//! `max(0, d(a, p) - d(a, n) + margin)` over the mined triplets; anchors
//! without a positive (another sample of their label) or without a negative
//! contribute nothing, and a batch without any valid triplet gives 0.
//! Mining uses the distances without gradient; the loss is differentiable in
//! the chosen distances. Output: a scalar.

use candle_core::{DType, Tensor, D};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::common::{check_non_negative, integer_values, matrix_dims};
use crate::losses::{Loss, LossInputs};

/// How triplets are chosen from the batch.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mining {
    /// Hardest positive and hardest negative per anchor (Hermans et al.).
    #[default]
    BatchHard,
    /// Every positive pair with its semi-hard negative (FaceNet).
    SemiHard,
    /// Every valid triplet, averaged over the non-zero ones (Hermans et al.).
    BatchAll,
}

/// Configuration of [`TripletBatchHard`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TripletBatchHardConfig {
    /// The margin: 0.2, FaceNet's `alpha` (Schroff et al. 2015, section 3).
    pub margin: f64,
    /// `"batch_hard"` (default), `"semi_hard"` or `"batch_all"`.
    pub mining: Mining,
}

impl Default for TripletBatchHardConfig {
    fn default() -> Self {
        TripletBatchHardConfig {
            margin: 0.2,
            mining: Mining::BatchHard,
        }
    }
}

/// The triplet loss with in-batch mining.
pub struct TripletBatchHard {
    margin: f64,
    mining: Mining,
}

impl TripletBatchHard {
    /// Builds the loss; the margin must be `>= 0`.
    pub fn new(cfg: TripletBatchHardConfig) -> Result<Self> {
        check_non_negative("triplet_batch_hard", "margin", cfg.margin)?;
        Ok(TripletBatchHard {
            margin: cfg.margin,
            mining: cfg.mining,
        })
    }
}

/// Squared distances of all pairs `[N, N]` from the Gram matrix, floored at 0.
fn squared_distances(e: &Tensor) -> Result<Tensor> {
    let sq = e.sqr()?.sum_keepdim(D::Minus1)?;
    let gram = e.matmul(&e.t()?)?;
    Ok(sq.broadcast_add(&sq.t()?)?.sub(&(gram * 2.0)?)?.relu()?)
}

/// `||e_i - e_j||` for the pairs `(i, j)` listed, by direct differences.
fn pair_distances(e: &Tensor, first: &[u32], second: &[u32]) -> Result<Tensor> {
    let dev = e.device();
    let a = e.index_select(&Tensor::new(first, dev)?, 0)?;
    let b = e.index_select(&Tensor::new(second, dev)?, 0)?;
    // The floor keeps the gradient finite (zero) for identical samples.
    Ok((a - b)?
        .sqr()?
        .sum(D::Minus1)?
        .clamp(1e-12, f64::INFINITY)?
        .sqrt()?)
}

impl Loss for TripletBatchHard {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        const NAME: &str = "triplet_batch_hard";
        let e = inputs.get(NAME, "embeddings")?;
        let labels = inputs.get(NAME, "labels")?;
        let (n, _) = matrix_dims(NAME, "embeddings", e)?;
        let labels = integer_values(NAME, "labels", labels)?;
        if labels.len() != n {
            return Err(Error::Shape(format!(
                "{NAME}: `embeddings` and `labels` must have the same batch size, got {n} and {}",
                labels.len()
            )));
        }
        let zero = || -> Result<Tensor> { Ok((e.sum_all()? * 0.0)?) };
        let dist: Vec<Vec<f64>> = squared_distances(&e.detach())?
            .to_dtype(DType::F64)?
            .to_vec2::<f64>()?;
        let same = |i: usize, j: usize| labels[i] == labels[j];

        if self.mining == Mining::BatchAll {
            // Every (a, p, n) with a != p of the same label and n of another.
            let mut ap = Vec::new();
            let mut an = Vec::new();
            for a in 0..n {
                for p in (0..n).filter(|&p| p != a && same(a, p)) {
                    for k in (0..n).filter(|&k| !same(a, k)) {
                        ap.push((a * n + p) as u32);
                        an.push((a * n + k) as u32);
                    }
                }
            }
            if ap.is_empty() {
                return zero();
            }
            let d = squared_distances(e)?
                .clamp(1e-12, f64::INFINITY)?
                .sqrt()?
                .flatten_all()?;
            let dev = e.device();
            let d_ap = d.index_select(&Tensor::new(ap.as_slice(), dev)?, 0)?;
            let d_an = d.index_select(&Tensor::new(an.as_slice(), dev)?, 0)?;
            let l = ((d_ap - d_an)? + self.margin)?.relu()?;
            let active = l
                .gt(0.0)?
                .to_dtype(DType::F64)?
                .sum_all()?
                .to_scalar::<f64>()?;
            if active == 0.0 {
                return zero();
            }
            return Ok((l.sum_all()? / active)?);
        }

        let (mut anchors, mut positives, mut negatives) = (Vec::new(), Vec::new(), Vec::new());
        for (a, da) in dist.iter().enumerate() {
            let negs: Vec<usize> = (0..n).filter(|&k| !same(a, k)).collect();
            if negs.is_empty() {
                continue;
            }
            let poss = (0..n).filter(|&p| p != a && same(a, p));
            match self.mining {
                Mining::BatchHard => {
                    let hardest_pos = poss.max_by(|&x, &y| da[x].total_cmp(&da[y]));
                    let hardest_neg = negs
                        .iter()
                        .copied()
                        .min_by(|&x, &y| da[x].total_cmp(&da[y]));
                    if let (Some(p), Some(k)) = (hardest_pos, hardest_neg) {
                        anchors.push(a as u32);
                        positives.push(p as u32);
                        negatives.push(k as u32);
                    }
                }
                Mining::SemiHard => {
                    for p in poss {
                        let d_ap = da[p];
                        let farther = negs
                            .iter()
                            .copied()
                            .filter(|&k| da[k] > d_ap)
                            .min_by(|&x, &y| da[x].total_cmp(&da[y]));
                        let k = farther.or_else(|| {
                            negs.iter()
                                .copied()
                                .max_by(|&x, &y| da[x].total_cmp(&da[y]))
                        });
                        if let Some(k) = k {
                            anchors.push(a as u32);
                            positives.push(p as u32);
                            negatives.push(k as u32);
                        }
                    }
                }
                Mining::BatchAll => unreachable!("handled above"),
            }
        }
        if anchors.is_empty() {
            return zero();
        }
        let d_ap = pair_distances(e, &anchors, &positives)?;
        let d_an = pair_distances(e, &anchors, &negatives)?;
        Ok(((d_ap - d_an)? + self.margin)?.relu()?.mean_all()?)
    }
}

crate::register!(
    loss,
    "triplet_batch_hard",
    "triplet loss with in-batch mining from labels: batch_hard, semi_hard or batch_all (Hermans et al. 2017)",
    |p| Ok(Box::new(TripletBatchHard::new(p.extract()?)?))
);
