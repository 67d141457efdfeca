//! `[data] name = "captioned"`: image-caption pairs made from any labelled
//! image source, with captions written from the class names and varied
//! templates ("a photo of a {}.", ...), so that CLIP can train on
//! Fashion-MNIST.
//!
//! ```toml
//! [data]
//! name = "captioned"
//! max_length = 32                      # tokens per caption
//! # tokenizer = "bert-base-uncased"    # see tokens::caption_tokenizer
//! # templates = ["a photo of a {}.", "a picture of the {}."]
//! # classes = { "T-shirt/top" = ["t-shirt", "top"] }
//! [data.images]                        # default: the embedded Fashion-MNIST slice
//! name = "fashion_mnist"
//! ```
//!
//! The caption of sample `i` is a template and a phrase of its class, both
//! drawn from a stream seeded by (the run's seed, the split, `i`): the same
//! every epoch and every run with that seed. Every possible caption is
//! tokenized once when the source is built.

use std::collections::BTreeMap;
use std::sync::Arc;

use parallax_core::batch::{Field, Sample};
use parallax_core::data::{BuildCtx, DataMeta, DataSource, Split};
use parallax_core::error::{Error, Result};
use parallax_core::recipe::{Component, Params};
use parallax_core::rng::Rng;
use serde::Deserialize;

use parallax_text::tokenizer::TextTokenizer;

use crate::tokens::{caption_tokenizer, CaptionTokens, DEFAULT_MAX_LENGTH};

/// The default templates: photos of clothing, small and grey. Each holds
/// `{}` once, where the class phrase goes.
pub const DEFAULT_TEMPLATES: [&str; 16] = [
    "a photo of a {}.",
    "a black and white photo of the {}.",
    "a low resolution photo of a {}.",
    "a picture of a {}.",
    "a {} on a dark background.",
    "a small grey image of a {}.",
    "an item of clothing: a {}.",
    "a product photo of a {}.",
    "a blurry photo of the {}.",
    "a grayscale picture of a {}.",
    "a close-up photo of the {}.",
    "a cropped photo of a {}.",
    "a tiny image of the {}.",
    "this is a {}.",
    "a centered photo of a {}.",
    "a thumbnail of a {} from an online shop.",
];

/// Built-in phrases for Fashion-MNIST's class names.
const FASHION_MNIST_PHRASES: [(&str, &[&str]); 10] = [
    ("T-shirt/top", &["t-shirt", "top", "tee"]),
    ("Trouser", &["trousers", "pants"]),
    ("Pullover", &["pullover", "sweater"]),
    ("Dress", &["dress"]),
    ("Coat", &["coat", "jacket"]),
    ("Sandal", &["sandal"]),
    ("Shirt", &["shirt", "button-up shirt"]),
    ("Sneaker", &["sneaker", "trainer"]),
    ("Bag", &["bag", "handbag"]),
    ("Ankle boot", &["ankle boot", "boot"]),
];

/// The phrases for class `name` when the recipe gives none: built-in
/// synonyms for Fashion-MNIST's class names, else the lower-cased name.
pub fn default_phrases(name: &str) -> Vec<String> {
    match FASHION_MNIST_PHRASES.iter().find(|(n, _)| *n == name) {
        Some((_, phrases)) => phrases.iter().map(|p| p.to_string()).collect(),
        None => vec![name.to_lowercase()],
    }
}

/// `template` with `phrase` in place of its `{}`; an article "a" right
/// before the `{}` becomes "an" when the phrase starts with a, e, i or o.
pub fn fill(template: &str, phrase: &str) -> String {
    let Some((pre, post)) = template.split_once("{}") else {
        return template.to_string();
    };
    let vowel = phrase
        .chars()
        .next()
        .is_some_and(|c| matches!(c.to_ascii_lowercase(), 'a' | 'e' | 'i' | 'o'));
    let article = pre.ends_with(" a ") || pre == "a " || pre == "A ";
    if vowel && article {
        format!("{}n {phrase}{post}", &pre[..pre.len() - 1])
    } else {
        format!("{pre}{phrase}{post}")
    }
}

/// Checks that there is a template and that each holds `{}` exactly once;
/// an error names `key` of `p`.
pub fn check_templates(templates: &[String], p: &Params, key: &str) -> Result<()> {
    if templates.is_empty() {
        return Err(p.error(key, "must hold at least one template"));
    }
    if let Some(bad) = templates.iter().find(|t| t.matches("{}").count() != 1) {
        return Err(p.error(
            key,
            format!("{bad:?} must contain \"{{}}\" (where the class goes) exactly once"),
        ));
    }
    Ok(())
}

