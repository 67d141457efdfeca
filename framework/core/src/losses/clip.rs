//! CLIP's symmetric contrastive loss.
//!
//! Radford et al. "Learning Transferable Visual Models From Natural Language
//! Supervision", ICML 2021, figure 3.
//!
//! Inputs: `image [N, D]` and `text [N, D]`, the embeddings of `N` matching
//! pairs, and `logit_scale [1]` (or `[]`), the learnable log inverse
//! temperature. Both embeddings are L2-normalised; the logits are
//! `exp(logit_scale) * image · textᵀ` (`[N, N]`), and the loss is the mean of
//! the cross-entropy over rows (image → text) and over columns (text →
//! image), with the matching pair as target. If `logit_scale` is not given,
//! the fixed temperature of the configuration is used. Output: a scalar.
//!
//! CLIP clips `exp(logit_scale)` at 100 by clamping the parameter after each
//! optimiser step; that belongs to the model, not to the loss.

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::common::{check_temperature, cross_entropy_diagonal, same_shape};
use crate::losses::{l2_normalize, Loss, LossInputs};

/// Configuration of [`Clip`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClipConfig {
    /// The temperature used when no `logit_scale` input is given: 0.07,
    /// CLIP's initial value (Radford et al. 2021, section 2.5).
    pub temperature: f64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        ClipConfig { temperature: 0.07 }
    }
}

/// The CLIP loss.
pub struct Clip {
    temperature: f64,
}

impl Clip {
    /// Builds the loss; the temperature must be positive.
    pub fn new(cfg: ClipConfig) -> Result<Self> {
        check_temperature("clip", "temperature", cfg.temperature)?;
        Ok(Clip {
            temperature: cfg.temperature,
        })
    }
}

impl Loss for Clip {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let image = inputs.get("clip", "image")?;
        let text = inputs.get("clip", "text")?;
        same_shape("clip", ("image", image), ("text", text))?;
        let sim = l2_normalize(image)?.matmul(&l2_normalize(text)?.t()?)?;
        let logits = match inputs.opt("logit_scale") {
            Some(s) => {
                if s.elem_count() != 1 {
                    return Err(Error::Shape(format!(
                        "clip: `logit_scale` must hold one value, got shape {:?}",
                        s.dims()
                    )));
                }
                let scale = s.flatten_all()?.exp()?.reshape(())?;
                sim.broadcast_mul(&scale)?
            }
            None => (sim / self.temperature)?,
        };
        let rows = cross_entropy_diagonal(&logits)?;
        let cols = cross_entropy_diagonal(&logits.t()?.contiguous()?)?;
        Ok(((rows + cols)? * 0.5)?)
    }
}

crate::register!(
    loss,
    "clip",
    "CLIP's symmetric image-text cross-entropy with a learnable logit scale (Radford et al. 2021)",
    |p| Ok(Box::new(Clip::new(p.extract()?)?))
);
