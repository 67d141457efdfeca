//! Batch normalisation (training and evaluation mode) as fused CPU kernels.
//!
//! [`batch_norm_train`] normalises `x: [B, C, *]` (e.g. `[B,C,H,W]` or
//! `[B,C]`) with the statistics of the batch, per channel, and applies the
//! affine `weight`/`bias`. On CPU f32/f64 tensors it is one custom op:
//!
//! - forward: one pass computes per-channel mean and (biased) variance —
//!   per-plane two-pass moments in cache, merged across planes in f64
//!   (Chan et al.) — and one pass writes `y`;
//! - backward (another custom op): one pass sums `dy` and `dy·(x − μ)` per
//!   channel, one pass writes
//!   `dx = w/σ · (dy − mean(dy) − x̂·mean(dy·x̂))`; `dweight = Σ dy·x̂` and
//!   `dbias = Σ dy` come out of the first pass.
//!
//! [`batch_norm_relu_train`] fuses a ReLU after the affine; its backward
//! masks `dy` where the output is zero, recomputing the mask from `x`.
//!
//! Channels are processed in parallel over batch chunks whose split depends
//! only on the shape, so results do not depend on the thread count.

use super::{
    contiguous_slice, kernel_supported, par_init, simd, split_ranges, sum_lanes, sum_pairs, Real,
};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};

/// At most this many batch chunks in the reductions (fixed, for
/// deterministic results).
const MAX_CHUNKS: usize = 64;

/// `x: [n, c, *]` seen as `n` rows of `c` planes of `s` elements.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    c: usize,
    s: usize,
}

impl Dims {
    fn of(dims: &[usize]) -> Result<Self> {
        if dims.len() < 2 {
            bail!("batch norm: input must be [B, C, ...], got {dims:?}")
        }
        Ok(Self {
            n: dims[0],
            c: dims[1],
            s: dims[2..].iter().product(),
        })
    }

    /// Elements per channel.
    fn count(&self) -> usize {
        self.n * self.s
    }
}

/// Count, mean and sum of squared deviations of a group of values.
#[derive(Clone, Copy, Debug, Default)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    /// Merges another group's moments (Chan, Golub & LeVeque).
    fn merge(&mut self, n: f64, mean: f64, m2: f64) {
        if n == 0.0 {
            return;
        }
        let total = self.n + n;
        let delta = mean - self.mean;
        self.mean += delta * (n / total);
        self.m2 += m2 + delta * delta * (self.n * n / total);
        self.n = total;
    }
}

/// What the forward keeps for the backward: per-channel batch statistics and
/// the affine parameters, in f64.
#[derive(Clone, Debug)]
struct Saved {
    mean: Vec<f64>,
    var: Vec<f64>,
    invstd: Vec<f64>,
    weight: Vec<f64>,
    bias: Vec<f64>,
}

impl Saved {
    /// Per-channel `(m, k, t)` in `T` with `y = (x − m)·k + t`, where `m` is
    /// the mean rounded to `T` and `t` corrects for that rounding. Forward and
    /// backward (for the ReLU mask) use exactly these values.
    fn fwd_coef<T: Real>(&self) -> Vec<(T, T, T)> {
        (0..self.mean.len())
            .map(|c| {
                let k = self.weight[c] * self.invstd[c];
                let m = T::from_f64(self.mean[c]);
                let t = self.bias[c] + k * (m.to_f64() - self.mean[c]);
                (m, T::from_f64(k), T::from_f64(t))
            })
            .collect()
    }
}

/// Per-channel moments of `x`, reduced over batch chunks in parallel.
fn moments<T: Real>(x: &[T], d: Dims) -> Vec<Moments> {
    let partial: Vec<Vec<Moments>> = split_ranges(d.n, MAX_CHUNKS)
        .into_par_iter()
        .map(|r| {
            simd(
                #[inline(always)]
                || moments_chunk(x, d, r),
            )
        })
        .collect();
    let mut total = vec![Moments::default(); d.c];
    for part in &partial {
        for (t, p) in total.iter_mut().zip(part) {
            t.merge(p.n, p.mean, p.m2);
        }
    }
    total
}

