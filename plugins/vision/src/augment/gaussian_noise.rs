//! Additive Gaussian noise.

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use super::{check_non_negative, check_probability, happens, Transform};
use crate::image::Image;

/// With probability `p`, adds independent noise drawn from N(0, `std`^2) to
/// every value, then (when `clamp`) clamps the result to [0, 1].
///
/// Additive noise is one of the augmentations SimCLR studies (Chen et al.
/// 2020, Figure 4, "Gaussian noise"); the paper gives no strength, so the
/// defaults are a mild `std = 0.1`, `p = 0.5`, `clamp = true`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GaussianNoise {
    /// Standard deviation of the noise, >= 0; default 0.1.
    pub std: f32,
    /// Probability of adding noise; default 0.5.
    pub p: f32,
    /// Clamp the result to [0, 1]; default true.
    pub clamp: bool,
}

impl Default for GaussianNoise {
    fn default() -> Self {
        GaussianNoise {
            std: 0.1,
            p: 0.5,
            clamp: true,
        }
    }
}

impl GaussianNoise {
    /// Checks `std` is finite and >= 0 and `p` a probability.
    pub fn validate(&self) -> Result<(), String> {
        check_non_negative("std", self.std)?;
        check_probability("p", self.p)
    }
}

impl Transform for GaussianNoise {
    fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image {
        if !happens(rng, self.p) {
            return img.clone();
        }
        let mut data = img.data.clone();
        // Box-Muller: two uniforms give two independent standard normals.
        for pair in data.chunks_mut(2) {
            let u1 = 1.0 - rng.random::<f64>(); // in (0, 1]
            let u2 = rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = std::f64::consts::TAU * u2;
            let z = [r * a.cos(), r * a.sin()];
            for (v, z) in pair.iter_mut().zip(z) {
                *v += self.std * z as f32;
                if self.clamp {
                    *v = v.clamp(0.0, 1.0);
                }
            }
        }
        img.with_data(data)
    }
}
