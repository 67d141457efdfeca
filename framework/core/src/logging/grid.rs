//! A grid of image views, for TensorBoard and `parallax views`.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::logging::ImageU8;

/// Lays out `rows` of images (`[B, C, H, W]`, values in [0, 1], C = 1 or 3)
/// as an RGB grid: one row per tensor, at most `max_cols` images a row,
/// with `pad` pixels of white between them. Rows may differ in image size
/// (multi-crop views): each cell is as large as the largest image, smaller
/// images sit in its top-left corner.
pub fn image_grid(rows: &[Tensor], max_cols: usize, pad: usize) -> Result<ImageU8> {
    let first = rows
        .first()
        .ok_or_else(|| Error::Shape("no images for the grid".into()))?;
    let (_, c, _, _) = first.dims4()?;
    if c != 1 && c != 3 {
        return Err(Error::Shape(format!(
            "image grid needs 1 or 3 channels, got {c}"
        )));
    }
    let mut cell_h = 0;
    let mut cell_w = 0;
    for t in rows {
        let (_, tc, h, w) = t.dims4()?;
        if tc != c {
            return Err(Error::Shape(
                "images of a grid must share their number of channels".into(),
            ));
        }
        cell_h = cell_h.max(h);
        cell_w = cell_w.max(w);
    }
    let cols = rows
        .iter()
        .map(|t| t.dim(0).unwrap_or(0))
        .max()
        .unwrap_or(0)
        .min(max_cols)
        .max(1);
    let height = rows.len() * (cell_h + pad) + pad;
    let width = cols * (cell_w + pad) + pad;
    let mut data = vec![255u8; height * width * 3];
    for (r, t) in rows.iter().enumerate() {
        let (_, _, h, w) = t.dims4()?;
        let n = t.dim(0)?.min(cols);
        let v = t
            .narrow(0, 0, n)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for i in 0..n {
            for y in 0..h {
                for x in 0..w {
                    let top = pad + r * (cell_h + pad) + y;
                    let left = pad + i * (cell_w + pad) + x;
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
