//! The Vision Transformer encoder.
//!
//! Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner,
//! Dehghani, Minderer, Heigold, Gelly, Uszkoreit, Houlsby. "An Image is
//! Worth 16x16 Words: Transformers for Image Recognition at Scale", ICLR
//! 2021: the image is cut into `patch_size`² patches, each linearly
//! embedded (a convolution with kernel = stride = patch size); a learned
//! CLS token is prepended and learned position embeddings added; then
//! `depth` pre-norm transformer blocks (multi-head self-attention, an MLP
//! with GELU and `mlp_ratio` x width, each in a residual branch after a
//! layer norm) and a final layer norm. The representation is the CLS
//! token's state (`pool = "cls"`) or the mean over the patch tokens
//! (`pool = "mean"`).
//!
//! ```toml
//! [encoder]
//! name = "vit"
//! variant = "tiny"          # tiny (192 wide, 12 deep, 3 heads), small (384, 12, 6) or custom
//! patch_size = 4            # default: 4 for images up to 32 px, else 16
//! # dim = 192, depth = 12, heads = 3   (variant = "custom" only)
//! mlp_ratio = 4.0
//! dropout = 0.0
//! pool = "cls"              # or "mean"
//! # image_size, in_channels: default from the data
//! # pretrained = "timm/vit_tiny_patch16_224.augreg_in21k"   # file, folder or Hub id
//! # revision = "main"
//! ```
//!
//! Variables carry timm's names (`cls_token`, `pos_embed`,
//! `patch_embed.proj.weight`, `blocks.0.attn.qkv.weight`, `blocks.0.mlp.fc1.bias`,
//! `norm.weight`, ...), so timm's safetensors load as they are. Hugging Face
//! transformers' `ViTModel` / `ViTForImageClassification` layout
//! (`embeddings.cls_token`, `encoder.layer.0.attention.attention.query.weight`,
//! ..., optionally under `vit.`) is recognised and mapped onto these names
//! (query, key and value concatenated into `qkv`). Classifier heads
//! (`head.*`, `classifier.*`, `pooler.*`) are ignored. Position embeddings
//! for another patch grid (e.g. 224 px weights on 32 px images) are resized
//! by bilinear interpolation (as PyTorch's `align_corners = False`), with a
//! message on stderr naming both grids; a table that is not a square grid
//! plus the CLS token is an error naming both sizes. The architecture
//! (width, depth, heads, patch size) must match the checkpoint: it is not
//! read from it, and a mismatch is an error naming the tensor and both shapes.
//!
//! Layer norm, softmax and the linear layers run on `parallax_core::ops`
//! (Candle's own layer norm and softmax have no backward, and its `Linear`
//! is wrong on non-contiguous 3-D inputs); the patch embedding on the
//! project's conv2d.

use std::collections::HashMap;

use candle_core::{DType, Module, Tensor};
use candle_nn::{Init, VarBuilder};
use parallax_core::batch::Batch;
use parallax_core::error::{Error, Result};
use parallax_core::nn::encoder::{Encoder, EncoderCtx, ForwardCtx};
use parallax_core::ops::conv2d::conv2d;
use parallax_core::ops::dropout::Dropout;
use parallax_core::ops::layer_norm::LayerNorm;
use parallax_core::ops::linear::{matmul, Linear};
use parallax_core::ops::softmax::softmax_last_dim;
use serde::Deserialize;

use crate::input_norm::InputNorm;
use crate::pretrained::{open_optional, Checkpoint, Recorder};

/// A named architecture.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// ViT-Ti (DeiT): width 192, 12 blocks, 3 heads.
    #[default]
    Tiny,
    /// ViT-S (DeiT): width 384, 12 blocks, 6 heads.
    Small,
    /// `dim`, `depth` and `heads` from the recipe.
    Custom,
}

/// How the token states become one vector.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The CLS token's state after the final layer norm (the paper's).
    #[default]
    Cls,
    /// The mean of the patch tokens' states (CLS excluded) after the final
    /// layer norm.
    Mean,
}