/// Per-channel moments of the batch rows `r`.
#[inline(always)]
fn moments_chunk<T: Real>(x: &[T], d: Dims, r: std::ops::Range<usize>) -> Vec<Moments> {
    let mut acc = vec![Moments::default(); d.c];
    if d.s == 1 {
        // Rows of channels: accumulate across the chunk, two passes.
        let rows = &x[r.start * d.c..r.end * d.c];
        let k = r.len() as f64;
        let mut sum = vec![0f64; d.c];
        for row in rows.chunks_exact(d.c) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += v.to_f64();
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / k).collect();
        let mut m2 = vec![0f64; d.c];
        for row in rows.chunks_exact(d.c) {
            for ((q, &mu), &v) in m2.iter_mut().zip(&mean).zip(row) {
                let e = v.to_f64() - mu;
                *q += e * e;
            }
        }
        for (a, (&mu, &q)) in acc.iter_mut().zip(mean.iter().zip(&m2)) {
            a.merge(k, mu, q);
        }
    } else {
        // Planes: two passes over each (cache-resident) plane.
        let inv_s = T::from_f64(1.0 / d.s as f64);
        for b in r {
            for (c, a) in acc.iter_mut().enumerate() {
                let p = &x[(b * d.c + c) * d.s..][..d.s];
                let mu = sum_lanes(p, |v| v) * inv_s;
                let m2 = sum_lanes(p, |v| {
                    let e = v - mu;
                    e * e
                });
                a.merge(d.s as f64, mu.to_f64(), m2.to_f64());
            }
        }
    }
    acc
}

#[inline(always)]
fn relu<T: Real>(v: T) -> T {
    if v > T::zero() {
        v
    } else {
        T::zero()
    }
}

/// `y = (x − m)·k + t` per channel, optionally followed by ReLU.
fn normalize<T: Real, const RELU: bool>(x: &[T], d: Dims, coef: &[(T, T, T)]) -> Vec<T> {
    let row = d.c * d.s;
    par_init(x.len(), row, |b, yr| {
        simd(
            #[inline(always)]
            || normalize_row::<T, RELU>(yr, &x[b * row..][..row], d.s, coef),
        )
    })
}

#[inline(always)]
fn normalize_row<T: Real, const RELU: bool>(
    yr: &mut [MaybeUninit<T>],
    xr: &[T],
    s: usize,
    coef: &[(T, T, T)],
) {
    let f = |v: T, (m, k, t): (T, T, T)| {
        let z = (v - m) * k + t;
        if RELU {
            relu(z)
        } else {
            z
        }
    };
    if s == 1 {
        for ((o, &v), &cf) in yr.iter_mut().zip(xr).zip(coef) {
            o.write(f(v, cf));
        }
    } else {
        for ((ys, xs), &cf) in yr.chunks_mut(s).zip(xr.chunks(s)).zip(coef) {
            for (o, &v) in ys.iter_mut().zip(xs) {
                o.write(f(v, cf));
            }
        }
    }
}

/// The upstream gradient, masked by the ReLU (recomputed from `x`).
#[inline(always)]
fn masked<T: Real, const RELU: bool>(g: T, e: T, k: T, t: T) -> T {
    if RELU {
        // A multiplicative mask: LLVM turns a select of `g` into
        // per-lane conditional loads, which do not vectorise. (An infinite
        // or NaN `g` at a masked position gives NaN instead of 0.)
        let on = if e * k + t > T::zero() {
            T::one()
        } else {
            T::zero()
        };
        g * on
    } else {
        g
    }
}

