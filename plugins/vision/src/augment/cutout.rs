//! Cutout: random square holes.

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use super::{check_probability, happens, Transform};
use crate::image::Image;

/// With probability `p`, sets `holes` square patches of side `size` (or
/// `fraction` of the image's shorter side) to `fill` in every channel.
///
/// As in DeVries & Taylor (2017), "Improved Regularization of
/// Convolutional Neural Networks with Cutout", each patch's centre is drawn
/// uniformly over the whole image, so patches near a border are clipped and
/// cover less; `inside = true` keeps every patch wholly inside the image
/// instead. Holes may overlap.
///
/// Defaults: the paper's CIFAR-10 setting: one 16 x 16 hole on 32 x 32
/// images (`holes = 1`, `fraction = 0.5`), `fill = 0`, applied always
/// (`p = 1`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cutout {
    /// Number of holes; default 1.
    pub holes: usize,
    /// Side of a hole in pixels; overrides `fraction` when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// Side of a hole as a fraction of the shorter image side, in (0, 1];
    /// default 0.5.
    pub fraction: f32,
    /// Value written into the holes; default 0.
    pub fill: f32,
    /// Keep holes wholly inside the image; default false (the paper's
    /// clipped holes).
    pub inside: bool,
    /// Probability of cutting at all; default 1.
    pub p: f32,
}

impl Default for Cutout {
    fn default() -> Self {
        Cutout {
            holes: 1,
            size: None,
            fraction: 0.5,
            fill: 0.0,
            inside: false,
            p: 1.0,
        }
    }
}

impl Cutout {
    /// Checks `holes` >= 1, `size` >= 1, `fraction` in (0, 1], `fill`
    /// finite and `p` a probability.
    pub fn validate(&self) -> Result<(), String> {
        if self.holes == 0 {
            return Err("holes must be at least 1".into());
        }
        if self.size == Some(0) {
            return Err("size must be at least 1".into());
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(format!(
                "fraction must lie in (0, 1], got {}",
                self.fraction
            ));
        }
        if !self.fill.is_finite() {
            return Err(format!("fill must be finite, got {}", self.fill));
        }
        check_probability("p", self.p)
    }

    /// The side of a hole in an `h` x `w` image.
    fn side(&self, h: usize, w: usize) -> usize {
        match self.size {
            Some(s) => s,
            None => ((self.fraction * h.min(w) as f32).round() as usize).max(1),
        }
    }
}

impl Transform for Cutout {
    fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image {
        let (h, w) = (img.height, img.width);
        if !happens(rng, self.p) || h == 0 || w == 0 {
            return img.clone();
        }
        let side = self.side(h, w);
        let mut out = img.clone();
        for _ in 0..self.holes {
            // Rows top..bottom and columns left..right, clipped to the image.
            let (top, bottom, left, right) = if self.inside {
                let (sh, sw) = (side.min(h), side.min(w));
                let top = rng.random_range(0..=h - sh);
                let left = rng.random_range(0..=w - sw);
                (top, top + sh, left, left + sw)
            } else {
                let cy = rng.random_range(0..h) as i64;
                let cx = rng.random_range(0..w) as i64;
                let half = (side / 2) as i64;
                let clip = |v: i64, n: usize| v.clamp(0, n as i64) as usize;
                let (y0, x0) = (cy - half, cx - half);
                (
                    clip(y0, h),
                    clip(y0 + side as i64, h),
                    clip(x0, w),
                    clip(x0 + side as i64, w),
                )
            };
            for c in 0..img.channels {
                for y in top..bottom {
                    let row = (c * h + y) * w;
                    out.data[row + left..row + right].fill(self.fill);
                }
            }
        }
        out
    }
}
