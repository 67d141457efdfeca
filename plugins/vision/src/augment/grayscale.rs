//! Random conversion to grayscale.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{check_probability, happens, Transform};
use crate::image::Image;

/// Luma weights of red, green and blue (ITU-R BT.601, as PIL's "L" mode).
pub(crate) const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// With probability `p`, replaces each of the three channels of an RGB
/// image by its luma, keeping three channels. Images without exactly three
/// channels are returned unchanged (a gray image is already gray).
///
/// Default: SimCLR's `p = 0.2` (Appendix A, "random color drop").
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomGrayscale {
    /// Probability of converting; default 0.2.
    pub p: f32,
}

impl Default for RandomGrayscale {
    fn default() -> Self {
        RandomGrayscale { p: 0.2 }
    }
}

impl RandomGrayscale {
    /// Checks that `p` is a probability.
    pub fn validate(&self) -> Result<(), String> {
        check_probability("p", self.p)
    }
}

impl Transform for RandomGrayscale {
    fn apply(&self, img: &Image, rng: &mut dyn RngCore) -> Image {
        if happens(rng, self.p) && img.channels == 3 {
            to_gray3(img)
        } else {
            img.clone()
        }
    }
}

/// The luma of each pixel of a three-channel image (one plane).
pub(crate) fn luma(img: &Image) -> Vec<f32> {
    let plane = |c| img.plane(c).unwrap_or(&[]);
    let (r, g, b) = (plane(0), plane(1), plane(2));
    r.iter()
        .zip(g)
        .zip(b)
        .map(|((r, g), b)| LUMA[0] * r + LUMA[1] * g + LUMA[2] * b)
        .collect()
}

/// A three-channel image whose channels all hold the luma of `img`.
fn to_gray3(img: &Image) -> Image {
    let y = luma(img);
    img.with_data([y.as_slice(), &y, &y].concat())
}
