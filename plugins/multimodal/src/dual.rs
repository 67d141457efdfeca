//! `[encoder] name = "clip"`: a dual image-text encoder (Radford et al.
//! 2021). An image tower and a text tower, each followed by a linear map
//! without bias into a shared `embed_dim`-wide space, and a learnable logit
//! scale (initialised to ln(1 / 0.07)); the `clip` method trains it.
//!
//! ```toml
//! [encoder]
//! name = "clip"
//! embed_dim = 512                  # the shared space (CLIP ViT-B/32: 512)
//! [encoder.image]                  # any image encoder: clip_vision, vit, resnet, small_cnn
//! name = "clip_vision"
//! [encoder.text]                   # any text encoder: clip_text, bert
//! name = "clip_text"
//! ```
//!
//! or, from a Hugging Face CLIP model (`config.json` + `model.safetensors`
//! with `CLIPModel`'s names: `vision_model.*`, `text_model.*`,
//! `visual_projection.weight`, `text_projection.weight`, `logit_scale`):
//!
//! ```toml
//! [encoder]
//! name = "clip"
//! pretrained = "openai/clip-vit-base-patch32"   # a folder or a Hub id
//! revision = "main"
//! ```
//!
//! The towers and projections are then built from its `config.json` and
//! every tensor of the checkpoint is loaded into them (a missing or
//! misshapen tensor, or one that no variable takes, is an error naming the
//! file and the tensor); captions and prompts use its `tokenizer.json`.
//!
//! Variables are built under the Hugging Face names (`encoder.vision_model.*`,
//! `encoder.text_projection.weight`, ...). `forward` gives the image tower's
//! features before the projection (what linear probes and kNN evaluate);
//! [`ImageText`] gives the projected embeddings of both towers.
//!
//! With `clip_vision` and `clip_text` towers (from scratch or pretrained),
//! `parallax export RUN --out DIR` writes the trained model back in the
//! Hugging Face layout: `config.json` (the pretrained model's own, or one
//! made from the towers' settings), `model.safetensors` and the tokenizer
//! (the pretrained model's `tokenizer.json`, or the embedded bert-base-uncased
//! one for a model trained from scratch on its vocabulary).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Module, Tensor};
use candle_nn::{Init, VarBuilder};
use parallax_core::batch::Batch;
use parallax_core::checkpoint::write_atomic;
use parallax_core::data::{BuildCtx, DataMeta, Split};
use parallax_core::error::{Error, Result};
use parallax_core::nn::encoder::{Encoder, EncoderCtx, ForwardCtx, ImageText};
use parallax_core::ops::linear::Linear;
use parallax_core::recipe::{Component, Params};
use parallax_core::registry;
use parallax_text::hub::resolve_model_files;
use parallax_vision::pretrained::{Checkpoint, Recorder};
use serde::Deserialize;

use crate::clip_text::ClipText;
use crate::clip_vision::ClipVision;
use crate::hf_config::HfClipConfig;

/// CLIP's initial logit scale: ln(1 / 0.07) (Radford et al. 2021, section 2.5).
pub const LOGIT_SCALE_INIT: f64 = 2.659_260_036_932_778;

/// `[encoder] name = "clip"` options (the `image` and `text` tables are
/// taken out first).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DualConfig {
    /// Width of the shared space: 512 (CLIP ViT-B/32).
    pub embed_dim: usize,
    /// Initial `logit_scale`: ln(1 / 0.07).
    pub logit_scale_init: f64,
    /// A Hugging Face CLIP model: a folder or a Hub id.
    pub pretrained: Option<String>,
    /// The Hub revision (branch, tag or commit) of `pretrained`.
    pub revision: Option<String>,
}

impl Default for DualConfig {
    fn default() -> Self {
        DualConfig {
            embed_dim: 512,
            logit_scale_init: LOGIT_SCALE_INIT,
            pretrained: None,
            revision: None,
        }
    }
}

/// Tensors of a Hugging Face CLIP checkpoint that are buffers, not weights.
const IGNORED: &[&str] = &[
    "text_model.embeddings.position_ids",
    "vision_model.embeddings.position_ids",
];

/// The dual encoder.
pub struct DualEncoder {
    image: Box<dyn Encoder>,
    text: Box<dyn Encoder>,
    visual_projection: Linear,
    text_projection: Linear,
    logit_scale: Tensor,
    embed_dim: usize,
    /// Every variable by its Hugging Face name (for export).
    named: Vec<(String, Tensor)>,
    /// The model's Hugging Face configuration, when both towers are CLIP's.
    hf: Option<HfClipConfig>,
    /// The pretrained model's `config.json`, written back on export.
    raw_config: Option<serde_json::Value>,
    /// The pretrained model's `tokenizer.json`, copied on export.
    tokenizer: Option<PathBuf>,
}

