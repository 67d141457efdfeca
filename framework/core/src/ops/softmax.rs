//! Softmax and log-softmax over the last dimension, with a backward.
//!
//! Candle 0.11.1's fused `candle_nn::ops::softmax_last_dim` has no backward:
//! the gradient silently stops at it (see the `candle_defect_*` tests in
//! `tests/gradcheck_nn.rs`). Candle's generic `candle_nn::ops::softmax` and
//! `log_softmax` are correct but take five allocating ops. The functions
//! here are the project's replacements:
//!
//! - [`softmax_last_dim`]: `y = exp(x − max) / Σ exp(x − max)` per row;
//! - [`log_softmax_last_dim`]: `y = x − max − ln Σ exp(x − max)` per row.
//!
//! On CPU tensors of dtype f32/f64 the forward is one custom op (one pass for
//! the maximum, one for the exponentials and their sum, one to write `y`, per
//! row in cache; rows in parallel). Subtracting the row maximum keeps large
//! logits finite. The backward is written with Candle ops on the saved
//! output (so it is itself differentiable):
//!
//! ```text
//! softmax:      dx = y · (g − Σ g·y)
//! log-softmax:  dx = g − exp(y) · Σ g
//! ```
//!
//! Other devices and dtypes use Candle's generic `softmax` / `log_softmax`.

use super::{contiguous_slice, kernel_supported, par_init, Real};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, D};
use std::mem::MaybeUninit;

/// Elements per row chunk that make a parallel task worth its scheduling.
const CHUNK_ELEMS: usize = 1 << 14;

/// The two functions of a float the kernel needs beyond [`Real`].
trait Float: Real {
    fn exp(self) -> Self;
    fn ln(self) -> Self;
}

impl Float for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
}

impl Float for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
}

/// Softmax (or log-softmax) of one row into `out`.
fn softmax_row<T: Float>(out: &mut [MaybeUninit<T>], row: &[T], log: bool) {
    // A NaN never compares greater, but it still reaches the sum below and
    // turns the whole row into NaN, as it should.
    let mut max = T::from_f64(f64::NEG_INFINITY);
    for &v in row {
        if v > max {
            max = v;
        }
    }
    let mut sum = T::zero();
    for (o, &v) in out.iter_mut().zip(row) {
        let e = (v - max).exp();
        sum += e;
        o.write(e);
    }
    if log {
        let shift = max + sum.ln();
        for (o, &v) in out.iter_mut().zip(row) {
            o.write(v - shift);
        }
    } else {
        let inv = T::one() / sum;
        for o in out.iter_mut() {
            // SAFETY: every element was written in the loop above.
            let e = unsafe { o.assume_init_read() };
            o.write(e * inv);
        }
    }
}

fn forward_typed<T: Float>(x: &[T], d: usize, log: bool) -> Vec<T> {
    let rows_per_chunk = CHUNK_ELEMS.div_ceil(d).max(1);
    par_init(x.len(), rows_per_chunk * d, |i, out| {
        let xs = &x[i * rows_per_chunk * d..][..out.len()];
        for (o, r) in out.chunks_mut(d).zip(xs.chunks(d)) {
            softmax_row(o, r, log);
        }
    })
}

/// The forward op; `log` selects log-softmax.
struct SoftmaxOp {
    log: bool,
}

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        if self.log {
            "parallax-log-softmax-last-dim"
        } else {
            "parallax-softmax-last-dim"
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(
            op: &SoftmaxOp,
            s: &CpuStorage,
            l: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            let x = contiguous_slice::<T>(s, l, op.name())?;
            let d = l.dims().last().copied().unwrap_or(0);
            if d == 0 {
                bail!("{}: the last dimension is empty", op.name())
            }
            let y = forward_typed(x, d, op.log);
            Ok((T::to_cpu_storage_owned(y), l.shape().clone()))
        }
        match storage {
            CpuStorage::F32(_) => run::<f32>(self, storage, layout),
            CpuStorage::F64(_) => run::<f64>(self, storage, layout),
            other => bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        }
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let dx = if self.log {
            g.sub(&y.exp()?.broadcast_mul(&g.sum_keepdim(D::Minus1)?)?)?
        } else {
            let gy = g.mul(y)?.sum_keepdim(D::Minus1)?;
            g.broadcast_sub(&gy)?.mul(y)?
        };
        Ok(Some(dx))
    }
}

fn apply(x: &Tensor, log: bool) -> Result<Tensor> {
    if x.rank() == 0 || x.dim(D::Minus1)? == 0 {
        bail!(
            "softmax: the input needs a non-empty last dimension, got {:?}",
            x.dims()
        )
    }
    if matches!(x.dtype(), DType::BF16 | DType::F16) {
        // mixed precision: in f32, rounded back (as PyTorch's autocast)
        return apply(&x.to_dtype(DType::F32)?, log)?.to_dtype(x.dtype());
    }
    if !kernel_supported(x) {
        return if log {
            candle_nn::ops::log_softmax(x, D::Minus1)
        } else {
            candle_nn::ops::softmax(x, D::Minus1)
        };
    }
    x.contiguous()?.apply_op1(SoftmaxOp { log })
}

/// Softmax of `x` over its last dimension. Any layout and rank;
/// differentiable; finite for large logits.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    apply(x, false)
}

/// Log-softmax of `x` over its last dimension. Any layout and rank;
/// differentiable; finite for large logits.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    apply(x, true)
}
