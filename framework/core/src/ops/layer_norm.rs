//! Layer norm and RMS norm over the last dimension, with a backward.
//!
//! Candle 0.11.1's fused `candle_nn::ops::layer_norm` and `rms_norm` (and
//! `candle_nn::LayerNorm` / `RmsNorm`, which call them on contiguous inputs)
//! have no backward: the gradient silently stops at them (see the
//! `candle_defect_*` tests in `tests/gradcheck_nn.rs`). The functions here
//! are the project's replacements:
//!
//! - [`layer_norm`]: `y = (x − μ) / sqrt(σ² + eps) · weight + bias`, with the
//!   mean `μ` and biased variance `σ²` of each row (the last dimension);
//! - [`rms_norm`]: `y = x / sqrt(mean(x²) + eps) · weight`.
//!
//! On CPU tensors of dtype f32/f64 each is one custom op: the forward makes
//! one pass per row for the statistics (two-pass mean and variance, in
//! cache) and one for `y`; the backward (another custom op) recomputes the
//! row statistics and writes, with `x̂ = (x − μ)·r`, `r = 1/sqrt(σ² + eps)`
//! and `g = dy·weight`,
//!
//! ```text
//! dx      = r · (g − mean(g) − x̂ · mean(g·x̂))    (rms norm: no mean(g) term)
//! dweight = Σ_rows dy·x̂,   dbias = Σ_rows dy
//! ```
//!
//! The backward op is not itself differentiable (first order only).
//! Rows are processed in parallel in chunks whose size depends only on the
//! shape, and the per-chunk parameter gradients are added in chunk order, so
//! results do not depend on the thread count. Other devices and dtypes use
//! [`layer_norm_composite`] / [`rms_norm_composite`], built from Candle ops
//! that have gradients.
//!
//! [`LayerNorm`] and [`RmsNorm`] are the corresponding modules, built from a
//! `VarBuilder` like Candle's (`weight` initialised to 1, `bias` to 0).

use super::{contiguous_slice, kernel_supported, par_init, simd, sum_lanes, sum_pairs, Real};
use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Module, Result, Shape, Tensor, D,
};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// At most this many row chunks (fixed, for deterministic reductions).
const MAX_CHUNKS: usize = 64;
/// Elements per row chunk that make a task worth its scheduling.
const CHUNK_ELEMS: usize = 1 << 14;

/// Rows per chunk for `rows` rows of `d` elements: a function of the shape
/// only.
fn rows_per_chunk(rows: usize, d: usize) -> usize {
    let chunks = (rows * d).div_ceil(CHUNK_ELEMS).clamp(1, MAX_CHUNKS);
    rows.div_ceil(chunks).max(1)
}

/// `(m, r)` of one row: the mean (0 without centring) and the inverse
/// standard deviation (root mean square without centring).
#[inline(always)]
fn row_stats<T: Real, const CENTER: bool>(row: &[T], eps: f64) -> (T, T) {
    let inv_d = T::from_f64(1.0 / row.len() as f64);
    let m = if CENTER {
        sum_lanes(row, |v| v) * inv_d
    } else {
        T::zero()
    };
    let var = sum_lanes(row, |v| {
        let e = v - m;
        e * e
    }) * inv_d;
    (m, T::from_f64(1.0 / (var.to_f64() + eps).sqrt()))
}

/// `y = (x − m)·r·w + b` row by row (`b = 0` when `bias` is `None`).
fn forward_typed<T: Real, const CENTER: bool>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    eps: f64,
) -> Vec<T> {
    let d = w.len();
    let rpc = rows_per_chunk(x.len() / d, d);
    par_init(x.len(), rpc * d, |i, out| {
        simd(
            #[inline(always)]
            || {
                let xs = &x[i * rpc * d..][..out.len()];
                for (yr, xr) in out.chunks_mut(d).zip(xs.chunks(d)) {
                    forward_row::<T, CENTER>(yr, xr, w, bias, eps);
                }
            },
        )
    })
}

