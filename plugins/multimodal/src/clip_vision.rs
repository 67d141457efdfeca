//! CLIP's image tower (Radford et al., "Learning Transferable Visual Models
//! From Natural Language Supervision", ICML 2021), a Vision Transformer in
//! Hugging Face transformers' `CLIPVisionModel` layout.
//!
//! The image (pixels in [0, 1]) is normalised with CLIP's per-channel
//! statistics, cut into `patch_size`² patches embedded by a convolution
//! with kernel = stride = patch size and no bias; a learned class embedding
//! is prepended and learned position embeddings added; a layer norm
//! (`pre_layrnorm`, Hugging Face's spelling), the pre-norm transformer of
//! [`crate::clip_layers`], and the class token's state through
//! `post_layernorm` is the representation.
//!
//! ```toml
//! [encoder]
//! name = "clip_vision"
//! hidden_size = 768
//! intermediate_size = 3072
//! num_hidden_layers = 12
//! num_attention_heads = 12
//! patch_size = 32
//! # image_size, num_channels: default from the data
//! hidden_act = "quick_gelu"      # or "gelu"
//! layer_norm_eps = 1e-5
//! mean = [0.48145466, 0.4578275, 0.40821073]
//! std = [0.26862954, 0.26130258, 0.27577711]
//! attention_dropout = 0.0
//! dropout = 0.0
//! ```
//!
//! Grey images fed to a 3-channel tower are repeated over the channels. A
//! 1-channel tower with the default statistics uses their averages.
//! Variables (relative to the tower's builder, `vision_model.` in a Hugging
//! Face CLIP checkpoint): `embeddings.class_embedding` `[D]`,
//! `embeddings.patch_embedding.weight` `[D, C, P, P]`,
//! `embeddings.position_embedding.weight` `[N + 1, D]`,
//! `pre_layrnorm.*`, `encoder.layers.{i}.*`, `post_layernorm.*`.

use candle_core::{DType, Module, Tensor};
use candle_nn::{Init, VarBuilder};
use parallax_core::batch::Batch;
use parallax_core::data::DataMeta;
use parallax_core::error::{Error, Result};
use parallax_core::nn::encoder::{Encoder, EncoderCtx, ForwardCtx};
use parallax_core::ops::conv2d::conv2d;
use parallax_core::ops::layer_norm::LayerNorm;
use parallax_vision::input_norm::InputNorm;
use serde::Deserialize;

use crate::clip_layers::{Activation, ClipEncoder, ClipEncoderConfig};

const WHO: &str = "clip_vision";

/// OpenAI CLIP's per-channel (RGB) pixel mean.
// the published values, digit for digit (f32 rounds the last ones)
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
/// OpenAI CLIP's per-channel (RGB) pixel standard deviation.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

/// `[encoder] name = "clip_vision"` options. Defaults are Hugging Face's
/// `CLIPVisionConfig` (OpenAI's ViT-B/32 image tower, Radford et al. 2021:
/// width 768, 12 layers, 12 heads, 32 px patches), except that the image
/// size and channels follow the data.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClipVisionConfig {
    /// Token width (768).
    pub hidden_size: usize,
    /// MLP hidden width (3072).
    pub intermediate_size: usize,
    /// Transformer layers (12).
    pub num_hidden_layers: usize,
    /// Attention heads (12); must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Side of the square input images; default from the data (Hugging
    /// Face's default is 224).
    pub image_size: Option<usize>,
    /// Side of the square patches (32); must divide `image_size`.
    pub patch_size: usize,
    /// Input channels; default from the data (Hugging Face's is 3).
    pub num_channels: Option<usize>,
    /// MLP activation: `quick_gelu` (CLIP's) or `gelu`.
    pub hidden_act: Activation,
    /// Layer-norm epsilon (1e-5).
    pub layer_norm_eps: f64,
    /// Per-channel mean subtracted from the [0, 1] pixels (one value or one
    /// per channel; CLIP's by default).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation the pixels are divided by (CLIP's).
    pub std: Vec<f32>,
    /// Dropout on the attention probabilities (0, as in CLIP).
    pub attention_dropout: f64,
    /// Dropout on the residual branches' outputs (0, as in CLIP).
    pub dropout: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        ClipVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: None,
            patch_size: 32,
            num_channels: None,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            mean: CLIP_MEAN.to_vec(),
            std: CLIP_STD.to_vec(),
            attention_dropout: 0.0,
            dropout: 0.0,
        }
    }
}

