//! 2-D max and average pooling with any kernel, stride and padding.
//!
//! Candle 0.11.1's `max_pool2d` / `avg_pool2d` have no padding, and their
//! backward only exists when kernel == stride — and is wrong even then when
//! the kernel does not divide the input size (it upsamples the gradient
//! with nearest-neighbour scaling instead of routing it through the
//! windows; see `candle_defect_*` in `tests/gradcheck_conv.rs`).
//!
//! [`MaxPool2d`] and [`AvgPool2d`] are custom ops with a CPU forward and
//! backward, one task per `(image, channel)` plane:
//!
//! - max: padding never wins (it acts as −∞); the backward recomputes each
//!   window's argmax from the input and routes the whole gradient to it.
//!   Ties go to the first maximum in window order (row by row), in the
//!   forward and the backward alike, so the result is deterministic.
//! - average: the sum over the window divided by `kh·kw`, padding counted
//!   as zeros (PyTorch's default `count_include_pad = True`); the backward
//!   spreads each output gradient evenly over its window.
//!
//! The output size is `(H + 2·ph − kh)/sh + 1` (rounded down) per axis.
//! CPU tensors of other dtypes (bf16, f16) go through the kernel in f32.
//! Tensors on other devices (CUDA) go through [`max_pool2d_composite`] /
//! [`avg_pool2d_composite`]: the windows as strided views combined by
//! Candle's elementwise ops and reductions, whose gradients are right on
//! every device (Candle's pooling gradients are not, on any device, as the
//! defects are in its backward formulas).

