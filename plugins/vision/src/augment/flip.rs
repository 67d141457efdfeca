//! Random horizontal flip.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{check_probability, happens, Transform};
use crate::image::Image;

/// Mirrors the image left to right with probability `p`.
///
/// Default: SimCLR's `p = 0.5` (Appendix A: "random crop ... followed by
/// random horizontal flip").
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HorizontalFlip {
    /// Probability of flipping; default 0.5.
    pub p: f32,
}

impl Default for HorizontalFlip {
    fn default() -> Self {
        HorizontalFlip { p: 0.5 }
    }
}

impl HorizontalFlip {
    /// Checks that `p` is a probability.
    pub fn validate(&self) -> Result<(), String> {
        check_probability("p", self.p)
    }
}

impl Transform for HorizontalFlip {
    fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image {
        if happens(rng, self.p) {
            img.flip_horizontal()
        } else {
            img.clone()
        }
    }
}