/// `[encoder] name = "vit"` options (Dosovitskiy et al., ICLR 2021; the
/// tiny and small widths are DeiT's, Touvron et al. 2021).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VitConfig {
    /// `tiny`, `small` or `custom`.
    pub variant: Variant,
    /// Side of the square patches; default 4 for images up to 32 px, 16 otherwise.
    pub patch_size: Option<usize>,
    /// Token width (`custom` only).
    pub dim: Option<usize>,
    /// Number of transformer blocks (`custom` only).
    pub depth: Option<usize>,
    /// Attention heads; must divide `dim` (`custom` only).
    pub heads: Option<usize>,
    /// MLP hidden width as a multiple of `dim` (4 in the paper).
    pub mlp_ratio: f64,
    /// Dropout after the position embeddings, in the MLP and on both
    /// residual branches' outputs (0 in the paper's ImageNet-21k runs).
    pub dropout: f64,
    /// `cls` or `mean`.
    pub pool: Pool,
    /// Side of the (square) input images; default from the data.
    pub image_size: Option<usize>,
    /// Input channels; default from the data.
    pub in_channels: Option<usize>,
    /// Layer-norm epsilon (timm's 1e-6).
    pub layer_norm_eps: f64,
    /// Per-channel mean subtracted from the input (one value or one per
    /// channel); 0.5 as for timm's `augreg` ViT weights.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation the input is divided by (0.5).
    pub std: Vec<f32>,
    /// Pretrained weights (timm or Hugging Face `ViTModel` names): a
    /// `.safetensors` file, a folder holding `model.safetensors`, or a Hub id.
    pub pretrained: Option<String>,
    /// The Hub revision (branch, tag or commit) of `pretrained`.
    pub revision: Option<String>,
}

impl Default for VitConfig {
    fn default() -> Self {
        VitConfig {
            variant: Variant::Tiny,
            patch_size: None,
            dim: None,
            depth: None,
            heads: None,
            mlp_ratio: 4.0,
            dropout: 0.0,
            pool: Pool::Cls,
            image_size: None,
            in_channels: None,
            layer_norm_eps: 1e-6,
            mean: vec![0.5],
            std: vec![0.5],
            pretrained: None,
            revision: None,
        }
    }
}

/// The architecture a configuration resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VitArch {
    /// Token width.
    pub dim: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width.
    pub mlp_hidden: usize,
    /// Patch side.
    pub patch: usize,
    /// Image side.
    pub image: usize,
    /// Input channels.
    pub channels: usize,
}

impl VitArch {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image / self.patch
    }

    /// Tokens per image (patches + CLS).
    pub fn tokens(&self) -> usize {
        self.grid() * self.grid() + 1
    }
}

