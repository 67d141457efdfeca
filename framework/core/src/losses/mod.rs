//! The loss library: one loss per file, registered under the names of the
//! reference fixtures (`tests/fixtures/losses/`).

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::error::{Error, Result};

pub mod alignment;
pub mod byol;
pub mod clip;
pub mod codebook_diversity;
pub mod common;
pub mod curl_bilinear;
pub mod debiased_info_nce;
pub mod dino;
pub mod hard_negative_info_nce;
pub mod info_nce;
pub mod nt_xent;
pub mod simcse;
pub mod simsiam;
pub mod spectral;
pub mod triplet;
pub mod triplet_batch_hard;
pub mod uniformity;
pub mod verify;
pub mod wav2vec2_contrastive;

pub use common::{l2_normalize, log_sum_exp_rows};

/// Named inputs of a loss (`z0`, `z1`, `query`, `key`, `queue`, `labels`,
/// ...), following the fixture names.
#[derive(Clone, Debug, Default)]
pub struct LossInputs {
    tensors: BTreeMap<String, Tensor>,
}

impl LossInputs {
    /// No inputs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name`.
    pub fn with(mut self, name: &str, t: Tensor) -> Self {
        self.tensors.insert(name.to_string(), t);
        self
    }

    /// Adds `name`.
    pub fn insert(&mut self, name: &str, t: Tensor) {
        self.tensors.insert(name.to_string(), t);
    }

    /// The input `name`, or an error naming the loss and the input.
    pub fn get(&self, loss: &str, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| {
            Error::Shape(format!(
                "loss `{loss}` needs input `{name}` (given: {})",
                self.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The input `name` if given.
    pub fn opt(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }
}

/// A loss: named inputs in, a scalar out (shape `[]`).
pub trait Loss: Send + Sync {
    /// The loss value; differentiable in the inputs that are not stop-gradient.
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor>;
}