/// A tower of the recipe: CLIP's own (with its configuration, for export)
/// or any registered encoder.
fn build_tower(
    spec: &Component,
    meta: &DataMeta,
    vb: VarBuilder<'static>,
) -> Result<(Box<dyn Encoder>, Option<Tower>)> {
    Ok(match spec.name.as_str() {
        "clip_vision" => {
            let t = ClipVision::new(&spec.params.extract()?, meta, vb)?;
            let c = t.config().clone();
            (Box::new(t), Some(Tower::Vision(c)))
        }
        "clip_text" => {
            let t = ClipText::new(&spec.params.extract()?, meta, vb)?;
            let c = t.config().clone();
            (Box::new(t), Some(Tower::Text(c)))
        }
        _ => (tower(spec, meta, vb)?, None),
    })
}

/// The configuration of a CLIP tower.
enum Tower {
    Vision(crate::clip_vision::ClipVisionConfig),
    Text(crate::clip_text::ClipTextConfig),
}

fn projection(vb: &VarBuilder, name: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
    // CLIP's initialisation of the projections: normal with std in_dim^-1/2
    let w = vb.pp(name).get_with_hints(
        (out_dim, in_dim),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: (in_dim as f64).powf(-0.5),
        },
    )?;
    Ok(Linear::new(w, None))
}

fn tower(spec: &Component, meta: &DataMeta, vb: VarBuilder<'static>) -> Result<Box<dyn Encoder>> {
    (registry::encoder(&spec.name)?.build)(&spec.params, &EncoderCtx { meta: meta.clone() }, vb)
}

impl DualEncoder {
    /// Builds the encoder from its recipe table for data described by `meta`.
    pub fn build(params: &Params, meta: &DataMeta, vb: VarBuilder<'static>) -> Result<Self> {
        let mut params = params.clone();
        let image = params.take_component("image")?;
        let text = params.take_component("text")?;
        let cfg: DualConfig = params.extract()?;
        match &cfg.pretrained {
            Some(spec) => {
                if image.is_some() || text.is_some() {
                    return Err(params.error(
                        if image.is_some() { "image" } else { "text" },
                        "the towers come from the pretrained model's config.json; remove this table or remove `pretrained`",
                    ));
                }
                Self::pretrained(spec, cfg.revision.as_deref(), meta, vb)
            }
            None => {
                let need = |c: Option<Component>, key: &str, example: &str| {
                    c.ok_or_else(|| {
                        params.error(
                            key,
                            format!("missing: the {key} tower, e.g. [encoder.{key}] name = \"{example}\" (or set `pretrained`)"),
                        )
                    })
                };
                let image = need(image, "image", "clip_vision")?;
                let text = need(text, "text", "clip_text")?;
                if cfg.embed_dim == 0 {
                    return Err(params.error("embed_dim", "must be at least 1"));
                }
                if !cfg.logit_scale_init.is_finite() {
                    return Err(params.error("logit_scale_init", "must be finite"));
                }
                let recorder = Recorder::new();
                let rvb = recorder.wrap(vb.clone());
                let (image, vision_cfg) = build_tower(&image, meta, rvb.pp("vision_model"))?;
                let (text, text_cfg) = build_tower(&text, meta, rvb.pp("text_model"))?;
                let mut dual =
                    Self::assemble(image, text, cfg.embed_dim, cfg.logit_scale_init, &rvb)?;
                if let (Some(Tower::Vision(vision)), Some(Tower::Text(text))) =
                    (vision_cfg, text_cfg)
                {
                    dual.hf = Some(HfClipConfig {
                        text,
                        vision,
                        projection_dim: cfg.embed_dim,
                        logit_scale_init: cfg.logit_scale_init,
                    });
                }
                dual.named = named(&vb, &recorder)?;
                Ok(dual)
            }
        }
    }

    fn assemble(
        image: Box<dyn Encoder>,
        text: Box<dyn Encoder>,
        embed_dim: usize,
        logit_scale_init: f64,
        vb: &VarBuilder,
    ) -> Result<Self> {
        let visual_projection = projection(vb, "visual_projection", image.output_dim(), embed_dim)?;
        let text_projection = projection(vb, "text_projection", text.output_dim(), embed_dim)?;
        // f32 even when the towers compute in bf16/f16: the method clamps it
        // in place, which an optimizer's f32 master copy would undo
        let logit_scale = vb.get_with_hints_dtype(
            1,
            "logit_scale",
            Init::Const(logit_scale_init),
            candle_core::DType::F32,
        )?;
        Ok(DualEncoder {
            image,
            text,
            visual_projection,
            text_projection,
            logit_scale,
            embed_dim,
            named: Vec::new(),
            hf: None,
            raw_config: None,
            tokenizer: None,
        })
    }