/// Per-channel `Σ g` and `Σ g·(x − m)` (with `m` the `T`-rounded mean).
fn grad_sums<T: Real, const RELU: bool>(
    x: &[T],
    dy: &[T],
    d: Dims,
    coef: &[(T, T, T)],
) -> (Vec<f64>, Vec<f64>) {
    let partial: Vec<(Vec<f64>, Vec<f64>)> = split_ranges(d.n, MAX_CHUNKS)
        .into_par_iter()
        .map(|r| {
            simd(
                #[inline(always)]
                || grad_sums_chunk::<T, RELU>(x, dy, d, coef, r),
            )
        })
        .collect();
    let mut sg = vec![0f64; d.c];
    let mut sgx = vec![0f64; d.c];
    for (pg, pgx) in &partial {
        for c in 0..d.c {
            sg[c] += pg[c];
            sgx[c] += pgx[c];
        }
    }
    (sg, sgx)
}

/// [`grad_sums`] over the batch rows `r`.
#[inline(always)]
fn grad_sums_chunk<T: Real, const RELU: bool>(
    x: &[T],
    dy: &[T],
    d: Dims,
    coef: &[(T, T, T)],
    r: std::ops::Range<usize>,
) -> (Vec<f64>, Vec<f64>) {
    let mut sg = vec![0f64; d.c];
    let mut sgx = vec![0f64; d.c];
    for b in r {
        let xr = &x[b * d.c * d.s..][..d.c * d.s];
        let gr = &dy[b * d.c * d.s..][..d.c * d.s];
        if d.s == 1 {
            for (c, (&v, &g)) in xr.iter().zip(gr).enumerate() {
                let (m, k, t) = coef[c];
                let e = v - m;
                let g = masked::<T, RELU>(g, e, k, t);
                sg[c] += g.to_f64();
                sgx[c] += (g * e).to_f64();
            }
            continue;
        }
        for (c, (xs, gs)) in xr.chunks(d.s).zip(gr.chunks(d.s)).enumerate() {
            let (m, k, t) = coef[c];
            let (s, sx) = sum_pairs(xs, gs, |v, g| {
                let e = v - m;
                let g = masked::<T, RELU>(g, e, k, t);
                (g, g * e)
            });
            sg[c] += s.to_f64();
            sgx[c] += sx.to_f64();
        }
    }
    (sg, sgx)
}

/// `dx = a·g + b·(x − m) + q` per channel, with `g` the (masked) upstream
/// gradient.
fn grad_input<T: Real, const RELU: bool>(
    x: &[T],
    dy: &[T],
    d: Dims,
    coef: &[(T, T, T)],
    dcoef: &[(T, T, T)],
) -> Vec<T> {
    let row = d.c * d.s;
    par_init(x.len(), row, |b, dr| {
        simd(
            #[inline(always)]
            || {
                let (xr, gr) = (&x[b * row..][..row], &dy[b * row..][..row]);
                grad_input_row::<T, RELU>(dr, xr, gr, d.s, coef, dcoef)
            },
        )
    })
}

#[inline(always)]
fn grad_input_row<T: Real, const RELU: bool>(
    dr: &mut [MaybeUninit<T>],
    xr: &[T],
    gr: &[T],
    s: usize,
    coef: &[(T, T, T)],
    dcoef: &[(T, T, T)],
) {
    let f = |v: T, g: T, (m, k, t): (T, T, T), (a, b, q): (T, T, T)| {
        let e = v - m;
        let g = masked::<T, RELU>(g, e, k, t);
        a * g + b * e + q
    };
    if s == 1 {
        for (c, (o, (&v, &g))) in dr.iter_mut().zip(xr.iter().zip(gr)).enumerate() {
            o.write(f(v, g, coef[c], dcoef[c]));
        }
    } else {
        let planes = dr.chunks_mut(s).zip(xr.chunks(s).zip(gr.chunks(s)));
        for (c, (os, (xs, gs))) in planes.enumerate() {
            let (cf, dc) = (coef[c], dcoef[c]);
            for (o, (&v, &g)) in os.iter_mut().zip(xs.iter().zip(gs)) {
                o.write(f(v, g, cf, dc));
            }
        }
    }
}

