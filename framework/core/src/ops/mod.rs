//! The project's own CPU kernels, as Candle custom ops.
//!
//! Candle's CPU backend builds batch norm out of ~10 allocating elementwise
//! ops and computes the conv2d input gradient with a naive conv-transpose
//! loop. The ops here replace those hot spots with fused, multi-threaded
//! kernels whose gradients are checked against finite differences (f64) and
//! against Candle's own ops in `tests/gradcheck_ops.rs`:
//!
//! - [`add_relu::add_relu`]: `relu(a + b)` in one pass, the tail of a
//!   residual block; its backward masks the gradient once for both inputs.
//! - [`batch_norm::batch_norm_train`] / [`batch_norm::batch_norm_relu_train`]:
//!   training-mode batch norm (optionally fused with ReLU), two passes over
//!   the input forward and two backward.
//! - [`conv2d::conv2d`] / [`conv2d::conv2d_with`]: im2col + Candle's matmul
//!   (GEMM) over chunks of images, whose backward goes through GEMMs and a
//!   col2im scatter-add; per-axis stride, padding and dilation, groups.
//! - [`residual::residual_train`]: a whole residual block (convolutions,
//!   batch norms, shortcut, `relu(branch + shortcut)`) as one autograd
//!   node, so that Candle's autograd does not zero and add a gradient
//!   buffer for every intermediate.
//! - [`conv1d::conv1d`]: the conv2d kernel on `[B,C,1,L]` (Candle's conv1d
//!   gradients are wrong).
//! - [`pool::max_pool2d`] / [`pool::avg_pool2d`]: pooling with any kernel,
//!   stride and padding (Candle's max-pool gradient is wrong, and neither
//!   has a backward unless kernel == stride).
//! - [`layer_norm::layer_norm`] / [`layer_norm::rms_norm`] (and the
//!   `LayerNorm` / `RmsNorm` modules): fused norms over the last dimension
//!   with a backward (Candle's fused ones have none).
//! - [`softmax::softmax_last_dim`] / [`softmax::log_softmax_last_dim`]: with
//!   a backward (Candle's `softmax_last_dim` has none).
//! - [`linear::linear`] / [`linear::matmul`] (and the `Linear` layer): right
//!   for non-contiguous inputs, where Candle's `Linear` gives wrong values.
//! - `winograd` (crate-internal): the 3x3 stride-1 convolutions (and both
//!   gradients) by Winograd's F(4x4, 3x3), 4x fewer products.
//! - `transpose` (crate-internal): the convolutions' NCHW <-> channels-last
//!   layout changes, f32 in 8x8 AVX register tiles.
//! - [`spmm::spmm`]: a constant sparse (CSR) matrix times a dense one,
//!   GCN's propagation and its first layer on sparse features; the
//!   gradient goes through the kept transpose.
//! - [`dropout::dropout`]: inverted dropout with a mask from the seeded
//!   [`crate::rng::Rng`] (Candle's RNG cannot be seeded).
//!
//! The kernels run on CPU tensors of dtype f32 or f64, so the functions can
//! be called unconditionally:
//!
//! - bf16/f16 CPU tensors (mixed precision) are computed in f32 by the
//!   kernels and rounded back (`cpu_half`); batch norm and softmax compute
//!   16-bit inputs in f32 on every device.
//! - Other devices (CUDA) run Candle's own ops where they are right, and
//!   where they are not, compositions of Candle ops that are:
//!   [`conv2d::conv2d_composite`] (explicit padding and a cut to the
//!   extent the windows read, so that Candle's conv2d backward runs where
//!   it is right), [`pool::max_pool2d_composite`] /
//!   [`pool::avg_pool2d_composite`] (strided views and a reduction), the
//!   composite norms, and [`linear`]'s contiguous copy. The composites are
//!   gradient-checked on the CPU in f64 (`tests/gradcheck_conv.rs`) and
//!   compared with the CPU kernels on a GPU by `tests/cuda_ops.rs`.
//!
//! Work runs on the rayon global pool (as Candle's GEMM
//! does); the reductions are split in chunks that depend only on the shape,
//! so they do not change with the number of threads. The hot loops are
//! compiled for AVX2 as well and picked at run time, since the
//! workspace builds for baseline x86-64.

pub mod add_relu;
pub mod batch_norm;
pub mod conv1d;
pub mod conv2d;
pub mod dropout;
pub mod layer_norm;
pub mod linear;
pub mod pool;
pub mod residual;
pub(crate) mod scratch;
pub mod softmax;
pub mod spmm;
pub(crate) mod transpose;
pub(crate) mod winograd;

use candle_core::{bail, CpuStorage, DType, Layout, Result, Tensor, WithDType};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Floating-point element types the kernels are written for (f32, f64).
pub(crate) trait Real: WithDType + scratch::Spare {}
impl Real for f32 {}
impl Real for f64 {}

/// Whether `t` is a half-precision (bf16/f16) CPU tensor. Candle's CPU
/// matmul has no bf16 (and its f16 one has no hardware support here), so
/// the products and convolutions of mixed-precision training
/// ([`crate::optim::precision`]) compute such tensors in f32 on the CPU and
/// round the result back: the numerics of half-precision storage, not its
/// speed, which only a GPU gives.
pub(crate) fn cpu_half(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::BF16 | DType::F16)
}

