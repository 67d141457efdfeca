//! wav2vec 2.0's codebook diversity loss.
//!
//! Baevski, Zhou, Mohamed, Auli. "wav2vec 2.0: A Framework for
//! Self-Supervised Learning of Speech Representations", NeurIPS 2020,
//! eq. (4), in fairseq's form `(G V - perplexity) / (G V)`.
//!
//! Input: `logits [T, G, V]`, the quantiser's logits for `T` steps, `G`
//! codebooks (groups) of `V` entries each (leading dimensions beyond three,
//! e.g. `[B, T, G, V]`, are flattened into the steps). With
//! `p_g = mean_t softmax(logits_t,g)` and
//! `H(p) = -sum_v p_v log(p_v + 1e-7)`, the perplexity is
//! `sum_g exp(H(p_g))` and the loss is `(G V - perplexity) / (G V)`: 0 when
//! every entry of every codebook is used equally. Output: a scalar.

use candle_core::{Tensor, D};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::common::softmax_last;
use crate::losses::{Loss, LossInputs};

/// The floor inside the logarithm of the entropy (fairseq's `1e-7`).
pub const ENTROPY_EPS: f64 = 1e-7;

/// Configuration of [`CodebookDiversity`]: the loss has no hyper-parameters
/// (its weight `alpha` in the total wav2vec 2.0 loss belongs to the method).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodebookDiversityConfig {}

/// The codebook diversity loss.
pub struct CodebookDiversity;

impl CodebookDiversity {
    /// Builds the loss.
    pub fn new(_cfg: CodebookDiversityConfig) -> Result<Self> {
        Ok(CodebookDiversity)
    }
}

impl Loss for CodebookDiversity {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let logits = inputs.get("codebook_diversity", "logits")?;
        let dims = logits.dims();
        if dims.len() < 3 || dims.contains(&0) {
            return Err(Error::Shape(format!(
                "codebook_diversity: `logits` must be [T, G, V] (non-empty), got {dims:?}"
            )));
        }
        let (g, v) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let steps = logits.elem_count() / (g * v);
        let probs = softmax_last(&logits.reshape((steps, g, v))?)?.mean(0)?;
        let entropy = ((probs.clone() + ENTROPY_EPS)?.log()? * probs)?
            .sum(D::Minus1)?
            .neg()?;
        let perplexity = entropy.exp()?.sum_all()?;
        let codes = (g * v) as f64;
        Ok(perplexity.affine(-1.0 / codes, 1.0)?)
    }
}

crate::register!(
    loss,
    "codebook_diversity",
    "wav2vec 2.0's diversity loss: (G V - codebook perplexity) / (G V) (Baevski et al. 2020)",
    |p| Ok(Box::new(CodebookDiversity::new(p.extract()?)?))
);
