//! Random resized crop: SimCLR's main augmentation.

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use super::{uniform, Transform};
use crate::image::Image;

/// How many (area, aspect ratio) draws to try before falling back to a
/// central crop.
const TRIES: usize = 10;

/// Crops a random region and resizes it to `size` x `size` (bilinear).
///
/// The region's area is a uniform fraction `scale` of the image's and its
/// aspect ratio (width / height) is log-uniform in `ratio`. Draws that do
/// not fit in the image are retried up to 10 times; then the largest
/// central crop whose aspect ratio is within `ratio` is used.
///
/// Defaults are SimCLR's (Appendix A): `scale = (0.08, 1.0)`,
/// `ratio = (3/4, 4/3)`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RandomResizedCrop {
    /// Output side in pixels (required; usually the input size).
    pub size: usize,
    /// Range of the crop's area as a fraction of the image's; default
    /// (0.08, 1.0).
    #[serde(default = "default_scale")]
    pub scale: (f32, f32),
    /// Range of the crop's aspect ratio (width / height); default (3/4, 4/3).
    #[serde(default = "default_ratio")]
    pub ratio: (f32, f32),
}

fn default_scale() -> (f32, f32) {
    (0.08, 1.0)
}

fn default_ratio() -> (f32, f32) {
    (3.0 / 4.0, 4.0 / 3.0)
}

/// A crop region: top, left, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Region {
    top: usize,
    left: usize,
    height: usize,
    width: usize,
}

impl RandomResizedCrop {
    /// A crop to `size` x `size` with SimCLR's default scale and ratio.
    pub fn new(size: usize) -> RandomResizedCrop {
        RandomResizedCrop {
            size,
            scale: default_scale(),
            ratio: default_ratio(),
        }
    }

    /// Checks `size` > 0 and that `scale` and `ratio` are ordered ranges of
    /// positive numbers, `scale` within (0, 1].
    pub fn validate(&self) -> Result<(), String> {
        if self.size == 0 {
            return Err("size must be at least 1".into());
        }
        let (s0, s1) = self.scale;
        if !(s0 > 0.0 && s1 <= 1.0) {
            return Err(format!("scale must lie in (0, 1], got ({s0}, {s1})"));
        }
        if s0 > s1 {
            return Err(format!(
                "scale minimum {s0} is larger than its maximum {s1}"
            ));
        }
        let (r0, r1) = self.ratio;
        if !(r0 > 0.0 && r1.is_finite()) {
            return Err(format!("ratio must be finite and > 0, got ({r0}, {r1})"));
        }
        if r0 > r1 {
            return Err(format!(
                "ratio minimum {r0} is larger than its maximum {r1}"
            ));
        }
        Ok(())
    }

    /// The crop region for a `height` x `width` image (both > 0).
    fn region(&self, height: usize, width: usize, rng: &mut dyn RngCore) -> Region {
        let area = (height * width) as f32;
        let (log_r0, log_r1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..TRIES {
            let target = area * uniform(rng, self.scale.0, self.scale.1);
            let aspect = uniform(rng, log_r0, log_r1).exp();
            let w = (target * aspect).sqrt().round();
            let h = (target / aspect).sqrt().round();
            if w >= 1.0 && h >= 1.0 && w <= width as f32 && h <= height as f32 {
                let (h, w) = (h as usize, w as usize);
                let top = rng.random_range(0..=height - h);
                let left = rng.random_range(0..=width - w);
                return Region {
                    top,
                    left,
                    height: h,
                    width: w,
                };
            }
        }
        self.central(height, width)
    }

    /// The largest central crop with an aspect ratio inside `ratio`.
    fn central(&self, height: usize, width: usize) -> Region {
        let in_ratio = width as f32 / height as f32;
        let (h, w) = if in_ratio < self.ratio.0 {
            let h = (width as f32 / self.ratio.0).round() as usize;
            (h.clamp(1, height), width)
        } else if in_ratio > self.ratio.1 {
            let w = (height as f32 * self.ratio.1).round() as usize;
            (height, w.clamp(1, width))
        } else {
            (height, width)
        };
        Region {
            top: (height - h) / 2,
            left: (width - w) / 2,
            height: h,
            width: w,
        }
    }
}

impl Transform for RandomResizedCrop {
    fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image {
        if img.height == 0 || img.width == 0 {
            return Image::zeros(img.channels, self.size, self.size);
        }
        let r = self.region(img.height, img.width, rng);
        img.crop_unchecked(r.top, r.left, r.height, r.width)
            .resize(self.size, self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn fits(r: Region, h: usize, w: usize) -> bool {
        r.height >= 1 && r.width >= 1 && r.top + r.height <= h && r.left + r.width <= w
    }

    #[test]
    fn regions_fit_and_follow_the_scale() {
        let crop = RandomResizedCrop {
            size: 8,
            scale: (0.25, 0.5),
            ratio: default_ratio(),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..500 {
            let r = crop.region(40, 30, &mut rng);
            assert!(fits(r, 40, 30), "{r:?}");
            let frac = (r.height * r.width) as f32 / 1200.0;
            // Rounding each side moves the area a little off the range.
            assert!((0.2..=0.56).contains(&frac), "{r:?} covers {frac}");
        }
    }

    #[test]
    fn central_fallback_respects_the_ratio() {
        // Scale > 1 can never fit, so every draw falls back.
        let crop = RandomResizedCrop {
            size: 4,
            scale: (2.0, 3.0),
            ratio: (0.75, 4.0 / 3.0),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let tall = crop.region(40, 10, &mut rng);
        assert_eq!(
            tall,
            Region {
                top: 13,
                left: 0,
                height: 13,
                width: 10
            }
        );
        let wide = crop.region(10, 40, &mut rng);
        assert_eq!(
            wide,
            Region {
                top: 0,
                left: 13,
                height: 10,
                width: 13
            }
        );
        let square = crop.region(9, 9, &mut rng);
        assert_eq!(
            square,
            Region {
                top: 0,
                left: 0,
                height: 9,
                width: 9
            }
        );
    }

    #[test]
    fn tiny_and_empty_images() {
        let crop = RandomResizedCrop::new(5);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let one = Image::new(3, 1, 1, vec![0.1, 0.2, 0.3]).expect("3 values");
        let out = crop.apply(&one, &mut rng);
        assert_eq!((out.channels, out.height, out.width), (3, 5, 5));
        let empty = Image::zeros(1, 0, 7);
        let out = crop.apply(&empty, &mut rng);
        assert_eq!((out.channels, out.height, out.width), (1, 5, 5));
    }
}
