//! Image augmentations for contrastive views, after SimCLR (Chen, Kornblith,
//! Norouzi and Hinton, "A Simple Framework for Contrastive Learning of
//! Visual Representations", ICML 2020, Appendix A).
//!
//! Each transform's options struct is also the transform: it deserialises
//! from a recipe (unknown keys are rejected), checks itself with
//! `validate`, and implements [`Transform`]. [`PipelineConfig`] names them
//! for recipes:
//!
//! ```toml
//! transforms = [
//!     { name = "random_resized_crop", size = 28, scale = [0.2, 1.0] },
//!     { name = "horizontal_flip" },
//!     { name = "color_jitter", brightness = 0.4, contrast = 0.4 },
//! ]
//! ```
//!
//! Also available: `random_grayscale`, `normalize`, `rotation`,
//! `gaussian_blur` (SimCLR), `solarize` (BYOL), `gaussian_noise` and
//! `cutout` (DeVries & Taylor 2017).
//!
//! Transforms never panic on bad options; invalid values are reported by
//! `validate` and otherwise handled gracefully (e.g. an empty range gives
//! its lower end).

mod color_jitter;
mod cutout;
mod flip;
mod gaussian_blur;
mod gaussian_noise;
mod grayscale;
mod normalize;
mod random_resized_crop;
mod rotation;
mod solarize;

pub use color_jitter::ColorJitter;
pub use cutout::Cutout;
pub use flip::HorizontalFlip;
pub use gaussian_blur::GaussianBlur;
pub use gaussian_noise::GaussianNoise;
pub use grayscale::RandomGrayscale;
pub use normalize::Normalize;
pub use random_resized_crop::RandomResizedCrop;
pub use rotation::RandomRotation;
pub use solarize::RandomSolarize;

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::image::Image;

/// A random (or fixed) image-to-image transform.
pub trait Transform {
    /// The transformed image; all randomness comes from `rng`, so the same
    /// generator state gives the same output.
    fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image;
}

/// Transforms applied one after the other.
pub struct Pipeline(pub Vec<Box<dyn Transform + Send + Sync>>);

impl Pipeline {
    /// The pipeline of `configs`, in order. Call
    /// [`PipelineConfig::validate`] first to report bad options.
    pub fn from_configs(configs: &[PipelineConfig]) -> Pipeline {
        Pipeline(configs.iter().map(PipelineConfig::build).collect())
    }

    /// Applies every transform in order.
    pub fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image {
        let mut out = img.clone();
        for t in &self.0 {
            out = t.apply(&out, rng);
        }
        out
    }

    /// Number of transforms.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the pipeline has no transforms (and so returns its input).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Transform for Pipeline {
    fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image {
        Pipeline::apply(self, img, rng)
    }
}

/// One transform of a recipe's list, chosen by its `name` key.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum PipelineConfig {
    /// `name = "random_resized_crop"`: see [`RandomResizedCrop`].
    RandomResizedCrop(RandomResizedCrop),
    /// `name = "horizontal_flip"`: see [`HorizontalFlip`].
    HorizontalFlip(HorizontalFlip),
    /// `name = "color_jitter"`: see [`ColorJitter`].
    ColorJitter(ColorJitter),
    /// `name = "random_grayscale"`: see [`RandomGrayscale`].
    RandomGrayscale(RandomGrayscale),
    /// `name = "normalize"`: see [`Normalize`].
    Normalize(Normalize),
    /// `name = "rotation"`: see [`RandomRotation`].
    Rotation(RandomRotation),
    /// `name = "gaussian_blur"`: see [`GaussianBlur`].
    GaussianBlur(GaussianBlur),
    /// `name = "solarize"`: see [`RandomSolarize`].
    Solarize(RandomSolarize),
    /// `name = "gaussian_noise"`: see [`GaussianNoise`].
    GaussianNoise(GaussianNoise),
    /// `name = "cutout"`: see [`Cutout`].
    Cutout(Cutout),
}

