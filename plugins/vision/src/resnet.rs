//! ResNet-18/34/50 encoders with a CIFAR or an ImageNet stem.
//!
//! He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition",
//! CVPR 2016: four stages of basic blocks (18, 34) or bottleneck blocks
//! (50, expansion 4), batch norm after every convolution, global average
//! pooling at the end. The CIFAR stem (3x3 convolution, stride 1, no
//! max-pool) is the one SimCLR uses for 32x32 images; the ImageNet stem is
//! a 7x7 stride-2 convolution followed by a 3x3 stride-2 max-pool.
//!
//! Variables follow torchvision's names (`conv1.weight`, `bn1.*`,
//! `layer1.0.conv1.weight`, `layer2.0.downsample.0.weight`, ...), so that
//! checkpoints keep that layout. Convolutions and batch norm (+ ReLU) run on
//! the project's gradient-checked kernels (`parallax_core::ops`).
//!
//! `pretrained` loads a checkpoint in these names (timm's and torchvision's
//! ResNets, converted to safetensors): a `.safetensors` file, a folder
//! holding `model.safetensors`, or a Hugging Face Hub id such as
//! `timm/resnet18.a1_in1k` (see [`crate::pretrained`]). The classifier
//! (`fc.*`) and `num_batches_tracked` are ignored; every other tensor must
//! match a variable in name and shape. Hugging Face transformers'
//! `ResNetModel` / `ResNetForImageClassification` layout
//! (`resnet.embedder.embedder.convolution.weight`,
//! `encoder.stages.S.layers.B.layer.I.convolution.weight`, ...) is
//! recognised and renamed to torchvision's ([`hf_to_torchvision`]).

use candle_core::Tensor;
use candle_nn::init::{FanInOut, Init, NonLinearity, NormalOrUniform};
use candle_nn::VarBuilder;
use parallax_core::batch::Batch;
use parallax_core::error::{Error, Result};
use parallax_core::nn::batch_norm::BatchNorm;
use parallax_core::nn::conv_bn::ConvBn;
use parallax_core::nn::encoder::{Encoder, EncoderCtx, ForwardCtx};
use parallax_core::nn::residual::Residual;
use parallax_core::ops::conv2d::Conv2dConfig;
use parallax_core::ops::pool::max_pool2d;
use serde::Deserialize;

use crate::input_norm::{image_channels, InputNorm};
use crate::pretrained::{open_optional, Recorder};

/// The first layers of the network.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3x3 convolution, stride 1, no max-pool (32x32 images).
    #[default]
    Cifar,
    /// 7x7 convolution, stride 2, then a 3x3 stride-2 max-pool (224x224).
    Imagenet,
}

/// `[encoder] name = "resnet"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResNetConfig {
    /// 18, 34 or 50.
    pub depth: usize,
    /// `cifar` or `imagenet`.
    pub stem: Stem,
    /// Width of the first stage (64 in the paper); stages double it.
    pub width: usize,
    /// Start every residual branch at zero (the last batch norm's scale is
    /// initialised to 0; Goyal et al. 2017). Off, as in torchvision.
    pub zero_init_residual: bool,
    /// Per-channel mean subtracted from the input (one value or one per channel).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation the input is divided by.
    pub std: Vec<f32>,
    /// Pretrained weights in torchvision / timm names: a `.safetensors`
    /// file, a folder holding `model.safetensors`, or a Hub id.
    pub pretrained: Option<String>,
    /// The Hub revision (branch, tag or commit) of `pretrained`.
    pub revision: Option<String>,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        // ImageNet statistics: what torchvision's pretrained weights expect.
        ResNetConfig {
            depth: 18,
            stem: Stem::Cifar,
            width: 64,
            zero_init_residual: false,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
            pretrained: None,
            revision: None,
        }
    }
}

/// Kaiming-normal initialisation with fan-out (torchvision's for convs).
const CONV_INIT: Init = Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: NonLinearity::ReLU,
};

