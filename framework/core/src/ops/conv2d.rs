//! 2-D convolution as im2col + GEMM (the `gemm` crate, the GEMM under
//! Candle's matmul, called directly on strided views).
//!
//! [`conv2d_with`] (and [`conv2d`], the same stride and padding on both
//! axes) is one custom op on `(x, w)` ([`Conv2d`]) with per-axis stride,
//! padding and dilation ([`Conv2dConfig`]) and channel groups: groups only
//! split the unfolded input into blocks, one GEMM per group. Candle's own
//! conv2d backward fails on some non-square inputs (`candle_defect_*` in
//! `tests/gradcheck_conv.rs`).
//!
//! - forward: unfold a chunk of images, multiply by the flattened kernel,
//!   and move the product into `[B,O,Ho,Wo]`;
//! - backward: the output gradient as `[O, pixels]` (one copy), unfold `x`
//!   again for `dw += dyᵀ·cols` (accumulated in place over the chunks),
//!   and `dcols = wᵀ·dy` folded back onto `dx` (col2im). Each half is
//!   skipped when its input needs no gradient (e.g. `dx` of a first layer).
//!
//! Two unfoldings, picked per product and shape (`Path`) from the
//! measurements of `examples/bench_ops.rs`: tap-major columns
//! (`[C·kh·kw, pixels]`, contiguous runs of `Wo`; for 1x1 kernels, few
//! channels and small outputs) and channels-last rows (`Nhwc`:
//! `[pixels, kh·kw·C]` from a transposed `[H,W,C]` copy of each image,
//! contiguous runs of channels), which `gemm` reads in place as its long
//! operand — the faster arrangement for the larger layers.
//!
//! Everything runs over chunks of images whose columns take about 8 MiB,
//! so that the columns never exist for the whole batch: the buffers stay
//! small enough for the allocator to reuse and for the caches, and the
//! graph keeps only `x` and `w`. With 8 chunks or more, the chunks run in
//! parallel with one thread each (single-threaded GEMMs); otherwise one
//! after the other, each GEMM on all threads.
//!
//! Dense 3x3 stride-1 convolutions on at least 16 channels and 8x8 outputs
//! (most of a ResNet's products) run by Winograd's F(4x4, 3x3) instead
//! (`super::winograd`: 4x fewer products), forward and backward.
//!
//! [`conv2d_unfused`] leaves the matmul to Candle's autograd (the
//! [`Im2col`] op, whose backward is [`Col2im`], then `matmul`): kept to
//! compare with, and for higher-order gradients.

