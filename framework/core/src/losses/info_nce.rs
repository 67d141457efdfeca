//! InfoNCE with a queue of negatives, as in MoCo.
//!
//! He, Fan, Wu, Xie, Girshick. "Momentum Contrast for Unsupervised Visual
//! Representation Learning", CVPR 2020, eq. (1) (the InfoNCE loss of van den
//! Oord, Li, Vinyals 2018).
//!
//! Inputs:
//! - `query [N, D]`: the query encoder's embeddings (differentiable);
//! - `key [N, D]`: the momentum encoder's embeddings of the other view, the
//!   positives (stop-gradient: no gradient flows into `key`);
//! - `queue [K, D]`: the negatives, keys of earlier batches (stop-gradient).
//!
//! All three are L2-normalised; the logits of query `i` are
//! `[q_i . k_i, q_i . queue_1, ..., q_i . queue_K] / t` and the loss is the
//! mean cross-entropy with the positive at column 0. Output: a scalar.

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::Result;
use crate::losses::common::{check_temperature, row_dot, same_dim, same_shape};
use crate::losses::{l2_normalize, log_sum_exp_rows, Loss, LossInputs};

/// Configuration of [`InfoNce`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfoNceConfig {
    /// Softmax temperature: 0.07 in MoCo (He et al. 2020, section 3.3);
    /// MoCo v2 (Chen et al. 2020) uses 0.2.
    pub temperature: f64,
}

impl Default for InfoNceConfig {
    fn default() -> Self {
        InfoNceConfig { temperature: 0.07 }
    }
}

/// MoCo's InfoNCE loss.
pub struct InfoNce {
    temperature: f64,
}

impl InfoNce {
    /// Builds the loss; the temperature must be positive.
    pub fn new(cfg: InfoNceConfig) -> Result<Self> {
        check_temperature("info_nce", "temperature", cfg.temperature)?;
        Ok(InfoNce {
            temperature: cfg.temperature,
        })
    }
}

impl Loss for InfoNce {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let query = inputs.get("info_nce", "query")?;
        let key = inputs.get("info_nce", "key")?;
        let queue = inputs.get("info_nce", "queue")?;
        same_shape("info_nce", ("query", query), ("key", key))?;
        same_dim("info_nce", ("query", query), ("queue", queue))?;
        let scale = 1.0 / self.temperature;
        let q = l2_normalize(query)?;
        let k = l2_normalize(&key.detach())?;
        let queue = l2_normalize(&queue.detach())?;
        let pos = (row_dot(&q, &k)? * scale)?.unsqueeze(1)?;
        let neg = (q.matmul(&queue.t()?)? * scale)?;
        let logits = Tensor::cat(&[&pos, &neg], 1)?;
        let lse = log_sum_exp_rows(&logits)?;
        Ok((lse - pos.squeeze(1)?)?.mean_all()?)
    }
}

crate::register!(
    loss,
    "info_nce",
    "MoCo's InfoNCE with a queue of negatives; key and queue are stop-gradient (He et al. 2020)",
    |p| Ok(Box::new(InfoNce::new(p.extract()?)?))
);
