//! A small convolutional encoder for 28x28 / 32x32 images.
//!
//! Stages of (3x3 convolution, batch norm, ReLU) x `convs_per_stage`, with
//! 2x2 max-pooling between stages and global average pooling at the end;
//! the representation size is the last stage's width. The input is
//! normalised with `mean` / `std` inside the encoder, so data sources keep
//! pixels in [0, 1].
//!
//! Convolution, batch norm (+ ReLU) and max-pooling run on the project's
//! kernels (`parallax_core::ops`: im2col + GEMM, fused batch norm,
//! pooling), each gradient-checked: Candle's own `max_pool2d` backward
//! divides the gradient by kernel² (`candle_defect_*` in parallax-core's
//! `tests/gradcheck_conv.rs`).

use crate::input_norm::{image_channels, InputNorm};
use candle_core::Tensor;
use candle_nn::init::DEFAULT_KAIMING_NORMAL;
use candle_nn::VarBuilder;
use parallax_core::batch::Batch;
use parallax_core::error::{Error, Result};
use parallax_core::nn::batch_norm::BatchNorm;
use parallax_core::nn::encoder::{Encoder, EncoderCtx, ForwardCtx};
use parallax_core::ops::conv2d::conv2d;
use parallax_core::ops::pool::max_pool2d;
use serde::Deserialize;

/// `[encoder] name = "small_cnn"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmallCnnConfig {
    /// Width of each stage; the last one is the representation size.
    pub channels: Vec<usize>,
    /// Convolutions per stage.
    pub convs_per_stage: usize,
    /// Per-channel mean subtracted from the input (one value for all channels or one per channel).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation the input is divided by.
    pub std: Vec<f32>,
}

impl Default for SmallCnnConfig {
    fn default() -> Self {
        // Fashion-MNIST's pixel mean and std.
        SmallCnnConfig {
            channels: vec![32, 64, 128],
            convs_per_stage: 1,
            mean: vec![0.286],
            std: vec![0.353],
        }
    }
}

struct ConvBn {
    weight: Tensor,
    bn: BatchNorm,
}

/// The small CNN encoder.
pub struct SmallCnn {
    stages: Vec<Vec<ConvBn>>,
    norm: InputNorm,
    out_dim: usize,
}

impl SmallCnn {
    /// Builds the encoder for images with `in_channels` channels.
    pub fn new(cfg: &SmallCnnConfig, in_channels: usize, vb: VarBuilder) -> Result<Self> {
        if cfg.channels.is_empty() || cfg.channels.contains(&0) {
            return Err(Error::invalid(
                "small_cnn",
                "channels must be a non-empty list of positive widths",
            ));
        }
        if cfg.convs_per_stage == 0 {
            return Err(Error::invalid(
                "small_cnn",
                "convs_per_stage must be at least 1",
            ));
        }
        let norm = InputNorm::new("small_cnn", &cfg.mean, &cfg.std, in_channels, vb.device())?;
        let mut stages = Vec::new();
        let mut c_in = in_channels;
        for (s, &c) in cfg.channels.iter().enumerate() {
            let mut convs = Vec::new();
            for k in 0..cfg.convs_per_stage {
                let vb = vb.pp(format!("stage{s}.{k}"));
                let weight =
                    vb.get_with_hints((c, c_in, 3, 3), "conv.weight", DEFAULT_KAIMING_NORMAL)?;
                let bn = BatchNorm::new(c, vb.pp("bn"))?;
                convs.push(ConvBn { weight, bn });
                c_in = c;
            }
            stages.push(convs);
        }
        Ok(SmallCnn {
            stages,
            norm,
            out_dim: c_in,
        })
    }
}

impl Encoder for SmallCnn {
    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = batch.get("image")?;
        if x.rank() != 4 {
            return Err(Error::Shape(format!(
                "small_cnn expects images [B, C, H, W], got {:?}",
                x.dims()
            )));
        }
        let mut x = self.norm.forward(x)?;
        let last = self.stages.len() - 1;
        for (s, stage) in self.stages.iter().enumerate() {
            for cb in stage {
                x = conv2d(&x, &cb.weight, 1, 1)?;
                x = cb.bn.forward(&x, ctx.train, true)?;
            }
            if s < last && x.dim(2)? >= 2 && x.dim(3)? >= 2 {
                x = max_pool2d(&x, 2, 2, 0)?;
            }
        }
        Ok(x.mean(3)?.mean(2)?)
    }

    fn output_dim(&self) -> usize {
        self.out_dim
    }
}

fn build(
    p: &parallax_core::recipe::Params,
    ctx: &EncoderCtx,
    vb: VarBuilder<'static>,
) -> Result<Box<dyn Encoder>> {
    let cfg: SmallCnnConfig = p.extract()?;
    let c = image_channels(ctx, "small_cnn")?;
    Ok(Box::new(SmallCnn::new(&cfg, c, vb)?))
}

parallax_core::register!(
    encoder,
    "small_cnn",
    "a small CNN: stages of 3x3 conv + BN + ReLU, max-pool between, global average pool",
    build
);
