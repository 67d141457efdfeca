//! A small convolutional encoder for 28x28 / 32x32 images.
//!
//! Stages of (3x3 convolution, batch norm, ReLU) x `convs_per_stage`, with
//! 2x2 max-pooling between stages and average pooling at the end: over the
//! whole map (`pool_grid = 1`, the default), or into a `pool_grid` x
//! `pool_grid` grid of overlapping windows, flattened, which keeps where
//! in the image a feature is. The representation size is the last stage's
//! width times `pool_grid`². The input is
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
use parallax_core::ops::pool::{avg_pool2d_with, max_pool2d, Pool2dConfig};
use serde::Deserialize;

/// `[encoder] name = "small_cnn"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmallCnnConfig {
    /// Width of each stage; the last one is the representation size.
    pub channels: Vec<usize>,
    /// Convolutions per stage.
    pub convs_per_stage: usize,
    /// Side of the grid the last feature map is averaged into (1: global
    /// average pooling).
    pub pool_grid: usize,
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
            pool_grid: 1,
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
    pool_grid: usize,
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
        if cfg.pool_grid == 0 {
            return Err(Error::invalid("small_cnn", "pool_grid must be at least 1"));
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
            pool_grid: cfg.pool_grid,
            out_dim: c_in * cfg.pool_grid * cfg.pool_grid,
        })
    }
}

impl SmallCnn {
    /// The last stage's feature map `[B, C, H', W']` of `image`, before the
    /// final pooling.
    pub fn feature_map(&self, image: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        if image.rank() != 4 {
            return Err(Error::Shape(format!(
                "small_cnn expects images [B, C, H, W], got {:?}",
                image.dims()
            )));
        }
        let mut x = self.norm.forward(image)?;
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
        Ok(x)
    }
}

impl Encoder for SmallCnn {
    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = self.feature_map(batch.get("image")?, ctx)?;
        let g = self.pool_grid;
        if g == 1 {
            return Ok(x.mean(3)?.mean(2)?);
        }
        // g windows per axis, `stride` apart, together covering the map
        let (b, h, w) = (x.dim(0)?, x.dim(2)?, x.dim(3)?);
        if h < g || w < g {
            return Err(Error::Shape(format!(
                "small_cnn: the last feature map is {h}x{w}, smaller than pool_grid = {g}"
            )));
        }
        let (sh, sw) = (h / g, w / g);
        let cfg = Pool2dConfig {
            kernel: (h - (g - 1) * sh, w - (g - 1) * sw),
            stride: (sh, sw),
            padding: (0, 0),
        };
        Ok(avg_pool2d_with(&x, &cfg)?.reshape((b, self.out_dim))?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use parallax_core::nn::init::VarStore;

    fn net(pool_grid: usize) -> Result<SmallCnn> {
        let cfg = SmallCnnConfig {
            channels: vec![4, 6],
            pool_grid,
            ..Default::default()
        };
        let store = VarStore::new(3);
        SmallCnn::new(&cfg, 1, store.var_builder(DType::F32, &Device::Cpu))
    }

    #[test]
    fn a_pool_grid_averages_overlapping_windows_of_the_last_map() {
        let x = parallax_core::rng::Rng::new(1)
            .uniform_tensor((2, 1, 14, 14), 0.0, 1.0, DType::F32, &Device::Cpu)
            .unwrap();
        let mut b = Batch::default();
        b.tensors.insert("image".into(), x.clone());
        let mut ctx = ForwardCtx::eval();
        let n1 = net(1).unwrap();
        let n2 = net(2).unwrap();
        assert_eq!(n1.output_dim(), 6);
        assert_eq!(n2.output_dim(), 24);
        let map = n2.feature_map(&x, &ctx).unwrap();
        assert_eq!(map.dims(), &[2, 6, 7, 7]);
        let g1 = n1.forward(&b, &mut ctx).unwrap();
        let want = map.mean(3).unwrap().mean(2).unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(
            diff(&g1, &want) < 1e-6,
            "same seed, same weights: global average"
        );
        // a 7x7 map into 2x2 cells: windows of 4 at stride 3 (rows 0-3, 3-6)
        let g2 = n2
            .forward(&b, &mut ctx)
            .unwrap()
            .reshape((2, 6, 2, 2))
            .unwrap();
        for (i, r) in [0usize, 3].into_iter().enumerate() {
            for (j, c) in [0usize, 3].into_iter().enumerate() {
                let cell = map
                    .narrow(2, r, 4)
                    .unwrap()
                    .narrow(3, c, 4)
                    .unwrap()
                    .mean(3)
                    .unwrap()
                    .mean(2)
                    .unwrap();
                let got = g2.narrow(2, i, 1).unwrap().narrow(3, j, 1).unwrap();
                assert!(
                    diff(&got.reshape((2, 6)).unwrap(), &cell) < 1e-5,
                    "cell ({i}, {j})"
                );
            }
        }
        assert!(net(0).is_err());
        assert!(
            net(8).unwrap().forward(&b, &mut ctx).is_err(),
            "a 7x7 map has no 8x8 grid"
        );
    }
}