/// Axis `dim` of `x` laid out as `front` positions of `fill`, then as much of
/// `x` as fits, then `fill` up to `len` positions in all: the padded and
/// cut input of the composite (Candle-ops-only) convolution and pooling.
/// Differentiable in `x` (positions cut off get a zero gradient).
pub(crate) fn pad_to(
    x: &Tensor,
    dim: usize,
    front: usize,
    len: usize,
    fill: f64,
) -> Result<Tensor> {
    let n = x.dim(dim)?;
    let keep = len.saturating_sub(front).min(n);
    let back = len.saturating_sub(front + keep);
    let x = if keep < n {
        x.narrow(dim, 0, keep)?
    } else {
        x.clone()
    };
    let block = |m: usize| -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        dims[dim] = m;
        if fill == 0.0 {
            Tensor::zeros(dims, x.dtype(), x.device())
        } else {
            Tensor::full(fill, dims, x.device())?.to_dtype(x.dtype())
        }
    };
    let mut parts = Vec::with_capacity(3);
    if front > 0 {
        parts.push(block(front)?);
    }
    parts.push(x.clone());
    if back > 0 {
        parts.push(block(back)?);
    }
    if parts.len() == 1 {
        Ok(x)
    } else {
        Tensor::cat(&parts, dim)
    }
}

/// Whether `t` can go through the custom CPU kernels.
pub(crate) fn kernel_supported(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// The elements of a contiguous CPU storage as a slice, honouring the
/// layout's start offset. Callers make their inputs contiguous first.
pub(crate) fn contiguous_slice<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(storage)?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{what}: the kernel needs a contiguous input"),
    }
}

/// Sum of `f(x)` over `xs` with eight independent accumulators, so that the
/// loop vectorises without reassociation by the compiler.
#[inline(always)]
pub(crate) fn sum_lanes<T: WithDType>(xs: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = xs.chunks_exact(8);
    for ch in &mut chunks {
        let ch: &[T; 8] = ch.try_into().unwrap();
        for i in 0..8 {
            acc[i] += f(ch[i]);
        }
    }
    let mut tail = T::zero();
    for &v in chunks.remainder() {
        tail += f(v);
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// Sums of both components of `f(x, g)` over paired slices: elementwise
/// into small blocks (a loop that vectorises), then [`sum_lanes`] per block.
#[inline(always)]
pub(crate) fn sum_pairs<T: WithDType>(xs: &[T], gs: &[T], f: impl Fn(T, T) -> (T, T)) -> (T, T) {
    const BLOCK: usize = 64;
    let mut p = [T::zero(); BLOCK];
    let mut q = [T::zero(); BLOCK];
    let (mut sp, mut sq) = (T::zero(), T::zero());
    for (xb, gb) in xs.chunks(BLOCK).zip(gs.chunks(BLOCK)) {
        let n = xb.len().min(gb.len());
        let outs = p[..n].iter_mut().zip(q[..n].iter_mut());
        for ((a, b), (&v, &g)) in outs.zip(xb.iter().zip(gb)) {
            (*a, *b) = f(v, g);
        }
        sp += sum_lanes(&p[..n], |v| v);
        sq += sum_lanes(&q[..n], |v| v);
    }
    (sp, sq)
}

/// Splits `0..n` into at most `max_chunks` contiguous ranges of nearly equal
/// length. The split depends only on `n`, which keeps reductions
/// deterministic across thread counts.
pub(crate) fn split_ranges(n: usize, max_chunks: usize) -> Vec<std::ops::Range<usize>> {
    let k = n.clamp(1, max_chunks.max(1));
    (0..k).map(|i| (i * n / k)..((i + 1) * n / k)).collect()
}

/// A vector of `n` elements initialised in parallel without zeroing first:
/// `fill(i, chunk)` gets the `i`-th run of `chunk_len` elements (the last may
/// be shorter) and must write every element of it — the kernels below write
/// each output element exactly once.
pub(crate) fn par_init<T, F>(n: usize, chunk_len: usize, fill: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(usize, &mut [MaybeUninit<T>]) + Send + Sync,
{
    let mut v: Vec<T> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk_len.max(1))
        .enumerate()
        .for_each(|(i, chunk)| fill(i, chunk));
    // SAFETY: `fill` initialised all `n` elements (see above), and `T: Copy`
    // has no drop glue.
    unsafe { v.set_len(n) };
    v
}

/// Runs `f` compiled for AVX2 where the CPU has it (the workspace builds
/// for baseline x86-64, i.e. SSE2). Pass an `#[inline(always)]` closure whose
/// kernel calls are `#[inline(always)]` too, so that the code is generated
/// inside the AVX2 function.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        // `unsafe fn`: safe `#[target_feature]` functions need Rust 1.86.
        #[target_feature(enable = "avx,avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features `avx2` was compiled for.
            return unsafe { avx2(f) };
        }
    }
    f()
}
