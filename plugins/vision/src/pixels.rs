//! The raw-pixel baseline: an image encoder without parameters whose
//! representation is the image itself, normalised and flattened.
//!
//! A linear probe or kNN on raw pixels is the floor every learned
//! representation is measured against (e.g. Coates, Lee & Ng, AISTATS 2011,
//! and the linear-classifier baselines of the MNIST and Fashion-MNIST
//! papers). `[encoder] name = "pixels"` gives it with the same probes,
//! label draws and standardisation as the trained encoders:
//! `scripts/label-efficiency.sh` reports it as its "raw pixels + linear"
//! row (`recipes/label-efficiency/pixels.toml`, evaluated without training).

use crate::input_norm::InputNorm;
use candle_core::Tensor;
use candle_nn::VarBuilder;
use parallax_core::batch::Batch;
use parallax_core::error::{Error, Result};
use parallax_core::nn::encoder::{Encoder, EncoderCtx, ForwardCtx};
use serde::Deserialize;

/// `[encoder] name = "pixels"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PixelsConfig {
    /// Per-channel mean subtracted from the input (one value for all
    /// channels or one per channel): Fashion-MNIST's 0.286.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation the input is divided by: 0.353.
    pub std: Vec<f32>,
}

impl Default for PixelsConfig {
    fn default() -> Self {
        PixelsConfig {
            mean: vec![0.286],
            std: vec![0.353],
        }
    }
}

/// The identity encoder on `[C, H, W]` images: `C·H·W` values each.
pub struct Pixels {
    norm: InputNorm,
    shape: [usize; 3],
}

impl Pixels {
    /// The encoder for images of `shape` `[C, H, W]`.
    pub fn new(cfg: &PixelsConfig, shape: [usize; 3], vb: &VarBuilder) -> Result<Self> {
        let norm = InputNorm::new("pixels", &cfg.mean, &cfg.std, shape[0], vb.device())?;
        Ok(Pixels { norm, shape })
    }
}

impl Encoder for Pixels {
    fn forward(&self, batch: &Batch, _ctx: &mut ForwardCtx) -> Result<Tensor> {
        let image = batch.get("image")?;
        let (b, c, h, w) = image.dims4().map_err(|_| {
            Error::Shape(format!(
                "pixels expects images [B, C, H, W], got {:?}",
                image.dims()
            ))
        })?;
        if [c, h, w] != self.shape {
            return Err(Error::Shape(format!(
                "pixels: images of {c}x{h}x{w}, but the encoder was built for the data's {}x{}x{} (its representation size is fixed)",
                self.shape[0], self.shape[1], self.shape[2]
            )));
        }
        Ok(self.norm.forward(image)?.reshape((b, c * h * w))?)
    }

    fn output_dim(&self) -> usize {
        self.shape.iter().product()
    }
}

fn build(
    p: &parallax_core::recipe::Params,
    ctx: &EncoderCtx,
    vb: VarBuilder<'static>,
) -> Result<Box<dyn Encoder>> {
    let cfg: PixelsConfig = p.extract()?;
    let shape = ctx.meta.image_shape.ok_or_else(|| {
        Error::invalid(
            "pixels",
            "the data source does not provide images (no image shape)",
        )
    })?;
    Ok(Box::new(Pixels::new(&cfg, shape, &vb)?))
}

parallax_core::register!(
    encoder,
    "pixels",
    "raw pixels, normalised and flattened (no parameters): the baseline for probes and kNN",
    build
);

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use parallax_core::nn::init::VarStore;

    #[test]
    fn the_representation_is_the_normalised_image_flattened() {
        let store = VarStore::new(0);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let cfg = PixelsConfig {
            mean: vec![0.5, 0.25],
            std: vec![0.5, 2.0],
        };
        let enc = Pixels::new(&cfg, [2, 3, 4], &vb).unwrap();
        assert_eq!(enc.output_dim(), 24);
        let x = parallax_core::rng::Rng::new(4)
            .uniform_tensor((5, 2, 3, 4), 0.0, 1.0, DType::F32, &Device::Cpu)
            .unwrap();
        let mut b = Batch::default();
        b.tensors.insert("image".into(), x.clone());
        let got = enc.forward(&b, &mut ForwardCtx::eval()).unwrap();
        assert_eq!(got.dims(), &[5, 24]);
        let x = x.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        let got = got.to_vec2::<f32>().unwrap();
        for (row, want) in got.iter().zip(&x) {
            for (i, (g, v)) in row.iter().zip(want).enumerate() {
                // the first 12 values are channel 0, the next 12 channel 1
                let (m, s) = if i < 12 { (0.5, 0.5) } else { (0.25, 2.0) };
                assert!((g - (v - m) / s).abs() < 1e-6, "value {i}: {g} vs {v}");
            }
        }
        // another image size is an error that says so
        let mut b = Batch::default();
        b.tensors.insert(
            "image".into(),
            Tensor::zeros((1, 2, 4, 4), DType::F32, &Device::Cpu).unwrap(),
        );
        let err = enc.forward(&b, &mut ForwardCtx::eval()).unwrap_err();
        assert!(err.to_string().contains("2x4x4"), "{err}");
        assert!(Pixels::new(&PixelsConfig::default(), [3, 2, 2], &vb).is_ok());
        let bad = PixelsConfig {
            mean: vec![0.0, 0.0],
            std: vec![1.0, 1.0],
        };
        assert!(
            Pixels::new(&bad, [3, 2, 2], &vb).is_err(),
            "2 means, 3 channels"
        );
    }
}