use super::transpose::transpose_images;
use super::winograd;
use super::{
    contiguous_slice, cpu_half, kernel_supported, pad_to, par_init, simd, split_ranges, Real,
};
use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor,
};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The hyper-parameters of a 2-D convolution, per axis `(height, width)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Step between output positions.
    pub stride: (usize, usize),
    /// Zeros added on both sides of the input.
    pub padding: (usize, usize),
    /// Spacing between kernel taps (1: a dense kernel).
    pub dilation: (usize, usize),
    /// Channel groups: input and output channels are split into `groups`
    /// blocks, output block `i` sees input block `i` only.
    pub groups: usize,
}

impl Default for Conv2dConfig {
    /// Stride 1, no padding, no dilation, one group.
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dConfig {
    /// The same `stride` and `padding` on both axes, no dilation, one group.
    pub fn square(stride: usize, padding: usize) -> Self {
        Self {
            stride: (stride, stride),
            padding: (padding, padding),
            ..Self::default()
        }
    }
}

/// The geometry of a convolution: input `[b,c,h,w]`, kernel `kh×kw`,
/// per-axis stride, padding and dilation, and the output size `ho×wo`.
/// Groups do not change the unfolding: they only split its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeometry {
    /// The geometry of input `[b,c,h,w]` with a `kh×kw` kernel.
    pub fn new(
        (b, c, h, w): (usize, usize, usize, usize),
        (kh, kw): (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
    ) -> Result<Self> {
        if stride.0 == 0 || stride.1 == 0 || kh == 0 || kw == 0 {
            bail!("conv2d: stride and kernel size must be positive (stride {stride:?}, kernel {kh}x{kw})")
        }
        if dilation.0 == 0 || dilation.1 == 0 {
            bail!("conv2d: dilation must be positive, got {dilation:?}")
        }
        // The extent of the dilated kernel.
        let (eh, ew) = (dilation.0 * (kh - 1) + 1, dilation.1 * (kw - 1) + 1);
        if h + 2 * padding.0 < eh || w + 2 * padding.1 < ew {
            bail!(
                "conv2d: kernel {kh}x{kw} (dilation {dilation:?}) larger than the padded input {h}x{w} (padding {padding:?})"
            )
        }
        Ok(Self {
            b,
            c,
            h,
            w,
            kh,
            kw,
            stride,
            padding,
            dilation,
            ho: (h + 2 * padding.0 - eh) / stride.0 + 1,
            wo: (w + 2 * padding.1 - ew) / stride.1 + 1,
        })
    }

    /// Columns of the unfolded input: `c·kh·kw`.
    pub fn patch(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Rows of the unfolded input: `b·ho·wo`.
    pub fn rows(&self) -> usize {
        self.b * self.ho * self.wo
    }

    fn input_len(&self) -> usize {
        self.b * self.c * self.h * self.w
    }

    /// Input column `ox·sw − pw` of kernel column 0, and whether all `kw`
    /// taps from there fall inside the image.
    #[inline(always)]
    fn col_start(&self, ox: usize) -> (isize, bool) {
        let ix0 = (ox * self.stride.1) as isize - self.padding.1 as isize;
        let last = ix0 + (self.dilation.1 * (self.kw - 1)) as isize;
        (ix0, ix0 >= 0 && (last as usize) < self.w)
    }

    /// Input row of output row `oy` and kernel row `ky`, if inside.
    #[inline(always)]
    fn row(&self, oy: usize, ky: usize) -> Option<usize> {
        let iy = (oy * self.stride.0 + ky * self.dilation.0) as isize - self.padding.0 as isize;
        (iy >= 0 && (iy as usize) < self.h).then_some(iy as usize)
    }

    /// The output columns `ox` whose input column `ox·sw + kx·dw − pw` is
    /// inside the image, and the input column of the first of them.
    #[inline(always)]
    fn valid_cols(&self, kx: usize) -> (std::ops::Range<usize>, usize) {
        let (s, p, off) = (self.stride.1, self.padding.1, kx * self.dilation.1);
        let lo = if p > off { (p - off).div_ceil(s) } else { 0 };
        let hi = if self.w + p > off {
            (self.w + p - off).div_ceil(s).min(self.wo)
        } else {
            0
        };
        let lo = lo.min(hi);
        // lo·s + off ≥ p whenever the range is not empty.
        let ix0 = (lo * s + off).saturating_sub(p);
        (lo..hi, ix0)
    }
}

/// How [`Im2col`] lays out the unfolded input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColsLayout {
    /// `[C·kh·kw, B·Ho·Wo]`: one row per kernel tap `(c, ky, kx)`, columns
    /// `(b, oy, ox)`. The default.
    #[default]
    TapMajor,
    /// `[B·Ho·Wo, C·kh·kw]`: one row per output position `(b, oy, ox)`.
    PixelMajor,
}

/// Unfolds `x: [B,C,H,W]` into `[C·kh·kw, B·Ho·Wo]` (row `(c,ky,kx)`,
/// column `(b,oy,ox)`, zeros where a tap falls on the padding).
fn im2col_taps<T: Real>(x: &[T], g: &ConvGeometry) -> Vec<T> {
    let n = g.rows();
    if n == 0 {
        return Vec::new();
    }
    // One task per tap.
    par_init(g.patch() * n, n, |j, out| {
        simd(
            #[inline(always)]
            || im2col_tap(x, g, j, out),
        )
    })
}

/// Row `j = (c, ky, kx)` of the tap-major unfolding: `out` is `[B·Ho, Wo]`.
#[inline(always)]
fn im2col_tap<T: Real>(x: &[T], g: &ConvGeometry, j: usize, out: &mut [MaybeUninit<T>]) {
    let (c, ky, kx) = (j / (g.kh * g.kw), (j / g.kw) % g.kh, j % g.kw);
    let plane = g.h * g.w;
    let (cols, ix0) = g.valid_cols(kx);
    for (r, dst) in out.chunks_exact_mut(g.wo).enumerate() {
        let (b, oy) = (r / g.ho, r % g.ho);
        let iy = g.row(oy, ky);
        let (Some(iy), false) = (iy, cols.is_empty()) else {
            for o in dst.iter_mut() {
                o.write(T::zero());
            }
            continue;
        };
        let src = &x[(b * g.c + c) * plane + iy * g.w..][..g.w];
        let (head, rest) = dst.split_at_mut(cols.start);
        let (valid, tail) = rest.split_at_mut(cols.len());
        for o in head.iter_mut().chain(tail.iter_mut()) {
            o.write(T::zero());
        }
        if g.stride.1 == 1 {
            // `valid_cols` keeps the run inside the image, so every element
            // of `valid` is written.
            debug_assert!(ix0 + valid.len() <= g.w);
            for (o, &v) in valid.iter_mut().zip(&src[ix0..]) {
                o.write(v);
            }
        } else {
            for (i, o) in valid.iter_mut().enumerate() {
                o.write(src[ix0 + i * g.stride.1]);
            }
        }
    }
}

/// The adjoint of [`im2col_taps`]: scatter-adds `cols: [C·kh·kw, B·Ho·Wo]`
/// onto a zero `[B,C,H,W]`.
fn col2im_taps<T: Real>(cols: &[T], g: &ConvGeometry) -> Vec<T> {
    let mut out = vec![T::zero(); g.input_len()];
    col2im_taps_into(cols, g, &mut out);
    out
}

/// [`col2im_taps`] adding onto `out: [B,C,H,W]`.
fn col2im_taps_into<T: Real>(cols: &[T], g: &ConvGeometry, out: &mut [T]) {
    let plane = g.h * g.w;
    if out.is_empty() || plane == 0 {
        return;
    }
    // One task per (image, channel) plane: planes do not overlap.
    out.par_chunks_mut(plane).enumerate().for_each(|(bc, dst)| {
        simd(
            #[inline(always)]
            || col2im_plane(cols, g, bc, dst),
        )
    });
}

/// Adds the taps of channel `c` of image `b` (`bc = b·C + c`) onto `dst`.
#[inline(always)]
fn col2im_plane<T: Real>(cols: &[T], g: &ConvGeometry, bc: usize, dst: &mut [T]) {
    let (b, c) = (bc / g.c, bc % g.c);
    let (n, hw) = (g.rows(), g.ho * g.wo);
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let (range, ix0) = g.valid_cols(kx);
            if range.is_empty() {
                continue;
            }
            let j = (c * g.kh + ky) * g.kw + kx;
            let tap = &cols[j * n + b * hw..][..hw];
            for oy in 0..g.ho {
                let Some(iy) = g.row(oy, ky) else { continue };
                let src = &tap[oy * g.wo..][..g.wo][range.clone()];
                let row = &mut dst[iy * g.w..][..g.w];
                if g.stride.1 == 1 {
                    for (o, &v) in row[ix0..].iter_mut().zip(src) {
                        *o += v;
                    }
                } else {
                    for (i, &v) in src.iter().enumerate() {
                        row[ix0 + i * g.stride.1] += v;
                    }
                }
            }
        }
    }
}

/// Unfolds `x: [B,C,H,W]` into `[B·Ho·Wo, C·kh·kw]` (row `(b,oy,ox)`,
/// column `(c,ky,kx)`, zeros where the patch overlaps the padding).
fn im2col_pixels<T: Real>(x: &[T], g: &ConvGeometry) -> Vec<T> {
    let patch = g.patch();
    if patch == 0 {
        return Vec::new();
    }
    // One task per output row (b, oy).
    par_init(g.rows() * patch, g.wo * patch, |r, out| {
        simd(
            #[inline(always)]
            || im2col_row(x, g, r, out),
        )
    })
}

/// The unfolded patches of output row `r = (b, oy)`: `out` is `[Wo, patch]`.
#[inline(always)]
fn im2col_row<T: Real>(x: &[T], g: &ConvGeometry, r: usize, out: &mut [MaybeUninit<T>]) {
    let plane = g.h * g.w;
    let (b, oy) = (r / g.ho, r % g.ho);
    let xb = &x[b * g.c * plane..][..g.c * plane];
    for (ox, dst) in out.chunks_exact_mut(g.patch()).enumerate() {
        let (ix0, inside) = g.col_start(ox);
        for c in 0..g.c {
            for ky in 0..g.kh {
                let d = &mut dst[(c * g.kh + ky) * g.kw..][..g.kw];
                let Some(iy) = g.row(oy, ky) else {
                    for o in d.iter_mut() {
                        o.write(T::zero());
                    }
                    continue;
                };
                let src = &xb[c * plane + iy * g.w..][..g.w];
                if inside && g.dilation.1 == 1 {
                    for (o, &v) in d.iter_mut().zip(&src[ix0 as usize..][..g.kw]) {
                        o.write(v);
                    }
                } else {
                    for (kx, o) in d.iter_mut().enumerate() {
                        let ix = ix0 + (kx * g.dilation.1) as isize;
                        let inside = ix >= 0 && (ix as usize) < g.w;
                        o.write(if inside { src[ix as usize] } else { T::zero() });
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col_pixels`]: scatter-adds `cols: [B·Ho·Wo, C·kh·kw]`
/// onto a zero `[B,C,H,W]`.
fn col2im_pixels<T: Real>(cols: &[T], g: &ConvGeometry) -> Vec<T> {
    let patch = g.patch();
    let plane = g.h * g.w;
    let mut out = vec![T::zero(); g.input_len()];
    if out.is_empty() || patch == 0 {
        return out;
    }
    // One task per image: images do not overlap in the output.
    out.par_chunks_mut(g.c * plane)
        .enumerate()
        .for_each(|(b, ob)| {
            simd(
                #[inline(always)]
                || col2im_image(cols, g, b, ob),
            )
        });
    out
}