impl PipelineConfig {
    /// The recipe name of this transform.
    pub fn name(&self) -> &'static str {
        match self {
            PipelineConfig::RandomResizedCrop(_) => "random_resized_crop",
            PipelineConfig::HorizontalFlip(_) => "horizontal_flip",
            PipelineConfig::ColorJitter(_) => "color_jitter",
            PipelineConfig::RandomGrayscale(_) => "random_grayscale",
            PipelineConfig::Normalize(_) => "normalize",
            PipelineConfig::Rotation(_) => "rotation",
            PipelineConfig::GaussianBlur(_) => "gaussian_blur",
            PipelineConfig::Solarize(_) => "solarize",
            PipelineConfig::GaussianNoise(_) => "gaussian_noise",
            PipelineConfig::Cutout(_) => "cutout",
        }
    }

    /// Checks the options; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            PipelineConfig::RandomResizedCrop(c) => c.validate(),
            PipelineConfig::HorizontalFlip(c) => c.validate(),
            PipelineConfig::ColorJitter(c) => c.validate(),
            PipelineConfig::RandomGrayscale(c) => c.validate(),
            PipelineConfig::Normalize(c) => c.validate(),
            PipelineConfig::Rotation(c) => c.validate(),
            PipelineConfig::GaussianBlur(c) => c.validate(),
            PipelineConfig::Solarize(c) => c.validate(),
            PipelineConfig::GaussianNoise(c) => c.validate(),
            PipelineConfig::Cutout(c) => c.validate(),
        }
    }

    /// The transform these options describe.
    pub fn build(&self) -> Box<dyn Transform + Send + Sync> {
        match self {
            PipelineConfig::RandomResizedCrop(c) => Box::new(c.clone()),
            PipelineConfig::HorizontalFlip(c) => Box::new(c.clone()),
            PipelineConfig::ColorJitter(c) => Box::new(c.clone()),
            PipelineConfig::RandomGrayscale(c) => Box::new(c.clone()),
            PipelineConfig::Normalize(c) => Box::new(c.clone()),
            PipelineConfig::Rotation(c) => Box::new(c.clone()),
            PipelineConfig::GaussianBlur(c) => Box::new(c.clone()),
            PipelineConfig::Solarize(c) => Box::new(c.clone()),
            PipelineConfig::GaussianNoise(c) => Box::new(c.clone()),
            PipelineConfig::Cutout(c) => Box::new(c.clone()),
        }
    }
}

/// SimCLR's augmentation pipeline (Appendix A) for `size` x `size` images
/// with `channels` channels:
///
/// 1. random resized crop to `size`, area scale (0.08, 1), aspect ratio
///    (3/4, 4/3);
/// 2. horizontal flip with probability 0.5;
/// 3. colour jitter with probability 0.8 at strength s = 0.5 (brightness,
///    contrast and saturation 0.8 s = 0.4, hue 0.2 s = 0.1), the strength
///    the paper uses for CIFAR-10 (Appendix B.9); for one-channel images
///    only brightness and contrast, saturation and hue being 0;
/// 4. for three-channel images, random grayscale with probability 0.2 (a
///    no-op on one channel, so left out there).
///
/// Gaussian blur is left out, as the paper does for 32x32 CIFAR-10 images,
/// and so is normalisation (encoders normalise their input).
pub fn simclr_default(size: usize, channels: usize) -> Vec<PipelineConfig> {
    let color = channels >= 3;
    let jitter = ColorJitter {
        saturation: if color {
            ColorJitter::default().saturation
        } else {
            0.0
        },
        hue: if color {
            ColorJitter::default().hue
        } else {
            0.0
        },
        ..ColorJitter::default()
    };
    let mut out = vec![
        PipelineConfig::RandomResizedCrop(RandomResizedCrop::new(size)),
        PipelineConfig::HorizontalFlip(HorizontalFlip::default()),
        PipelineConfig::ColorJitter(jitter),
    ];
    if color {
        out.push(PipelineConfig::RandomGrayscale(RandomGrayscale::default()));
    }
    out
}

/// Checks that `field` is a probability.
fn check_probability(field: &str, p: f32) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{field} must be a probability in [0, 1], got {p}"))
    }
}

/// Checks that `field` is finite and not negative.
fn check_non_negative(field: &str, v: f32) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{field} must be a finite number >= 0, got {v}"))
    }
}

/// Whether an event of probability `p` happens; always draws one number so
/// that the generator advances the same way whatever `p` is.
fn happens(rng: &mut dyn RngCore, p: f32) -> bool {
    rng.random::<f32>() < p
}

/// A uniform draw from [lo, hi]; `lo` when the range is empty or invalid.
fn uniform(rng: &mut dyn RngCore, lo: f32, hi: f32) -> f32 {
    let u = rng.random::<f32>();
    if hi > lo {
        lo + (hi - lo) * u
    } else {
        lo
    }
}

#[cfg(test)]
mod tests;