#[inline(always)]
fn forward_row<T: Real, const CENTER: bool>(
    yr: &mut [MaybeUninit<T>],
    xr: &[T],
    w: &[T],
    bias: Option<&[T]>,
    eps: f64,
) {
    let (m, r) = row_stats::<T, CENTER>(xr, eps);
    match bias {
        Some(b) => {
            for (((o, &v), &wj), &bj) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                o.write((v - m) * r * wj + bj);
            }
        }
        None => {
            for ((o, &v), &wj) in yr.iter_mut().zip(xr).zip(w) {
                o.write((v - m) * r * wj);
            }
        }
    }
}

/// The gradients `[dx (x.len()), dweight (d), dbias (d)]` in one vector.
fn backward_typed<T: Real, const CENTER: bool>(x: &[T], dy: &[T], w: &[T], eps: f64) -> Vec<T> {
    let d = w.len();
    let n = x.len();
    let rpc = rows_per_chunk(n / d, d);
    let mut out = vec![T::zero(); n + 2 * d];
    let (dx, params) = out.split_at_mut(n);
    // dx per chunk, with the chunk's partial sums of dweight and dbias.
    let partial: Vec<(Vec<f64>, Vec<f64>)> = dx
        .par_chunks_mut(rpc * d)
        .enumerate()
        .map(|(i, dxc)| {
            let at = i * rpc * d;
            let (xc, gc) = (&x[at..][..dxc.len()], &dy[at..][..dxc.len()]);
            simd(
                #[inline(always)]
                || backward_chunk::<T, CENTER>(dxc, xc, gc, w, eps),
            )
        })
        .collect();
    let mut dw = vec![0f64; d];
    let mut db = vec![0f64; d];
    for (pw, pb) in &partial {
        for j in 0..d {
            dw[j] += pw[j];
            db[j] += pb[j];
        }
    }
    let (pw, pb) = params.split_at_mut(d);
    for j in 0..d {
        pw[j] = T::from_f64(dw[j]);
        pb[j] = T::from_f64(db[j]);
    }
    out
}

/// dx for the rows of one chunk; returns the chunk's `(Σ dy·x̂, Σ dy)`.
#[inline(always)]
fn backward_chunk<T: Real, const CENTER: bool>(
    dx: &mut [T],
    x: &[T],
    dy: &[T],
    w: &[T],
    eps: f64,
) -> (Vec<f64>, Vec<f64>) {
    let d = w.len();
    let inv_d = T::from_f64(1.0 / d as f64);
    let mut dw = vec![0f64; d];
    let mut db = vec![0f64; d];
    let mut g = vec![T::zero(); d];
    for ((dxr, xr), gr) in dx.chunks_mut(d).zip(x.chunks(d)).zip(dy.chunks(d)) {
        let (m, r) = row_stats::<T, CENTER>(xr, eps);
        for ((gj, &dyj), &wj) in g.iter_mut().zip(gr).zip(w) {
            *gj = dyj * wj;
        }
        let (sg, sgx) = sum_pairs(xr, &g, |v, gj| (gj, gj * ((v - m) * r)));
        let mean_g = if CENTER { sg * inv_d } else { T::zero() };
        let mean_gx = sgx * inv_d;
        for ((o, &v), &gj) in dxr.iter_mut().zip(xr).zip(&g) {
            *o = r * (gj - mean_g - (v - m) * r * mean_gx);
        }
        for (((a, b), &v), &dyj) in dw.iter_mut().zip(db.iter_mut()).zip(xr).zip(gr) {
            *a += (dyj * ((v - m) * r)).to_f64();
            *b += dyj.to_f64();
        }
    }
    (dw, db)
}

