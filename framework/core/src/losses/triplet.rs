//! The triplet margin loss on given (anchor, positive, negative) triplets.
//!
//! Schroff, Kalenichenko, Philbin. "FaceNet: A Unified Embedding for Face
//! Recognition and Clustering", CVPR 2015, eq. (1)-(2); in the form of
//! PyTorch's `nn.TripletMarginLoss` (Euclidean distance, `eps = 1e-6` added
//! to the difference).
//!
//! Inputs: `anchor [N, D]`, `positive [N, D]`, `negative [N, D]`. With
//! `d(x, y) = ||x - y + eps||_2`, the loss is
//! `mean_i max(0, d(a_i, p_i) - d(a_i, n_i) + margin)`. Output: a scalar.

use candle_core::{Tensor, D};
use serde::Deserialize;

use crate::error::Result;
use crate::losses::common::{check_non_negative, same_shape};
use crate::losses::{Loss, LossInputs};

/// The constant PyTorch's `pairwise_distance` adds to the difference.
pub const DISTANCE_EPS: f64 = 1e-6;

/// Configuration of [`Triplet`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TripletConfig {
    /// The margin between positive and negative distances: 1.0, the default
    /// of PyTorch's `TripletMarginLoss` for unnormalised embeddings (FaceNet
    /// uses 0.2 on unit-norm embeddings).
    pub margin: f64,
}

impl Default for TripletConfig {
    fn default() -> Self {
        TripletConfig { margin: 1.0 }
    }
}

/// The triplet margin loss.
pub struct Triplet {
    margin: f64,
}

impl Triplet {
    /// Builds the loss; the margin must be `>= 0`.
    pub fn new(cfg: TripletConfig) -> Result<Self> {
        check_non_negative("triplet", "margin", cfg.margin)?;
        Ok(Triplet { margin: cfg.margin })
    }
}

/// `||x - y + eps||_2` row-wise.
fn distance(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(((x - y)? + DISTANCE_EPS)?.sqr()?.sum(D::Minus1)?.sqrt()?)
}

impl Loss for Triplet {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let a = inputs.get("triplet", "anchor")?;
        let p = inputs.get("triplet", "positive")?;
        let n = inputs.get("triplet", "negative")?;
        same_shape("triplet", ("anchor", a), ("positive", p))?;
        same_shape("triplet", ("anchor", a), ("negative", n))?;
        let d = ((distance(a, p)? - distance(a, n)?)? + self.margin)?;
        Ok(d.relu()?.mean_all()?)
    }
}

crate::register!(
    loss,
    "triplet",
    "triplet margin loss on given anchor/positive/negative triplets (Schroff et al. 2015)",
    |p| Ok(Box::new(Triplet::new(p.extract()?)?))
);
