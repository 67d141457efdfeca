//! Random Gaussian blur (separable).

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{check_probability, happens, uniform, Transform};
use crate::image::Image;

/// With probability `p`, blurs the image with a Gaussian kernel whose
/// standard deviation is drawn uniformly from `sigma`, as two 1-D passes
/// (rows, then columns). Borders are reflected (as torchvision's
/// `GaussianBlur`), so a constant image stays constant.
///
/// The kernel along each axis spans `kernel_fraction` of that side, as in
/// SimCLR's implementation: radius `floor(fraction * side / 2)`, size
/// `2 * radius + 1` (23 taps for 224 pixels, 3 for 28 or 32). `kernel_size`
/// (odd) fixes the size instead.
///
/// Defaults: SimCLR's (Chen et al. 2020, Appendix A): `p = 0.5`,
/// `sigma = (0.1, 2.0)`, `kernel_fraction = 0.1`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GaussianBlur {
    /// Probability of blurring; default 0.5.
    pub p: f32,
    /// Range of the kernel's standard deviation in pixels; default
    /// (0.1, 2.0).
    pub sigma: (f32, f32),
    /// Kernel size as a fraction of the image side; default 0.1.
    pub kernel_fraction: f32,
    /// A fixed odd kernel size, overriding `kernel_fraction`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_size: Option<usize>,
}

impl Default for GaussianBlur {
    fn default() -> Self {
        GaussianBlur {
            p: 0.5,
            sigma: (0.1, 2.0),
            kernel_fraction: 0.1,
            kernel_size: None,
        }
    }
}

impl GaussianBlur {
    /// Checks `p` is a probability, `sigma` an ordered range of positive
    /// numbers, `kernel_fraction` in (0, 1] and `kernel_size` odd.
    pub fn validate(&self) -> Result<(), String> {
        check_probability("p", self.p)?;
        let (s0, s1) = self.sigma;
        if !(s0 > 0.0 && s1.is_finite()) {
            return Err(format!("sigma must be finite and > 0, got ({s0}, {s1})"));
        }
        if s0 > s1 {
            return Err(format!(
                "sigma minimum {s0} is larger than its maximum {s1}"
            ));
        }
        if !(self.kernel_fraction > 0.0 && self.kernel_fraction <= 1.0) {
            return Err(format!(
                "kernel_fraction must lie in (0, 1], got {}",
                self.kernel_fraction
            ));
        }
        if let Some(k) = self.kernel_size {
            if k % 2 == 0 {
                return Err(format!("kernel_size must be odd, got {k}"));
            }
        }
        Ok(())
    }

    /// The kernel radius along a side of `len` pixels.
    fn radius(&self, len: usize) -> usize {
        match self.kernel_size {
            Some(k) => k / 2,
            None => ((self.kernel_fraction.max(0.0) * len as f32) as usize) / 2,
        }
    }
}

impl Transform for GaussianBlur {
    fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image {
        if !happens(rng, self.p) {
            return img.clone();
        }
        let sigma = uniform(rng, self.sigma.0, self.sigma.1);
        blur(img, sigma, self.radius(img.height), self.radius(img.width))
    }
}

/// Normalised 1-D Gaussian weights for offsets -radius..=radius.
fn kernel(sigma: f32, radius: usize) -> Vec<f32> {
    let s = f64::from(sigma).max(1e-6);
    let w: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let d = i as f64 - radius as f64;
            (-d * d / (2.0 * s * s)).exp()
        })
        .collect();
    let sum: f64 = w.iter().sum();
    w.into_iter().map(|v| (v / sum) as f32).collect()
}

/// Reflects index `i` (which may be out of range) into 0..len, without
/// repeating the edge (`dcb|abcd|cba`), as many times as needed.
fn reflect(i: i64, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as i64 - 1);
    let m = i.rem_euclid(period);
    (if m < len as i64 { m } else { period - m }) as usize
}

/// One 1-D pass over `n` lines of `len` values at `stride` apart, lines
/// starting at `starts`.
fn pass(
    data: &[f32],
    out: &mut [f32],
    starts: impl Iterator<Item = usize>,
    len: usize,
    stride: usize,
    k: &[f32],
) {
    let radius = (k.len() / 2) as i64;
    for start in starts {
        for i in 0..len {
            let mut acc = 0.0;
            for (j, w) in k.iter().enumerate() {
                let src = reflect(i as i64 + j as i64 - radius, len);
                acc += w * data[start + src * stride];
            }
            out[start + i * stride] = acc;
        }
    }
}

/// `img` blurred by a Gaussian of `sigma` with the given radii (rows use
/// `rx`, columns `ry`).
pub(crate) fn blur(img: &Image, sigma: f32, ry: usize, rx: usize) -> Image {
    let (c, h, w) = (img.channels, img.height, img.width);
    if h == 0 || w == 0 || (rx == 0 && ry == 0) {
        return img.clone();
    }
    let mut tmp = vec![0.0; img.data.len()];
    // Horizontal pass: each row is a line of `w` values, stride 1.
    pass(
        &img.data,
        &mut tmp,
        (0..c * h).map(|r| r * w),
        w,
        1,
        &kernel(sigma, rx),
    );
    // Vertical pass: each column is a line of `h` values, stride `w`.
    let mut out = vec![0.0; img.data.len()];
    pass(
        &tmp,
        &mut out,
        (0..c).flat_map(|ch| (0..w).map(move |x| ch * h * w + x)),
        h,
        w,
        &kernel(sigma, ry),
    );
    img.with_data(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_indices() {
        let got: Vec<usize> = (-4..8).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, [2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1]);
        assert_eq!(reflect(-3, 1), 0);
    }

    #[test]
    fn kernel_sums_to_one_and_is_symmetric() {
        let k = kernel(1.3, 3);
        assert_eq!(k.len(), 7);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(k[0], k[6]);
        assert!(k[3] > k[2]);
    }

    #[test]
    fn radius_follows_simclr() {
        let b = GaussianBlur::default();
        assert_eq!((b.radius(224), b.radius(32), b.radius(28)), (11, 1, 1));
        assert_eq!(b.radius(9), 0);
    }
}