/// Scatter-adds the patches of image `b` onto its zeroed gradient `ob`.
#[inline(always)]
fn col2im_image<T: Real>(cols: &[T], g: &ConvGeometry, b: usize, ob: &mut [T]) {
    let patch = g.patch();
    let plane = g.h * g.w;
    let cb = &cols[b * g.ho * g.wo * patch..][..g.ho * g.wo * patch];
    for (p, src) in cb.chunks_exact(patch).enumerate() {
        let (oy, ox) = (p / g.wo, p % g.wo);
        let (ix0, inside) = g.col_start(ox);
        for c in 0..g.c {
            for ky in 0..g.kh {
                let Some(iy) = g.row(oy, ky) else { continue };
                let dst = &mut ob[c * plane + iy * g.w..][..g.w];
                let s = &src[(c * g.kh + ky) * g.kw..][..g.kw];
                if inside && g.dilation.1 == 1 {
                    let d = &mut dst[ix0 as usize..][..g.kw];
                    for (o, &v) in d.iter_mut().zip(s) {
                        *o += v;
                    }
                } else {
                    for (kx, &v) in s.iter().enumerate() {
                        let ix = ix0 + (kx * g.dilation.1) as isize;
                        if ix >= 0 && (ix as usize) < g.w {
                            dst[ix as usize] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Custom op `x: [B,C,H,W] -> cols` (contiguous), `[C·kh·kw, B·Ho·Wo]` or
/// `[B·Ho·Wo, C·kh·kw]` by `layout`; its backward is [`Col2im`].
#[derive(Clone, Copy, Debug)]
pub struct Im2col {
    /// Kernel size `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Per-axis stride.
    pub stride: (usize, usize),
    /// Per-axis zero padding.
    pub padding: (usize, usize),
    /// Per-axis dilation.
    pub dilation: (usize, usize),
    /// Layout of the columns.
    pub layout: ColsLayout,
}

impl Im2col {
    /// The unfolding of a `kernel` convolution with `cfg` (groups aside).
    pub fn new(kernel: (usize, usize), cfg: &Conv2dConfig, layout: ColsLayout) -> Self {
        Self {
            kernel,
            stride: cfg.stride,
            padding: cfg.padding,
            dilation: cfg.dilation,
            layout,
        }
    }

    /// The geometry for an input of shape `dims` (`[B,C,H,W]`).
    pub fn geometry(&self, dims: &[usize]) -> Result<ConvGeometry> {
        let &[b, c, h, w] = dims else {
            bail!("im2col: input must be [B,C,H,W], got {dims:?}")
        };
        ConvGeometry::new(
            (b, c, h, w),
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
        )
    }

    fn run<T: Real>(&self, x: &[T], g: &ConvGeometry) -> Vec<T> {
        match self.layout {
            ColsLayout::TapMajor => im2col_taps(x, g),
            ColsLayout::PixelMajor => im2col_pixels(x, g),
        }
    }
}

/// The shape of the unfolded input of `g` in `layout`.
fn cols_shape(g: &ConvGeometry, layout: ColsLayout) -> (usize, usize) {
    match layout {
        ColsLayout::TapMajor => (g.patch(), g.rows()),
        ColsLayout::PixelMajor => (g.rows(), g.patch()),
    }
}

impl CustomOp1 for Im2col {
    fn name(&self) -> &'static str {
        "parallax-im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(layout.dims())?;
        let out = match storage {
            CpuStorage::F32(_) => {
                CpuStorage::F32(self.run(contiguous_slice(storage, layout, self.name())?, &g))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(self.run(contiguous_slice(storage, layout, self.name())?, &g))
            }
            other => bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        };
        Ok((out, Shape::from(cols_shape(&g, self.layout))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = Col2im {
            geometry: self.geometry(arg.dims())?,
            layout: self.layout,
        };
        Ok(Some(grad.contiguous()?.apply_op1(op)?))
    }
}

/// Custom op `cols -> [B,C,H,W]`, the scatter-add adjoint of [`Im2col`]
/// (overlapping patches sum); its backward is [`Im2col`].
#[derive(Clone, Copy, Debug)]
pub struct Col2im {
    /// The convolution whose columns are folded back.
    pub geometry: ConvGeometry,
    /// Layout of the columns.
    pub layout: ColsLayout,
}

impl Col2im {
    fn run<T: Real>(&self, cols: &[T]) -> Vec<T> {
        match self.layout {
            ColsLayout::TapMajor => col2im_taps(cols, &self.geometry),
            ColsLayout::PixelMajor => col2im_pixels(cols, &self.geometry),
        }
    }
}

impl CustomOp1 for Col2im {
    fn name(&self) -> &'static str {
        "parallax-col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let (r, c) = cols_shape(g, self.layout);
        if layout.dims() != [r, c] {
            bail!(
                "{}: input must be [{r}, {c}], got {:?}",
                self.name(),
                layout.dims()
            )
        }
        let out = match storage {
            CpuStorage::F32(_) => {
                CpuStorage::F32(self.run(contiguous_slice(storage, layout, self.name())?))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(self.run(contiguous_slice(storage, layout, self.name())?))
            }
            other => bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        };
        Ok((out, Shape::from((g.b, g.c, g.h, g.w))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = &self.geometry;
        let op = Im2col {
            kernel: (g.kh, g.kw),
            stride: g.stride,
            padding: g.padding,
            dilation: g.dilation,
            layout: self.layout,
        };
        Ok(Some(grad.contiguous()?.apply_op1(op)?))
    }
}

/// Custom op `(x: [B,C,H,W], w: [O,C/groups,kh,kw]) -> [B,O,Ho,Wo]`:
/// im2col + GEMM forward, GEMMs + col2im backward, over chunks of images
/// (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Conv2d {
    /// Stride, padding, dilation and groups.
    pub config: Conv2dConfig,
}

/// Target size of one chunk's columns: small enough to be reused by the
/// allocator (and stay in the large caches), large enough for the GEMMs.
const CHUNK_BYTES: usize = 8 << 20;

/// Chunks of images whose columns take about [`CHUNK_BYTES`] each; the
/// split depends only on the shape.
fn image_chunks<T>(g: &ConvGeometry) -> Vec<std::ops::Range<usize>> {
    let per_image = g.patch() * g.ho * g.wo * std::mem::size_of::<T>();
    let per_chunk = (CHUNK_BYTES / per_image.max(1)).max(1);
    split_ranges(g.b, g.b.div_ceil(per_chunk))
}

/// Whether to run the image chunks in parallel, one thread each (single
/// threaded GEMMs, no synchronisation inside them), rather than one after
/// the other with every thread in each GEMM: when there are enough chunks
/// to keep a few threads evenly busy.
fn batch_parallel(chunks: usize) -> bool {
    // A function of the shape only (not of the thread count), so that the
    // kernel gradient's summation order is fixed by the shape.
    chunks >= 8
}

/// `out` cut into the disjoint runs of the image ranges `chunks`
/// (`per_image` elements per image), paired with their ranges.
pub(super) fn split_images<'a, T>(
    mut out: &'a mut [T],
    chunks: &[std::ops::Range<usize>],
    per_image: usize,
) -> Vec<(std::ops::Range<usize>, &'a mut [T])> {
    let mut parts = Vec::with_capacity(chunks.len());
    for r in chunks {
        let (head, tail) = std::mem::take(&mut out).split_at_mut(r.len() * per_image);
        parts.push((r.clone(), head));
        out = tail;
    }
    parts
}

/// `dst[i] += Σ parts[c][i]`, the parts added in order (in parallel over
/// `i`), so that the sums do not depend on the number of threads.
fn sum_in_order<T: Real>(parts: &[Vec<T>], dst: &mut [T]) {
    const BLOCK: usize = 4096;
    dst.par_chunks_mut(BLOCK).enumerate().for_each(|(b, d)| {
        for part in parts {
            for (o, &v) in d.iter_mut().zip(&part[b * BLOCK..]) {
                *o += v;
            }
        }
    });
}

/// Row `i` of `src: [n, o, hw]` with its two outer axes swapped
/// (`[o, n, hw]`): the `n` runs `src[j, i, :]`.
#[inline]
fn swapped_row<T: Real>(
    src: &[T],
    (n, o, hw): (usize, usize, usize),
    i: usize,
    row: &mut [MaybeUninit<T>],
) {
    for (j, dst) in row.chunks_exact_mut(hw).take(n).enumerate() {
        for (d, &v) in dst.iter_mut().zip(&src[(j * o + i) * hw..][..hw]) {
            d.write(v);
        }
    }
}

/// The data of a contiguous CPU tensor.
fn tensor_data<T: Real>(t: &Tensor, f: impl FnOnce(&[T]) -> Result<()>) -> Result<()> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(storage) = &*storage else {
        bail!("conv2d: expected a CPU tensor")
    };
    f(contiguous_slice::<T>(storage, layout, "conv2d")?)
}

/// A `rows×cols` matrix view of a slice, with row and column strides.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a, T> {
    pub(super) data: &'a [T],
    pub(super) rs: usize,
    pub(super) cs: usize,
}

/// Elements a `rows×cols` matrix with strides `(rs, cs)` spans.
fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// Whether one [`gemm`] call uses the whole rayon pool, or one thread
/// (when the caller runs several in parallel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Threads {
    All,
    One,
}

/// Where [`gemm`] writes: a fresh buffer (every element written) or one
/// it adds onto.
pub(super) enum Dst<'a, T> {
    Fresh(&'a mut [MaybeUninit<T>]),
    Add(&'a mut [T]),
}

/// `dst (m×n) [+]= lhs (m×k) · rhs (k×n)` with the `gemm` crate (the GEMM
/// under Candle's matmul), on the rayon pool; `(drs, dcs)` are the strides
/// of `dst`. The strides let the kernels below multiply views in place —
/// no transposed copies, no zero-fill of fresh outputs, and accumulation
/// without a temporary.
pub(super) fn gemm<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: Dst<'_, T>,
    (drs, dcs): (usize, usize),
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    threads: Threads,
) {
    let (ptr, len, read) = match dst {
        Dst::Fresh(d) => (d.as_mut_ptr() as *mut T, d.len(), false),
        Dst::Add(d) => (d.as_mut_ptr(), d.len(), true),
    };
    assert!(span(m, n, drs, dcs) <= len, "gemm: destination too small");
    assert!(
        span(m, k, lhs.rs, lhs.cs) <= lhs.data.len(),
        "gemm: lhs too small"
    );
    assert!(
        span(k, n, rhs.rs, rhs.cs) <= rhs.data.len(),
        "gemm: rhs too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !read {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: inside the span checked above.
                    unsafe { ptr.add(i * drs + j * dcs).write(T::zero()) };
                }
            }
        }
        return;
    }
    // SAFETY: the three spans were checked against the slices above;
    // `T` is f32 or f64, which `gemm` supports; `dst` does not overlap the
    // inputs (a unique borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            ptr,
            dcs as isize,
            drs as isize,
            read,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            match threads {
                Threads::All => gemm::Parallelism::Rayon(0),
                Threads::One => gemm::Parallelism::None,
            },
        )
    }
}

