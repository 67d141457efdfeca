//! Random solarization.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{check_probability, happens, Transform};
use crate::image::Image;

/// With probability `p`, inverts every value at or above `threshold`
/// (`v -> 1 - v`) and leaves the others alone.
///
/// Defaults: BYOL's (Grill et al. 2020, Appendix B, Table 6):
/// `threshold = 0.5`, `p = 0.2` (the paper solarizes only the second view;
/// set `p = 0` for the first).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomSolarize {
    /// Values >= `threshold` are inverted; default 0.5.
    pub threshold: f32,
    /// Probability of solarizing; default 0.2.
    pub p: f32,
}

impl Default for RandomSolarize {
    fn default() -> Self {
        RandomSolarize {
            threshold: 0.5,
            p: 0.2,
        }
    }
}

impl RandomSolarize {
    /// Checks `threshold` is finite and `p` a probability.
    pub fn validate(&self) -> Result<(), String> {
        if !self.threshold.is_finite() {
            return Err(format!("threshold must be finite, got {}", self.threshold));
        }
        check_probability("p", self.p)
    }
}

impl Transform for RandomSolarize {
    fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image {
        if !happens(rng, self.p) {
            return img.clone();
        }
        let t = self.threshold;
        img.with_data(
            img.data
                .iter()
                .map(|&v| if v >= t { 1.0 - v } else { v })
                .collect(),
        )
    }
}
