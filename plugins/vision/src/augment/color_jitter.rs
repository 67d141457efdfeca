//! Random colour jitter: brightness, contrast, saturation and hue.

use rand::seq::SliceRandom;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::grayscale::luma;
use super::{check_non_negative, check_probability, happens, uniform, Transform};
use crate::image::Image;

/// With probability `p`, changes brightness, contrast, saturation and hue
/// by random amounts, in a random order (like torchvision's
/// `RandomApply([ColorJitter(...)], p)`).
///
/// - brightness: values times a factor drawn from
///   [max(0, 1 - brightness), 1 + brightness];
/// - contrast: values blended with the image's mean luma by a factor drawn
///   from [max(0, 1 - contrast), 1 + contrast];
/// - saturation: values blended with each pixel's luma by a factor drawn
///   from [max(0, 1 - saturation), 1 + saturation];
/// - hue: hue (in HSV, in turns) shifted by an amount drawn from
///   [-hue, hue].
///
/// Results are clamped to [0, 1]. On images without three channels only
/// brightness and contrast apply. A strength of 0 leaves that property
/// alone.
///
/// Defaults: SimCLR's colour distortion (Appendix A) is jitter of
/// brightness, contrast and saturation 0.8 s and hue 0.2 s applied with
/// probability 0.8; the defaults are strength s = 0.5, the paper's setting
/// for CIFAR-10 (Appendix B.9): `p = 0.8`, `brightness = contrast =
/// saturation = 0.4`, `hue = 0.1`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColorJitter {
    /// Probability of jittering at all; default 0.8.
    pub p: f32,
    /// Brightness strength, >= 0; default 0.4.
    pub brightness: f32,
    /// Contrast strength, >= 0; default 0.4.
    pub contrast: f32,
    /// Saturation strength, >= 0; default 0.4 (colour images only).
    pub saturation: f32,
    /// Largest hue shift in turns, in [0, 0.5]; default 0.1 (colour images
    /// only).
    pub hue: f32,
}

impl Default for ColorJitter {
    fn default() -> Self {
        ColorJitter {
            p: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
        }
    }
}

/// One of the four adjustments.
#[derive(Clone, Copy, Debug)]
enum Op {
    Brightness,
    Contrast,
    Saturation,
    Hue,
}

impl ColorJitter {
    /// Checks `p` is a probability, the strengths are finite and >= 0, and
    /// `hue` is at most 0.5.
    pub fn validate(&self) -> Result<(), String> {
        check_probability("p", self.p)?;
        check_non_negative("brightness", self.brightness)?;
        check_non_negative("contrast", self.contrast)?;
        check_non_negative("saturation", self.saturation)?;
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(format!("hue must lie in [0, 0.5], got {}", self.hue));
        }
        Ok(())
    }

    /// Applies `op` with a freshly drawn factor.
    fn adjust(&self, op: Op, img: &Image, rng: &mut dyn RngCore) -> Image {
        match op {
            Op::Brightness => brightness(img, factor(rng, self.brightness)),
            Op::Contrast => contrast(img, factor(rng, self.contrast)),
            Op::Saturation => saturation(img, factor(rng, self.saturation)),
            Op::Hue => hue(img, uniform(rng, -self.hue, self.hue)),
        }
    }
}

impl Transform for ColorJitter {
    fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image {
        if !happens(rng, self.p) {
            return img.clone();
        }
        let mut ops = vec![Op::Brightness, Op::Contrast];
        if img.channels == 3 {
            ops.extend([Op::Saturation, Op::Hue]);
        }
        ops.shuffle(rng);
        ops.into_iter()
            .fold(img.clone(), |out, op| self.adjust(op, &out, rng))
    }
}

/// A multiplicative factor drawn from [max(0, 1 - strength), 1 + strength].
fn factor(rng: &mut dyn RngCore, strength: f32) -> f32 {
    uniform(rng, (1.0 - strength).max(0.0), 1.0 + strength)
}

fn clamp01(v: f32) -> f32 {
    v.clamp(0.0, 1.0)
}

