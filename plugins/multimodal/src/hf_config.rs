//! Hugging Face transformers' `CLIPConfig` (`config.json` of a `CLIPModel`
//! folder), read into the two towers' configurations and written back.
//!
//! Missing keys take transformers' defaults (OpenAI's ViT-B/32 CLIP,
//! Radford et al. 2021: `projection_dim` 512, `logit_scale_init_value`
//! 2.6592 = ln(1/0.07), the text and vision defaults of
//! [`ClipTextConfig`] / [`ClipVisionConfig`] with `vocab_size` 49408,
//! `image_size` 224 and `num_channels` 3). Keys this crate does not use
//! (token ids, `initializer_factor`, `id2label`, ...) are ignored, since
//! Hugging Face configurations carry many. The legacy `text_config_dict` /
//! `vision_config_dict` objects take precedence over `text_config` /
//! `vision_config`, as in transformers.

use parallax_core::error::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::clip_layers::Activation;
use crate::clip_text::{ClipTextConfig, CLIP_VOCAB_SIZE};
use crate::clip_vision::ClipVisionConfig;

/// transformers' default `projection_dim`.
pub const DEFAULT_PROJECTION_DIM: usize = 512;
/// transformers' default `logit_scale_init_value` (ln(1/0.07), CLIP's
/// initial temperature of 0.07).
pub const DEFAULT_LOGIT_SCALE_INIT: f64 = 2.6592;
/// transformers' default vision `image_size`.
pub const HF_IMAGE_SIZE: usize = 224;
/// transformers' default vision `num_channels`.
pub const HF_NUM_CHANNELS: usize = 3;

/// A Hugging Face CLIP configuration: the two towers, the width of the
/// shared embedding space and the initial logit scale.
#[derive(Clone, Debug, PartialEq)]
pub struct HfClipConfig {
    /// The text tower (`text_config`; `vocab_size` always set).
    pub text: ClipTextConfig,
    /// The image tower (`vision_config`; `image_size` and `num_channels`
    /// always set; `mean` / `std` are CLIP's defaults, which
    /// `config.json` does not carry).
    pub vision: ClipVisionConfig,
    /// The width of the shared embedding space (`projection_dim`).
    pub projection_dim: usize,
    /// The initial log inverse temperature (`logit_scale_init_value`).
    pub logit_scale_init: f64,
}

/// `text_config` keys this crate reads (all optional; `null` = default).
#[derive(Deserialize, Default)]
#[serde(default)]
struct HfText {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    max_position_embeddings: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
    attention_dropout: Option<f64>,
    dropout: Option<f64>,
}

/// `vision_config` keys this crate reads.
#[derive(Deserialize, Default)]
#[serde(default)]
struct HfVision {
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    image_size: Option<Value>,
    patch_size: Option<Value>,
    num_channels: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
    attention_dropout: Option<f64>,
    dropout: Option<f64>,
}

/// Top-level keys this crate reads.
#[derive(Deserialize, Default)]
#[serde(default)]
struct HfTop {
    text_config: Option<Map<String, Value>>,
    text_config_dict: Option<Map<String, Value>>,
    vision_config: Option<Map<String, Value>>,
    vision_config_dict: Option<Map<String, Value>>,
    projection_dim: Option<usize>,
    logit_scale_init_value: Option<f64>,
}

fn parse_err(origin: &str, e: impl std::fmt::Display) -> Error {
    Error::Data(format!(
        "{origin}: not a Hugging Face CLIP config.json: {e}"
    ))
}

fn activation(origin: &str, section: &str, name: Option<String>) -> Result<Activation> {
    match name {
        None => Ok(Activation::QuickGelu),
        Some(n) => Activation::from_name(&n).ok_or_else(|| {
            Error::Data(format!(
                "{origin}: `{section}.hidden_act` = \"{n}\" is not supported (quick_gelu or gelu)"
            ))
        }),
    }
}

/// A square size given as `n` or `[n, n]`.
fn square(origin: &str, key: &str, v: Option<Value>, default: usize) -> Result<usize> {
    let bad = |v: &Value| {
        Error::Data(format!(
            "{origin}: `vision_config.{key}` must be a positive integer or a square [n, n], got {v}"
        ))
    };
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(v) => {
            let n = match &v {
                Value::Number(n) => n.as_u64(),
                Value::Array(a) if a.len() == 2 && a[0] == a[1] => a[0].as_u64(),
                _ => None,
            };
            match n {
                Some(n) if n > 0 => Ok(n as usize),
                _ => Err(bad(&v)),
            }
        }
    }
}

