//! Per-channel normalisation.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::Transform;
use crate::image::Image;

/// Maps each value `v` of channel `c` to `(v - mean[c]) / std[c]`.
///
/// A single mean / std applies to every channel; with lists of another
/// length, channel `c` uses entry `c % len`. There are no defaults: use the
/// dataset's statistics (for Fashion-MNIST, mean 0.2860 and std 0.3530).
/// SimCLR itself normalises inside the encoder, so the default pipeline
/// leaves this out.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Per-channel means (or one for all channels).
    pub mean: Vec<f32>,
    /// Per-channel standard deviations (or one for all channels); > 0.
    pub std: Vec<f32>,
}

impl Normalize {
    /// Checks that `mean` and `std` are non-empty, equally long and finite,
    /// and `std` positive.
    pub fn validate(&self) -> Result<(), String> {
        if self.mean.is_empty() {
            return Err("mean must have at least one value".into());
        }
        if self.std.len() != self.mean.len() {
            return Err(format!(
                "std has {} values but mean has {}",
                self.std.len(),
                self.mean.len()
            ));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(format!("mean must be finite, got {m}"));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("std must be finite and > 0, got {s}"));
        }
        Ok(())
    }
}

impl Transform for Normalize {
    fn apply(&self, img: &Image, _rng: &mut dyn RngCore) -> Image {
        let n = img.plane_len().max(1);
        let len = self.mean.len().min(self.std.len());
        if len == 0 {
            return img.clone();
        }
        let data = img
            .data
            .chunks(n)
            .enumerate()
            .flat_map(|(c, plane)| {
                let (m, s) = (self.mean[c % len], self.std[c % len]);
                plane.iter().map(move |v| (v - m) / s)
            })
            .collect();
        img.with_data(data)
    }
}