/// `[data] name = "captioned"` options (less the `[data.images]` table).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptionedConfig {
    /// Tokens per caption (padded or truncated); default
    /// [`DEFAULT_MAX_LENGTH`] (32).
    #[serde(default = "default_max_length")]
    max_length: usize,
    /// The tokenizer (see [`crate::tokens`]); default: the recipe
    /// encoder's, else the embedded `bert-base-uncased` vocabulary.
    #[serde(default)]
    tokenizer: Option<String>,
    /// Caption templates, each with `{}` exactly once; default
    /// [`DEFAULT_TEMPLATES`].
    #[serde(default)]
    templates: Option<Vec<String>>,
    /// Phrases per class name (each a non-empty list); classes left out
    /// keep [`default_phrases`].
    #[serde(default)]
    classes: BTreeMap<String, Vec<String>>,
}

fn default_max_length() -> usize {
    DEFAULT_MAX_LENGTH
}

/// A labelled image source with a caption for each image.
pub struct Captioned {
    images: Arc<dyn DataSource>,
    seed: u64,
    split: Split,
    templates: Vec<String>,
    /// The phrases of each class, by label.
    phrases: Vec<Vec<String>>,
    /// Every possible caption, tokenized.
    tokens: CaptionTokens,
    meta: DataMeta,
}

impl Captioned {
    /// Captions for the labelled `images`: `phrases[label]` (each list
    /// non-empty) filled into `templates` (see [`fill`]), drawn from
    /// (`seed`, `split`, index), tokenized by `tokenizer` once here.
    pub fn new(
        images: Arc<dyn DataSource>,
        seed: u64,
        split: Split,
        templates: Vec<String>,
        phrases: Vec<Vec<String>>,
        tokenizer: &TextTokenizer,
    ) -> Result<Self> {
        if templates.is_empty() {
            return Err(Error::invalid("captioned", "no caption templates"));
        }
        if let Some(k) = phrases.iter().position(|p| p.is_empty()) {
            return Err(Error::invalid(
                "captioned",
                format!("class {k} has no phrases"),
            ));
        }
        let tokens = CaptionTokens::new(
            tokenizer,
            templates
                .iter()
                .flat_map(|t| phrases.iter().flatten().map(move |p| fill(t, p))),
        )?;
        let mut meta = images.meta();
        meta.vocab_size = Some(tokenizer.vocab_size());
        Ok(Captioned {
            images,
            seed,
            split,
            templates,
            phrases,
            tokens,
            meta,
        })
    }

    /// The number of templates.
    pub fn num_templates(&self) -> usize {
        self.templates.len()
    }

    /// The caption of a sample with `label` at `index`.
    fn caption_for(&self, index: usize, label: i64) -> Result<String> {
        let phrases = usize::try_from(label)
            .ok()
            .and_then(|l| self.phrases.get(l))
            .ok_or_else(|| {
                Error::Data(format!(
                    "captioned: sample {index} of {} has label {label}, but there are {} classes",
                    self.images.describe(),
                    self.phrases.len()
                ))
            })?;
        let split = match self.split {
            Split::Train => 0,
            Split::Test => 1,
        };
        let mut rng = Rng::derive(self.seed, "captioned/caption", &[split, index as u64]);
        let mut pick = |n: usize| ((rng.uniform() * n as f32) as usize).min(n - 1);
        let template = &self.templates[pick(self.templates.len())];
        let phrase = &phrases[pick(phrases.len())];
        Ok(fill(template, phrase))
    }

    /// The label of an image sample.
    fn label(&self, index: usize, s: &Sample) -> Result<i64> {
        match s.get("label") {
            Some(Field::I64 { data, .. }) if data.len() == 1 => Ok(data[0]),
            _ => Err(Error::Data(format!(
                "captioned: sample {index} of {} has no label",
                self.images.describe()
            ))),
        }
    }

    /// The caption of sample `index`.
    pub fn caption(&self, index: usize) -> Result<String> {
        let s = self.images.get(index)?;
        let label = self.label(index, &s)?;
        self.caption_for(index, label)
    }
}

impl DataSource for Captioned {
    fn len(&self) -> usize {
        self.images.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let mut s = self.images.get(index)?;
        let label = self.label(index, &s)?;
        let caption = self.caption_for(index, label)?;
        self.tokens.insert_into(&caption, &mut s, "captioned")?;
        Ok(s)
    }

