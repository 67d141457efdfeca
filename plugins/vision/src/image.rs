//! A minimal float image (channels x height x width, values in [0, 1]) with
//! the few operations augmentations need, plus a grid maker for looking at
//! augmented views.

/// An image stored channel-major (CHW): value `(c, y, x)` is at
/// `data[(c * height + y) * width + x]`. Pixel values are in [0, 1] except
/// after normalisation.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Number of channels (1 for grayscale, 3 for RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `channels * height * width` values, CHW.
    pub data: Vec<f32>,
}

/// Errors from building or cropping an [`Image`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The data does not have `channels * height * width` values.
    #[error("image data has {found} values but {channels}x{height}x{width} needs {expected}")]
    DataLength {
        channels: usize,
        height: usize,
        width: usize,
        expected: usize,
        found: usize,
    },
    /// A crop that does not fit inside the image.
    #[error(
        "crop of {crop_h}x{crop_w} at ({top}, {left}) does not fit in a {height}x{width} image"
    )]
    CropOutOfBounds {
        top: usize,
        left: usize,
        crop_h: usize,
        crop_w: usize,
        height: usize,
        width: usize,
    },
}

impl Image {
    /// An image from CHW values; fails when `data` has the wrong length.
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        data: Vec<f32>,
    ) -> Result<Image, ImageError> {
        let expected = channels * height * width;
        if data.len() != expected {
            return Err(ImageError::DataLength {
                channels,
                height,
                width,
                expected,
                found: data.len(),
            });
        }
        Ok(Image {
            channels,
            height,
            width,
            data,
        })
    }

    /// An all-zero (black) image.
    pub fn zeros(channels: usize, height: usize, width: usize) -> Image {
        Image {
            channels,
            height,
            width,
            data: vec![0.0; channels * height * width],
        }
    }

    /// A one-channel image from `height * width` bytes (row-major), scaled
    /// from 0..=255 to [0, 1].
    pub fn from_u8_gray(height: usize, width: usize, pixels: &[u8]) -> Result<Image, ImageError> {
        Image::from_u8(1, height, width, pixels)
    }

    /// An image from CHW bytes, scaled from 0..=255 to [0, 1].
    pub fn from_u8(
        channels: usize,
        height: usize,
        width: usize,
        pixels: &[u8],
    ) -> Result<Image, ImageError> {
        let data = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
        Image::new(channels, height, width, data)
    }

    /// The values as CHW bytes: scaled by 255, rounded, clamped to 0..=255.
    pub fn to_u8(&self) -> Vec<u8> {
        self.data.iter().map(|&v| unit_to_u8(v)).collect()
    }

    /// Number of pixels per channel.
    pub fn plane_len(&self) -> usize {
        self.height * self.width
    }

    /// The values of channel `c` (row-major), if there is such a channel.
    pub fn plane(&self, c: usize) -> Option<&[f32]> {
        let n = self.plane_len();
        self.data.get(c * n..(c + 1) * n)
    }

    /// The value at channel `c`, row `y`, column `x`; panics out of range.
    pub fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }

    /// The image resized to `height` x `width` by bilinear interpolation
    /// (pixel centres aligned, i.e. `align_corners = false`, no
    /// antialiasing). Resizing an empty image gives a black one.
    pub fn resize(&self, height: usize, width: usize) -> Image {
        if self.height == 0 || self.width == 0 {
            return Image::zeros(self.channels, height, width);
        }
        let rows: Vec<Tap> = (0..height)
            .map(|y| Tap::new(y, height, self.height))
            .collect();
        let cols: Vec<Tap> = (0..width).map(|x| Tap::new(x, width, self.width)).collect();
        let mut data = Vec::with_capacity(self.channels * height * width);
        for c in 0..self.channels {
            for r in &rows {
                for k in &cols {
                    let top = lerp(self.at(c, r.i0, k.i0), self.at(c, r.i0, k.i1), k.t);
                    let bottom = lerp(self.at(c, r.i1, k.i0), self.at(c, r.i1, k.i1), k.t);
                    data.push(lerp(top, bottom, r.t));
                }
            }
        }
        Image {
            channels: self.channels,
            height,
            width,
            data,
        }
    }

    /// The `height` x `width` region whose top-left pixel is (`top`, `left`);
    /// fails when the region does not fit in the image.
    pub fn crop(
        &self,
        top: usize,
        left: usize,
        height: usize,
        width: usize,
    ) -> Result<Image, ImageError> {
        let fits = top.checked_add(height).is_some_and(|b| b <= self.height)
            && left.checked_add(width).is_some_and(|r| r <= self.width);
        if !fits {
            return Err(ImageError::CropOutOfBounds {
                top,
                left,
                crop_h: height,
                crop_w: width,
                height: self.height,
                width: self.width,
            });
        }
        Ok(self.crop_unchecked(top, left, height, width))
    }

    /// [`Image::crop`] for a region the caller knows fits.
    pub(crate) fn crop_unchecked(
        &self,
        top: usize,
        left: usize,
        height: usize,
        width: usize,
    ) -> Image {
        let mut data = Vec::with_capacity(self.channels * height * width);
        for c in 0..self.channels {
            for y in top..top + height {
                let start = (c * self.height + y) * self.width + left;
                data.extend_from_slice(&self.data[start..start + width]);
            }
        }
        Image {
            channels: self.channels,
            height,
            width,
            data,
        }
    }

    /// The image mirrored left to right.
    pub fn flip_horizontal(&self) -> Image {
        let mut data = Vec::with_capacity(self.data.len());
        for row in self.data.chunks_exact(self.width.max(1)) {
            data.extend(row.iter().rev());
        }
        self.with_data(data)
    }

    /// An image of the same shape holding `data` (which the caller makes
    /// `channels * height * width` long).
    pub(crate) fn with_data(&self, data: Vec<f32>) -> Image {
        Image {
            channels: self.channels,
            height: self.height,
            width: self.width,
            data,
        }
    }
}