/// A fresh vector of `n` elements filled by `fill`, which must write every
/// element.
fn filled<T: Real>(n: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: `fill` wrote all `n` elements (its contract), and `T: Copy`.
    unsafe { v.set_len(n) };
    v
}

/// The convolution on channels-last data: images `[nb, H, W, C]` unfold
/// into one row per output pixel, `[nb·Ho·Wo, K]` with `K = C·kh·kw` in
/// the order `(group, ky, kx, channel in group)`, so that each tap of a
/// pixel copies a contiguous run of channels. With the pixels as the GEMM's
/// `n` and the output channels as its `m`, `gemm` reads these rows in place
/// (no packing of the large operand), the arrangement that measured fastest
/// for all three products (`examples/bench_ops.rs`).
struct Nhwc<'a> {
    g: &'a ConvGeometry,
    groups: usize,
}

impl Nhwc<'_> {
    /// Channels per group.
    fn cg(&self) -> usize {
        self.g.c / self.groups
    }

    /// Unfolds channels-last `xt: [nb, H, W, C]` into `[nb·Ho·Wo, K]`.
    fn im2col<T: Real>(&self, xt: &[T], nb: usize) -> Vec<T> {
        let g = self.g;
        let (k, rows) = (g.patch(), nb * g.ho);
        filled(rows * g.wo * k, |out| {
            if k == 0 {
                return;
            }
            out.par_chunks_mut(g.wo * k)
                .enumerate()
                .for_each(|(r, dst)| {
                    simd(
                        #[inline(always)]
                        || self.im2col_row(xt, r, dst),
                    )
                })
        })
    }

    /// Output row `r = (b, oy)`: `dst` is `[Wo, K]`.
    #[inline(always)]
    fn im2col_row<T: Real>(&self, xt: &[T], r: usize, dst: &mut [MaybeUninit<T>]) {
        let g = self.g;
        let (b, oy) = (r / g.ho, r % g.ho);
        let cg = self.cg();
        let image = &xt[b * g.h * g.w * g.c..][..g.h * g.w * g.c];
        for (ox, patch) in dst.chunks_exact_mut(g.patch()).enumerate() {
            let ix0 = (ox * g.stride.1) as isize - g.padding.1 as isize;
            let mut runs = patch.chunks_exact_mut(cg);
            for grp in 0..self.groups {
                for ky in 0..g.kh {
                    let iy = g.row(oy, ky);
                    for kx in 0..g.kw {
                        let run = runs.next().expect("patch holds K elements");
                        let ix = ix0 + (kx * g.dilation.1) as isize;
                        match iy {
                            Some(iy) if ix >= 0 && (ix as usize) < g.w => {
                                let at = (iy * g.w + ix as usize) * g.c + grp * cg;
                                for (o, &v) in run.iter_mut().zip(&image[at..at + cg]) {
                                    o.write(v);
                                }
                            }
                            _ => {
                                for o in run.iter_mut() {
                                    o.write(T::zero());
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Self::im2col`]: adds `cols: [nb·Ho·Wo, K]` onto
    /// channels-last `dxt: [nb, H, W, C]` (one task per image).
    fn col2im<T: Real>(&self, cols: &[T], dxt: &mut [T]) {
        let g = self.g;
        let (k, hwc, cg) = (g.patch(), g.h * g.w * g.c, self.cg());
        if hwc == 0 || k == 0 {
            return;
        }
        dxt.par_chunks_mut(hwc).enumerate().for_each(|(b, image)| {
            simd(
                #[inline(always)]
                || {
                    let img_cols = &cols[b * g.ho * g.wo * k..][..g.ho * g.wo * k];
                    for (p, patch) in img_cols.chunks_exact(k).enumerate() {
                        let (oy, ox) = (p / g.wo, p % g.wo);
                        let ix0 = (ox * g.stride.1) as isize - g.padding.1 as isize;
                        let mut runs = patch.chunks_exact(cg);
                        for grp in 0..self.groups {
                            for ky in 0..g.kh {
                                let iy = g.row(oy, ky);
                                for kx in 0..g.kw {
                                    let run = runs.next().expect("patch holds K elements");
                                    let ix = ix0 + (kx * g.dilation.1) as isize;
                                    if let Some(iy) = iy.filter(|_| ix >= 0 && (ix as usize) < g.w)
                                    {
                                        let at = (iy * g.w + ix as usize) * g.c + grp * cg;
                                        for (o, &v) in image[at..at + cg].iter_mut().zip(run) {
                                            *o += v;
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            )
        });
    }

    /// The kernel `w: [O, C/G, kh, kw]` as `[O, kh·kw·C/G]` in the order
    /// `(ky, kx, channel)` of the unfolded rows.
    fn kernel_rows<T: Real>(&self, w: &[T], o: usize) -> Vec<T> {
        let (g, cg) = (self.g, self.cg());
        let taps = g.kh * g.kw;
        filled(o * taps * cg, |out| {
            for (oi, row) in out.chunks_exact_mut(taps * cg).enumerate() {
                for (t, run) in row.chunks_exact_mut(cg).enumerate() {
                    for (ci, v) in run.iter_mut().enumerate() {
                        v.write(w[(oi * cg + ci) * taps + t]);
                    }
                }
            }
        })
    }

    /// The inverse of [`Self::kernel_rows`].
    fn kernel_from_rows<T: Real>(&self, rows: &[T], o: usize) -> Vec<T> {
        let (g, cg) = (self.g, self.cg());
        let taps = g.kh * g.kw;
        filled(o * taps * cg, |out| {
            for (i, v) in out.iter_mut().enumerate() {
                let (oi, ci, t) = (i / (cg * taps), (i / taps) % cg, i % taps);
                v.write(rows[(oi * taps + t) * cg + ci]);
            }
        })
    }

    /// Channels-last input gradient `[nb, H, W, C]` of a chunk from the
    /// kernel rows `wr: [O, K/G]` and the output gradient `dyt: [O, pixels]`.
    fn input_grad<T: Real>(
        &self,
        wr: &[T],
        dyt: &[T],
        (nb, o): (usize, usize),
        threads: Threads,
    ) -> Vec<T> {
        let g = self.g;
        let (k, n) = (g.patch(), nb * g.ho * g.wo);
        let (og, kg) = (o / self.groups, k / self.groups);
        let dcols = filled(n * k, |d| {
            for grp in 0..self.groups {
                gemm(
                    (kg, n, og),
                    Dst::Fresh(&mut d[grp * kg..]),
                    (1, k),
                    Mat {
                        data: &wr[grp * og * kg..],
                        rs: 1,
                        cs: kg,
                    },
                    Mat {
                        data: &dyt[grp * og * n..],
                        rs: n,
                        cs: 1,
                    },
                    threads,
                );
            }
        });
        let mut dxt = vec![T::zero(); nb * g.h * g.w * g.c];
        self.col2im(&dcols, &mut dxt);
        dxt
    }

    /// The unfolded rows of images `x: [nb, C, H, W]`: transposed to
    /// channels-last, then unfolded.
    fn unfold<T: Real>(&self, x: &[T], nb: usize) -> Vec<T> {
        let g = self.g;
        let hw = g.h * g.w;
        let xt = filled(nb * hw * g.c, |d| transpose_images(x, (nb, g.c, hw), d));
        self.im2col(&xt, nb)
    }
}

impl Conv2d {
    /// The geometry of input `x_dims` and kernel `w_dims`, checked.
    fn geometry(&self, x_dims: &[usize], w_dims: &[usize]) -> Result<ConvGeometry> {
        let cfg = &self.config;
        let &[o, cg, kh, kw] = w_dims else {
            bail!("conv2d: kernel must be [O,C/groups,kh,kw], got {w_dims:?}")
        };
        let g = Im2col::new((kh, kw), cfg, ColsLayout::TapMajor).geometry(x_dims)?;
        if cfg.groups == 0 || o % cfg.groups != 0 {
            bail!(
                "conv2d: {o} output channels do not split into {} groups",
                cfg.groups
            )
        }
        if cg * cfg.groups != g.c {
            bail!(
                "conv2d: input has {} channels, kernel expects {cg} x {} groups",
                g.c,
                cfg.groups
            )
        }
        Ok(g)
    }

    /// Forward: per chunk of images, unfold, one GEMM per group, and move
    /// the product into `[nb, O, Ho·Wo]` (see [`Path`]).
    fn fwd<T: Real>(&self, x: &[T], w: &[T], g: &ConvGeometry, o: usize) -> Result<Vec<T>> {
        let groups = self.config.groups;
        if winograd::applies(g, groups, o) {
            return Ok(winograd::forward(x, w, g, o));
        }
        let nhwc = Nhwc { g, groups };
        let (k, hw, chw) = (g.patch(), g.ho * g.wo, g.c * g.h * g.w);
        let (og, kg) = (o / groups, k / groups);
        let len = g.b * o * hw;
        if len == 0 {
            return Ok(Vec::new());
        }
        let path = Path::forward(g, groups);
        let wr = match path {
            Path::Nhwc => nhwc.kernel_rows(w, o),
            Path::Taps => Vec::new(),
        };
        let chunk = |r: std::ops::Range<usize>, out: &mut [MaybeUninit<T>], threads: Threads| {
            let (nb, n) = (r.len(), r.len() * hw);
            let xs = &x[r.start * chw..r.end * chw];
            match path {
                Path::Nhwc => {
                    let cols = nhwc.unfold(xs, nb);
                    // [pixels, O], then per image [Ho·Wo, O] -> [O, Ho·Wo].
                    let y = filled(n * o, |y| {
                        for grp in 0..groups {
                            gemm(
                                (og, n, kg),
                                Dst::Fresh(&mut y[grp * og..]),
                                (1, o),
                                Mat {
                                    data: &wr[grp * og * kg..],
                                    rs: kg,
                                    cs: 1,
                                },
                                Mat {
                                    data: &cols[grp * kg..],
                                    rs: 1,
                                    cs: k,
                                },
                                threads,
                            );
                        }
                    });
                    transpose_images(&y, (nb, hw, o), out);
                }
                Path::Taps => {
                    let sub = ConvGeometry { b: nb, ..*g };
                    let cols = im2col_taps(xs, &sub);
                    // [O, nb, Ho·Wo], then the two outer axes swapped.
                    let y = filled(o * n, |y| {
                        for grp in 0..groups {
                            gemm(
                                (og, n, kg),
                                Dst::Fresh(&mut y[grp * og * n..]),
                                (n, 1),
                                Mat {
                                    data: &w[grp * og * kg..],
                                    rs: kg,
                                    cs: 1,
                                },
                                Mat {
                                    data: &cols[grp * kg * n..],
                                    rs: n,
                                    cs: 1,
                                },
                                threads,
                            );
                        }
                    });
                    out.par_chunks_mut(o * hw)
                        .enumerate()
                        .for_each(|(i, img)| swapped_row(&y, (o, nb, hw), i, img));
                }
            }
        };
        let chunks = image_chunks::<T>(g);
        Ok(filled(len, |out| {
            if batch_parallel(chunks.len()) {
                split_images(out, &chunks, o * hw)
                    .into_par_iter()
                    .for_each(|(r, out)| chunk(r, out, Threads::One));
            } else {
                for r in chunks {
                    let out = &mut out[r.start * o * hw..r.end * o * hw];
                    chunk(r, out, Threads::All);
                }
            }
        }))
    }

    /// (dx, dw) for CPU tensors of dtype `T`: per chunk of images, the
    /// output gradient as `[O, pixels]` (one copy), then `dw += dyᵀ·cols`
    /// into one buffer, and `dcols = wᵀ·dy` folded back onto `dx` (each
    /// product on its own [`Path`]).
    fn bwd_typed<T: Real>(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        (need_x, need_w): (bool, bool),
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let groups = self.config.groups;
        let g = self.geometry(x.dims(), w.dims())?;
        let nhwc = Nhwc { g: &g, groups };
        let (o, k, hw, chw) = (w.dim(0)?, g.patch(), g.ho * g.wo, g.c * g.h * g.w);
        let (og, kg) = (o / groups, k / groups);
        let (x, w, dy) = (x.contiguous()?, w.contiguous()?, dy.contiguous()?);
        if winograd::applies(&g, groups, o) {
            return self.bwd_winograd::<T>(&x, &w, &dy, &g, (need_x, need_w));
        }
        let (dx_path, dw_path) = (Path::input_grad(&g, groups), Path::kernel_grad(&g, groups));
        // The Taps path adds onto a zeroed `dx`; the Nhwc path writes every
        // element once (its transposes), into spare capacity.
        let mut dx = match (need_x, dx_path) {
            (false, _) => Vec::new(),
            (true, Path::Taps) => vec![T::zero(); g.input_len()],
            (true, Path::Nhwc) => Vec::with_capacity(g.input_len()),
        };
        let mut dw = vec![T::zero(); if need_w { o * kg } else { 0 }];
        tensor_data::<T>(&x, |xs| {
            tensor_data::<T>(&w, |ws| {
                tensor_data::<T>(&dy, |dys| {
                    let wr = match (need_x, dx_path) {
                        (true, Path::Nhwc) => nhwc.kernel_rows(ws, o),
                        _ => Vec::new(),
                    };
                    // One chunk of images: adds its kernel gradient onto
                    // `dw_acc` and writes (Nhwc) or adds (Taps) its input
                    // gradient into `dx_out`.
                    let chunk = |r: std::ops::Range<usize>,
                                 dx_out: Option<Dst<'_, T>>,
                                 dw_acc: Option<&mut [T]>,
                                 threads: Threads| {
                        let (nb, n) = (r.len(), r.len() * hw);
                        let sub = ConvGeometry { b: nb, ..g };
                        let xs = &xs[r.start * chw..r.end * chw];
                        // dy of these images as [O, nb·Ho·Wo].
                        let src = &dys[r.start * o * hw..r.end * o * hw];
                        let dyt =
                            par_init(src.len(), n, |i, row| swapped_row(src, (nb, o, hw), i, row));
                        if let Some(dw_acc) = dw_acc {
                            // Rows (ky, kx, c) on the Nhwc path, (c, ky, kx)
                            // on the Taps path: reordered at the end.
                            let (cols, rhs) = match dw_path {
                                Path::Nhwc => (nhwc.unfold(xs, nb), (k, 1)),
                                Path::Taps => (im2col_taps(xs, &sub), (1, n)),
                            };
                            for grp in 0..groups {
                                let off = match dw_path {
                                    Path::Nhwc => grp * kg,
                                    Path::Taps => grp * kg * n,
                                };
                                gemm(
                                    (og, kg, n),
                                    Dst::Add(&mut dw_acc[grp * og * kg..]),
                                    (kg, 1),
                                    Mat {
                                        data: &dyt[grp * og * n..],
                                        rs: n,
                                        cs: 1,
                                    },
                                    Mat {
                                        data: &cols[off..],
                                        rs: rhs.0,
                                        cs: rhs.1,
                                    },
                                    threads,
                                );
                            }
                        }
                        match dx_out {
                            None => {}
                            Some(Dst::Fresh(out)) => {
                                let dxt = nhwc.input_grad(&wr, &dyt, (nb, o), threads);
                                transpose_images(&dxt, (nb, g.h * g.w, g.c), out);
                            }
                            Some(Dst::Add(out)) => {
                                let dcols = filled(k * n, |d| {
                                    for grp in 0..groups {
                                        gemm(
                                            (kg, n, og),
                                            Dst::Fresh(&mut d[grp * kg * n..]),
                                            (n, 1),
                                            Mat {
                                                data: &ws[grp * og * kg..],
                                                rs: 1,
                                                cs: kg,
                                            },
                                            Mat {
                                                data: &dyt[grp * og * n..],
                                                rs: n,
                                                cs: 1,
                                            },
                                            threads,
                                        );
                                    }
                                });
                                col2im_taps_into(&dcols, &sub, out);
                            }
                        }
                    };
                    let chunks = image_chunks::<T>(&g);
                    let dx_parts: Vec<Option<Dst<'_, T>>> = match (need_x, dx_path) {
                        (false, _) => chunks.iter().map(|_| None).collect(),
                        (true, Path::Nhwc) => {
                            let spare = &mut dx.spare_capacity_mut()[..g.input_len()];
                            split_images(spare, &chunks, chw)
                                .into_iter()
                                .map(|(_, d)| Some(Dst::Fresh(d)))
                                .collect()
                        }
                        (true, Path::Taps) => split_images(&mut dx[..], &chunks, chw)
                            .into_iter()
                            .map(|(_, d)| Some(Dst::Add(d)))
                            .collect(),
                    };
                    if batch_parallel(chunks.len()) {
                        // Each chunk's kernel gradient on its own, summed in
                        // chunk order (the same sums for any thread count).
                        let parts: Vec<Vec<T>> = chunks
                            .clone()
                            .into_par_iter()
                            .zip(dx_parts)
                            .map(|(r, dx_out)| {
                                let mut part = vec![T::zero(); dw.len()];
                                let acc = need_w.then_some(&mut part[..]);
                                chunk(r, dx_out, acc, Threads::One);
                                part
                            })
                            .collect();
                        if need_w {
                            sum_in_order(&parts, &mut dw);
                        }
                    } else {
                        for (r, dx_out) in chunks.into_iter().zip(dx_parts) {
                            chunk(r, dx_out, need_w.then_some(&mut dw[..]), Threads::All);
                        }
                    }
                    Ok(())
                })
            })
        })?;
        let dx = if need_x {
            if dx_path == Path::Nhwc {
                // SAFETY: the chunks cover all images, and each chunk's
                // `nb·chw` elements were written by its transpose.
                unsafe { dx.set_len(g.input_len()) };
            }
            Some(Tensor::from_vec(dx, x.shape(), x.device())?)
        } else {
            None
        };
        let dw = if need_w {
            let dw = match dw_path {
                Path::Nhwc => nhwc.kernel_from_rows(&dw, o),
                Path::Taps => dw,
            };
            Some(Tensor::from_vec(dw, w.shape(), w.device())?)
        } else {
            None
        };
        Ok((dx, dw))
    }

    /// [`Self::bwd_typed`] by Winograd's algorithms ([`winograd`]).
    fn bwd_winograd<T: Real>(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        g: &ConvGeometry,
        need: (bool, bool),
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let o = w.dim(0)?;
        let mut grads = (Vec::new(), Vec::new());
        tensor_data::<T>(x, |xs| {
            tensor_data::<T>(w, |ws| {
                tensor_data::<T>(dy, |dys| {
                    grads = winograd::backward(xs, ws, dys, g, o, need);
                    Ok(())
                })
            })
        })?;
        let (dx, dw) = grads;
        let dx = need
            .0
            .then(|| Tensor::from_vec(dx, x.shape(), x.device()))
            .transpose()?;
        let dw = need
            .1
            .then(|| Tensor::from_vec(dw, w.shape(), w.device()))
            .transpose()?;
        Ok((dx, dw))
    }
}

/// How one product of [`Conv2d`] lays out its unfolded input. Measured on
/// the CIFAR ResNet-18 shapes (`examples/bench_ops.rs`): the channels-last
/// [`Nhwc`] rows win where the images are large (the pixels make a long
/// GEMM operand that `gemm` reads in place) and for the input gradient of
/// any kernel wider than 1x1; the tap-major columns win for 1x1 kernels,
/// few channels and small outputs, where the transposes and short copies of
/// [`Nhwc`] cost more than they save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Taps,
    Nhwc,
}

impl Path {
    /// A kernel wider than 1x1 on enough channels per group (at least 16)
    /// that the channel runs [`Nhwc`] copies are long (a first layer on 3
    /// colour channels is not).
    fn wide(g: &ConvGeometry, groups: usize) -> bool {
        g.kh * g.kw > 1 && g.c / groups >= 16
    }

    fn forward(g: &ConvGeometry, groups: usize) -> Self {
        if Self::wide(g, groups) && g.ho * g.wo >= 64 {
            Path::Nhwc
        } else {
            Path::Taps
        }
    }

    fn input_grad(g: &ConvGeometry, groups: usize) -> Self {
        if Self::wide(g, groups) {
            Path::Nhwc
        } else {
            Path::Taps
        }
    }

    fn kernel_grad(g: &ConvGeometry, groups: usize) -> Self {
        Self::forward(g, groups)
    }
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "parallax-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l1.dims(), l2.dims())?;
        let o = l2.dims()[0];
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(self.fwd(
                contiguous_slice(s1, l1, self.name())?,
                contiguous_slice(s2, l2, self.name())?,
                &g,
                o,
            )?),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(self.fwd(
                contiguous_slice(s1, l1, self.name())?,
                contiguous_slice(s2, l2, self.name())?,
                &g,
                o,
            )?),
            _ => bail!(
                "{}: unsupported dtypes {:?}/{:?}",
                self.name(),
                s1.dtype(),
                s2.dtype()
            ),
        };
        Ok((out, Shape::from((g.b, o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        conv2d_backward(x, w, grad, &self.config, (x.track_op(), w.track_op()))
    }
}

/// The gradients `(dx, dw)` of [`conv2d_with`]`(x, w, cfg)` for the output
/// gradient `dy`, each computed only if asked for in `need` (the backward
/// of the op, exposed to benchmark its halves). CPU f32/f64 tensors only.
pub fn conv2d_backward(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    cfg: &Conv2dConfig,
    need: (bool, bool),
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let op = Conv2d { config: *cfg };
    let g = check_conv(x, w, cfg)?;
    let expect = [g.b, w.dim(0)?, g.ho, g.wo];
    if dy.dims() != expect {
        bail!(
            "conv2d: output gradient is {:?}, expected {expect:?}",
            dy.dims()
        )
    }
    if !kernel_supported(x) || dy.dtype() != x.dtype() || !dy.device().is_cpu() {
        bail!("conv2d_backward: needs CPU f32/f64 tensors of one dtype")
    }
    match x.dtype() {
        _ if need == (false, false) => Ok((None, None)),
        DType::F32 => op.bwd_typed::<f32>(x, w, dy, need),
        _ => op.bwd_typed::<f64>(x, w, dy, need),
    }
}

/// Switches Winograd's algorithms for the dense 3x3 stride-1 convolutions
/// on or off for the whole process (on by default; off, they unfold like
/// the others). Both give the same values up to rounding; the switch is
/// there to compare the two (`examples/winograd.rs`) and to rule the
/// transforms out when chasing a numerical difference.
pub fn set_winograd(on: bool) {
    winograd::set_enabled(on);
}

/// Whether [`set_winograd`] left Winograd's convolutions on.
pub fn winograd_enabled() -> bool {
    winograd::enabled()
}

/// Checks ranks, dtypes and the whole geometry of `conv2d_with(x, w, cfg)`.
fn check_conv(x: &Tensor, w: &Tensor, cfg: &Conv2dConfig) -> Result<ConvGeometry> {
    x.dims4()?;
    w.dims4()?;
    if w.dtype() != x.dtype() {
        bail!(
            "conv2d: kernel is {:?}, input is {:?}",
            w.dtype(),
            x.dtype()
        )
    }
    Conv2d { config: *cfg }.geometry(x.dims(), w.dims())
}

/// [`conv2d_with`] from Candle's own ops, right on every device and dtype:
/// the path for tensors without a kernel (CUDA, half precision off the
/// CPU), public so that the gradient checks can run it on the CPU in f64.
///
/// Candle's conv2d backward derives the transposed convolution's output
/// padding from the height alone, so its input gradient is wrong (or fails)
/// when the rows and columns left over by the stride differ
/// (`candle_defect_conv2d_backward_on_non_square_input`). Here each axis is
/// padded explicitly and cut to the extent the windows cover, so that no
/// row or column is left over and Candle's convolution runs with padding 0,
/// where its backward is right; the rows and columns no window reads get a
/// zero gradient through the cut. Candle takes one stride and one dilation
/// for both axes: an axis with a single output position takes the other
/// axis's stride, and one with a single tap the other's dilation (both
/// change nothing); other per-axis strides or dilations are an error.
pub fn conv2d_composite(x: &Tensor, w: &Tensor, cfg: &Conv2dConfig) -> Result<Tensor> {
    let g = check_conv(x, w, cfg)?;
    let (_, _, kh, kw) = w.dims4()?;
    let Conv2dConfig {
        stride: (mut sh, mut sw),
        padding: (ph, pw),
        dilation: (mut dh, mut dw),
        groups,
    } = *cfg;
    if sh != sw {
        if g.ho == 1 {
            sh = sw;
        } else if g.wo == 1 {
            sw = sh;
        }
    }
    if dh != dw {
        if kh == 1 {
            dh = dw;
        } else if kw == 1 {
            dw = dh;
        }
    }
    if sh != sw || dh != dw {
        bail!(
            "conv2d: per-axis stride or dilation {cfg:?} needs a CPU f32/f64 tensor \
             (Candle's conv2d on {:?} {:?} takes one value for both axes)",
            x.device().location(),
            x.dtype()
        )
    }
    // the extent `out` windows read: (out − 1)·stride + dilation·(k − 1) + 1
    let x = pad_to(x, 2, ph, (g.ho - 1) * sh + dh * (kh - 1) + 1, 0.0)?;
    let x = pad_to(&x, 3, pw, (g.wo - 1) * sw + dw * (kw - 1) + 1, 0.0)?;
    x.conv2d(w, 0, sh, dh, groups)
}

/// 2-D convolution without bias, `x: [B,C,H,W]`, `w: [O,C,kh,kw]`, with the
/// same `stride` and zero `padding` on both axes: returns a contiguous
/// `[B,O,Ho,Wo]`. Differentiable (first order) in `x` and `w`. On devices or
/// dtypes without a kernel it falls back to [`conv2d_composite`]. See
/// [`conv2d_with`] for per-axis settings, dilation and groups.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    conv2d_with(x, w, &Conv2dConfig::square(stride, padding))
}

/// 2-D convolution without bias, `x: [B,C,H,W]`, `w: [O,C/groups,kh,kw]`,
/// with per-axis stride, padding and dilation and channel groups: returns a
/// contiguous `[B,O,Ho,Wo]`, `Ho = (H + 2·ph − dh·(kh−1) − 1)/sh + 1` (and
/// so for `Wo`). Differentiable (first order) in `x` and `w`. On devices or
/// dtypes without a kernel it falls back to [`conv2d_composite`] (Candle's
/// conv2d made exact), which takes one stride and one dilation for both
/// axes (other configurations are an error there).
pub fn conv2d_with(x: &Tensor, w: &Tensor, cfg: &Conv2dConfig) -> Result<Tensor> {
    check_conv(x, w, cfg)?;
    if cpu_half(x) {
        // mixed precision on the CPU: the f32 kernel, rounded back
        let f = DType::F32;
        return conv2d_with(&x.to_dtype(f)?, &w.to_dtype(f)?, cfg)?.to_dtype(x.dtype());
    }
    if !kernel_supported(x) {
        return conv2d_composite(x, w, cfg);
    }
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv2d { config: *cfg })
}

/// [`conv2d_with`] as the [`Im2col`] op followed by Candle's matmul, whose
/// autograd then provides the gradients (through [`Col2im`]); groups run
/// one at a time on channel slices. Kept to compare with, and for
/// higher-order gradients.
pub fn conv2d_unfused(
    x: &Tensor,
    w: &Tensor,
    cfg: &Conv2dConfig,
    layout: ColsLayout,
) -> Result<Tensor> {
    check_conv(x, w, cfg)?;
    if !kernel_supported(x) {
        return conv2d_composite(x, w, cfg);
    }
    if cfg.groups > 1 {
        let (cg, og) = (w.dim(1)?, w.dim(0)? / cfg.groups);
        let one = Conv2dConfig { groups: 1, ..*cfg };
        let parts = (0..cfg.groups)
            .map(|i| {
                let (xi, wi) = (x.narrow(1, i * cg, cg)?, w.narrow(0, i * og, og)?);
                conv2d_unfused(&xi, &wi, &one, layout)
            })
            .collect::<Result<Vec<_>>>()?;
        return Tensor::cat(&parts, 1);
    }
    let (b, ..) = x.dims4()?;
    let (o, _, kh, kw) = w.dims4()?;
    let op = Im2col::new((kh, kw), cfg, layout);
    let g = op.geometry(x.dims())?;
    let cols = x.contiguous()?.apply_op1(op)?;
    let w2 = w.reshape((o, g.patch()))?;
    match layout {
        // [O, K]·[K, B·Ho·Wo] -> [O, B, Ho·Wo] -> [B, O, Ho·Wo]
        ColsLayout::TapMajor => w2
            .matmul(&cols)?
            .reshape((o, b, g.ho * g.wo))?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((b, o, g.ho, g.wo)),
        // [B·Ho·Wo, K]·[K, O] -> [B, Ho, Wo, O] -> [B, O, Ho, Wo]
        ColsLayout::PixelMajor => cols
            .matmul(&w2.t()?)?
            .reshape((b, g.ho, g.wo, o))?
            .permute((0, 3, 1, 2))?
            .contiguous(),
    }
}
