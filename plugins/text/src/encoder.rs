//! The `bert` encoder: a BERT model with mean or [CLS] pooling, either
//! pulled from the Hugging Face Hub / a model folder (`pretrained`) or
//! initialised from the seed with the given architecture.
//!
//! ```toml
//! [encoder]
//! name = "bert"
//! pretrained = "sentence-transformers/all-MiniLM-L6-v2"   # or a folder
//! revision = "main"                                       # optional
//! pooling = "mean"                                        # or "cls"
//! ```
//!
//! From scratch, the architecture keys of Hugging Face's `config.json`
//! (`hidden_size`, `num_hidden_layers`, ...) set the model, defaulting to
//! BERT-base. `parallax export RUN --out DIR` writes the trained encoder
//! back as `config.json` + `model.safetensors` (+ the tokenizer files).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use parallax_core::batch::Batch;
use parallax_core::checkpoint::write_atomic;
use parallax_core::data::BuildCtx;
use parallax_core::error::{Error, Result};
use parallax_core::nn::encoder::{Encoder, ForwardCtx};
use serde::Deserialize;

use crate::bert::config::BertConfig;
use crate::bert::model::{mean_pool, normalize_names, BertModel, Params};
use crate::hub::resolve_model_files;
use crate::tokenizer::TextTokenizer;

/// How token states become one sentence vector.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over the tokens (sentence-transformers' default, and what
    /// all-MiniLM-L6-v2 was trained with).
    #[default]
    Mean,
    /// The `[CLS]` token's state (SimCSE's choice for BERT).
    Cls,
}

/// `[encoder] name = "bert"` options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BertEncoderConfig {
    /// A model folder or Hugging Face Hub id to load.
    pub pretrained: Option<String>,
    /// The Hub revision (branch, tag or commit) of `pretrained`.
    pub revision: Option<String>,
    /// Mean (default) or CLS pooling.
    pub pooling: Pooling,
    /// Overrides the model's hidden dropout (SimCSE: 0.1).
    pub hidden_dropout_prob: Option<f64>,
    /// Overrides the model's attention dropout.
    pub attention_probs_dropout_prob: Option<f64>,
    /// Architecture, from scratch only (BERT-base by default).
    pub vocab_size: Option<usize>,
    /// Width (from scratch).
    pub hidden_size: Option<usize>,
    /// Layers (from scratch).
    pub num_hidden_layers: Option<usize>,
    /// Heads (from scratch).
    pub num_attention_heads: Option<usize>,
    /// Feed-forward width (from scratch; default 4 x hidden_size).
    pub intermediate_size: Option<usize>,
    /// Activation (from scratch).
    pub hidden_act: Option<String>,
    /// Positions (from scratch).
    pub max_position_embeddings: Option<usize>,
}

/// Files a pretrained BERT folder or repository needs.
pub const REQUIRED_FILES: &[&str] = &["config.json", "model.safetensors"];

/// Files kept alongside when present (copied on export): the tokenizer and
/// the tokenizer / sentence-transformers files of `parallax_hub::MODEL_OPTIONAL`.
pub fn optional_files() -> Vec<&'static str> {
    std::iter::once("tokenizer.json")
        .chain(parallax_hub::MODEL_OPTIONAL.iter().copied())
        .collect()
}

/// The BERT encoder.
pub struct BertEncoder {
    model: BertModel,
    pooling: Pooling,
    named: Vec<(String, Tensor)>,
    raw_config: Option<serde_json::Value>,
    /// Files of the pretrained model to copy on export.
    extra_files: Vec<(String, PathBuf)>,
}