    fn pretrained(
        spec: &str,
        revision: Option<&str>,
        meta: &DataMeta,
        vb: VarBuilder<'static>,
    ) -> Result<Self> {
        let ctx = BuildCtx::new(0, Split::Train);
        let files = resolve_model_files(
            spec,
            revision,
            &ctx,
            &["config.json", "model.safetensors"],
            &["tokenizer.json"],
        )?;
        let cpath = files.file("config.json")?;
        let config_text = std::fs::read_to_string(&cpath).map_err(|e| Error::io(&cpath, e))?;
        let hf = HfClipConfig::from_json(&config_text, &cpath.display().to_string())?;
        let wpath = files.file("model.safetensors")?;
        let mut tensors = candle_core::safetensors::load(&wpath, &Device::Cpu)
            .map_err(|e| Error::Data(format!("{}: {e}", wpath.display())))?;
        // Hugging Face stores the logit scale as a scalar; ours holds one value
        if let Some(s) = tensors.remove("logit_scale") {
            tensors.insert("logit_scale".into(), s.reshape(1)?);
        }
        let ckpt = Checkpoint::from_tensors(&wpath.display().to_string(), tensors);
        // the towers' shapes come from config.json: check each variable
        // against the weights before it is made
        let recorder = Recorder::checked_against(&ckpt);
        let rvb = recorder.wrap(vb.clone());
        let image = ClipVision::new(&hf.vision, meta, rvb.pp("vision_model"))?;
        let text = ClipText::new(&hf.text, meta, rvb.pp("text_model"))?;
        let mut dual = Self::assemble(
            Box::new(image),
            Box::new(text),
            hf.projection_dim,
            hf.logit_scale_init,
            &rvb,
        )?;
        ckpt.load_into(&rvb, &recorder.vars(), IGNORED)?;
        dual.named = named(&vb, &recorder)?;
        dual.raw_config = serde_json::from_str(&config_text).ok();
        dual.tokenizer = files.files.get("tokenizer.json").cloned();
        dual.hf = Some(hf);
        Ok(dual)
    }
}

/// The variables recorded through `recorder`, by their names under `vb`.
fn named(vb: &VarBuilder, recorder: &Recorder) -> Result<Vec<(String, Tensor)>> {
    recorder
        .vars()
        .into_iter()
        .map(|(name, shape)| {
            let t = vb.get(shape, &name)?;
            Ok((name, t))
        })
        .collect()
}

impl DualEncoder {
    /// Writes the model in the Hugging Face CLIP layout into `dir`.
    fn export_hf(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let hf = self.hf.as_ref().ok_or_else(|| {
            Error::Recipe(
                "export writes the Hugging Face CLIP layout: it needs `clip_vision` and `clip_text` towers".into(),
            )
        })?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let embedded_vocab = self.tokenizer.is_none()
            && hf.text.vocab_size == Some(parallax_text::tokenizer::EMBEDDED_VOCAB_SIZE);
        let config = match &self.raw_config {
            Some(raw) => raw.clone(),
            None => {
                let mut c = hf.to_json();
                if embedded_vocab {
                    // bert-base-uncased's [CLS], [SEP] and [PAD]: transformers
                    // pools CLIP's text at the first eos_token_id
                    let t = &mut c["text_config"];
                    t["bos_token_id"] = 101.into();
                    t["eos_token_id"] = 102.into();
                    t["pad_token_id"] = 0.into();
                }
                c
            }
        };
        let mut written = Vec::new();
        let cpath = dir.join("config.json");
        let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Data(e.to_string()))?;
        write_atomic(&cpath, text.as_bytes())?;
        written.push(cpath);
        let mut tensors = HashMap::new();
        for (name, t) in &self.named {
            let mut t = t.detach().to_device(&Device::Cpu)?;
            if name == "logit_scale" {
                // Hugging Face stores a scalar
                t = t.reshape(())?;
            }
            tensors.insert(name.clone(), t);
        }
        let wpath = dir.join("model.safetensors");
        let tmp = dir.join("model.safetensors.tmp");
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, &wpath).map_err(|e| Error::io(&wpath, e))?;
        written.push(wpath);
        let tpath = dir.join("tokenizer.json");
        match &self.tokenizer {
            Some(src) => {
                let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
                write_atomic(&tpath, &bytes)?;
                written.push(tpath);
            }
            None if embedded_vocab => {
                let bytes = parallax_text::tokenizer::TextTokenizer::embedded(
                    hf.text.max_position_embeddings.max(2),
                )?
                .to_json()?;
                write_atomic(&tpath, &bytes)?;
                written.push(tpath);
            }
            None => {}
        }
        Ok(written)
    }
}

impl Encoder for DualEncoder {
    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let f = self.image.forward(batch, ctx)?;
        Ok(if f.rank() == 3 { f.mean(1)? } else { f })
    }

    fn output_dim(&self) -> usize {
        self.image.output_dim()
    }

    fn image_text(&self) -> Option<&dyn ImageText> {
        Some(self)
    }

    fn export(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.export_hf(dir)
    }
}

impl ImageText for DualEncoder {
    fn embed_image(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        Ok(self.visual_projection.forward(&self.forward(batch, ctx)?)?)
    }

    fn embed_text(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let f = self.text.forward(batch, ctx)?;
        let f = if f.rank() == 3 { f.mean(1)? } else { f };
        Ok(self.text_projection.forward(&f)?)
    }

    fn logit_scale(&self) -> &Tensor {
        &self.logit_scale
    }

    fn embed_dim(&self) -> usize {
        self.embed_dim
    }
}

parallax_core::register!(
    encoder,
    "clip",
    "dual image-text encoder (image and text towers, projections, logit scale); loads and exports Hugging Face CLIP",
    |p, ctx, vb| Ok(Box::new(DualEncoder::build(p, &ctx.meta, vb)?))
);
