//! CLIP's text tower (Radford et al., "Learning Transferable Visual Models
//! From Natural Language Supervision", ICML 2021), in Hugging Face
//! transformers' `CLIPTextModel` layout.
//!
//! Token and learned position embeddings, a causal pre-norm transformer
//! (see [`crate::clip_layers`]) that also ignores padding, a final layer
//! norm; the sentence's representation is the state of its end-of-text
//! token, taken as the *last position whose `attention_mask` is 1*.
//!
//! ```toml
//! [encoder]
//! name = "clip_text"
//! # vocab_size = 49408          # default: the data's tokenizer, else 49408
//! hidden_size = 512
//! intermediate_size = 2048
//! num_hidden_layers = 12
//! num_attention_heads = 8
//! max_position_embeddings = 77
//! hidden_act = "quick_gelu"      # or "gelu"
//! layer_norm_eps = 1e-5
//! attention_dropout = 0.0
//! dropout = 0.0
//! ```
//!
//! The batch must hold `input_ids [B, T]` and may hold `attention_mask
//! [B, T]` (1 for tokens, 0 for padding; all ones when absent). Variables
//! (relative to the tower's builder, `text_model.` in a Hugging Face CLIP
//! checkpoint): `embeddings.token_embedding.weight`,
//! `embeddings.position_embedding.weight`, `encoder.layers.{i}.*` and
//! `final_layer_norm.{weight,bias}`.
//!
//! Hugging Face pools at the first occurrence of `eos_token_id` (or, for
//! configurations with the legacy `eos_token_id = 2`, at the largest id);
//! for a tokenizer that ends every sequence with the end-of-text token and
//! pads after it, that is the same position.

use candle_core::{DType, Module, Tensor};
use candle_nn::{Init, VarBuilder};
use parallax_core::batch::Batch;
use parallax_core::data::DataMeta;
use parallax_core::error::{Error, Result};
use parallax_core::nn::encoder::{Encoder, EncoderCtx, ForwardCtx};
use parallax_core::ops::layer_norm::LayerNorm;
use serde::Deserialize;

use crate::clip_layers::{attention_bias, Activation, ClipEncoder, ClipEncoderConfig};

const WHO: &str = "clip_text";

/// The vocabulary of OpenAI CLIP's byte-level BPE tokenizer.
pub const CLIP_VOCAB_SIZE: usize = 49408;

/// `[encoder] name = "clip_text"` options. Defaults are Hugging Face's
/// `CLIPTextConfig` (the text tower of OpenAI's ViT-B/32 CLIP, Radford et
/// al. 2021: width 512, 12 layers, 8 heads, a context of 77 tokens).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClipTextConfig {
    /// Token vocabulary; default the data's `vocab_size` (its tokenizer),
    /// else CLIP's 49408.
    pub vocab_size: Option<usize>,
    /// Token width (512).
    pub hidden_size: usize,
    /// MLP hidden width (2048).
    pub intermediate_size: usize,
    /// Transformer layers (12).
    pub num_hidden_layers: usize,
    /// Attention heads (8); must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Longest sequence (77, CLIP's context length).
    pub max_position_embeddings: usize,
    /// MLP activation: `quick_gelu` (CLIP's) or `gelu`.
    pub hidden_act: Activation,
    /// Layer-norm epsilon (1e-5).
    pub layer_norm_eps: f64,
    /// Dropout on the attention probabilities (0, as in CLIP).
    pub attention_dropout: f64,
    /// Dropout on the residual branches' outputs (0, as in CLIP).
    pub dropout: f64,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        ClipTextConfig {
            vocab_size: None,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            attention_dropout: 0.0,
            dropout: 0.0,
        }
    }
}

impl ClipTextConfig {
    /// The configuration with `vocab_size` filled from `meta` (else 49408).
    pub fn resolve(&self, meta: &DataMeta) -> Self {
        ClipTextConfig {
            vocab_size: Some(
                self.vocab_size
                    .or(meta.vocab_size)
                    .unwrap_or(CLIP_VOCAB_SIZE),
            ),
            ..self.clone()
        }
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

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        self.encoder_config().validate(WHO)?;
        if self.vocab_size == Some(0) {
            return Err(Error::invalid(WHO, "`vocab_size` must be positive"));
        }
        if self.max_position_embeddings == 0 {
            return Err(Error::invalid(
                WHO,
                "`max_position_embeddings` must be positive",
            ));
        }
        Ok(())
    }
}

/// The CLIP text tower.
pub struct ClipText {
    cfg: ClipTextConfig,
    vocab: usize,
    token_embedding: Tensor,
    position_embedding: Tensor,
    encoder: ClipEncoder,
    final_layer_norm: LayerNorm,
}

