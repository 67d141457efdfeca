//! A BERT encoder that trains correctly on Candle: the project's layer norm,
//! softmax and linear ops (with working gradients), seeded dropout on the
//! embeddings, attention probabilities and sub-layer outputs, and additive
//! attention masks. Variables carry Hugging Face's names
//! (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`,
//! ...) so that checkpoints load and export without a name map.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Init, VarBuilder};
use parallax_core::error::{Error, Result};
use parallax_core::nn::encoder::ForwardCtx;
use parallax_core::nn::init::load_value;
use parallax_core::ops::dropout::Dropout;
use parallax_core::ops::layer_norm::LayerNorm;
use parallax_core::ops::linear::{matmul, Linear};
use parallax_core::ops::softmax::softmax_last_dim;

use crate::bert::config::BertConfig;

/// Where a model's variables come from: fresh (seeded) initialisation, or a
/// pretrained checkpoint's tensors by name. Records every variable under its
/// Hugging Face name for export.
pub struct Params<'a> {
    vb: VarBuilder<'static>,
    pretrained: Option<&'a HashMap<String, Tensor>>,
    origin: String,
    std: f64,
    made: Mutex<Vec<(String, Tensor)>>,
}

impl<'a> Params<'a> {
    /// Variables under `vb`; values from `pretrained` (named as in the
    /// checkpoint, see [`normalize_names`]) when given.
    pub fn new(
        vb: VarBuilder<'static>,
        pretrained: Option<&'a HashMap<String, Tensor>>,
        origin: &str,
        std: f64,
    ) -> Self {
        Params {
            vb,
            pretrained,
            origin: origin.to_string(),
            std,
            made: Mutex::new(Vec::new()),
        }
    }

