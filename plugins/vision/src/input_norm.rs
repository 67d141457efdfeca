//! Per-channel input normalisation inside an encoder, so that data sources
//! keep pixels in [0, 1] and a checkpoint carries its own statistics.

use candle_core::{Device, Tensor};
use parallax_core::error::{Error, Result};

/// `(x − mean) / std` per channel on `[B, C, H, W]` images.
pub struct InputNorm {
    mean: Tensor,
    inv_std: Tensor,
}

impl InputNorm {
    /// `mean` and `std` hold one value for all channels or one per channel;
    /// `who` names the encoder in errors.
    pub fn new(
        who: &str,
        mean: &[f32],
        std: &[f32],
        channels: usize,
        device: &Device,
    ) -> Result<Self> {
        if std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return Err(Error::invalid(who, "std values must be > 0"));
        }
        let per_channel = |v: &[f32], what: &str| -> Result<Tensor> {
            let v = match v.len() {
                1 => vec![v[0]; channels],
                n if n == channels => v.to_vec(),
                n => {
                    return Err(Error::invalid(
                        who,
                        format!("{what} has {n} values; the images have {channels} channels"),
                    ))
                }
            };
            Ok(Tensor::from_vec(v, (1, channels, 1, 1), device)?)
        };
        let mean = per_channel(mean, "mean")?;
        let inv_std = per_channel(std, "std")?.recip()?;
        Ok(InputNorm { mean, inv_std })
    }

    /// Normalises `x: [B, C, H, W]`, in `x`'s dtype (bf16/f16 under mixed
    /// precision).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (mean, inv_std) = if x.dtype() == self.mean.dtype() {
            (self.mean.clone(), self.inv_std.clone())
        } else {
            (
                self.mean.to_dtype(x.dtype())?,
                self.inv_std.to_dtype(x.dtype())?,
            )
        };
        Ok(x.broadcast_sub(&mean)?.broadcast_mul(&inv_std)?)
    }
}

/// The channel count of the training images, for an image encoder `who`;
/// an error when the data source gives no images.
pub fn image_channels(ctx: &parallax_core::nn::encoder::EncoderCtx, who: &str) -> Result<usize> {
    ctx.meta.image_shape.map(|s| s[0]).ok_or_else(|| {
        Error::invalid(
            who,
            "the data source does not provide images (no image shape)",
        )
    })
}