fn average(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

impl ClipVisionConfig {
    /// The configuration with `image_size` and `num_channels` filled from
    /// the data's image shape `[C, H, W]`, and the default statistics
    /// averaged for a 1-channel tower.
    pub fn resolve(&self, meta: &DataMeta) -> Result<Self> {
        let image_size = match (self.image_size, meta.image_shape) {
            (Some(s), _) => s,
            (None, Some([_, h, w])) if h == w => h,
            (None, Some([_, h, w])) => {
                return Err(Error::invalid(
                    WHO,
                    format!("the images are {h}x{w}; the tower needs square images (or set image_size)"),
                ))
            }
            (None, None) => {
                return Err(Error::invalid(
                    WHO,
                    "the data source does not provide images (no image shape); set image_size and num_channels",
                ))
            }
        };
        let num_channels =
            match (self.num_channels, meta.image_shape) {
                (Some(c), _) => c,
                (None, Some([c, _, _])) => c,
                (None, None) => return Err(Error::invalid(
                    WHO,
                    "the data source does not provide images (no image shape); set num_channels",
                )),
            };
        let mut out = ClipVisionConfig {
            image_size: Some(image_size),
            num_channels: Some(num_channels),
            ..self.clone()
        };
        if num_channels == 1 {
            if out.mean == CLIP_MEAN {
                out.mean = vec![average(&CLIP_MEAN)];
            }
            if out.std == CLIP_STD {
                out.std = vec![average(&CLIP_STD)];
            }
        }
        Ok(out)
    }

    /// The transformer's architecture.
    pub fn encoder_config(&self) -> ClipEncoderConfig {
        ClipEncoderConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            hidden_act: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
            attention_dropout: self.attention_dropout,
            dropout: self.dropout,
        }
    }

    /// Checks the values (of a resolved configuration).
    pub fn validate(&self) -> Result<()> {
        self.encoder_config().validate(WHO)?;
        let image = self.image_size.unwrap_or(0);
        let channels = self.num_channels.unwrap_or(0);
        if image == 0 || channels == 0 || self.patch_size == 0 {
            return Err(Error::invalid(
                WHO,
                "`image_size`, `patch_size` and `num_channels` must be positive",
            ));
        }
        if image % self.patch_size != 0 {
            return Err(Error::invalid(
                WHO,
                format!(
                    "`patch_size` {} does not divide `image_size` {image}",
                    self.patch_size
                ),
            ));
        }
        Ok(())
    }

    /// Patches per image side (of a resolved configuration).
    pub fn grid(&self) -> usize {
        self.image_size.unwrap_or(0) / self.patch_size.max(1)
    }
}

/// The CLIP image tower.
pub struct ClipVision {
    cfg: ClipVisionConfig,
    image: usize,
    channels: usize,
    norm_in: InputNorm,
    class_embedding: Tensor,
    patch_embedding: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    encoder: ClipEncoder,
    post_layernorm: LayerNorm,
}

impl ClipVision {
    /// Builds the tower's variables under `vb` (seeded initialisation as
    /// Hugging Face's: class embedding normal with std `D^-0.5`, patch and
    /// position embeddings 0.02); `meta` provides the image size and
    /// channels where `cfg` leaves them open.
    pub fn new(cfg: &ClipVisionConfig, meta: &DataMeta, vb: VarBuilder) -> Result<Self> {
        let cfg = cfg.resolve(meta)?;
        cfg.validate()?;
        let image = cfg.image_size.unwrap_or(0);
        let channels = cfg.num_channels.unwrap_or(0);
        let (d, p) = (cfg.hidden_size, cfg.patch_size);
        let norm_in = InputNorm::new(WHO, &cfg.mean, &cfg.std, channels, vb.device())?;
        let emb = vb.pp("embeddings");
        let std02 = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let class_embedding = emb.get_with_hints(
            d,
            "class_embedding",
            Init::Randn {
                mean: 0.0,
                stdev: (d as f64).powf(-0.5),
            },
        )?;
        let patch_embedding =
            emb.pp("patch_embedding")
                .get_with_hints((d, channels, p, p), "weight", std02)?;
        let n = cfg.grid() * cfg.grid();
        let position_embedding =
            emb.pp("position_embedding")
                .get_with_hints((n + 1, d), "weight", std02)?;
        let eps = cfg.layer_norm_eps;
        let pre_layrnorm = LayerNorm::load(d, eps, vb.pp("pre_layrnorm"))?;
        let encoder = ClipEncoder::new(&cfg.encoder_config(), vb.pp("encoder"))?;
        let post_layernorm = LayerNorm::load(d, eps, vb.pp("post_layernorm"))?;
        Ok(ClipVision {
            cfg,
            image,
            channels,
            norm_in,
            class_embedding,
            patch_embedding,
            position_embedding,
            pre_layrnorm,
            encoder,
            post_layernorm,
        })
    }