impl HfClipConfig {
    /// Parses a `CLIPConfig` `config.json`; `origin` (the file) is named in
    /// errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let top: HfTop = serde_json::from_str(text).map_err(|e| parse_err(origin, e))?;
        let text_obj = top.text_config_dict.or(top.text_config).unwrap_or_default();
        let vision_obj = top
            .vision_config_dict
            .or(top.vision_config)
            .unwrap_or_default();
        let t: HfText = serde_json::from_value(Value::Object(text_obj))
            .map_err(|e| parse_err(origin, format!("text_config: {e}")))?;
        let v: HfVision = serde_json::from_value(Value::Object(vision_obj))
            .map_err(|e| parse_err(origin, format!("vision_config: {e}")))?;
        let td = ClipTextConfig::default();
        let text = ClipTextConfig {
            vocab_size: Some(t.vocab_size.unwrap_or(CLIP_VOCAB_SIZE)),
            hidden_size: t.hidden_size.unwrap_or(td.hidden_size),
            intermediate_size: t.intermediate_size.unwrap_or(td.intermediate_size),
            num_hidden_layers: t.num_hidden_layers.unwrap_or(td.num_hidden_layers),
            num_attention_heads: t.num_attention_heads.unwrap_or(td.num_attention_heads),
            max_position_embeddings: t
                .max_position_embeddings
                .unwrap_or(td.max_position_embeddings),
            hidden_act: activation(origin, "text_config", t.hidden_act)?,
            layer_norm_eps: t.layer_norm_eps.unwrap_or(td.layer_norm_eps),
            attention_dropout: t.attention_dropout.unwrap_or(td.attention_dropout),
            dropout: t.dropout.unwrap_or(td.dropout),
        };
        let vd = ClipVisionConfig::default();
        let vision = ClipVisionConfig {
            hidden_size: v.hidden_size.unwrap_or(vd.hidden_size),
            intermediate_size: v.intermediate_size.unwrap_or(vd.intermediate_size),
            num_hidden_layers: v.num_hidden_layers.unwrap_or(vd.num_hidden_layers),
            num_attention_heads: v.num_attention_heads.unwrap_or(vd.num_attention_heads),
            image_size: Some(square(origin, "image_size", v.image_size, HF_IMAGE_SIZE)?),
            patch_size: square(origin, "patch_size", v.patch_size, vd.patch_size)?,
            num_channels: Some(v.num_channels.unwrap_or(HF_NUM_CHANNELS)),
            hidden_act: activation(origin, "vision_config", v.hidden_act)?,
            layer_norm_eps: v.layer_norm_eps.unwrap_or(vd.layer_norm_eps),
            mean: vd.mean,
            std: vd.std,
            attention_dropout: v.attention_dropout.unwrap_or(vd.attention_dropout),
            dropout: v.dropout.unwrap_or(vd.dropout),
        };
        let cfg = HfClipConfig {
            text,
            vision,
            projection_dim: top.projection_dim.unwrap_or(DEFAULT_PROJECTION_DIM),
            logit_scale_init: top
                .logit_scale_init_value
                .unwrap_or(DEFAULT_LOGIT_SCALE_INIT),
        };
        cfg.text
            .validate()
            .and_then(|_| cfg.vision.validate())
            .map_err(|e| Error::Data(format!("{origin}: {e}")))?;
        if cfg.projection_dim == 0 {
            return Err(Error::Data(format!(
                "{origin}: `projection_dim` must be positive"
            )));
        }
        Ok(cfg)
    }

    /// The configuration as a `config.json` that transformers' `CLIPModel`
    /// reads back. Token ids are transformers' defaults for CLIP's tokenizer
    /// (`bos_token_id` 49406, `eos_token_id` 49407, `pad_token_id` 1);
    /// transformers pools the text at the first `eos_token_id`, so a model
    /// trained with another tokenizer should have `text_config.eos_token_id`
    /// set to that tokenizer's end-of-sequence id.
    pub fn to_json(&self) -> Value {
        let t = &self.text;
        let v = &self.vision;
        json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "logit_scale_init_value": self.logit_scale_init,
            "initializer_factor": 1.0,
            "text_config": {
                "model_type": "clip_text_model",
                "vocab_size": t.vocab_size.unwrap_or(CLIP_VOCAB_SIZE),
                "hidden_size": t.hidden_size,
                "intermediate_size": t.intermediate_size,
                "num_hidden_layers": t.num_hidden_layers,
                "num_attention_heads": t.num_attention_heads,
                "max_position_embeddings": t.max_position_embeddings,
                "hidden_act": t.hidden_act.as_str(),
                "layer_norm_eps": t.layer_norm_eps,
                "attention_dropout": t.attention_dropout,
                "dropout": t.dropout,
                "projection_dim": self.projection_dim,
                "initializer_range": 0.02,
                "initializer_factor": 1.0,
                "bos_token_id": 49406,
                "eos_token_id": 49407,
                "pad_token_id": 1,
            },
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_size": v.hidden_size,
                "intermediate_size": v.intermediate_size,
                "num_hidden_layers": v.num_hidden_layers,
                "num_attention_heads": v.num_attention_heads,
                "image_size": v.image_size.unwrap_or(HF_IMAGE_SIZE),
                "patch_size": v.patch_size,
                "num_channels": v.num_channels.unwrap_or(HF_NUM_CHANNELS),
                "hidden_act": v.hidden_act.as_str(),
                "layer_norm_eps": v.layer_norm_eps,
                "attention_dropout": v.attention_dropout,
                "dropout": v.dropout,
                "projection_dim": self.projection_dim,
                "initializer_range": 0.02,
                "initializer_factor": 1.0,
            },
        })
    }
}
