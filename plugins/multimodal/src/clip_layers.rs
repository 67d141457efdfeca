//! The transformer shared by CLIP's two towers (Radford et al., "Learning
//! Transferable Visual Models From Natural Language Supervision", ICML
//! 2021), in Hugging Face transformers' `CLIPEncoder` layout.
//!
//! Each layer is pre-norm:
//!
//! ```text
//! x = x + dropout(out_proj(attention(layer_norm1(x))))
//! x = x + dropout(fc2(act(fc1(layer_norm2(x)))))
//! ```
//!
//! with multi-head scaled dot-product attention (separate `q_proj`, `k_proj`,
//! `v_proj` and `out_proj`, all with a bias; scale `1/sqrt(head_dim)`) under
//! an optional additive mask (causal for the text tower, plus key padding),
//! and `act` CLIP's `quick_gelu` (`x·sigmoid(1.702·x)`) or the erf GELU.
//! Variables carry Hugging Face's names relative to the builder given to
//! [`ClipEncoder::new`] (the tower's `encoder`):
//! `layers.{i}.self_attn.{q,k,v,out}_proj.{weight,bias}`,
//! `layers.{i}.layer_norm{1,2}.{weight,bias}`,
//! `layers.{i}.mlp.fc{1,2}.{weight,bias}`.
//!
//! Layer norm, softmax and the linear layers run on `parallax_core::ops`
//! (Candle's own layer norm and softmax have no backward, and its `Linear`
//! is wrong on non-contiguous 3-D inputs); dropout draws from the forward
//! context's seeded generator.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Init, VarBuilder};
use parallax_core::error::{Error, Result};
use parallax_core::nn::encoder::ForwardCtx;
use parallax_core::ops::dropout::Dropout;
use parallax_core::ops::layer_norm::LayerNorm;
use parallax_core::ops::linear::{matmul, Linear};
use parallax_core::ops::softmax::softmax_last_dim;
use serde::{Deserialize, Serialize};

/// The additive attention bias of masked positions: far below any score, yet
/// finite, so that a fully masked row gives uniform weights rather than NaN.
pub const MASKED: f64 = -1e9;

/// The MLP's activation (`hidden_act` in the configurations).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x·sigmoid(1.702·x)`, OpenAI CLIP's approximation of the GELU.
    #[default]
    QuickGelu,
    /// The exact GELU, `x·Φ(x)` (erf), as in OpenCLIP's larger models.
    Gelu,
}

impl Activation {
    /// The name in configurations (`quick_gelu`, `gelu`).
    pub fn as_str(self) -> &'static str {
        match self {
            Activation::QuickGelu => "quick_gelu",
            Activation::Gelu => "gelu",
        }
    }

    /// The activation of a Hugging Face `hidden_act` value, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "quick_gelu" => Some(Activation::QuickGelu),
            "gelu" => Some(Activation::Gelu),
            _ => None,
        }
    }

    /// Applies the activation elementwise (differentiable).
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::QuickGelu => x.mul(&candle_nn::ops::sigmoid(&x.affine(1.702, 0.0)?)?)?,
            Activation::Gelu => x.gelu_erf()?,
        })
    }
}

/// The architecture of a stack of CLIP encoder layers.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipEncoderConfig {
    /// Token width `D`.
    pub hidden_size: usize,
    /// MLP hidden width.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// The MLP's activation.
    pub hidden_act: Activation,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout on the attention probabilities.
    pub attention_dropout: f64,
    /// Dropout on both residual branches' outputs.
    pub dropout: f64,
}