/// The CPU slices of `(x, w)` (and `bias`) after the shape checks.
fn rows_of<'a, T: Real>(
    name: &str,
    x: (&'a CpuStorage, &Layout),
    w: (&'a CpuStorage, &Layout),
) -> Result<(&'a [T], &'a [T])> {
    let xs = contiguous_slice::<T>(x.0, x.1, name)?;
    let ws = contiguous_slice::<T>(w.0, w.1, name)?;
    let d = x.1.dims().last().copied().unwrap_or(0);
    if d == 0 || ws.len() != d {
        bail!("{name}: weight has {} elements, rows have {d}", ws.len())
    }
    Ok((xs, ws))
}

/// Forward op on `(x, weight, bias)`.
struct LayerNormOp {
    eps: f64,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "parallax-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Real>(
            op: &LayerNormOp,
            x: (&CpuStorage, &Layout),
            w: (&CpuStorage, &Layout),
            b: (&CpuStorage, &Layout),
        ) -> Result<(CpuStorage, Shape)> {
            let (xs, ws) = rows_of::<T>(op.name(), x, w)?;
            let bs = contiguous_slice::<T>(b.0, b.1, op.name())?;
            if bs.len() != ws.len() {
                bail!("{}: bias must have {} elements", op.name(), ws.len())
            }
            let y = forward_typed::<T, true>(xs, ws, Some(bs), op.eps);
            Ok((T::to_cpu_storage_owned(y), x.1.shape().clone()))
        }
        match s1 {
            CpuStorage::F32(_) => run::<f32>(self, (s1, l1), (s2, l2), (s3, l3)),
            CpuStorage::F64(_) => run::<f64>(self, (s1, l1), (s2, l2), (s3, l3)),
            other => bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = norm_grads::<true>(x, weight, grad, self.eps)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Forward op on `(x, weight)`.
struct RmsNormOp {
    eps: f64,
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "parallax-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Real>(
            op: &RmsNormOp,
            x: (&CpuStorage, &Layout),
            w: (&CpuStorage, &Layout),
        ) -> Result<(CpuStorage, Shape)> {
            let (xs, ws) = rows_of::<T>(op.name(), x, w)?;
            let y = forward_typed::<T, false>(xs, ws, None, op.eps);
            Ok((T::to_cpu_storage_owned(y), x.1.shape().clone()))
        }
        match s1 {
            CpuStorage::F32(_) => run::<f32>(self, (s1, l1), (s2, l2)),
            CpuStorage::F64(_) => run::<f64>(self, (s1, l1), (s2, l2)),
            other => bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = norm_grads::<false>(x, weight, grad, self.eps)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// Backward op on `(x, dy, weight)`: `[dx, dweight, dbias]` flattened.
struct NormGradOp<const CENTER: bool> {
    eps: f64,
}

impl<const CENTER: bool> CustomOp3 for NormGradOp<CENTER> {
    fn name(&self) -> &'static str {
        if CENTER {
            "parallax-layer-norm-grad"
        } else {
            "parallax-rms-norm-grad"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Real, const CENTER: bool>(
            op: &NormGradOp<CENTER>,
            x: (&CpuStorage, &Layout),
            dy: (&CpuStorage, &Layout),
            w: (&CpuStorage, &Layout),
        ) -> Result<(CpuStorage, Shape)> {
            if x.1.dims() != dy.1.dims() {
                bail!(
                    "{}: gradient shape {:?} != input shape {:?}",
                    op.name(),
                    dy.1.dims(),
                    x.1.dims()
                )
            }
            let (xs, ws) = rows_of::<T>(op.name(), x, w)?;
            let gs = contiguous_slice::<T>(dy.0, dy.1, op.name())?;
            let out = backward_typed::<T, CENTER>(xs, gs, ws, op.eps);
            let len = out.len();
            Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
        }
        match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => {
                run::<f32, CENTER>(self, (s1, l1), (s2, l2), (s3, l3))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => {
                run::<f64, CENTER>(self, (s1, l1), (s2, l2), (s3, l3))
            }
            _ => bail!("{}: unsupported dtypes", self.name()),
        }
    }
}

/// `(dx, dweight, dbias)` through [`NormGradOp`].
fn norm_grads<const CENTER: bool>(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (n, d) = (x.elem_count(), weight.elem_count());
    let out = x.apply_op3_no_bwd(&grad.contiguous()?, weight, &NormGradOp::<CENTER> { eps })?;
    Ok((
        out.narrow(0, 0, n)?.reshape(x.shape())?,
        out.narrow(0, n, d)?,
        out.narrow(0, n + d, d)?,
    ))
}

/// Checks that `params` are `[d]` vectors of `x`'s dtype, `d = x.dim(-1)`.
fn check_params(what: &str, x: &Tensor, params: &[(&str, &Tensor)]) -> Result<()> {
    if x.rank() == 0 {
        bail!("{what}: the input needs at least one dimension")
    }
    let d = x.dim(D::Minus1)?;
    if d == 0 {
        bail!("{what}: the last dimension is empty")
    }
    for (name, t) in params {
        if t.dims() != [d] {
            bail!("{what}: {name} must be [{d}], got {:?}", t.dims())
        }
        if t.dtype() != x.dtype() {
            bail!(
                "{what}: {name} is {:?}, input is {:?}",
                t.dtype(),
                x.dtype()
            )
        }
    }
    Ok(())
}

/// Layer norm of `x` over its last dimension `d`, with `weight` and `bias`
/// of shape `[d]`: `(x − mean) / sqrt(var + eps) · weight + bias`, with the
/// biased variance (as PyTorch's `LayerNorm`). Any layout and rank;
/// differentiable in all three inputs.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    check_params("layer norm", x, &[("weight", weight), ("bias", bias)])?;
    if !kernel_supported(x) {
        return layer_norm_composite(x, weight, bias, eps);
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNormOp { eps },
    )
}

/// RMS norm of `x` over its last dimension `d` with `weight` (`[d]`):
/// `x / sqrt(mean(x²) + eps) · weight`. Any layout and rank; differentiable
/// in both inputs.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    check_params("rms norm", x, &[("weight", weight)])?;
    if !kernel_supported(x) {
        return rms_norm_composite(x, weight, eps);
    }
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNormOp { eps })
}