/// A bias-free convolution followed by batch norm: `conv{idx}.weight` and
/// `bn{idx}.*` under `vb` (torchvision's names); `idx` empty gives
/// `0.weight` / `1.*` (a downsample branch).
fn conv_bn(
    vb: &VarBuilder,
    idx: &str,
    (c_in, c_out): (usize, usize),
    k: usize,
    stride: usize,
    zero_gamma: bool,
) -> Result<ConvBn> {
    let (conv, bn) = if idx.is_empty() {
        ("0".to_string(), "1".to_string())
    } else {
        (format!("conv{idx}"), format!("bn{idx}"))
    };
    let weight = vb
        .pp(conv)
        .get_with_hints((c_out, c_in, k, k), "weight", CONV_INIT)?;
    let bn = if zero_gamma {
        BatchNorm::with_scale(c_out, 0.0, vb.pp(bn))?
    } else {
        BatchNorm::new(c_out, vb.pp(bn))?
    };
    Ok(ConvBn::new(weight, Conv2dConfig::square(stride, k / 2), bn))
}

/// The ResNet encoder; its representation is the pooled last stage.
pub struct ResNet {
    norm: InputNorm,
    stem: ConvBn,
    max_pool: bool,
    blocks: Vec<Residual>,
    out_dim: usize,
}

impl ResNet {
    /// Builds the network for images with `in_channels` channels, then
    /// loads `cfg.pretrained` into it when set.
    pub fn new(cfg: &ResNetConfig, in_channels: usize, vb: VarBuilder) -> Result<Self> {
        let mut ckpt = open_optional("resnet", cfg.pretrained.as_deref(), cfg.revision.as_deref())?;
        if let Some(c) = ckpt.as_mut() {
            if is_hf_layout(&c.tensors) {
                c.tensors = hf_to_torchvision(std::mem::take(&mut c.tensors));
            }
        }
        let recorder = Recorder::new();
        let vb = recorder.wrap(vb);
        let net = Self::build(cfg, in_channels, &vb)?;
        if let Some(ckpt) = ckpt {
            ckpt.load_into(&vb, &recorder.vars(), &["fc.", "classifier."])?;
        }
        Ok(net)
    }

    fn build(cfg: &ResNetConfig, in_channels: usize, vb: &VarBuilder) -> Result<Self> {
        let (blocks_per_stage, bottleneck): (&[usize], bool) = match cfg.depth {
            18 => (&[2, 2, 2, 2], false),
            34 => (&[3, 4, 6, 3], false),
            50 => (&[3, 4, 6, 3], true),
            d => {
                return Err(Error::invalid(
                    "resnet",
                    format!("depth must be 18, 34 or 50, got {d}"),
                ))
            }
        };
        if cfg.width == 0 {
            return Err(Error::invalid("resnet", "width must be positive"));
        }
        let norm = InputNorm::new("resnet", &cfg.mean, &cfg.std, in_channels, vb.device())?;
        let w = cfg.width;
        let stem = match cfg.stem {
            Stem::Cifar => conv_bn(vb, "1", (in_channels, w), 3, 1, false)?,
            Stem::Imagenet => conv_bn(vb, "1", (in_channels, w), 7, 2, false)?,
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let mut blocks = Vec::new();
        let mut c_in = w;
        for (s, &n) in blocks_per_stage.iter().enumerate() {
            let width = w << s;
            let c_out = width * expansion;
            for b in 0..n {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                let vb = vb.pp(format!("layer{}.{b}", s + 1));
                let z = cfg.zero_init_residual;
                let convs = if bottleneck {
                    vec![
                        conv_bn(&vb, "1", (c_in, width), 1, 1, false)?,
                        conv_bn(&vb, "2", (width, width), 3, stride, false)?,
                        conv_bn(&vb, "3", (width, c_out), 1, 1, z)?,
                    ]
                } else {
                    vec![
                        conv_bn(&vb, "1", (c_in, width), 3, stride, false)?,
                        conv_bn(&vb, "2", (width, c_out), 3, 1, z)?,
                    ]
                };
                let downsample = if stride != 1 || c_in != c_out {
                    Some(conv_bn(
                        &vb.pp("downsample"),
                        "",
                        (c_in, c_out),
                        1,
                        stride,
                        false,
                    )?)
                } else {
                    None
                };
                blocks.push(Residual::new(convs, downsample)?);
                c_in = c_out;
            }
        }
        Ok(ResNet {
            norm,
            stem,
            max_pool: cfg.stem == Stem::Imagenet,
            blocks,
            out_dim: c_in,
        })
    }

    /// The pooled features of images `x: [B, C, H, W]` in [0, 1].
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if x.rank() != 4 {
            return Err(Error::Shape(format!(
                "resnet expects images [B, C, H, W], got {:?}",
                x.dims()
            )));
        }
        let mut x = self.stem.forward(&self.norm.forward(x)?, train, true)?;
        if self.max_pool {
            x = max_pool2d(&x, 3, 2, 1)?;
        }
        for b in &self.blocks {
            x = b.forward(&x, train)?;
        }
        Ok(x.mean(3)?.mean(2)?)
    }
}