    /// The configuration, with `image_size`, `num_channels`, `mean` and
    /// `std` resolved.
    pub fn config(&self) -> &ClipVisionConfig {
        &self.cfg
    }

    /// All token states `[B, 1 + N, D]` (class token first) after the last
    /// layer (before `post_layernorm`), for images `x: [B, C, H, W]` in [0, 1].
    pub fn hidden_states(&self, x: &Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let dims = x.dims();
        let (s, c) = (self.image, self.channels);
        if dims.len() != 4 {
            return Err(Error::Shape(format!(
                "{WHO}: expects images [B, {c}, {s}, {s}], got {dims:?}"
            )));
        }
        if dims[2] != s || dims[3] != s {
            return Err(Error::Shape(format!(
                "{WHO}: the images are {}x{}; the tower expects {s}x{s} (image_size = {s})",
                dims[2], dims[3]
            )));
        }
        let x = if dims[1] == c {
            x.clone()
        } else if dims[1] == 1 {
            // a grey image for a colour tower
            x.repeat((1, c, 1, 1))?
        } else {
            return Err(Error::Shape(format!(
                "{WHO}: the images have {} channels; the tower expects {c} (num_channels = {c})",
                dims[1]
            )));
        };
        let (b, d) = (dims[0], self.cfg.hidden_size);
        let dtype = self.patch_embedding.dtype();
        // the input statistics are f32; the model may run in another dtype
        let x = self
            .norm_in
            .forward(&x.to_dtype(DType::F32)?)?
            .to_dtype(dtype)?;
        let n = self.cfg.grid() * self.cfg.grid();
        let patches = conv2d(&x, &self.patch_embedding, self.cfg.patch_size, 0)?
            .reshape((b, d, n))?
            .transpose(1, 2)?
            .contiguous()?;
        let cls = self
            .class_embedding
            .reshape((1, 1, d))?
            .broadcast_as((b, 1, d))?
            .contiguous()?;
        let x = Tensor::cat(&[&cls, &patches], 1)?
            .broadcast_add(&self.position_embedding.unsqueeze(0)?)?;
        let x = self.pre_layrnorm.forward(&x)?;
        self.encoder.forward(&x, None, ctx)
    }

    /// The representation `[B, hidden_size]` of images `x: [B, C, H, W]` in
    /// [0, 1]: the class token's final state through `post_layernorm`.
    pub fn features(&self, x: &Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let h = self.hidden_states(x, ctx)?;
        let cls = h.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(self.post_layernorm.forward(&cls)?)
    }
}

impl Encoder for ClipVision {
    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        self.features(batch.get("image")?, ctx)
    }

    fn output_dim(&self) -> usize {
        self.cfg.hidden_size
    }
}

fn build(
    p: &parallax_core::recipe::Params,
    ctx: &EncoderCtx,
    vb: VarBuilder<'static>,
) -> Result<Box<dyn Encoder>> {
    let cfg: ClipVisionConfig = p.extract()?;
    Ok(Box::new(ClipVision::new(&cfg, &ctx.meta, vb)?))
}

parallax_core::register!(
    encoder,
    "clip_vision",
    "CLIP's image tower (Radford et al. 2021): ViT with class embedding, pre/post layer norms, quick GELU; Hugging Face CLIP names",
    build
);
