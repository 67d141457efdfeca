//! A grid of image views, for TensorBoard and `parallax views`.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::logging::ImageU8;

/// Lays out `rows` of images (`[B, C, H, W]`, values in [0, 1], C = 1 or 3)
/// as an RGB grid: one row per tensor, at most `max_cols` images a row,
/// with `pad` pixels of white between them.
pub fn image_grid(rows: &[Tensor], max_cols: usize, pad: usize) -> Result<ImageU8> {
    let first = rows
        .first()
        .ok_or_else(|| Error::Shape("no images for the grid".into()))?;
    let (_, c, h, w) = first.dims4()?;
    if c != 1 && c != 3 {
        return Err(Error::Shape(format!(
            "image grid needs 1 or 3 channels, got {c}"
        )));
    }
    let cols = rows
        .iter()
        .map(|t| t.dim(0).unwrap_or(0))
        .max()
        .unwrap_or(0)
        .min(max_cols)
        .max(1);
    let height = rows.len() * (h + pad) + pad;
    let width = cols * (w + pad) + pad;
    let mut data = vec![255u8; height * width * 3];
    for (r, t) in rows.iter().enumerate() {
        if t.dims4()? != (t.dim(0)?, c, h, w) {
            return Err(Error::Shape(
                "images of a grid must share their shape".into(),
            ));
        }
        let n = t.dim(0)?.min(cols);
        let v = t
            .narrow(0, 0, n)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for i in 0..n {
            for y in 0..h {
                for x in 0..w {
                    let top = pad + r * (h + pad) + y;
                    let left = pad + i * (w + pad) + x;
                    for ch in 0..3 {
                        let src = if c == 1 { 0 } else { ch };
                        let val = v[((i * c + src) * h + y) * w + x];
                        data[(top * width + left) * 3 + ch] =
                            (val.clamp(0.0, 1.0) * 255.0).round() as u8;
                    }
                }
            }
        }
    }
    Ok(ImageU8 {
        height,
        width,
        channels: 3,
        data,
    })
}