/// Converts a value in [0, 1] to a byte, rounding and clamping.
fn unit_to_u8(v: f32) -> u8 {
    // NaN clamps to 0 through the saturating cast.
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// The two source indices and the weight of the second for one output
/// coordinate of a bilinear resize.
struct Tap {
    i0: usize,
    i1: usize,
    t: f32,
}

impl Tap {
    /// Maps output index `i` of `out_len` onto a source axis of `in_len`
    /// (> 0) with pixel centres aligned.
    fn new(i: usize, out_len: usize, in_len: usize) -> Tap {
        let scale = in_len as f32 / out_len as f32;
        let src = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(in_len - 1);
        let i1 = (i0 + 1).min(in_len - 1);
        Tap {
            i0,
            i1,
            t: src - i0 as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(channels: usize, height: usize, width: usize) -> Image {
        let n = channels * height * width;
        let data = (0..n).map(|i| i as f32 / n as f32).collect();
        Image::new(channels, height, width, data).expect("right length")
    }

    #[test]
    fn u8_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        let img = Image::from_u8_gray(16, 16, &bytes).expect("256 bytes");
        assert_eq!((img.channels, img.height, img.width), (1, 16, 16));
        assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(img.to_u8(), bytes);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let err = Image::from_u8_gray(28, 28, &[0; 10]).expect_err("too short");
        assert_eq!(
            err.to_string(),
            "image data has 10 values but 1x28x28 needs 784"
        );
    }

    #[test]
    fn resize_identity_and_constant() {
        let img = ramp(3, 5, 7);
        assert_eq!(img.resize(5, 7), img);
        let flat = Image::new(1, 4, 4, vec![0.25; 16]).expect("16 values");
        let big = flat.resize(9, 13);
        assert_eq!((big.height, big.width), (9, 13));
        assert!(big.data.iter().all(|&v| (v - 0.25).abs() < 1e-6));
    }

    #[test]
    fn resize_interpolates() {
        // Two pixels 0 and 1 upsampled to four: centres at -0.25, 0.25, 0.75, 1.25.
        let img = Image::new(1, 1, 2, vec![0.0, 1.0]).expect("2 values");
        let out = img.resize(1, 4);
        let expected = [0.0, 0.25, 0.75, 1.0];
        for (a, b) in out.data.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{:?}", out.data);
        }
        let down = Image::new(1, 1, 4, vec![0.0, 1.0, 2.0, 3.0])
            .expect("4 values")
            .resize(1, 2);
        assert_eq!(down.data, vec![0.5, 2.5]);
    }

    #[test]
    fn crop_picks_the_region() {
        let img = ramp(2, 4, 5);
        let c = img.crop(1, 2, 2, 3).expect("fits");
        assert_eq!((c.channels, c.height, c.width), (2, 2, 3));
        for ch in 0..2 {
            for y in 0..2 {
                for x in 0..3 {
                    assert_eq!(c.at(ch, y, x), img.at(ch, y + 1, x + 2));
                }
            }
        }
        assert!(img.crop(3, 0, 2, 1).is_err());
        assert!(img.crop(0, usize::MAX, 1, 1).is_err());
    }

    #[test]
    fn flip_twice_is_identity() {
        let img = ramp(3, 4, 5);
        let once = img.flip_horizontal();
        assert_eq!(once.at(1, 2, 0), img.at(1, 2, 4));
        assert_eq!(once.flip_horizontal(), img);
    }
}