fn forward_typed<T: Real>(
    x: &[T],
    w: &[T],
    b: &[T],
    d: Dims,
    eps: f64,
    relu: bool,
) -> (Vec<T>, Saved) {
    let mom = moments(x, d);
    let count = d.count() as f64;
    let mean: Vec<f64> = mom.iter().map(|m| m.mean).collect();
    let var: Vec<f64> = mom.iter().map(|m| m.m2 / count).collect();
    let saved = Saved {
        invstd: var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect(),
        mean,
        var,
        weight: w.iter().map(|v| v.to_f64()).collect(),
        bias: b.iter().map(|v| v.to_f64()).collect(),
    };
    let coef = saved.fwd_coef::<T>();
    let y = if relu {
        normalize::<T, true>(x, d, &coef)
    } else {
        normalize::<T, false>(x, d, &coef)
    };
    (y, saved)
}

/// dx, and (dweight, dbias) in f64.
fn backward_typed<T: Real>(
    x: &[T],
    dy: &[T],
    d: Dims,
    saved: &Saved,
    relu: bool,
) -> (Vec<T>, Vec<f64>, Vec<f64>) {
    let coef = saved.fwd_coef::<T>();
    let (sg, sgx) = if relu {
        grad_sums::<T, true>(x, dy, d, &coef)
    } else {
        grad_sums::<T, false>(x, dy, d, &coef)
    };
    let count = d.count() as f64;
    let mut dw = vec![0f64; d.c];
    let mut db = vec![0f64; d.c];
    let mut dcoef = Vec::with_capacity(d.c);
    for c in 0..d.c {
        let (m, _, _) = coef[c];
        // Σ g·(x − μ) from Σ g·(x − m).
        let shift = m.to_f64() - saved.mean[c];
        let sgx_mu = sgx[c] + shift * sg[c];
        let inv = saved.invstd[c];
        dw[c] = sgx_mu * inv;
        db[c] = sg[c];
        let a = saved.weight[c] * inv;
        let mean_g = sg[c] / count;
        let mean_gxhat = sgx_mu * inv / count;
        let b = -a * inv * mean_gxhat;
        // dx = a·g + b·(x − μ) − a·mean(g), written with (x − m).
        let q = -a * mean_g + b * shift;
        dcoef.push((T::from_f64(a), T::from_f64(b), T::from_f64(q)));
    }
    let dx = if relu {
        grad_input::<T, true>(x, dy, d, &coef, &dcoef)
    } else {
        grad_input::<T, false>(x, dy, d, &coef, &dcoef)
    };
    (dx, dw, db)
}

/// Forward op on (x, weight, bias); saves the statistics for [`BnGrad`].
struct BnTrain {
    eps: f64,
    relu: bool,
    saved: Arc<OnceLock<Saved>>,
}