impl Encoder for ResNet {
    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        self.features(batch.get("image")?, ctx.train)
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
    let cfg: ResNetConfig = p.extract()?;
    let c = image_channels(ctx, "resnet")?;
    Ok(Box::new(ResNet::new(&cfg, c, vb)?))
}

parallax_core::register!(
    encoder,
    "resnet",
    "ResNet-18/34/50 (He et al. 2016) with a CIFAR (3x3, no max-pool) or ImageNet stem",
    build
);

/// Whether `tensors` use Hugging Face transformers' ResNet names.
pub fn is_hf_layout(tensors: &std::collections::HashMap<String, Tensor>) -> bool {
    tensors
        .keys()
        .any(|k| k.starts_with("embedder.") || k.starts_with("resnet.embedder."))
}

/// Renames Hugging Face `ResNetModel` tensors to torchvision's: the stem
/// `embedder.embedder.{convolution,normalization}` to `conv1` / `bn1`,
/// `encoder.stages.S.layers.B.layer.I.{convolution,normalization}` to
/// `layer{S+1}.B.conv{I+1}` / `bn{I+1}`, and `...shortcut.{convolution,
/// normalization}` to `downsample.0` / `downsample.1` (the `resnet.` prefix
/// dropped). Other names are kept (the classifier is ignored when loading).
pub fn hf_to_torchvision(
    tensors: std::collections::HashMap<String, Tensor>,
) -> std::collections::HashMap<String, Tensor> {
    let part = |p: &str, conv: &str, bn: &str| -> Option<String> {
        if let Some(rest) = p.strip_prefix("convolution.") {
            Some(format!("{conv}.{rest}"))
        } else {
            p.strip_prefix("normalization.")
                .map(|rest| format!("{bn}.{rest}"))
        }
    };
    tensors
        .into_iter()
        .map(|(k, v)| {
            let name = k.strip_prefix("resnet.").unwrap_or(&k);
            let renamed = if let Some(p) = name.strip_prefix("embedder.embedder.") {
                part(p, "conv1", "bn1")
            } else if let Some(p) = name.strip_prefix("encoder.stages.") {
                let f: Vec<&str> = p.splitn(4, '.').collect();
                match (
                    f.as_slice(),
                    f.first().and_then(|s| s.parse::<usize>().ok()),
                ) {
                    ([_, "layers", b, rest], Some(stage)) => {
                        let prefix = format!("layer{}.{b}", stage + 1);
                        if let Some(r) = rest.strip_prefix("shortcut.") {
                            part(
                                r,
                                &format!("{prefix}.downsample.0"),
                                &format!("{prefix}.downsample.1"),
                            )
                        } else if let Some(r) = rest.strip_prefix("layer.") {
                            r.split_once('.').and_then(|(i, r)| {
                                let i = i.parse::<usize>().ok()?;
                                part(
                                    r,
                                    &format!("{prefix}.conv{}", i + 1),
                                    &format!("{prefix}.bn{}", i + 1),
                                )
                            })
                        } else {
                            None
                        }
                    }
                    _ => None,
                }
            } else {
                None
            };
            (renamed.unwrap_or(k), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use parallax_core::nn::init::VarStore;
    use parallax_core::rng::Rng;

    fn build(cfg: &ResNetConfig, seed: u64) -> (VarStore, ResNet) {
        let store = VarStore::new(seed);
        let net = ResNet::new(cfg, 3, store.var_builder(DType::F32, &Device::Cpu)).unwrap();
        (store, net)
    }

    /// Trainable parameters (running statistics excluded).
    fn trainable(store: &VarStore) -> usize {
        store
            .named_vars()
            .iter()
            .filter(|(n, _)| !n.contains("running_"))
            .map(|(_, v)| v.elem_count())
            .sum()
    }

    #[test]
    fn parameter_counts_match_torchvision() {
        // torchvision's resnet18/34/50 without the final fc layer.
        for (depth, stem, expected) in [
            (18, Stem::Imagenet, 11_176_512),
            (18, Stem::Cifar, 11_168_832),
            (34, Stem::Imagenet, 21_284_672),
            (50, Stem::Imagenet, 23_508_032),
        ] {
            let cfg = ResNetConfig {
                depth,
                stem,
                ..Default::default()
            };
            let (store, net) = build(&cfg, 0);
            assert_eq!(trainable(&store), expected, "resnet{depth} {stem:?}");
            assert_eq!(net.output_dim(), if depth == 50 { 2048 } else { 512 });
        }
    }

    #[test]
    fn torchvision_variable_names() {
        let (store, _) = build(&ResNetConfig::default(), 0);
        let names: Vec<String> = store.named_vars().into_iter().map(|(n, _)| n).collect();
        for n in [
            "conv1.weight",
            "bn1.running_var",
            "layer1.0.conv2.weight",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.bias",
            "layer4.1.bn2.weight",
        ] {
            assert!(names.iter().any(|m| m == n), "missing {n}");
        }
        assert!(!names.iter().any(|m| m.starts_with("layer1.0.downsample")));
    }

    #[test]
    fn forward_shapes_and_gradients_reach_every_weight() {
        for (depth, stem, size) in [(18, Stem::Cifar, 8), (50, Stem::Imagenet, 32)] {
            let cfg = ResNetConfig {
                depth,
                stem,
                width: 4,
                zero_init_residual: true,
                ..Default::default()
            };
            let (store, net) = build(&cfg, 1);
            let x = Rng::new(2)
                .uniform_tensor((2, 3, size, size), 0.0, 1.0, DType::F32, &Device::Cpu)
                .unwrap();
            let y = net.features(&x, true).unwrap();
            assert_eq!(y.dims(), &[2, net.output_dim()]);
            let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in store.named_vars() {
                if name.contains("running_") {
                    continue;
                }
                let g = grads.get(v.as_tensor());
                assert!(g.is_some(), "resnet{depth}: no gradient for {name}");
            }
            // evaluation mode uses the running statistics
            let e = net.features(&x, false).unwrap();
            assert_eq!(e.dims(), y.dims());
        }
    }

    #[test]
    fn rejects_bad_configs() {
        let store = VarStore::new(0);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let bad = ResNetConfig {
            depth: 20,
            ..Default::default()
        };
        let e = ResNet::new(&bad, 3, vb.clone()).err().unwrap().to_string();
        assert!(e.contains("depth must be 18, 34 or 50"), "{e}");
        let e = ResNet::new(&ResNetConfig::default(), 2, vb)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("mean has 3 values"), "{e}");
    }
}
