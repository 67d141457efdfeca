//! Random rotation by a small angle.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{check_non_negative, check_probability, happens, uniform, Transform};
use crate::image::Image;

/// With probability `p`, rotates the image about its centre by an angle
/// drawn uniformly from [-`degrees`, `degrees`] (positive angles turn the
/// content counter-clockwise, as torchvision's `RandomRotation`). Output
/// pixels are sampled bilinearly; taps that fall outside the image read
/// `fill`, so corners blend smoothly into the fill value. The output has the
/// input's shape.
///
/// Rotation is one of the augmentations SimCLR studies (Chen et al. 2020,
/// Figure 4 and Appendix A); the paper has no continuous-angle default, so
/// the defaults are the small-angle setting common for MNIST-style digits:
/// `degrees = 15`, `p = 1.0`, `fill = 0.0` (black, as torchvision).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomRotation {
    /// Largest angle in degrees, >= 0; default 15.
    pub degrees: f32,
    /// Value of pixels that come from outside the image; default 0.
    pub fill: f32,
    /// Probability of rotating at all; default 1.
    pub p: f32,
}

impl Default for RandomRotation {
    fn default() -> Self {
        RandomRotation {
            degrees: 15.0,
            fill: 0.0,
            p: 1.0,
        }
    }
}

impl RandomRotation {
    /// Checks `degrees` is finite and >= 0, `fill` finite and `p` a
    /// probability.
    pub fn validate(&self) -> Result<(), String> {
        check_non_negative("degrees", self.degrees)?;
        if !self.fill.is_finite() {
            return Err(format!("fill must be finite, got {}", self.fill));
        }
        check_probability("p", self.p)
    }
}

impl Transform for RandomRotation {
    fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image {
        if !happens(rng, self.p) {
            return img.clone();
        }
        let angle = uniform(rng, -self.degrees, self.degrees);
        rotate(img, angle, self.fill)
    }
}

/// `img` rotated counter-clockwise by `degrees` about its centre, bilinear,
/// with `fill` outside.
pub(crate) fn rotate(img: &Image, degrees: f32, fill: f32) -> Image {
    let (h, w) = (img.height, img.width);
    if h == 0 || w == 0 || degrees == 0.0 {
        return img.clone();
    }
    let theta = f64::from(degrees).to_radians();
    let (sin, cos) = theta.sin_cos();
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    // For each output pixel, the source coordinate (inverse rotation).
    let taps: Vec<(f64, f64)> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (y, x)))
        .map(|(y, x)| {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            let sx = cos * dx - sin * dy + cx;
            let sy = sin * dx + cos * dy + cy;
            (snap(sy), snap(sx))
        })
        .collect();
    let mut data = Vec::with_capacity(img.data.len());
    for c in 0..img.channels {
        let plane = &img.data[c * h * w..(c + 1) * h * w];
        let read = |y: i64, x: i64| -> f32 {
            if y < 0 || x < 0 || y >= h as i64 || x >= w as i64 {
                fill
            } else {
                plane[y as usize * w + x as usize]
            }
        };
        for &(sy, sx) in &taps {
            let (y0, x0) = (sy.floor(), sx.floor());
            let (ty, tx) = ((sy - y0) as f32, (sx - x0) as f32);
            let (y0, x0) = (y0 as i64, x0 as i64);
            let top = read(y0, x0) * (1.0 - tx) + read(y0, x0 + 1) * tx;
            let bottom = read(y0 + 1, x0) * (1.0 - tx) + read(y0 + 1, x0 + 1) * tx;
            data.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    img.with_data(data)
}

/// Rounds coordinates within 1e-6 of an integer, so that quarter turns
/// copy pixels exactly instead of blending in a trace of their neighbours.
fn snap(v: f64) -> f64 {
    let r = v.round();
    if (v - r).abs() < 1e-6 {
        r
    } else {
        v
    }
}