impl BnTrain {
    fn run<T: Real>(&self, s: [(&CpuStorage, &Layout); 3], d: Dims) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_slice::<T>(s[0].0, s[0].1, self.name())?;
        let w = contiguous_slice::<T>(s[1].0, s[1].1, self.name())?;
        let b = contiguous_slice::<T>(s[2].0, s[2].1, self.name())?;
        if w.len() != d.c || b.len() != d.c {
            bail!("{}: weight/bias must have {} elements", self.name(), d.c)
        }
        let (y, saved) = forward_typed(x, w, b, d, self.eps, self.relu);
        let _ = self.saved.set(saved);
        Ok((T::to_cpu_storage_owned(y), s[0].1.shape().clone()))
    }
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        if self.relu {
            "parallax-batch-norm-relu-train"
        } else {
            "parallax-batch-norm-train"
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
        let d = Dims::of(l1.dims())?;
        let s = [(s1, l1), (s2, l2), (s3, l3)];
        match s1 {
            CpuStorage::F32(_) => self.run::<f32>(s, d),
            CpuStorage::F64(_) => self.run::<f64>(s, d),
            other => bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        _weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = grads(&self.saved, self.relu, x, grad)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `(dx, dweight, dbias)` of the batch norm that saved `saved`, for the
/// output gradient `grad`.
fn grads(
    saved: &OnceLock<Saved>,
    relu: bool,
    x: &Tensor,
    grad: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let Some(saved) = saved.get() else {
        bail!("batch norm: backward before forward")
    };
    let grad = grad.contiguous()?;
    let op = BnGrad {
        saved,
        relu,
        params: OnceLock::new(),
    };
    let dx = x.apply_op2_no_bwd(&grad, &op)?;
    let Some((dw, db)) = op.params.get() else {
        bail!("batch norm: the backward kernel produced no parameter gradients")
    };
    let dw = Tensor::from_slice(dw, dw.len(), x.device())?.to_dtype(x.dtype())?;
    let db = Tensor::from_slice(db, db.len(), x.device())?.to_dtype(x.dtype())?;
    Ok((dx, dw, db))
}

/// Backward op on (x, dy) -> dx; leaves (dweight, dbias) in `params`.
struct BnGrad<'a> {
    saved: &'a Saved,
    relu: bool,
    params: OnceLock<(Vec<f64>, Vec<f64>)>,
}

impl BnGrad<'_> {
    fn run<T: Real>(
        &self,
        x: (&CpuStorage, &Layout),
        dy: (&CpuStorage, &Layout),
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(x.1.dims())?;
        if x.1.dims() != dy.1.dims() {
            bail!(
                "{}: gradient shape {:?} != input shape {:?}",
                self.name(),
                dy.1.dims(),
                x.1.dims()
            )
        }
        let xs = contiguous_slice::<T>(x.0, x.1, self.name())?;
        let gs = contiguous_slice::<T>(dy.0, dy.1, self.name())?;
        let (dx, dw, db) = backward_typed(xs, gs, d, self.saved, self.relu);
        let _ = self.params.set((dw, db));
        Ok((T::to_cpu_storage_owned(dx), x.1.shape().clone()))
    }
}

impl CustomOp2 for BnGrad<'_> {
    fn name(&self) -> &'static str {
        "parallax-batch-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => self.run::<f32>((s1, l1), (s2, l2)),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => self.run::<f64>((s1, l1), (s2, l2)),
            _ => bail!(
                "{}: unsupported dtypes {:?}/{:?}",
                self.name(),
                s1.dtype(),
                s2.dtype()
            ),
        }
    }
}

fn check_params(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<usize> {
    if x.rank() < 2 {
        bail!("batch norm: input must be [B, C, ...], got {:?}", x.dims())
    }
    let c = x.dim(1)?;
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if t.dims() != [c] {
            bail!("batch norm: {name} must be [{c}], got {:?}", t.dims())
        }
        if t.dtype() != x.dtype() {
            bail!(
                "batch norm: {name} is {:?}, input is {:?}",
                t.dtype(),
                x.dtype()
            )
        }
    }
    Ok(c)
}

fn train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = check_params(x, weight, bias)?;
    if matches!(x.dtype(), DType::BF16 | DType::F16) {
        // mixed precision: the statistics in f32 (as PyTorch's autocast
        // does), the output and statistics rounded back
        let (h, f) = (x.dtype(), DType::F32);
        let (y, mean, var) = train(
            &x.to_dtype(f)?,
            &weight.to_dtype(f)?,
            &bias.to_dtype(f)?,
            eps,
            relu,
        )?;
        return Ok((y.to_dtype(h)?, mean.to_dtype(h)?, var.to_dtype(h)?));
    }
    if !kernel_supported(x) {
        return batch_norm_train_composite(x, weight, bias, eps, relu);
    }
    let (y, mean, var, _) = train_kernel(x, weight, bias, eps, relu, c)?;
    Ok((y, mean, var))
}

