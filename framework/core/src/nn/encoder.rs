//! The encoder trait: a batch in, representations out.

use candle_core::Tensor;

use crate::batch::Batch;
use crate::data::DataMeta;
use crate::error::Result;
use crate::rng::Rng;

/// Per-forward state: training mode and the RNG for dropout and masking.
pub struct ForwardCtx {
    /// Training mode (dropout on, batch norm uses batch statistics).
    pub train: bool,
    /// Draws dropout masks and masking positions.
    pub rng: Rng,
}

impl ForwardCtx {
    /// Training mode with `rng`.
    pub fn train(rng: Rng) -> Self {
        ForwardCtx { train: true, rng }
    }

    /// Evaluation mode (no dropout, running batch-norm statistics).
    pub fn eval() -> Self {
        ForwardCtx {
            train: false,
            rng: Rng::new(0),
        }
    }
}

/// What an encoder constructor knows about the data.
#[derive(Clone, Debug)]
pub struct EncoderCtx {
    /// The training data's description (input shape, classes).
    pub meta: DataMeta,
}

/// Maps a batch to representations `[B, D]` (or `[B, T, D]` for sequence
/// encoders). Built from its config and a `VarBuilder` (`vb.pp("encoder")`).
pub trait Encoder: Send + Sync {
    /// Representations of `batch`.
    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor>;
    /// The size `D` of a representation.
    fn output_dim(&self) -> usize;
    /// Writes the encoder in its native exchange layout (e.g. Hugging Face's
    /// `config.json` + `model.safetensors`) into `dir`; returns the files
    /// written. Encoders without such a layout say so.
    fn export(&self, _dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
        Err(crate::error::Error::Recipe(
            "this encoder has no export format (export works for encoders loaded from or saved to the Hugging Face layout, e.g. `bert`)".into(),
        ))
    }
    /// The encoder as a dual image-text model (CLIP), when it is one.
    fn image_text(&self) -> Option<&dyn ImageText> {
        None
    }
}

/// A dual image-text encoder (CLIP, Radford et al. 2021): an image tower and
/// a text tower, each followed by a linear projection into one shared space,
/// and a learnable logit scale. Its [`Encoder::forward`] gives the image
/// tower's features (before the projection), which is what linear probes
/// and kNN evaluate.
pub trait ImageText: Send + Sync {
    /// Image embeddings `[B, E]` in the shared space (not normalised) of a
    /// batch with an `image` field.
    fn embed_image(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor>;
    /// Text embeddings `[B, E]` in the shared space (not normalised) of a
    /// batch with `input_ids` and `attention_mask` fields.
    fn embed_text(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor>;
    /// The learnable log inverse temperature: a variable's tensor of shape
    /// `[1]` (methods clamp it in place with `slice_set`).
    fn logit_scale(&self) -> &Tensor;
    /// The width `E` of the shared space.
    fn embed_dim(&self) -> usize;
}

/// A head: a small network on top of representations (projector, predictor).
pub trait Head: Send + Sync {
    /// Applies the head to `x [B, D_in]`.
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> Result<Tensor>;
    /// The output size.
    fn output_dim(&self) -> usize;
}