    fn meta(&self) -> DataMeta {
        self.meta.clone()
    }

    fn describe(&self) -> String {
        let inner = self.images.describe();
        let n = self.templates.len();
        match inner.strip_suffix(')') {
            Some(head) => format!("captioned {head}; {n} templates)"),
            None => format!("captioned {inner} ({n} templates)"),
        }
    }
}

impl Captioned {
    /// The source a `[data] name = "captioned"` table describes, for
    /// `ctx.split` (the image source is built with the same `ctx`).
    pub fn from_params(p: &Params, ctx: &BuildCtx) -> Result<Self> {
        build(p, ctx)
    }
}

fn build(p: &Params, ctx: &BuildCtx) -> Result<Captioned> {
    let mut p = p.clone();
    let images = match p.take_component("images")? {
        Some(c) => c,
        None => Component::new(
            &format!("{}.images", p.section()),
            "fashion_mnist",
            toml::Table::new(),
        )?,
    };
    let c: CaptionedConfig = p.extract()?;
    if c.max_length == 0 {
        return Err(p.error("max_length", "must be at least 1"));
    }
    let templates = match c.templates {
        Some(t) => t,
        None => DEFAULT_TEMPLATES.iter().map(|t| t.to_string()).collect(),
    };
    check_templates(&templates, &p, "templates")?;
    for (name, phrases) in &c.classes {
        if phrases.is_empty() || phrases.iter().any(|s| s.trim().is_empty()) {
            return Err(p.error(
                "classes",
                format!("class {name:?} needs a list of non-empty phrases"),
            ));
        }
    }
    let source = (parallax_core::registry::data_source(&images.name)?.build)(&images.params, ctx)?;
    let meta = source.meta();
    if meta.class_names.is_empty() {
        return Err(p.error(
            "images",
            format!(
                "the image source `{}` ({}) has no class names; captioned needs labelled images with named classes",
                images.name,
                source.describe()
            ),
        ));
    }
    if meta.image_shape.is_none() {
        return Err(p.error(
            "images",
            format!("`{}` is not an image source", images.name),
        ));
    }
    if let Some(unknown) = c.classes.keys().find(|k| !meta.class_names.contains(k)) {
        return Err(p.error(
            "classes",
            format!(
                "{unknown:?} is not a class of `{}` (classes: {})",
                images.name,
                meta.class_names.join(", ")
            ),
        ));
    }
    let phrases = meta
        .class_names
        .iter()
        .map(|n| match c.classes.get(n) {
            Some(given) => given.clone(),
            None => default_phrases(n),
        })
        .collect();
    let tokenizer = caption_tokenizer(c.tokenizer.as_deref(), ctx, c.max_length)?;
    Captioned::new(source, ctx.seed, ctx.split, templates, phrases, &tokenizer)
}

fn build_source(p: &Params, ctx: &BuildCtx) -> Result<Arc<dyn DataSource>> {
    Ok(Arc::new(build(p, ctx)?))
}

parallax_core::register!(
    data_source,
    "captioned",
    "captions from class names and templates for a labelled image source (default: Fashion-MNIST)",
    build_source
);

#[cfg(test)]
mod tests {
    use super::*;
    use parallax_vision::embedded::FASHION_MNIST_CLASSES;

    #[test]
    fn every_fashion_mnist_class_has_phrases() {
        for name in FASHION_MNIST_CLASSES {
            let p = default_phrases(name);
            assert!(!p.is_empty() && p.len() <= 3, "{name}: {p:?}");
            assert!(p.iter().all(|s| s == &s.to_lowercase()), "{name}: {p:?}");
        }
        assert_eq!(
            default_phrases("Golden Retriever"),
            vec!["golden retriever"]
        );
        assert_eq!(default_phrases("Coat"), vec!["coat", "jacket"]);
    }

    #[test]
    fn templates_are_filled_with_articles() {
        for t in DEFAULT_TEMPLATES {
            assert_eq!(t.matches("{}").count(), 1, "{t}");
        }
        assert_eq!(fill("a photo of a {}.", "coat"), "a photo of a coat.");
        assert_eq!(
            fill("a photo of a {}.", "ankle boot"),
            "a photo of an ankle boot."
        );
        assert_eq!(
            fill("a {} on a dark background.", "top"),
            "a top on a dark background."
        );
        assert_eq!(fill("a {} here.", "item"), "an item here.");
        assert_eq!(fill("the {}.", "item"), "the item.");
        assert_eq!(fill("a banana {}.", "item"), "a banana item.");
    }
}