use super::{contiguous_slice, kernel_supported, pad_to, par_init, Real};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The hyper-parameters of a 2-D pooling, per axis `(height, width)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dConfig {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Padding on both sides; must be smaller than the kernel, so that every
    /// window overlaps the image.
    pub padding: (usize, usize),
}

impl Pool2dConfig {
    /// The same kernel, stride and padding on both axes.
    pub fn square(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel: (kernel, kernel),
            stride: (stride, stride),
            padding: (padding, padding),
        }
    }
}

/// A pooling over an input `[b,c,h,w]` (checked), with output `ho×wo`.
#[derive(Clone, Copy, Debug)]
struct PoolGeometry {
    planes: usize,
    h: usize,
    w: usize,
    cfg: Pool2dConfig,
    ho: usize,
    wo: usize,
}

impl PoolGeometry {
    fn new(dims: &[usize], cfg: &Pool2dConfig) -> Result<Self> {
        let &[b, c, h, w] = dims else {
            bail!("pool2d: input must be [B,C,H,W], got {dims:?}")
        };
        let Pool2dConfig {
            kernel: (kh, kw),
            stride: (sh, sw),
            padding: (ph, pw),
        } = *cfg;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            bail!("pool2d: kernel and stride must be positive, got {cfg:?}")
        }
        if ph >= kh || pw >= kw {
            bail!("pool2d: padding must be smaller than the kernel, got {cfg:?}")
        }
        if h + 2 * ph < kh || w + 2 * pw < kw {
            bail!("pool2d: kernel {kh}x{kw} larger than the padded input {h}x{w} ({cfg:?})")
        }
        Ok(Self {
            planes: b * c,
            h,
            w,
            cfg: *cfg,
            ho: (h + 2 * ph - kh) / sh + 1,
            wo: (w + 2 * pw - kw) / sw + 1,
        })
    }

    /// The input rows and columns of the window of output `(oy, ox)`,
    /// clipped to the image (never empty: padding < kernel).
    #[inline(always)]
    fn window(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let clip = |o: usize, s: usize, p: usize, k: usize, n: usize| {
            let start = o * s;
            start.saturating_sub(p)..(start + k).saturating_sub(p).min(n)
        };
        let c = &self.cfg;
        (
            clip(oy, c.stride.0, c.padding.0, c.kernel.0, self.h),
            clip(ox, c.stride.1, c.padding.1, c.kernel.1, self.w),
        )
    }

    /// Index in the plane of the first maximum of the window of `(oy, ox)`.
    #[inline(always)]
    fn argmax<T: Real>(&self, plane: &[T], oy: usize, ox: usize) -> usize {
        let (rows, cols) = self.window(oy, ox);
        let mut best = rows.start * self.w + cols.start;
        for iy in rows {
            for ix in cols.clone() {
                let i = iy * self.w + ix;
                if plane[i] > plane[best] {
                    best = i;
                }
            }
        }
        best
    }

    fn shape(&self, dims: &[usize]) -> Shape {
        Shape::from((dims[0], dims[1], self.ho, self.wo))
    }
}

/// Which reduction a pooling op applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Max,
    Avg,
}

fn pool_fwd<T: Real>(x: &[T], g: &PoolGeometry, kind: Kind) -> Vec<T> {
    let (plane, out) = (g.h * g.w, g.ho * g.wo);
    if out == 0 || g.planes == 0 {
        return Vec::new();
    }
    let scale = T::from_f64(1.0 / (g.cfg.kernel.0 * g.cfg.kernel.1) as f64);
    par_init(g.planes * out, out, |p, dst: &mut [MaybeUninit<T>]| {
        let src = &x[p * plane..][..plane];
        for (i, d) in dst.iter_mut().enumerate() {
            let (oy, ox) = (i / g.wo, i % g.wo);
            let v = match kind {
                Kind::Max => src[g.argmax(src, oy, ox)],
                Kind::Avg => {
                    let (rows, cols) = g.window(oy, ox);
                    let mut acc = T::zero();
                    for iy in rows {
                        for &v in &src[iy * g.w..][cols.clone()] {
                            acc += v;
                        }
                    }
                    acc * scale
                }
            };
            d.write(v);
        }
    })
}

fn pool_bwd<T: Real>(x: &[T], dy: &[T], g: &PoolGeometry, kind: Kind) -> Vec<T> {
    let (plane, out) = (g.h * g.w, g.ho * g.wo);
    let mut dx = vec![T::zero(); g.planes * plane];
    if out == 0 || plane == 0 {
        return dx;
    }
    let scale = T::from_f64(1.0 / (g.cfg.kernel.0 * g.cfg.kernel.1) as f64);
    dx.par_chunks_mut(plane).enumerate().for_each(|(p, dst)| {
        let src = &x[p * plane..][..plane];
        let grad = &dy[p * out..][..out];
        for (i, &gv) in grad.iter().enumerate() {
            let (oy, ox) = (i / g.wo, i % g.wo);
            match kind {
                Kind::Max => dst[g.argmax(src, oy, ox)] += gv,
                Kind::Avg => {
                    let (rows, cols) = g.window(oy, ox);
                    let gv = gv * scale;
                    for iy in rows {
                        for d in &mut dst[iy * g.w..][cols.clone()] {
                            *d += gv;
                        }
                    }
                }
            }
        }
    });
    dx
}

/// The data of a contiguous CPU tensor.
fn with_data<T: Real, R>(t: &Tensor, f: impl FnOnce(&[T]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(storage) = &*storage else {
        bail!("pool2d: expected a CPU tensor")
    };
    f(contiguous_slice::<T>(storage, layout, "pool2d")?)
}

/// The backward of a pooling: `dx` from `x` and the output gradient.
fn backward(x: &Tensor, grad: &Tensor, cfg: &Pool2dConfig, kind: Kind) -> Result<Tensor> {
    let g = PoolGeometry::new(x.dims(), cfg)?;
    let (x, grad) = (x.contiguous()?, grad.contiguous()?);
    fn run<T: Real>(x: &Tensor, grad: &Tensor, g: &PoolGeometry, kind: Kind) -> Result<Tensor> {
        let dx = with_data::<T, _>(x, |xs| {
            with_data::<T, _>(grad, |gs| Ok(pool_bwd(xs, gs, g, kind)))
        })?;
        Tensor::from_vec(dx, x.shape(), x.device())
    }
    match x.dtype() {
        DType::F32 => run::<f32>(&x, &grad, &g, kind),
        DType::F64 => run::<f64>(&x, &grad, &g, kind),
        dtype => bail!("pool2d: unsupported dtype {dtype:?}"),
    }
}

fn forward(
    storage: &CpuStorage,
    layout: &Layout,
    cfg: &Pool2dConfig,
    kind: Kind,
    name: &str,
) -> Result<(CpuStorage, Shape)> {
    let g = PoolGeometry::new(layout.dims(), cfg)?;
    let out = match storage {
        CpuStorage::F32(_) => {
            CpuStorage::F32(pool_fwd(contiguous_slice(storage, layout, name)?, &g, kind))
        }
        CpuStorage::F64(_) => {
            CpuStorage::F64(pool_fwd(contiguous_slice(storage, layout, name)?, &g, kind))
        }
        other => bail!("{name}: unsupported dtype {:?}", other.dtype()),
    };
    Ok((out, g.shape(layout.dims())))
}

/// Custom op: max pooling `[B,C,H,W] -> [B,C,Ho,Wo]` (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    /// Kernel, stride and padding.
    pub config: Pool2dConfig,
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "parallax-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        forward(storage, layout, &self.config, Kind::Max, self.name())
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(backward(arg, grad, &self.config, Kind::Max)?))
    }
}

/// Custom op: average pooling `[B,C,H,W] -> [B,C,Ho,Wo]` (see the module
/// docs).
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d {
    /// Kernel, stride and padding.
    pub config: Pool2dConfig,
}

impl CustomOp1 for AvgPool2d {
    fn name(&self) -> &'static str {
        "parallax-avg-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        forward(storage, layout, &self.config, Kind::Avg, self.name())
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(backward(arg, grad, &self.config, Kind::Avg)?))
    }
}

fn pool(x: &Tensor, cfg: &Pool2dConfig, kind: Kind) -> Result<Tensor> {
    PoolGeometry::new(x.dims(), cfg)?;
    if !kernel_supported(x) {
        if !x.device().is_cpu() {
            return pool_composite(x, cfg, kind);
        }
        // other dtypes on the CPU: the f32 kernel, rounded back
        let dtype = x.dtype();
        return pool(&x.to_dtype(DType::F32)?, cfg, kind)?.to_dtype(dtype);
    }
    let x = x.contiguous()?;
    match kind {
        Kind::Max => x.apply_op1(MaxPool2d { config: *cfg }),
        Kind::Avg => x.apply_op1(AvgPool2d { config: *cfg }),
    }
}

/// Positions `start, start + stride, ...` (`out` of them) of axis `dim`,
/// which must hold at least `start + out·stride` positions.
fn strided(x: &Tensor, dim: usize, start: usize, out: usize, stride: usize) -> Result<Tensor> {
    let t = x.narrow(dim, start, out * stride)?;
    if stride == 1 {
        return Ok(t);
    }
    let mut dims = t.dims().to_vec();
    dims[dim] = out;
    dims.insert(dim + 1, stride);
    t.reshape(dims)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
}

fn pool_composite(x: &Tensor, cfg: &Pool2dConfig, kind: Kind) -> Result<Tensor> {
    let g = PoolGeometry::new(x.dims(), cfg)?;
    let Pool2dConfig {
        kernel: (kh, kw),
        stride: (sh, sw),
        padding: (ph, pw),
    } = *cfg;
    let fill = match kind {
        Kind::Max => f64::NEG_INFINITY,
        Kind::Avg => 0.0,
    };
    // `out·stride + k − 1` positions per axis, so that tap `t` of every
    // window is the strided view of `out·stride` positions from `t`
    let xp = pad_to(x, 2, ph, g.ho * sh + kh - 1, fill)?;
    let xp = pad_to(&xp, 3, pw, g.wo * sw + kw - 1, fill)?;
    let mut taps = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        let rows = strided(&xp, 2, i, g.ho, sh)?;
        for j in 0..kw {
            taps.push(strided(&rows, 3, j, g.wo, sw)?);
        }
    }
    match kind {
        Kind::Max => Tensor::stack(&taps, 0)?.max(0),
        Kind::Avg => {
            let mut sum = taps[0].clone();
            for t in &taps[1..] {
                sum = (sum + t)?;
            }
            sum * (1.0 / (kh * kw) as f64)
        }
    }
}

/// [`max_pool2d_with`] from Candle's ops only (strided views of the padded
/// input, stacked, and a max over the taps): the path for tensors off the
/// CPU, public so that the gradient checks run it on the CPU. Its gradient
/// goes to every maximum of a window on ties (the kernel's to the first).
pub fn max_pool2d_composite(x: &Tensor, cfg: &Pool2dConfig) -> Result<Tensor> {
    pool_composite(x, cfg, Kind::Max)
}

/// [`avg_pool2d_with`] from Candle's ops only (the sum of the strided taps
/// over `kh·kw`), as [`max_pool2d_composite`].
pub fn avg_pool2d_composite(x: &Tensor, cfg: &Pool2dConfig) -> Result<Tensor> {
    pool_composite(x, cfg, Kind::Avg)
}

/// Max pooling of `x: [B,C,H,W]` with a `kernel×kernel` window, the same
/// `stride` and `padding` on both axes (padding < kernel; it never wins).
/// Differentiable; ties route the gradient to the first maximum.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    max_pool2d_with(x, &Pool2dConfig::square(kernel, stride, padding))
}

/// [`max_pool2d`] with per-axis kernel, stride and padding.
pub fn max_pool2d_with(x: &Tensor, cfg: &Pool2dConfig) -> Result<Tensor> {
    pool(x, cfg, Kind::Max)
}

/// Average pooling of `x: [B,C,H,W]` with a `kernel×kernel` window, the
/// same `stride` and `padding` on both axes (padding < kernel; padded
/// positions count as zeros, the divisor is always `kernel²`).
/// Differentiable.
pub fn avg_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    avg_pool2d_with(x, &Pool2dConfig::square(kernel, stride, padding))
}

/// [`avg_pool2d`] with per-axis kernel, stride and padding.
pub fn avg_pool2d_with(x: &Tensor, cfg: &Pool2dConfig) -> Result<Tensor> {
    pool(x, cfg, Kind::Avg)
}

/// Global average pooling `[B,C,H,W] -> [B,C]` (the mean over each plane),
/// with Candle's reductions, which are right on every device.
pub fn global_avg_pool2d(x: &Tensor) -> Result<Tensor> {
    let (b, c, _, _) = x.dims4()?;
    x.reshape((b, c, ()))?.mean(2)
}