/// Runs `f` in f32 for half-precision inputs (as Candle's norms do).
fn in_float(x: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    match x.dtype() {
        DType::F16 | DType::BF16 => f(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype()),
        _ => f(x),
    }
}

/// [`layer_norm`] from Candle's elementary ops (all with gradients): the
/// fallback for devices and dtypes without a kernel, and a reference.
pub fn layer_norm_composite(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    check_params("layer norm", x, &[("weight", weight), ("bias", bias)])?;
    let normed = in_float(x, |x| {
        let xc = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        xc.broadcast_div(&(var + eps)?.sqrt()?)
    })?;
    normed.broadcast_mul(weight)?.broadcast_add(bias)
}

/// [`rms_norm`] from Candle's elementary ops (all with gradients): the
/// fallback for devices and dtypes without a kernel, and a reference.
pub fn rms_norm_composite(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    check_params("rms norm", x, &[("weight", weight)])?;
    let normed = in_float(x, |x| {
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(ms + eps)?.sqrt()?)
    })?;
    normed.broadcast_mul(weight)
}

/// A layer-norm module over the last dimension (replaces
/// `candle_nn::LayerNorm`, whose fused path has no backward).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// From existing parameters (`[d]` each).
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self { weight, bias, eps }
    }

    /// Parameters `weight` (ones) and `bias` (zeros) of size `dim` under `vb`.
    pub fn load(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self::new(weight, bias, eps))
    }

    /// The scale `[d]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The shift `[d]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// An RMS-norm module over the last dimension (replaces
/// `candle_nn::RmsNorm`, whose fused path has no backward).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// From an existing `weight` (`[d]`).
    pub fn new(weight: Tensor, eps: f64) -> Self {
        Self { weight, eps }
    }

    /// Parameter `weight` (ones) of size `dim` under `vb`.
    pub fn load(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
        Ok(Self::new(weight, eps))
    }

    /// The scale `[d]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        rms_norm(x, &self.weight, self.eps)
    }
}