impl VitConfig {
    /// Resolves the architecture for images of `image_shape` (`[C, H, W]`,
    /// from the data source) where the recipe leaves it open.
    pub fn arch(&self, image_shape: Option<[usize; 3]>) -> Result<VitArch> {
        let who = "vit";
        let (dim, depth, heads) = match self.variant {
            Variant::Custom => {
                let need = |v: Option<usize>, key: &str| {
                    v.ok_or_else(|| {
                        Error::invalid(who, format!("variant = \"custom\" needs `{key}`"))
                    })
                };
                (
                    need(self.dim, "dim")?,
                    need(self.depth, "depth")?,
                    need(self.heads, "heads")?,
                )
            }
            v => {
                let (d, l, h) = if v == Variant::Tiny {
                    (192, 12, 3)
                } else {
                    (384, 12, 6)
                };
                for (key, set, val) in [
                    ("dim", self.dim, d),
                    ("depth", self.depth, l),
                    ("heads", self.heads, h),
                ] {
                    if set.is_some_and(|s| s != val) {
                        return Err(Error::invalid(
                            who,
                            format!(
                                "`{key}` is {val} in variant = \"{}\"; use variant = \"custom\" to set it",
                                if v == Variant::Tiny { "tiny" } else { "small" }
                            ),
                        ));
                    }
                }
                (d, l, h)
            }
        };
        if dim == 0 || depth == 0 || heads == 0 {
            return Err(Error::invalid(who, "dim, depth and heads must be positive"));
        }
        if dim % heads != 0 {
            return Err(Error::invalid(
                who,
                format!("heads ({heads}) must divide dim ({dim})"),
            ));
        }
        if self.mlp_ratio.is_nan() || self.mlp_ratio <= 0.0 {
            return Err(Error::invalid(who, "mlp_ratio must be > 0"));
        }
        let mlp_hidden = (dim as f64 * self.mlp_ratio) as usize;
        if mlp_hidden == 0 {
            return Err(Error::invalid(who, "dim x mlp_ratio must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(who, "dropout must be in [0, 1)"));
        }
        let image = match (self.image_size, image_shape) {
            (Some(s), _) => s,
            (None, Some([_, h, w])) if h == w => h,
            (None, Some([_, h, w])) => {
                return Err(Error::invalid(
                    who,
                    format!("the images are {h}x{w}; the ViT needs square images (or set image_size)"),
                ))
            }
            (None, None) => {
                return Err(Error::invalid(
                    who,
                    "the data source does not provide images (no image shape); set image_size and in_channels",
                ))
            }
        };
        let channels = match (self.in_channels, image_shape) {
            (Some(c), _) => c,
            (None, Some([c, _, _])) => c,
            (None, None) => {
                return Err(Error::invalid(
                    who,
                    "the data source does not provide images (no image shape); set in_channels",
                ))
            }
        };
        let patch = self.patch_size.unwrap_or(if image <= 32 { 4 } else { 16 });
        if patch == 0 || image == 0 || channels == 0 {
            return Err(Error::invalid(
                who,
                "patch_size, image_size and in_channels must be positive",
            ));
        }
        if image % patch != 0 {
            return Err(Error::invalid(
                who,
                format!("patch_size {patch} does not divide the image size {image}"),
            ));
        }
        Ok(VitArch {
            dim,
            depth,
            heads,
            mlp_hidden,
            patch,
            image,
            channels,
        })
    }
}

struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The ViT encoder.
pub struct Vit {
    arch: VitArch,
    pool: Pool,
    norm_in: InputNorm,
    patch_w: Tensor,
    patch_b: Tensor,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    drop: Dropout,
    dtype: DType,
}

/// timm's initialisation of linear weights (normal, std 0.02; timm truncates at ±2 std).
const LINEAR_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

fn linear(vb: &VarBuilder, name: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
    let vb = vb.pp(name);
    let w = vb.get_with_hints((out_dim, in_dim), "weight", LINEAR_INIT)?;
    let b = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

impl Vit {
    /// Builds the encoder for images of `image_shape` (`[C, H, W]`; may be
    /// `None` when `image_size` and `in_channels` are set), then loads
    /// `cfg.pretrained` into it when set.
    pub fn new(cfg: &VitConfig, image_shape: Option<[usize; 3]>, vb: VarBuilder) -> Result<Self> {
        let arch = cfg.arch(image_shape)?;
        let ckpt = open_optional("vit", cfg.pretrained.as_deref(), cfg.revision.as_deref())?
            .map(|c| prepare_checkpoint(c, &arch))
            .transpose()?;
        let recorder = Recorder::new();
        let vb = recorder.wrap(vb);
        let vit = Self::build(cfg, arch, &vb)?;
        if let Some(ckpt) = ckpt {
            ckpt.load_into(&vb, &recorder.vars(), VIT_IGNORED)?;
        }
        Ok(vit)
    }

    fn build(cfg: &VitConfig, arch: VitArch, vb: &VarBuilder) -> Result<Self> {
        let VitArch {
            dim: d,
            depth,
            mlp_hidden,
            patch,
            channels: c,
            ..
        } = arch;
        let eps = cfg.layer_norm_eps;
        let norm_in = InputNorm::new("vit", &cfg.mean, &cfg.std, c, vb.device())?;
        // PyTorch's default Conv2d initialisation (timm keeps it for the patch embedding)
        let bound = 1.0 / ((c * patch * patch) as f64).sqrt();
        let conv_init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let pe = vb.pp("patch_embed").pp("proj");
        let patch_w = pe.get_with_hints((d, c, patch, patch), "weight", conv_init)?;
        let patch_b = pe.get_with_hints(d, "bias", conv_init)?;
        let cls_token = vb.get_with_hints(
            (1, 1, d),
            "cls_token",
            Init::Randn {
                mean: 0.0,
                stdev: 1e-6,
            },
        )?;
        let pos_embed = vb.get_with_hints((1, arch.tokens(), d), "pos_embed", LINEAR_INIT)?;
        let layer_norm = |vb: VarBuilder| LayerNorm::load(d, eps, vb);
        // no `with_capacity(depth)`: an absurd depth must fail on its
        // first missing weight or allocation, not reserve memory up front
        let mut blocks = Vec::new();
        for i in 0..depth {
            let vb = vb.pp("blocks").pp(i);
            blocks.push(Block {
                norm1: layer_norm(vb.pp("norm1"))?,
                qkv: linear(&vb.pp("attn"), "qkv", d, 3 * d)?,
                proj: linear(&vb.pp("attn"), "proj", d, d)?,
                norm2: layer_norm(vb.pp("norm2"))?,
                fc1: linear(&vb.pp("mlp"), "fc1", d, mlp_hidden)?,
                fc2: linear(&vb.pp("mlp"), "fc2", mlp_hidden, d)?,
            });
        }
        let norm = layer_norm(vb.pp("norm"))?;
        Ok(Vit {
            arch,
            pool: cfg.pool,
            norm_in,
            patch_w,
            patch_b,
            cls_token,
            pos_embed,
            blocks,
            norm,
            drop: Dropout::new(cfg.dropout)?,
            dtype: vb.dtype(),
        })
    }

    /// The architecture.
    pub fn arch(&self) -> &VitArch {
        &self.arch
    }

    /// All token states `[B, 1 + N, D]` (CLS first) after the final layer
    /// norm, for images `x: [B, C, H, W]` in [0, 1].
    pub fn tokens(&self, x: &Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let a = &self.arch;
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != a.channels || dims[2] != a.image || dims[3] != a.image {
            return Err(Error::Shape(format!(
                "vit expects images [B, {}, {}, {}], got {dims:?}",
                a.channels, a.image, a.image
            )));
        }
        let (b, d) = (dims[0], a.dim);
        let n = a.grid() * a.grid();
        // the input statistics are f32; the model may run in another dtype
        let x = self
            .norm_in
            .forward(&x.to_dtype(DType::F32)?)?
            .to_dtype(self.dtype)?;
        let p = conv2d(&x, &self.patch_w, a.patch, 0)?
            .broadcast_add(&self.patch_b.reshape((1, d, 1, 1))?)?;
        let patches = p.reshape((b, d, n))?.transpose(1, 2)?.contiguous()?;
        let cls = self.cls_token.broadcast_as((b, 1, d))?.contiguous()?;
        let x = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.pos_embed)?;
        let mut x = self.drop.forward(&x, ctx)?;
        let t = n + 1;
        let heads = a.heads;
        let hd = d / heads;
        let scale = 1.0 / (hd as f64).sqrt();
        for blk in &self.blocks {
            let h = blk.norm1.forward(&x)?;
            let qkv = blk
                .qkv
                .forward(&h)?
                .reshape((b, t, 3, heads, hd))?
                .permute((2, 0, 3, 1, 4))?;
            let q = qkv.get(0)?.contiguous()?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let scores = (matmul(&q, &k.t()?)? * scale)?;
            let probs = softmax_last_dim(&scores)?;
            let o = matmul(&probs, &v)?.transpose(1, 2)?.reshape((b, t, d))?;
            let a_out = self.drop.forward(&blk.proj.forward(&o)?, ctx)?;
            x = (x + a_out)?;
            let h = blk.norm2.forward(&x)?;
            let h = blk.fc1.forward(&h)?.gelu_erf()?;
            let h = self.drop.forward(&h, ctx)?;
            let m_out = self.drop.forward(&blk.fc2.forward(&h)?, ctx)?;
            x = (x + m_out)?;
        }
        Ok(self.norm.forward(&x)?)
    }

    /// The representation `[B, D]` of images `x: [B, C, H, W]` in [0, 1].
    pub fn features(&self, x: &Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = self.tokens(x, ctx)?;
        Ok(match self.pool {
            Pool::Cls => x.narrow(1, 0, 1)?.squeeze(1)?,
            Pool::Mean => x.narrow(1, 1, x.dim(1)? - 1)?.mean(1)?,
        })
    }
}

impl Encoder for Vit {
    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        self.features(batch.get("image")?, ctx)
    }

    fn output_dim(&self) -> usize {
        self.arch.dim
    }
}

/// Checkpoint tensors the ViT does not use: classifier heads, Hugging
/// Face's pooler and masked-image-modelling token.
pub const VIT_IGNORED: &[&str] = &[
    "head.",
    "head_dist.",
    "pre_logits.",
    "classifier.",
    "pooler.",
    "embeddings.mask_token",
];

/// Maps Hugging Face names onto timm's when the checkpoint is in that
/// layout, and resizes its position embeddings to `arch`'s patch grid.
fn prepare_checkpoint(mut ckpt: Checkpoint, arch: &VitArch) -> Result<Checkpoint> {
    if is_hf_layout(&ckpt.tensors) {
        let tensors = std::mem::take(&mut ckpt.tensors);
        ckpt.tensors = hf_to_timm(tensors, &ckpt.origin)?;
    }
    if let Some(pos) = ckpt.tensors.get("pos_embed") {
        let dims = pos.dims().to_vec();
        let want = arch.tokens();
        if dims.len() == 3 && dims[0] == 1 && dims[2] == arch.dim && dims[1] != want {
            let old = dims[1] - 1;
            let g0 = (old as f64).sqrt().round() as usize;
            if g0 * g0 != old || old == 0 {
                return Err(Error::Data(format!(
                    "{}: `pos_embed` has {} positions, not a square grid plus the CLS token; \
                     the encoder needs {want} ({g} x {g} patches + CLS)",
                    ckpt.origin,
                    dims[1],
                    g = arch.grid()
                )));
            }
            eprintln!(
                "vit: {}: resizing the position embeddings from a {g0}x{g0} to a {g}x{g} patch grid (bilinear)",
                ckpt.origin,
                g = arch.grid()
            );
            let resized = resize_pos_embed(pos, arch.grid())?;
            ckpt.tensors.insert("pos_embed".to_string(), resized);
        }
    }
    Ok(ckpt)
}

/// Whether `tensors` use Hugging Face transformers' ViT names.
pub fn is_hf_layout(tensors: &HashMap<String, Tensor>) -> bool {
    tensors
        .keys()
        .any(|k| k.starts_with("embeddings.") || k.starts_with("vit.embeddings."))
}

/// Renames Hugging Face `ViTModel` tensors to timm's (`vit.` prefix
/// dropped; query, key and value concatenated into `attn.qkv`). Names it
/// does not know are kept (and reported as unused when loading).
pub fn hf_to_timm(
    tensors: HashMap<String, Tensor>,
    origin: &str,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    // (block, weight|bias) -> [query, key, value]
    let mut qkv: HashMap<(String, String), [Option<Tensor>; 3]> = HashMap::new();
    for (k, v) in tensors {
        let k = k.strip_prefix("vit.").map(str::to_string).unwrap_or(k);
        let renamed = match k.as_str() {
            "embeddings.cls_token" => Some("cls_token".to_string()),
            "embeddings.position_embeddings" => Some("pos_embed".to_string()),
            _ => None,
        };
        if let Some(r) = renamed {
            out.insert(r, v);
            continue;
        }
        if let Some(rest) = k.strip_prefix("embeddings.patch_embeddings.projection.") {
            out.insert(format!("patch_embed.proj.{rest}"), v);
            continue;
        }
        if let Some(rest) = k.strip_prefix("layernorm.") {
            out.insert(format!("norm.{rest}"), v);
            continue;
        }
        if let Some(rest) = k.strip_prefix("encoder.layer.") {
            if let Some((i, tail)) = rest.split_once('.') {
                if let Some((what, param)) = tail
                    .strip_prefix("attention.attention.")
                    .and_then(|s| s.split_once('.'))
                {
                    let slot = match what {
                        "query" => Some(0),
                        "key" => Some(1),
                        "value" => Some(2),
                        _ => None,
                    };
                    if let Some(slot) = slot {
                        qkv.entry((i.to_string(), param.to_string())).or_default()[slot] = Some(v);
                        continue;
                    }
                }
                let mapped = [
                    ("attention.output.dense.", "attn.proj."),
                    ("layernorm_before.", "norm1."),
                    ("layernorm_after.", "norm2."),
                    ("intermediate.dense.", "mlp.fc1."),
                    ("output.dense.", "mlp.fc2."),
                ]
                .iter()
                .find_map(|(from, to)| tail.strip_prefix(from).map(|p| format!("{to}{p}")));
                if let Some(m) = mapped {
                    out.insert(format!("blocks.{i}.{m}"), v);
                    continue;
                }
            }
        }
        out.insert(k, v);
    }
    for ((i, param), parts) in qkv {
        let mut ts = Vec::with_capacity(3);
        for (slot, t) in parts.into_iter().enumerate() {
            let name = ["query", "key", "value"][slot];
            ts.push(t.ok_or_else(|| {
                Error::Data(format!(
                    "{origin}: the checkpoint has no tensor `encoder.layer.{i}.attention.attention.{name}.{param}`"
                ))
            })?);
        }
        if ts[0].dims() != ts[1].dims() || ts[0].dims() != ts[2].dims() {
            return Err(Error::Data(format!(
                "{origin}: query, key and value of `encoder.layer.{i}` ({param}) have shapes {:?}, {:?}, {:?}",
                ts[0].dims(),
                ts[1].dims(),
                ts[2].dims()
            )));
        }
        out.insert(format!("blocks.{i}.attn.qkv.{param}"), Tensor::cat(&ts, 0)?);
    }
    Ok(out)
}

/// Resizes position embeddings `[1, 1 + g0², D]` (CLS first) to a
/// `grid x grid` patch grid by bilinear interpolation (PyTorch's
/// `interpolate(mode = "bilinear", align_corners = False)`); the CLS
/// position is kept.
pub fn resize_pos_embed(pos: &Tensor, grid: usize) -> Result<Tensor> {
    let (one, n, d) = pos.dims3()?;
    let g0 = ((n - 1) as f64).sqrt().round() as usize;
    if one != 1 || g0 * g0 + 1 != n || grid == 0 {
        return Err(Error::Shape(format!(
            "resize_pos_embed: expects [1, 1 + g², D], got {:?}",
            pos.dims()
        )));
    }
    let src: Vec<f64> = pos.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let mut out = Vec::with_capacity((grid * grid + 1) * d);
    out.extend_from_slice(&src[..d]);
    let scale = g0 as f64 / grid as f64;
    let coord = |o: usize| {
        let s = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(g0 - 1);
        let i1 = (i0 + 1).min(g0 - 1);
        (i0, i1, s - i0 as f64)
    };
    let at = |r: usize, c: usize, k: usize| src[(1 + r * g0 + c) * d + k];
    for y in 0..grid {
        let (y0, y1, ly) = coord(y);
        for x in 0..grid {
            let (x0, x1, lx) = coord(x);
            for k in 0..d {
                let top = at(y0, x0, k) * (1.0 - lx) + at(y0, x1, k) * lx;
                let bottom = at(y1, x0, k) * (1.0 - lx) + at(y1, x1, k) * lx;
                out.push(top * (1.0 - ly) + bottom * ly);
            }
        }
    }
    Ok(Tensor::from_vec(out, (1, grid * grid + 1, d), pos.device())?.to_dtype(pos.dtype())?)
}

fn build(
    p: &parallax_core::recipe::Params,
    ctx: &EncoderCtx,
    vb: VarBuilder<'static>,
) -> Result<Box<dyn Encoder>> {
    let cfg: VitConfig = p.extract()?;
    Ok(Box::new(Vit::new(&cfg, ctx.meta.image_shape, vb)?))
}

parallax_core::register!(
    encoder,
    "vit",
    "Vision Transformer (Dosovitskiy et al. 2021): patch embedding, CLS token, pre-norm blocks; timm / Hugging Face weights",
    build
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_and_defaults_resolve() {
        let a = VitConfig::default().arch(Some([3, 32, 32])).unwrap();
        assert_eq!(
            (a.dim, a.depth, a.heads, a.patch, a.mlp_hidden),
            (192, 12, 3, 4, 768)
        );
        assert_eq!(a.tokens(), 65);
        let small = VitConfig {
            variant: Variant::Small,
            ..Default::default()
        };
        let a = small.arch(Some([3, 224, 224])).unwrap();
        assert_eq!((a.dim, a.heads, a.patch, a.grid()), (384, 6, 16, 14));
        let bad = VitConfig {
            dim: Some(64),
            ..Default::default()
        };
        let e = bad.arch(Some([3, 32, 32])).unwrap_err().to_string();
        assert!(e.contains("custom"), "{e}");
        let bad = VitConfig {
            variant: Variant::Custom,
            dim: Some(10),
            depth: Some(1),
            heads: Some(3),
            ..Default::default()
        };
        let e = bad.arch(Some([3, 32, 32])).unwrap_err().to_string();
        assert!(e.contains("must divide"), "{e}");
        let e = VitConfig::default().arch(None).unwrap_err().to_string();
        assert!(e.contains("image"), "{e}");
        let odd = VitConfig {
            patch_size: Some(5),
            ..Default::default()
        };
        assert!(odd.arch(Some([1, 28, 28])).is_err());
    }

    #[test]
    fn bilinear_resize_of_a_ramp() {
        // 4x4 grid whose value is the row index, D = 1, CLS = -1
        let mut v = vec![-1f32];
        for r in 0..4 {
            for _ in 0..4 {
                v.push(r as f32);
            }
        }
        let pos = Tensor::from_vec(v, (1, 17, 1), &candle_core::Device::Cpu).unwrap();
        let r = resize_pos_embed(&pos, 2).unwrap();
        let got: Vec<f32> = r.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, vec![-1.0, 0.5, 0.5, 2.5, 2.5]);
        // same size: unchanged
        let same = resize_pos_embed(&pos, 4).unwrap();
        let got: Vec<f32> = same.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, pos.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
}
