//! wav2vec 2.0's contrastive loss over quantised targets and distractors.
//!
//! Baevski, Zhou, Mohamed, Auli. "wav2vec 2.0: A Framework for
//! Self-Supervised Learning of Speech Representations", NeurIPS 2020,
//! eq. (3) (fairseq's `Wav2Vec2Model` and `Wav2vecCriterion`).
//!
//! Inputs, for the `T` masked time steps (of all utterances, flattened):
//! - `context [T, D]`: the context network's outputs `c_t`;
//! - `targets [T, D]`: the quantised latents `q_t`, the positives;
//! - `negative_indices [T, K]` (integer): for each step the rows of
//!   `targets` used as distractors (sampled from the same utterance).
//!
//! The logits of step `t` are `cos(c_t, q)/kappa` for the candidates
//! `[q_t, q_{neg_t,1}, ..., q_{neg_t,K}]`; a distractor whose index is `t`
//! itself is masked out (as fairseq masks negatives equal to the positive).
//! The loss is `sum_t -log softmax(logits_t)[0]`, summed over the steps as
//! fairseq does. Output: a scalar.

use candle_core::{Tensor, D};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::common::{check_temperature, integer_values, mask_value, row_dot, same_shape};
use crate::losses::{l2_normalize, log_sum_exp_rows, Loss, LossInputs};

/// Configuration of [`Wav2Vec2Contrastive`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Wav2Vec2ContrastiveConfig {
    /// The temperature `kappa`: 0.1 (Baevski et al. 2020, section 3.2).
    pub temperature: f64,
}

impl Default for Wav2Vec2ContrastiveConfig {
    fn default() -> Self {
        Wav2Vec2ContrastiveConfig { temperature: 0.1 }
    }
}

/// The wav2vec 2.0 contrastive loss.
pub struct Wav2Vec2Contrastive {
    temperature: f64,
}

impl Wav2Vec2Contrastive {
    /// Builds the loss; the temperature must be positive.
    pub fn new(cfg: Wav2Vec2ContrastiveConfig) -> Result<Self> {
        check_temperature("wav2vec2_contrastive", "temperature", cfg.temperature)?;
        Ok(Wav2Vec2Contrastive {
            temperature: cfg.temperature,
        })
    }
}

impl Loss for Wav2Vec2Contrastive {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        const NAME: &str = "wav2vec2_contrastive";
        let context = inputs.get(NAME, "context")?;
        let targets = inputs.get(NAME, "targets")?;
        let neg = inputs.get(NAME, "negative_indices")?;
        let (t, d) = same_shape(NAME, ("context", context), ("targets", targets))?;
        let k = match neg.dims() {
            &[rows, k] if rows == t => k,
            dims => {
                return Err(Error::Shape(format!(
                    "{NAME}: `negative_indices` must be [T, K] with T = {t} (the rows of \
                     `context`), got {dims:?}"
                )))
            }
        };
        let idx = integer_values(NAME, "negative_indices", neg)?;
        if let Some(bad) = idx.iter().find(|&&i| i < 0 || i as usize >= t) {
            return Err(Error::Shape(format!(
                "{NAME}: `negative_indices` holds {bad}, outside the {t} rows of `targets`"
            )));
        }
        let dev = context.device();
        let scale = 1.0 / self.temperature;
        let c = l2_normalize(context)?;
        let q = l2_normalize(targets)?;
        let pos = (row_dot(&c, &q)? * scale)?.unsqueeze(1)?;
        let mut logits = pos.clone();
        if k > 0 {
            let flat: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
            let negs = q
                .index_select(&Tensor::from_vec(flat, t * k, dev)?, 0)?
                .reshape((t, k, d))?;
            let mut neg_logits = (negs.broadcast_mul(&c.unsqueeze(1)?)?.sum(D::Minus1)? * scale)?;
            let self_hits: Vec<f64> = idx
                .iter()
                .enumerate()
                .map(|(j, &i)| {
                    if i as usize == j / k {
                        mask_value(c.dtype())
                    } else {
                        0.0
                    }
                })
                .collect();
            if self_hits.iter().any(|&v| v != 0.0) {
                let mask = Tensor::from_vec(self_hits, (t, k), dev)?.to_dtype(c.dtype())?;
                neg_logits = (neg_logits + mask)?;
            }
            logits = Tensor::cat(&[&pos, &neg_logits], 1)?;
        }
        Ok((log_sum_exp_rows(&logits)? - pos.squeeze(1)?)?.sum_all()?)
    }
}

crate::register!(
    loss,
    "wav2vec2_contrastive",
    "wav2vec 2.0's contrastive loss: cosine logits of context vs true and distractor targets (Baevski et al. 2020)",
    |p| Ok(Box::new(Wav2Vec2Contrastive::new(p.extract()?)?))
);