/// The kernel path of [`train`]: also returns what the backward needs.
fn train_kernel(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
    c: usize,
) -> Result<(Tensor, Tensor, Tensor, BnTape)> {
    let x = x.contiguous()?;
    let saved = Arc::new(OnceLock::new());
    let op = BnTrain {
        eps,
        relu,
        saved: saved.clone(),
    };
    let y = x.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    let Some(s) = saved.get() else {
        bail!("batch norm: the kernel saved no statistics")
    };
    let mean = Tensor::from_slice(&s.mean, c, x.device())?.to_dtype(x.dtype())?;
    let var = Tensor::from_slice(&s.var, c, x.device())?.to_dtype(x.dtype())?;
    Ok((y, mean, var, BnTape { saved, relu }))
}

/// What a training-mode batch norm keeps for [`batch_norm_backward`]: its
/// batch statistics and parameters, and whether a ReLU followed.
pub(crate) struct BnTape {
    saved: Arc<OnceLock<Saved>>,
    relu: bool,
}

/// [`batch_norm_train`] (or [`batch_norm_relu_train`] when `relu`) on the
/// CPU kernel, for ops that run their own backward: also returns the tape
/// for [`batch_norm_backward`]. Needs CPU f32/f64 tensors.
pub(crate) fn batch_norm_train_taped(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor, BnTape)> {
    let c = check_params(x, weight, bias)?;
    if !kernel_supported(x) {
        bail!("batch norm: the taped kernel needs a CPU f32/f64 input")
    }
    train_kernel(x, weight, bias, eps, relu, c)
}

/// `(dx, dweight, dbias)` of the batch norm recorded in `tape` for its input
/// `x` and the output gradient `dy` (computed without autograd).
pub(crate) fn batch_norm_backward(
    x: &Tensor,
    dy: &Tensor,
    tape: &BnTape,
) -> Result<(Tensor, Tensor, Tensor)> {
    grads(&tape.saved, tape.relu, &x.contiguous()?, dy)
}

/// Training-mode batch norm of `x: [B, C, *]` with per-channel `weight` and
/// `bias` (`[C]`): returns `y`, the batch mean `[C]` and the biased batch
/// variance `[C]` (divided by `B·H·W`). Gradients flow to `x`, `weight` and
/// `bias` through `y`; the returned statistics carry no gradient (they are
/// meant for the running averages, which the caller updates — PyTorch uses
/// the unbiased variance there).
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    train(x, weight, bias, eps, false)
}

/// [`batch_norm_train`] followed by ReLU, fused: `y = relu(bn(x))`.
pub fn batch_norm_relu_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    train(x, weight, bias, eps, true)
}

/// The shape `[1, C, 1, ...]` that broadcasts a `[C]` vector over `x`.
fn channel_shape(x: &Tensor) -> Result<Vec<usize>> {
    let mut shape = vec![1; x.rank()];
    shape[1] = x.dim(1)?;
    Ok(shape)
}

/// Training-mode batch norm (optionally with ReLU) from Candle's elementary
/// ops: the fallback for devices and dtypes without a kernel, and a reference.
pub fn batch_norm_train_composite(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    check_params(x, weight, bias)?;
    let shape = channel_shape(x)?;
    let reduce: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
    let mean = x.mean_keepdim(reduce.clone())?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(reduce)?;
    let y = xc
        .broadcast_div(&(&var + eps)?.sqrt()?)?
        .broadcast_mul(&weight.reshape(shape.clone())?)?
        .broadcast_add(&bias.reshape(shape)?)?;
    let y = if relu { y.relu()? } else { y };
    Ok((y, mean.flatten_all()?.detach(), var.flatten_all()?.detach()))
}

/// Evaluation-mode batch norm with running statistics (`[C]` each):
/// `y = (x − running_mean) / sqrt(running_var + eps) · weight + bias`, as two
/// broadcast ops over `x`. Differentiable in `x`, `weight` and `bias`.
pub fn batch_norm_eval(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    check_params(x, weight, bias)?;
    let shape = channel_shape(x)?;
    let scale = weight.div(&(running_var + eps)?.sqrt()?)?;
    let shift = bias.sub(&running_mean.mul(&scale)?)?;
    x.broadcast_mul(&scale.reshape(shape.clone())?)?
        .broadcast_add(&shift.reshape(shape)?)
}
