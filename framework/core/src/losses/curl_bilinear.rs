//! CURL's bilinear contrastive loss.
//!
//! Laskin, Srinivas, Abbeel. "CURL: Contrastive Unsupervised
//! Representations for Reinforcement Learning", ICML 2020, section 4.4 and
//! figure 3.
//!
//! Inputs: `anchor [B, D]` (the query encoder's embeddings), `positive
//! [B, D]` (the momentum key encoder's embeddings of the other crop,
//! stop-gradient) and `w [D, D]`, the learnable bilinear matrix. The logits
//! are `anchor · W · positiveᵀ` (`[B, B]`), shifted by each row's maximum
//! (no gradient through the shift), and the loss is the mean cross-entropy
//! with target `i` for row `i`. Output: a scalar.

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::common::{cross_entropy_diagonal, same_shape};
use crate::losses::{Loss, LossInputs};

/// Configuration of [`CurlBilinear`]: the loss has no hyper-parameters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CurlBilinearConfig {}

/// The CURL loss.
pub struct CurlBilinear;

impl CurlBilinear {
    /// Builds the loss.
    pub fn new(_cfg: CurlBilinearConfig) -> Result<Self> {
        Ok(CurlBilinear)
    }
}

impl Loss for CurlBilinear {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let anchor = inputs.get("curl_bilinear", "anchor")?;
        let positive = inputs.get("curl_bilinear", "positive")?;
        let w = inputs.get("curl_bilinear", "w")?;
        let (_, d) = same_shape("curl_bilinear", ("anchor", anchor), ("positive", positive))?;
        if w.dims() != [d, d] {
            return Err(Error::Shape(format!(
                "curl_bilinear: `w` must be [{d}, {d}] for embeddings of dimension {d}, got {:?}",
                w.dims()
            )));
        }
        let wz = w.matmul(&positive.detach().t()?)?;
        let logits = anchor.matmul(&wz)?;
        // cross_entropy_diagonal subtracts the detached row maximum
        cross_entropy_diagonal(&logits)
    }
}

crate::register!(
    loss,
    "curl_bilinear",
    "CURL's bilinear-similarity cross-entropy, positives stop-gradient (Laskin et al. 2020)",
    |p| Ok(Box::new(CurlBilinear::new(p.extract()?)?))
);
