//! An encoder that computes in a half-precision dtype behind an f32
//! interface, for mixed-precision training ([`crate::optim::precision`]).
//!
//! The wrapped encoder is built with a `VarBuilder` of the compute dtype
//! (bf16 or f16), so its variables are half-precision; the wrapper casts
//! the batch's floating-point fields (images, waveforms, attention masks)
//! to that dtype on the way in and the representations back to f32 on the
//! way out. Integer fields (token ids, labels) pass unchanged. Gradients
//! flow through both casts, so heads, losses and the optimizer's master
//! weights all see f32.

use candle_core::{DType, Tensor};

use crate::batch::Batch;
use crate::error::Result;
use crate::nn::encoder::{Encoder, ForwardCtx, ImageText};

/// `inner` computing in `dtype`, seen as an f32 encoder.
pub struct CastEncoder {
    inner: Box<dyn Encoder>,
    dtype: DType,
}

impl CastEncoder {
    /// Wraps `inner`, whose variables are in `dtype`.
    pub fn new(inner: Box<dyn Encoder>, dtype: DType) -> Self {
        CastEncoder { inner, dtype }
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `batch` with its floating-point tensors in the compute dtype.
    fn cast_in(&self, batch: &Batch) -> Result<Batch> {
        let mut out = batch.clone();
        for t in out.tensors.values_mut() {
            if t.dtype().is_float() && t.dtype() != self.dtype {
                *t = t.to_dtype(self.dtype)?;
            }
        }
        Ok(out)
    }
}

/// `t` in f32 (unchanged when it already is, or is not a float).
fn to_f32(t: Tensor) -> Result<Tensor> {
    Ok(if t.dtype().is_float() && t.dtype() != DType::F32 {
        t.to_dtype(DType::F32)?
    } else {
        t
    })
}

impl Encoder for CastEncoder {
    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        to_f32(self.inner.forward(&self.cast_in(batch)?, ctx)?)
    }

    fn output_dim(&self) -> usize {
        self.inner.output_dim()
    }

    fn export(&self, dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
        self.inner.export(dir)
    }

    fn image_text(&self) -> Option<&dyn ImageText> {
        self.inner.image_text().map(|_| self as &dyn ImageText)
    }
}

impl ImageText for CastEncoder {
    fn embed_image(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let it = self.inner_image_text()?;
        to_f32(it.embed_image(&self.cast_in(batch)?, ctx)?)
    }

    fn embed_text(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let it = self.inner_image_text()?;
        to_f32(it.embed_text(&self.cast_in(batch)?, ctx)?)
    }

    /// The inner encoder's logit scale; image-text encoders keep it in f32
    /// (a half-precision copy could not be clamped by the method in place).
    fn logit_scale(&self) -> &Tensor {
        match self.inner.image_text() {
            Some(it) => it.logit_scale(),
            None => unreachable!("image_text() returns the wrapper only for image-text encoders"),
        }
    }

    fn embed_dim(&self) -> usize {
        self.inner.image_text().map_or(0, |it| it.embed_dim())
    }
}

impl CastEncoder {
    fn inner_image_text(&self) -> Result<&dyn ImageText> {
        self.inner.image_text().ok_or_else(|| {
            crate::error::Error::Recipe("the encoder is not an image-text encoder".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::init::VarStore;
    use candle_core::{Device, Module};
    use candle_nn::VarBuilder;

    /// A linear encoder on the `x` field.
    struct Lin(candle_nn::Linear);

    impl Encoder for Lin {
        fn forward(&self, batch: &Batch, _ctx: &mut ForwardCtx) -> Result<Tensor> {
            Ok(self.0.forward(batch.get("x")?)?)
        }
        fn output_dim(&self) -> usize {
            2
        }
    }

    fn lin(vb: VarBuilder) -> Box<dyn Encoder> {
        Box::new(Lin(candle_nn::linear(3, 2, vb.pp("lin")).unwrap()))
    }

    #[test]
    fn computes_in_half_precision_and_returns_f32_with_gradients() {
        let dev = Device::Cpu;
        let (full, half) = (VarStore::new(3), VarStore::new(3));
        let e32 = lin(full.var_builder(DType::F32, &dev));
        let e16 = CastEncoder::new(lin(half.var_builder(DType::BF16, &dev)), DType::BF16);
        let w = half.get_var("lin.weight").unwrap();
        assert_eq!(w.dtype(), DType::BF16, "the inner variables are bf16");
        let mut batch = Batch::default();
        let x = Tensor::new(&[[0.5f32, -1.0, 2.0], [1.5, 0.25, -0.75]], &dev).unwrap();
        batch.tensors.insert("x".into(), x);
        batch
            .tensors
            .insert("ids".into(), Tensor::new(&[1u32, 2], &dev).unwrap());
        let mut ctx = ForwardCtx::eval();
        let y16 = e16.forward(&batch, &mut ctx).unwrap();
        let y32 = e32.forward(&batch, &mut ctx).unwrap();
        assert_eq!(y16.dtype(), DType::F32);
        let (a, b) = (y16.to_vec2::<f32>().unwrap(), y32.to_vec2::<f32>().unwrap());
        for (p, q) in a.iter().flatten().zip(b.iter().flatten()) {
            // same seeded init; bf16 keeps about 3 significant digits
            assert!((p - q).abs() < 0.03 * (1.0 + q.abs()), "{a:?} vs {b:?}");
        }
        let g = y16.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gw = g
            .get(w.as_tensor())
            .expect("a gradient reaches the bf16 weight");
        assert_eq!(gw.dtype(), DType::BF16);
        assert!(e16.image_text().is_none());
    }
}