impl BertEncoder {
    /// Builds from the recipe's options (`ctx` resolves relative folders).
    pub fn build(
        cfg: &BertEncoderConfig,
        vb: candle_nn::VarBuilder<'static>,
        ctx: &BuildCtx,
    ) -> Result<Self> {
        let (mut bert, raw, tensors, origin, extra) = match &cfg.pretrained {
            Some(spec) => {
                for (key, set) in [
                    ("vocab_size", cfg.vocab_size.is_some()),
                    ("hidden_size", cfg.hidden_size.is_some()),
                    ("num_hidden_layers", cfg.num_hidden_layers.is_some()),
                    ("num_attention_heads", cfg.num_attention_heads.is_some()),
                    ("intermediate_size", cfg.intermediate_size.is_some()),
                    ("hidden_act", cfg.hidden_act.is_some()),
                    (
                        "max_position_embeddings",
                        cfg.max_position_embeddings.is_some(),
                    ),
                ] {
                    if set {
                        return Err(Error::invalid(
                            "encoder `bert`",
                            format!("`{key}` comes from the pretrained model's config.json; remove it or remove `pretrained`"),
                        ));
                    }
                }
                let files = resolve_model_files(
                    spec,
                    cfg.revision.as_deref(),
                    ctx,
                    REQUIRED_FILES,
                    &optional_files(),
                )?;
                let cpath = files.file("config.json")?;
                let text = std::fs::read_to_string(&cpath).map_err(|e| Error::io(&cpath, e))?;
                let (bert, raw) = BertConfig::from_json(&text, &cpath.display().to_string())?;
                let wpath = files.file("model.safetensors")?;
                let tensors = candle_core::safetensors::load(&wpath, &Device::Cpu)
                    .map_err(|e| Error::Data(format!("{}: {e}", wpath.display())))?;
                let extra = optional_files()
                    .iter()
                    .filter_map(|f| files.files.get(*f).map(|p| (f.to_string(), p.clone())))
                    .collect();
                (
                    bert,
                    Some(raw),
                    Some(normalize_names(tensors)),
                    wpath.display().to_string(),
                    extra,
                )
            }
            None => {
                let mut b = BertConfig::default();
                if let Some(v) = cfg.vocab_size {
                    b.vocab_size = v;
                }
                if let Some(v) = cfg.hidden_size {
                    b.hidden_size = v;
                    b.intermediate_size = 4 * v;
                }
                if let Some(v) = cfg.num_hidden_layers {
                    b.num_hidden_layers = v;
                }
                if let Some(v) = cfg.num_attention_heads {
                    b.num_attention_heads = v;
                }
                if let Some(v) = cfg.intermediate_size {
                    b.intermediate_size = v;
                }
                if let Some(v) = &cfg.hidden_act {
                    b.hidden_act = v.clone();
                }
                if let Some(v) = cfg.max_position_embeddings {
                    b.max_position_embeddings = v;
                }
                (b, None, None, "bert".to_string(), Vec::new())
            }
        };
        if let Some(p) = cfg.hidden_dropout_prob {
            bert.hidden_dropout_prob = p;
        }
        if let Some(p) = cfg.attention_probs_dropout_prob {
            bert.attention_probs_dropout_prob = p;
        }
        bert.validate()?;
        let params = Params::new(vb, tensors.as_ref(), &origin, bert.initializer_range);
        let model = BertModel::new(&bert, &params)?;
        Ok(BertEncoder {
            model,
            pooling: cfg.pooling,
            named: params.into_named(),
            raw_config: raw,
            extra_files: extra,
        })
    }

    /// The underlying model.
    pub fn model(&self) -> &BertModel {
        &self.model
    }
}

impl Encoder for BertEncoder {
    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let ids = batch.get("input_ids")?;
        let mask = batch.get("attention_mask")?;
        // trim the batch's padding to its longest sequence
        let longest = mask
            .to_dtype(candle_core::DType::F32)?
            .sum(1)?
            .max_all()?
            .to_scalar::<f32>()? as usize;
        let t = longest.max(1).min(ids.dim(1)?);
        let ids = ids.narrow(1, 0, t)?;
        let mask = mask.narrow(1, 0, t)?;
        let hidden = self.model.forward(&ids, &mask, ctx)?;
        match self.pooling {
            Pooling::Mean => mean_pool(&hidden, &mask),
            Pooling::Cls => Ok(hidden.narrow(1, 0, 1)?.squeeze(1)?),
        }
    }

    fn output_dim(&self) -> usize {
        self.model.config().hidden_size
    }

    fn export(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut written = Vec::new();
        let config = self.model.config().to_json(self.raw_config.as_ref())?;
        let cpath = dir.join("config.json");
        let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Data(e.to_string()))?;
        write_atomic(&cpath, text.as_bytes())?;
        written.push(cpath);
        let tensors: HashMap<String, Tensor> = self
            .named
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.detach().to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        let wpath = dir.join("model.safetensors");
        let tmp = dir.join("model.safetensors.tmp");
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, &wpath).map_err(|e| Error::io(&wpath, e))?;
        written.push(wpath);
        if self.extra_files.is_empty()
            && self.model.config().vocab_size == crate::tokenizer::EMBEDDED_VOCAB_SIZE
        {
            // trained from scratch on the embedded vocabulary
            let p = dir.join("tokenizer.json");
            write_atomic(&p, &TextTokenizer::embedded(512)?.to_json()?)?;
            written.push(p);
        }
        for (name, src) in &self.extra_files {
            let dst = dir.join(name);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
            write_atomic(&dst, &bytes)?;
            written.push(dst);
        }
        Ok(written)
    }
}

parallax_core::register!(
    encoder,
    "bert",
    "BERT / MiniLM sentence encoder (mean or CLS pooling), from the Hugging Face Hub or from scratch",
    |p, _ctx, vb| {
        let cfg: BertEncoderConfig = p.extract()?;
        let build = BuildCtx::new(0, parallax_core::data::Split::Train);
        Ok(Box::new(BertEncoder::build(&cfg, vb, &build)?))
    }
);