/// Values times `f`.
fn brightness(img: &Image, f: f32) -> Image {
    img.with_data(img.data.iter().map(|v| clamp01(v * f)).collect())
}

/// Values blended with the mean luma: `f * v + (1 - f) * mean`.
fn contrast(img: &Image, f: f32) -> Image {
    let mean = mean_luma(img);
    img.with_data(
        img.data
            .iter()
            .map(|v| clamp01(f * v + (1.0 - f) * mean))
            .collect(),
    )
}

/// The mean luma of a three-channel image, otherwise the mean value.
fn mean_luma(img: &Image) -> f32 {
    let values = if img.channels == 3 {
        luma(img)
    } else {
        img.data.clone()
    };
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f32>() / values.len() as f32
    }
}

/// Each channel blended with the pixel's luma: `f * v + (1 - f) * luma`.
fn saturation(img: &Image, f: f32) -> Image {
    let y = luma(img);
    let data = img
        .data
        .chunks(img.plane_len().max(1))
        .flat_map(|plane| {
            plane
                .iter()
                .zip(&y)
                .map(|(v, l)| clamp01(f * v + (1.0 - f) * l))
        })
        .collect();
    img.with_data(data)
}

/// The hue of every pixel of a three-channel image shifted by `shift`
/// turns.
fn hue(img: &Image, shift: f32) -> Image {
    let n = img.plane_len();
    let mut data = vec![0.0; img.data.len()];
    for i in 0..n {
        let rgb = [img.data[i], img.data[n + i], img.data[2 * n + i]];
        let [h, s, v] = rgb_to_hsv(rgb);
        let out = hsv_to_rgb([(h + shift).rem_euclid(1.0), s, v]);
        for (c, value) in out.into_iter().enumerate() {
            data[c * n + i] = clamp01(value);
        }
    }
    img.with_data(data)
}

/// RGB in [0, 1] to hue (in turns, [0, 1)), saturation and value.
fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let s = if max > 0.0 { delta / max } else { 0.0 };
    let sector = if delta <= 0.0 {
        0.0
    } else if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    };
    [sector / 6.0, s, max]
}

/// Hue (in turns), saturation and value back to RGB.
fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let sector = h6.floor();
    let f = h6 - sector;
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    match sector as u32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f32; 3], b: [f32; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn hsv_round_trip() {
        for rgb in [
            [0.0, 0.0, 0.0],
            [1.0, 1.0, 1.0],
            [0.9, 0.1, 0.3],
            [0.2, 0.8, 0.4],
            [0.1, 0.3, 0.7],
            [0.5, 0.5, 0.2],
        ] {
            assert!(close(hsv_to_rgb(rgb_to_hsv(rgb)), rgb), "{rgb:?}");
        }
    }

    #[test]
    fn hue_shift_turns_red_green() {
        let red = Image::new(3, 1, 1, vec![1.0, 0.0, 0.0]).expect("3 values");
        let green = hue(&red, 1.0 / 3.0);
        assert!(close(
            [green.data[0], green.data[1], green.data[2]],
            [0.0, 1.0, 0.0]
        ));
        let back = hue(&red, -1.0);
        assert!(close(
            [back.data[0], back.data[1], back.data[2]],
            [1.0, 0.0, 0.0]
        ));
    }

    #[test]
    fn adjustments() {
        let img = Image::new(1, 1, 4, vec![0.0, 0.2, 0.4, 0.6]).expect("4 values");
        assert_eq!(brightness(&img, 2.0).data, vec![0.0, 0.4, 0.8, 1.0]);
        // Zero contrast gives the mean everywhere.
        let flat = contrast(&img, 0.0);
        assert!(flat.data.iter().all(|v| (v - 0.3).abs() < 1e-6));
        // Zero saturation gives the luma in every channel.
        let rgb = Image::new(3, 1, 1, vec![1.0, 0.0, 0.0]).expect("3 values");
        let gray = saturation(&rgb, 0.0);
        assert!(gray.data.iter().all(|v| (v - 0.299).abs() < 1e-6));
    }
}
