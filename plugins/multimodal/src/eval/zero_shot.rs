//! `[[eval]] name = "zero_shot"`: zero-shot classification with a dual
//! image-text encoder (Radford et al. 2021, section 3.1.4).
//!
//! Each class is described by prompts — every template filled with every
//! phrase of the class — and its classifier weight is the normalised mean of
//! the prompts' normalised text embeddings (prompt ensembling, section
//! 3.1.4). A test image is assigned the class whose weight is most
//! cosine-similar to its image embedding. No label is used for training.
//!
//! ```toml
//! [[eval]]
//! name = "zero_shot"
//! templates = ["a photo of a {}.", "a blurry photo of a {}."]   # default: 8 of CLIP's ImageNet prompts
//! # classes = { "T-shirt/top" = ["t-shirt", "top"] }           # phrases per class name
//! # limit = 2000                                                # test images (seeded subset)
//! ```
//!
//! Class names come from the test split's data source; the default phrases
//! are those of the `captioned` source (synonyms for Fashion-MNIST's
//! classes, else the lower-cased class name). Prompts are tokenized like
//! the captions (see [`crate::tokens`]).

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use parallax_core::batch::{Batch, Sample};
use parallax_core::data::{BuildCtx, Split};
use parallax_core::error::{Error, Result};
use parallax_core::eval::features::{accuracy, source, subset};
use parallax_core::eval::{EvalCtx, Evaluator};
use parallax_core::losses::l2_normalize;
use parallax_core::methods::clip::dual;
use parallax_core::nn::encoder::{ForwardCtx, ImageText};
use parallax_core::recipe::Params;
use parallax_text::tokenizer::TextTokenizer;
use serde::Deserialize;

use crate::captioned::{check_templates, default_phrases, fill};
use crate::tokens::{caption_tokenizer, DEFAULT_MAX_LENGTH};

/// Eight of the prompt templates CLIP ensembles for ImageNet (Radford et
/// al. 2021, the prompt engineering notebook of its repository).
pub const DEFAULT_TEMPLATES: &[&str] = &[
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of the {}.",
    "a picture of a {}.",
    "a blurry photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of the small {}.",
];

/// `[[eval]] name = "zero_shot"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZeroShotConfig {
    /// Prompt templates, each with one `{}` for the class phrase.
    pub templates: Vec<String>,
    /// Phrases per class name (classes not listed get the default phrases).
    pub classes: BTreeMap<String, Vec<String>>,
    /// Evaluate on at most this many test images (a seeded subset).
    pub limit: Option<usize>,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Prompt length in tokens (as the captions').
    pub max_length: usize,
    /// The tokenizer (see [`crate::tokens`]).
    pub tokenizer: Option<String>,
    /// Run every this many epochs (0: only at the start and the end).
    pub every_epochs: usize,
}

impl Default for ZeroShotConfig {
    fn default() -> Self {
        ZeroShotConfig {
            templates: DEFAULT_TEMPLATES.iter().map(|s| s.to_string()).collect(),
            classes: BTreeMap::new(),
            limit: None,
            batch_size: 256,
            max_length: DEFAULT_MAX_LENGTH,
            tokenizer: None,
            every_epochs: 0,
        }
    }
}

/// The zero-shot evaluator.
pub struct ZeroShot {
    cfg: ZeroShotConfig,
    tokenizer: TextTokenizer,
}

/// Embeds `texts` with the text tower: normalised `[N, E]` on `device`.
pub fn embed_texts(
    it: &dyn ImageText,
    tokenizer: &TextTokenizer,
    texts: &[String],
    device: &Device,
    batch_size: usize,
) -> Result<Tensor> {
    let mut out = Vec::new();
    let mut ctx = ForwardCtx::eval();
    for chunk in texts.chunks(batch_size.max(1)) {
        let samples = chunk
            .iter()
            .map(|t| {
                let mut s = Sample::default();
                tokenizer.encode_into(t, "", &mut s)?;
                Ok(s)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = Batch::collate(&samples, &Device::Cpu)?.to_device(device)?;
        out.push(l2_normalize(&it.embed_text(&batch, &mut ctx)?)?.detach());
    }
    Ok(Tensor::cat(&out, 0)?)
}

impl ZeroShot {
    fn build(p: &Params, ctx: &BuildCtx) -> Result<Self> {
        let cfg: ZeroShotConfig = p.extract()?;
        check_templates(&cfg.templates, p, "templates")?;
        if let Some((name, _)) = cfg.classes.iter().find(|(_, v)| v.is_empty()) {
            return Err(p.error(&format!("classes.{name}"), "needs at least one phrase"));
        }
        let tokenizer = caption_tokenizer(cfg.tokenizer.as_deref(), ctx, cfg.max_length)?;
        Ok(ZeroShot { cfg, tokenizer })
    }

    /// The classifier weights `[K, E]`: per class, the normalised mean of
    /// its prompts' normalised embeddings.
    pub fn class_weights(
        &self,
        it: &dyn ImageText,
        class_names: &[String],
        device: &Device,
    ) -> Result<Tensor> {
        let mut rows = Vec::with_capacity(class_names.len());
        for name in class_names {
            let phrases = self
                .cfg
                .classes
                .get(name)
                .cloned()
                .unwrap_or_else(|| default_phrases(name));
            let prompts: Vec<String> = self
                .cfg
                .templates
                .iter()
                .flat_map(|t| phrases.iter().map(move |p| fill(t, p)))
                .collect();
            let e = embed_texts(it, &self.tokenizer, &prompts, device, self.cfg.batch_size)?;
            rows.push(l2_normalize(&e.mean_keepdim(0)?)?);
        }
        Ok(Tensor::cat(&rows, 0)?)
    }
}

impl Evaluator for ZeroShot {
    fn every_epochs(&self) -> usize {
        self.cfg.every_epochs
    }

    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Vec<(String, f64)>> {
        let it = dual(ctx.encoder, "evaluator `zero_shot`")?;
        let test = source(ctx, Split::Test)?;
        let names = test.meta().class_names;
        if names.is_empty() {
            return Err(Error::Data(format!(
                "zero_shot: {} has no class names to build prompts from",
                test.describe()
            )));
        }
        let weights = self.class_weights(it, &names, ctx.device)?;
        let idx = subset(test.len(), self.cfg.limit, ctx.seed, "zero_shot");
        let mut fctx = ForwardCtx::eval();
        let top1 = accuracy(test.as_ref(), &idx, ctx.device, |b| {
            let img = l2_normalize(&it.embed_image(b, &mut fctx)?)?;
            Ok(img.matmul(&weights.t()?)?)
        })?;
        Ok(vec![("zero_shot/top1".to_string(), top1)])
    }
}

parallax_core::register!(
    evaluator,
    "zero_shot",
    "zero-shot classification of a dual image-text encoder with ensembled prompt templates (CLIP)",
    |p, ctx| Ok(Box::new(ZeroShot::build(p, ctx)?))
);