impl ClipEncoderConfig {
    /// Checks the values; `who` names the component in errors.
    pub fn validate(&self, who: &str) -> Result<()> {
        for (key, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
        ] {
            if v == 0 {
                return Err(Error::invalid(who, format!("`{key}` must be positive")));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::invalid(
                who,
                format!(
                    "`num_attention_heads` ({}) must divide `hidden_size` ({})",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(Error::invalid(who, "`layer_norm_eps` must be > 0"));
        }
        for (key, p) in [
            ("attention_dropout", self.attention_dropout),
            ("dropout", self.dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::invalid(
                    who,
                    format!("`{key}` must be in [0, 1), got {p}"),
                ));
            }
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// A normal initialisation with standard deviation `std`.
fn normal(std: f64) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: std,
    }
}

/// A linear layer `in_dim → out_dim` under `vb` (`weight` normal with `std`,
/// `bias` zero, as Hugging Face initialises CLIP).
pub fn clip_linear(vb: VarBuilder, in_dim: usize, out_dim: usize, std: f64) -> Result<Linear> {
    let w = vb.get_with_hints((out_dim, in_dim), "weight", normal(std))?;
    let b = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

/// One pre-norm transformer layer (Hugging Face's `CLIPEncoderLayer`).
pub struct ClipEncoderLayer {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    layer_norm2: LayerNorm,
    heads: usize,
    act: Activation,
    attn_drop: Dropout,
    resid_drop: Dropout,
}

impl ClipEncoderLayer {
    /// Builds the layer's variables under `vb` (`self_attn.*`,
    /// `layer_norm1.*`, `mlp.*`, `layer_norm2.*`), initialised as Hugging
    /// Face's CLIP (`initializer_factor` 1): input projections normal with
    /// std `D^-0.5·(2L)^-0.5`, `out_proj` `D^-0.5`, `fc1` `(2D)^-0.5`, `fc2`
    /// `D^-0.5·(2L)^-0.5`, biases 0, layer norms 1 and 0.
    pub fn new(cfg: &ClipEncoderConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate("clip encoder layer")?;
        let d = cfg.hidden_size;
        let depth = cfg.num_hidden_layers as f64;
        let in_std = (d as f64).powf(-0.5) * (2.0 * depth).powf(-0.5);
        let out_std = (d as f64).powf(-0.5);
        let fc_std = (2.0 * d as f64).powf(-0.5);
        let attn = vb.pp("self_attn");
        let mlp = vb.pp("mlp");
        let eps = cfg.layer_norm_eps;
        Ok(ClipEncoderLayer {
            q_proj: clip_linear(attn.pp("q_proj"), d, d, in_std)?,
            k_proj: clip_linear(attn.pp("k_proj"), d, d, in_std)?,
            v_proj: clip_linear(attn.pp("v_proj"), d, d, in_std)?,
            out_proj: clip_linear(attn.pp("out_proj"), d, d, out_std)?,
            layer_norm1: LayerNorm::load(d, eps, vb.pp("layer_norm1"))?,
            fc1: clip_linear(mlp.pp("fc1"), d, cfg.intermediate_size, fc_std)?,
            fc2: clip_linear(mlp.pp("fc2"), cfg.intermediate_size, d, in_std)?,
            layer_norm2: LayerNorm::load(d, eps, vb.pp("layer_norm2"))?,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
            attn_drop: Dropout::new(cfg.attention_dropout)?,
            resid_drop: Dropout::new(cfg.dropout)?,
        })
    }

    /// Multi-head self-attention of `x: [B, T, D]` (already normalised)
    /// under the additive `bias` (broadcastable to `[B, heads, T, T]`).
    fn attention(&self, x: &Tensor, bias: Option<&Tensor>, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let hd = d / self.heads;
        let split = |y: Tensor| -> Result<Tensor> {
            Ok(y.reshape((b, t, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(self.q_proj.forward(x)?)?;
        let k = split(self.k_proj.forward(x)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut scores = (matmul(&q, &k.t()?)? * scale)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(bias)?;
        }
        let probs = softmax_last_dim(&scores)?;
        let probs = self.attn_drop.forward(&probs, ctx)?;
        let o = matmul(&probs, &v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, d))?;
        Ok(self.out_proj.forward(&o)?)
    }

    /// The layer applied to `x: [B, T, D]` with the additive attention
    /// `bias` (see [`attention_bias`]).
    pub fn forward(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let h = self.layer_norm1.forward(x)?;
        let a = self.attention(&h, bias, ctx)?;
        let x = (x + self.resid_drop.forward(&a, ctx)?)?;
        let h = self.layer_norm2.forward(&x)?;
        let h = self.act.forward(&self.fc1.forward(&h)?)?;
        let m = self.fc2.forward(&h)?;
        Ok((&x + self.resid_drop.forward(&m, ctx)?)?)
    }
}

/// A stack of [`ClipEncoderLayer`]s (Hugging Face's `CLIPEncoder`).
pub struct ClipEncoder {
    layers: Vec<ClipEncoderLayer>,
}

impl ClipEncoder {
    /// Builds `cfg.num_hidden_layers` layers under `vb.pp("layers").pp(i)`.
    pub fn new(cfg: &ClipEncoderConfig, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| ClipEncoderLayer::new(cfg, vb.pp("layers").pp(i)))
            .collect::<Result<_>>()?;
        Ok(ClipEncoder { layers })
    }

    /// The layers.
    pub fn layers(&self) -> &[ClipEncoderLayer] {
        &self.layers
    }

    /// All layers applied to `x: [B, T, D]` with the additive attention
    /// `bias` (see [`attention_bias`]).
    pub fn forward(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.layers {
            x = layer.forward(&x, bias, ctx)?;
        }
        Ok(x)
    }
}

/// The additive attention bias for sequences of `t` tokens: [`MASKED`] where
/// a query may not attend to a key, 0 elsewhere; `None` when nothing is
/// masked. `causal`: position `i` sees positions `≤ i` only. `key_mask`
/// (`[B, t]`, 1 for tokens and 0 for padding): no query sees padding keys.
/// The result broadcasts against attention scores `[B, heads, t, t]`.
pub fn attention_bias(
    t: usize,
    causal: bool,
    key_mask: Option<&Tensor>,
    dtype: DType,
    device: &Device,
) -> Result<Option<Tensor>> {
    let causal = if causal && t > 1 {
        let v: Vec<f64> = (0..t * t)
            .map(|k| if k % t > k / t { MASKED } else { 0.0 })
            .collect();
        Some(Tensor::from_vec(v, (1, 1, t, t), device)?.to_dtype(dtype)?)
    } else {
        None
    };
    let keys = match key_mask {
        Some(m) => {
            let (b, mt) = m.dims2()?;
            if mt != t {
                return Err(Error::Shape(format!(
                    "attention mask [{b}, {mt}] does not match {t} tokens"
                )));
            }
            let m = m.to_dtype(DType::F64)?;
            Some(
                ((m - 1.0)? * -MASKED)?
                    .reshape((b, 1, 1, t))?
                    .to_dtype(dtype)?,
            )
        }
        None => None,
    };
    Ok(match (causal, keys) {
        (Some(c), Some(k)) => Some(c.broadcast_add(&k)?),
        (c, k) => c.or(k),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_gelu_and_bias_values() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[-1.0f64, 0.0, 2.0], &dev).unwrap();
        let y: Vec<f64> = Activation::QuickGelu
            .forward(&x)
            .unwrap()
            .to_vec1()
            .unwrap();
        for (xi, yi) in [-1.0f64, 0.0, 2.0].iter().zip(&y) {
            let want = xi / (1.0 + (-1.702 * xi).exp());
            assert!((want - yi).abs() < 1e-12, "{want} vs {yi}");
        }
        let mask = Tensor::new(&[[1u32, 1, 0]], &dev).unwrap();
        let b = attention_bias(3, true, Some(&mask), DType::F64, &dev)
            .unwrap()
            .unwrap();
        assert_eq!(b.dims(), &[1, 1, 3, 3]);
        let v: Vec<Vec<f64>> = b.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(v[0], vec![0.0, MASKED, 2.0 * MASKED]);
        assert_eq!(v[1], vec![0.0, 0.0, 2.0 * MASKED]);
        assert_eq!(v[2], vec![0.0, 0.0, MASKED]);
        assert!(attention_bias(3, false, None, DType::F32, &dev)
            .unwrap()
            .is_none());
        assert_eq!(Activation::from_name("gelu"), Some(Activation::Gelu));
        assert_eq!(Activation::from_name("relu"), None);
    }
}
