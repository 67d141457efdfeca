//! The weighted k-nearest-neighbour monitor.
//!
//! Wu, Xiong, Yu, Lin. "Unsupervised Feature Learning via Non-Parametric
//! Instance Discrimination", CVPR 2018, Sec. 3.4: features are
//! L2-normalised, the `k` most cosine-similar training examples vote for
//! their class with weight `exp(s / temperature)` (k = 200, t = 0.07 in the
//! paper; k = 20 and t = 0.1 are common for small datasets and used here).

use serde::Deserialize;

use crate::data::Split;
use crate::error::{Error, Result};
use crate::eval::features::{extract, source, subset};
use crate::eval::{EvalCtx, Evaluator};
use crate::losses::l2_normalize;

/// `[[eval]] name = "knn"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnnConfig {
    /// Neighbours that vote.
    pub k: usize,
    /// Vote weight temperature.
    pub temperature: f64,
    /// Run every this many epochs (0: only at the start and the end).
    pub every_epochs: usize,
    /// Use at most this many training examples as the memory bank.
    pub train_limit: Option<usize>,
    /// Use at most this many test examples as queries.
    pub test_limit: Option<usize>,
    /// Batch size for feature extraction.
    pub batch_size: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            k: 20,
            temperature: 0.1,
            every_epochs: 1,
            train_limit: None,
            test_limit: None,
            batch_size: 512,
        }
    }
}

/// The kNN evaluator.
pub struct Knn {
    cfg: KnnConfig,
}

impl Knn {
    /// Validates the configuration.
    pub fn new(cfg: KnnConfig) -> Result<Self> {
        if cfg.k == 0 {
            return Err(Error::invalid("knn", "k must be at least 1"));
        }
        if cfg.temperature.is_nan() || cfg.temperature <= 0.0 {
            return Err(Error::invalid(
                "knn",
                format!("temperature must be > 0, got {}", cfg.temperature),
            ));
        }
        Ok(Knn { cfg })
    }
}

/// Weighted kNN accuracy of `queries` against `bank` (both `[N, D]`,
/// normalised inside), with integer labels in `0..num_classes`.
pub fn knn_accuracy(
    bank: &candle_core::Tensor,
    bank_labels: &[i64],
    queries: &candle_core::Tensor,
    query_labels: &[i64],
    k: usize,
    temperature: f64,
) -> Result<f64> {
    let num_classes = bank_labels
        .iter()
        .chain(query_labels)
        .copied()
        .max()
        .unwrap_or(0)
        .max(0) as usize
        + 1;
    let bank = l2_normalize(bank)?;
    let queries = l2_normalize(queries)?;
    let k = k.min(bank_labels.len());
    let mut correct = 0usize;
    let chunk = 256;
    let mut start = 0;
    while start < query_labels.len() {
        let len = chunk.min(query_labels.len() - start);
        let sims = queries
            .narrow(0, start, len)?
            .matmul(&bank.t()?)?
            .to_vec2::<f32>()?;
        for (row, &truth) in sims.iter().zip(&query_labels[start..start + len]) {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
            let mut votes = vec![0f64; num_classes];
            for &j in &idx[..k] {
                votes[bank_labels[j] as usize] += ((row[j] as f64) / temperature).exp();
            }
            let pred = votes
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(c, _)| c as i64)
                .unwrap_or(-1);
            if pred == truth {
                correct += 1;
            }
        }
        start += len;
    }
    Ok(correct as f64 / query_labels.len().max(1) as f64)
}

impl Evaluator for Knn {
    fn every_epochs(&self) -> usize {
        self.cfg.every_epochs
    }

    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Vec<(String, f64)>> {
        let train = source(ctx, Split::Train)?;
        let test = source(ctx, Split::Test)?;
        let tr = subset(train.len(), self.cfg.train_limit, ctx.seed, "knn/train");
        let te = subset(test.len(), self.cfg.test_limit, ctx.seed, "knn/test");
        let (bank, bank_labels) = extract(
            ctx.encoder,
            train.as_ref(),
            &tr,
            ctx.device,
            self.cfg.batch_size,
        )?;
        let (q, q_labels) = extract(
            ctx.encoder,
            test.as_ref(),
            &te,
            ctx.device,
            self.cfg.batch_size,
        )?;
        if bank_labels.iter().chain(&q_labels).any(|&l| l < 0) {
            return Err(Error::Data("knn: labels must be non-negative".into()));
        }
        let acc = knn_accuracy(
            &bank,
            &bank_labels,
            &q,
            &q_labels,
            self.cfg.k,
            self.cfg.temperature,
        )?;
        Ok(vec![("knn/top1".into(), acc)])
    }
}

crate::register!(
    evaluator,
    "knn",
    "weighted kNN accuracy on frozen features (Wu et al. 2018): k=20, t=0.1, cosine",
    |p, _ctx| Ok(Box::new(Knn::new(p.extract()?)?))
);

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn separable_clusters_are_classified_and_shuffled_labels_are_not() {
        // two clusters around (1, 0) and (0, 1)
        let pts: Vec<f32> = (0..40)
            .flat_map(|i| {
                let e = (i % 7) as f32 * 0.01;
                if i % 2 == 0 {
                    [1.0, e]
                } else {
                    [e, 1.0]
                }
            })
            .collect();
        let x = Tensor::from_vec(pts, (40, 2), &Device::Cpu).unwrap();
        let y: Vec<i64> = (0..40).map(|i| i % 2).collect();
        let acc = knn_accuracy(&x, &y, &x, &y, 5, 0.1).unwrap();
        assert_eq!(acc, 1.0);
        let wrong: Vec<i64> = (0..40).map(|i| 1 - i % 2).collect();
        let acc = knn_accuracy(&x, &y, &x, &wrong, 5, 0.1).unwrap();
        assert_eq!(acc, 0.0);
    }
}