    fn get(
        &self,
        name: &str,
        shape: &[usize],
        init: Init,
        required: bool,
    ) -> Result<Option<Tensor>> {
        let t = match self.pretrained {
            Some(p) => match p.get(name) {
                Some(v) => {
                    if v.dims() != shape {
                        return Err(Error::Data(format!(
                            "{}: `{name}` has shape {:?}, the configuration needs {shape:?}",
                            self.origin,
                            v.dims()
                        )));
                    }
                    load_value(&self.vb, name, v)?
                }
                None if required => {
                    return Err(Error::Data(format!(
                        "{}: the checkpoint has no tensor `{name}`",
                        self.origin
                    )))
                }
                None => return Ok(None),
            },
            None if required => self.vb.get_with_hints(shape, name, init)?,
            None => return Ok(None),
        };
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), t.clone()));
        Ok(Some(t))
    }

    fn weight(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let init = Init::Randn {
            mean: 0.0,
            stdev: self.std,
        };
        Ok(self.get(name, shape, init, true)?.expect("required"))
    }

    fn constant(&self, name: &str, dim: usize, value: f64) -> Result<Tensor> {
        Ok(self
            .get(name, &[dim], Init::Const(value), true)?
            .expect("required"))
    }

    fn linear(&self, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
        let w = self.weight(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
        let b = self.constant(&format!("{prefix}.bias"), out_dim, 0.0)?;
        Ok(Linear::new(w, Some(b)))
    }

    fn layer_norm(&self, prefix: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        let w = self.constant(&format!("{prefix}.weight"), dim, 1.0)?;
        let b = self.constant(&format!("{prefix}.bias"), dim, 0.0)?;
        Ok(LayerNorm::new(w, b, eps))
    }

    /// The variables made so far, by Hugging Face name.
    pub fn into_named(self) -> Vec<(String, Tensor)> {
        self.made.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// Maps a checkpoint's tensor names onto ours: drops a `bert.` prefix and
/// renames old-style `LayerNorm.gamma` / `LayerNorm.beta`; drops buffers
/// (`position_ids`) and pre-training heads (`cls.*`).
pub fn normalize_names(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .filter_map(|(k, v)| {
            let k = k.strip_prefix("bert.").unwrap_or(&k).to_string();
            if k.ends_with("position_ids") || k.starts_with("cls.") {
                return None;
            }
            let k = if let Some(p) = k.strip_suffix("LayerNorm.gamma") {
                format!("{p}LayerNorm.weight")
            } else if let Some(p) = k.strip_suffix("LayerNorm.beta") {
                format!("{p}LayerNorm.bias")
            } else {
                k
            };
            Some((k, v))
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Act {
    GeluErf,
    GeluTanh,
    Relu,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

/// The BERT encoder: token ids and mask in, hidden states `[B, T, H]` out.
pub struct BertModel {
    cfg: BertConfig,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    act: Act,
    hidden_dropout: Dropout,
    attn_dropout: Dropout,
}

impl BertModel {
    /// Builds the model's variables through `p`. Also creates the
    /// `pooler.dense` layer when the checkpoint has one (unused by mean or
    /// CLS pooling, kept so that an export is complete).
    pub fn new(cfg: &BertConfig, p: &Params) -> Result<Self> {
        cfg.validate()?;
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let word = p.weight("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?;
        let position = p.weight(
            "embeddings.position_embeddings.weight",
            &[cfg.max_position_embeddings, h],
        )?;
        let token_type = p.weight(
            "embeddings.token_type_embeddings.weight",
            &[cfg.type_vocab_size, h],
        )?;
        let emb_norm = p.layer_norm("embeddings.LayerNorm", h, eps)?;
        // no `with_capacity`: the count comes from config.json, and a
        // corrupt one (2^32 layers) must fail on the missing weights
        let mut layers = Vec::new();
        for i in 0..cfg.num_hidden_layers {
            let pre = format!("encoder.layer.{i}");
            layers.push(Layer {
                query: p.linear(&format!("{pre}.attention.self.query"), h, h)?,
                key: p.linear(&format!("{pre}.attention.self.key"), h, h)?,
                value: p.linear(&format!("{pre}.attention.self.value"), h, h)?,
                attn_out: p.linear(&format!("{pre}.attention.output.dense"), h, h)?,
                attn_norm: p.layer_norm(&format!("{pre}.attention.output.LayerNorm"), h, eps)?,
                intermediate: p.linear(
                    &format!("{pre}.intermediate.dense"),
                    h,
                    cfg.intermediate_size,
                )?,
                output: p.linear(&format!("{pre}.output.dense"), cfg.intermediate_size, h)?,
                out_norm: p.layer_norm(&format!("{pre}.output.LayerNorm"), h, eps)?,
            });
        }
        // kept for export only
        p.get("pooler.dense.weight", &[h, h], Init::Const(0.0), false)?;
        p.get("pooler.dense.bias", &[h], Init::Const(0.0), false)?;
        let act = match cfg.hidden_act.as_str() {
            "gelu" => Act::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Act::GeluTanh,
            _ => Act::Relu,
        };
        Ok(BertModel {
            cfg: cfg.clone(),
            word,
            position,
            token_type,
            emb_norm,
            layers,
            act,
            hidden_dropout: Dropout::new(cfg.hidden_dropout_prob)?,
            attn_dropout: Dropout::new(cfg.attention_probs_dropout_prob)?,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// Hidden states `[B, T, H]` of `input_ids [B, T]` with
    /// `attention_mask [B, T]` (1 for tokens, 0 for padding).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        mask: &Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if t > self.cfg.max_position_embeddings {
            return Err(Error::Shape(format!(
                "bert: sequences of {t} tokens exceed max_position_embeddings = {}",
                self.cfg.max_position_embeddings
            )));
        }
        let ids = input_ids.to_dtype(DType::U32)?;
        let max_id = ids.max_all()?.to_scalar::<u32>()? as usize;
        if max_id >= self.cfg.vocab_size {
            return Err(Error::Shape(format!(
                "bert: token id {max_id} is outside the vocabulary of {} (does the tokenizer match the model?)",
                self.cfg.vocab_size
            )));
        }
        let h = self.cfg.hidden_size;
        let heads = self.cfg.num_attention_heads;
        let hd = h / heads;
        let dtype = self.word.dtype();
        let x = self
            .word
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.cfg.hidden_size))?
            .broadcast_add(&self.position.narrow(0, 0, t)?.unsqueeze(0)?)?
            .broadcast_add(&self.token_type.narrow(0, 0, 1)?.unsqueeze(0)?)?;
        let x = self.emb_norm.forward(&x)?;
        let mut x = self.hidden_dropout.forward(&x, ctx)?;
        // additive mask [B, 1, 1, T]: 0 on tokens, -1e9 on padding
        let bias = ((mask.to_dtype(dtype)? - 1.0)? * 1e9)?.reshape((b, 1, 1, t))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let split = |y: Tensor| -> Result<Tensor> {
            Ok(y.reshape((b, t, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        for l in &self.layers {
            let q = split(l.query.forward(&x)?)?;
            let k = split(l.key.forward(&x)?)?;
            let v = split(l.value.forward(&x)?)?;
            let scores = (matmul(&q, &k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = softmax_last_dim(&scores)?;
            let probs = self.attn_dropout.forward(&probs, ctx)?;
            let ctxt = matmul(&probs, &v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, h))?;
            let a = self
                .hidden_dropout
                .forward(&l.attn_out.forward(&ctxt)?, ctx)?;
            let x1 = l.attn_norm.forward(&(a + &x)?)?;
            let inter = l.intermediate.forward(&x1)?;
            let inter = match self.act {
                Act::GeluErf => inter.gelu_erf()?,
                Act::GeluTanh => inter.gelu()?,
                Act::Relu => inter.relu()?,
            };
            let o = self
                .hidden_dropout
                .forward(&l.output.forward(&inter)?, ctx)?;
            x = l.out_norm.forward(&(o + x1)?)?;
        }
        Ok(x)
    }
}

/// Mean of `hidden [B, T, H]` over the positions where `mask [B, T]` is 1.
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
    let sum = hidden.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    Ok(sum.broadcast_div(&count)?)
}
