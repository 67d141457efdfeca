//! NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.
//!
//! Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive
//! Learning of Visual Representations", ICML 2020, eq. (1).
//!
//! Inputs: `z0 [N, D]`, `z1 [N, D]`, two views of the same `N` examples.
//! The `2N` embeddings are L2-normalised; for each, the positive is the other
//! view of its example and the negatives are the other `2N - 2` embeddings.
//! The loss is the mean over the `2N` anchors of
//! `-log(exp(s_pos / t) / sum_{k != i} exp(s_ik / t))` (lightly's
//! `NTXentLoss` with `memory_bank_size = 0`).

use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::{log_sum_exp_rows, l2_normalize, Loss, LossInputs};

/// Configuration of [`NtXent`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NtXentConfig {
    /// Softmax temperature; SimCLR's default for its batch sizes is 0.5
    /// (lightly's default), 0.1 in the paper's best ImageNet runs.
    pub temperature: f64,
}

impl Default for NtXentConfig {
    fn default() -> Self {
        NtXentConfig { temperature: 0.5 }
    }
}

/// The NT-Xent loss.
pub struct NtXent {
    temperature: f64,
}

impl NtXent {
    /// Builds the loss; the temperature must be positive.
    pub fn new(cfg: NtXentConfig) -> Result<Self> {
        if !(cfg.temperature > 0.0 && cfg.temperature.is_finite()) {
            return Err(Error::invalid(
                "nt_xent",
                format!("temperature must be > 0, got {}", cfg.temperature),
            ));
        }
        Ok(NtXent {
            temperature: cfg.temperature,
        })
    }
}

impl Loss for NtXent {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let z0 = inputs.get("nt_xent", "z0")?;
        let z1 = inputs.get("nt_xent", "z1")?;
        if z0.dims() != z1.dims() || z0.rank() != 2 {
            return Err(Error::Shape(format!(
                "nt_xent: z0 and z1 must be [N, D] of the same shape, got {:?} and {:?}",
                z0.dims(),
                z1.dims()
            )));
        }
        let n = z0.dim(0)?;
        let z = l2_normalize(&Tensor::cat(&[z0, z1], 0)?)?;
        let logits = (z.matmul(&z.t()?)? / self.temperature)?;
        // mask out self-similarity with a large negative number
        let eye = Tensor::eye(2 * n, DType::F32, z.device())?.to_dtype(z.dtype())?;
        let logits = (logits - (eye * 1e9)?)?;
        // positives: i <-> i + n
        let pos_idx: Vec<u32> = (0..2 * n).map(|i| ((i + n) % (2 * n)) as u32).collect();
        let pos_idx = Tensor::from_vec(pos_idx, (2 * n, 1), z.device())?;
        let pos = logits.gather(&pos_idx, 1)?.squeeze(1)?;
        let lse = log_sum_exp_rows(&logits)?;
        Ok((lse - pos)?.mean_all()?)
    }
}

crate::register!(
    loss,
    "nt_xent",
    "SimCLR's normalised temperature-scaled cross-entropy (Chen et al. 2020)",
    |p| Ok(Box::new(NtXent::new(p.extract()?)?))
);