impl ClipText {
    /// Builds the tower's variables under `vb` (seeded initialisation as
    /// Hugging Face's: embeddings normal with std 0.02); `meta` provides the
    /// vocabulary size when `cfg.vocab_size` is not set.
    pub fn new(cfg: &ClipTextConfig, meta: &DataMeta, vb: VarBuilder) -> Result<Self> {
        let cfg = cfg.resolve(meta);
        cfg.validate()?;
        let vocab = cfg.vocab_size.unwrap_or(CLIP_VOCAB_SIZE);
        let d = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let init = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let token_embedding =
            emb.pp("token_embedding")
                .get_with_hints((vocab, d), "weight", init)?;
        let position_embedding = emb.pp("position_embedding").get_with_hints(
            (cfg.max_position_embeddings, d),
            "weight",
            init,
        )?;
        let encoder = ClipEncoder::new(&cfg.encoder_config(), vb.pp("encoder"))?;
        let final_layer_norm = LayerNorm::load(d, cfg.layer_norm_eps, vb.pp("final_layer_norm"))?;
        Ok(ClipText {
            cfg,
            vocab,
            token_embedding,
            position_embedding,
            encoder,
            final_layer_norm,
        })
    }

    /// The configuration, with `vocab_size` resolved.
    pub fn config(&self) -> &ClipTextConfig {
        &self.cfg
    }

    /// The sentence representations `[B, hidden_size]` of `input_ids [B, T]`
    /// (integer ids) with `attention_mask [B, T]` (1 for tokens, 0 for
    /// padding; `None`: all tokens): the final-layer-normed state at each
    /// row's last unmasked position. Columns after the last unmasked one of
    /// every row are trimmed before the transformer runs.
    pub fn features(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2().map_err(|_| {
            Error::Shape(format!(
                "{WHO}: `input_ids` must be [B, T], got {:?}",
                input_ids.dims()
            ))
        })?;
        if b == 0 || t == 0 {
            return Err(Error::Shape(format!(
                "{WHO}: `input_ids` is empty ({:?})",
                input_ids.dims()
            )));
        }
        // each row's last unmasked position
        let mask_rows: Option<Vec<Vec<f64>>> = match attention_mask {
            Some(m) => {
                if m.dims() != [b, t] {
                    return Err(Error::Shape(format!(
                        "{WHO}: `attention_mask` is {:?}, `input_ids` is [{b}, {t}]",
                        m.dims()
                    )));
                }
                Some(m.to_dtype(DType::F64)?.to_vec2()?)
            }
            None => None,
        };
        let last: Vec<usize> = match &mask_rows {
            Some(rows) => rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    r.iter().rposition(|&v| v != 0.0).ok_or_else(|| {
                        Error::Shape(format!(
                            "{WHO}: row {i} of `attention_mask` has no token (all zeros)"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
            None => vec![t - 1; b],
        };
        let used = last.iter().max().map_or(t, |m| m + 1);
        // padding past the last token costs nothing and may exceed the table
        let max_pos = self.cfg.max_position_embeddings;
        if used > max_pos {
            return Err(Error::Shape(format!(
                "{WHO}: a sequence has {used} tokens, more than max_position_embeddings = {max_pos} (lower the tokenizer's max_length)"
            )));
        }
        let ids = input_ids.narrow(1, 0, used)?;
        let id_rows: Vec<Vec<i64>> = ids.to_dtype(DType::I64)?.to_vec2()?;
        for row in &id_rows {
            for &id in row {
                if id < 0 || id as u64 >= self.vocab as u64 {
                    return Err(Error::Shape(format!(
                        "{WHO}: token id {id} in `input_ids` is outside the vocabulary (vocab_size = {}; does the tokenizer match the model?)",
                        self.vocab
                    )));
                }
            }
        }
        let dtype = self.token_embedding.dtype();
        let device = self.token_embedding.device();
        let d = self.cfg.hidden_size;
        let flat: Vec<u32> = id_rows.iter().flatten().map(|&i| i as u32).collect();
        let flat = Tensor::from_vec(flat, b * used, device)?;
        let x = self
            .token_embedding
            .index_select(&flat, 0)?
            .reshape((b, used, d))?
            .broadcast_add(&self.position_embedding.narrow(0, 0, used)?.unsqueeze(0)?)?;
        // the key-padding mask only when something inside `used` is padding
        let key_mask = match &mask_rows {
            Some(rows) if rows.iter().any(|r| r[..used].contains(&0.0)) => {
                let v: Vec<f64> = rows
                    .iter()
                    .flat_map(|r| r[..used].iter().map(|&v| f64::from(u8::from(v != 0.0))))
                    .collect();
                Some(Tensor::from_vec(v, (b, used), device)?)
            }
            _ => None,
        };
        let bias = attention_bias(used, true, key_mask.as_ref(), dtype, device)?;
        let h = self.encoder.forward(&x, bias.as_ref(), ctx)?;
        let pick: Vec<u32> = last
            .iter()
            .enumerate()
            .map(|(i, &p)| (i * used + p) as u32)
            .collect();
        let pick = Tensor::from_vec(pick, b, device)?;
        let pooled = h.reshape((b * used, d))?.index_select(&pick, 0)?;
        // layer norm is per token: normalising the pooled states only is the same
        Ok(self.final_layer_norm.forward(&pooled)?)
    }
}

impl Encoder for ClipText {
    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let ids = batch.get("input_ids")?;
        self.features(ids, batch.tensors.get("attention_mask"), ctx)
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
    let cfg: ClipTextConfig = p.extract()?;
    Ok(Box::new(ClipText::new(&cfg, &ctx.meta, vb)?))
}

parallax_core::register!(
    encoder,
    "clip_text",
    "CLIP's text tower (Radford et al. 2021): causal pre-norm transformer, end-of-text token state; Hugging Face CLIP names",
    build
);
