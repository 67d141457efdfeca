//! Matrix transposes for the convolutions' layout changes (NCHW <->
//! channels-last, [`super::conv2d`]).
//!
//! f32 matrices move in 8x8 tiles through AVX registers (eight 8-float row
//! loads, three rounds of shuffles, eight 8-float column stores) inside
//! cache-sized blocks; the element-wise loop reads one element per
//! instruction from a different cache line each time, and had been 5% of
//! a ResNet-18 training step. Edges that do not fill a tile, other element
//! types and CPUs without AVX use the element-wise loop.

use super::{simd, Real};
use candle_core::DType;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Side of the square blocks the transposes walk (a 32x32 f32 block is
/// 4 KiB of source and 4 KiB of destination, inside the L1 cache).
const BLOCK: usize = 32;

/// `dst = srcᵀ` for a row-major `rows×cols` `src`; writes every element of
/// `dst[..rows·cols]`.
pub(crate) fn transpose<T: Real>(src: &[T], rows: usize, cols: usize, dst: &mut [MaybeUninit<T>]) {
    let n = rows * cols;
    assert!(
        src.len() >= n && dst.len() >= n,
        "transpose: slices too short"
    );
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == DType::F32 && std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: `T` is f32 (its dtype), so the slices can be read as f32;
        // the lengths were checked above, and the CPU has AVX.
        unsafe {
            let s = std::slice::from_raw_parts(src.as_ptr() as *const f32, n);
            let d = std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut MaybeUninit<f32>, n);
            transpose_f32_avx(s, rows, cols, d);
        }
        return;
    }
    simd(
        #[inline(always)]
        || transpose_block(src, (0, rows), (0, cols), rows, cols, dst),
    );
}

/// Per-image transposes `[nb, rows, cols] -> [nb, cols, rows]` in parallel.
pub(crate) fn transpose_images<T: Real>(
    src: &[T],
    (nb, rows, cols): (usize, usize, usize),
    dst: &mut [MaybeUninit<T>],
) {
    let len = rows * cols;
    if len == 0 {
        return;
    }
    dst[..nb * len]
        .par_chunks_mut(len)
        .zip(src[..nb * len].par_chunks(len))
        .for_each(|(d, s)| transpose(s, rows, cols, d));
}

/// The element-wise transpose of `src[i0..i1, j0..j1]` (blocked).
#[inline(always)]
fn transpose_block<T: Copy>(
    src: &[T],
    (i0, i1): (usize, usize),
    (j0, j1): (usize, usize),
    rows: usize,
    cols: usize,
    dst: &mut [MaybeUninit<T>],
) {
    for bi in (i0..i1).step_by(BLOCK) {
        let bi1 = (bi + BLOCK).min(i1);
        for bj in (j0..j1).step_by(BLOCK) {
            let bj1 = (bj + BLOCK).min(j1);
            for j in bj..bj1 {
                let d = &mut dst[j * rows..][bi..bi1];
                for (o, i) in d.iter_mut().zip(bi..bi1) {
                    o.write(src[i * cols + j]);
                }
            }
        }
    }
}

/// The f32 transpose: 8x8 tiles over the largest multiples of 8, the
/// element-wise loop for the edges.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_f32_avx(src: &[f32], rows: usize, cols: usize, dst: &mut [MaybeUninit<f32>]) {
    let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr() as *mut f32);
    for bi in (0..r8).step_by(BLOCK) {
        let bi1 = (bi + BLOCK).min(r8);
        for bj in (0..c8).step_by(BLOCK) {
            let bj1 = (bj + BLOCK).min(c8);
            for i in (bi..bi1).step_by(8) {
                for j in (bj..bj1).step_by(8) {
                    // SAFETY: i + 8 <= rows and j + 8 <= cols, so the tile's
                    // rows of `src` and columns of `dst` are in bounds.
                    unsafe { tile8(s.add(i * cols + j), cols, d.add(j * rows + i), rows) };
                }
            }
        }
    }
    transpose_block(src, (r8, rows), (0, cols), rows, cols, dst);
    transpose_block(src, (0, r8), (c8, cols), rows, cols, dst);
}

/// Transposes the 8x8 tile at `s` (row stride `ss`) into `d` (row stride
/// `ds`).
///
/// # Safety
///
/// Eight rows of eight floats must be readable at `s` and writable at `d`,
/// and the CPU must have AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn tile8(s: *const f32, ss: usize, d: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    unsafe {
        let r = [
            _mm256_loadu_ps(s),
            _mm256_loadu_ps(s.add(ss)),
            _mm256_loadu_ps(s.add(2 * ss)),
            _mm256_loadu_ps(s.add(3 * ss)),
            _mm256_loadu_ps(s.add(4 * ss)),
            _mm256_loadu_ps(s.add(5 * ss)),
            _mm256_loadu_ps(s.add(6 * ss)),
            _mm256_loadu_ps(s.add(7 * ss)),
        ];
        // Pairs of rows interleaved: t[2k] = (r[2k][0], r[2k+1][0], r[2k][1],
        // r[2k+1][1] | the same for elements 4, 5), t[2k+1] the high halves.
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        // Quadruples: u[q] holds column q of rows 0..4 (rows 4..8 for
        // u[4 + q]) in its low 128 bits and column q + 4 in its high bits.
        let u = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        for q in 0..4 {
            _mm256_storeu_ps(
                d.add(q * ds),
                _mm256_permute2f128_ps::<0x20>(u[q], u[q + 4]),
            );
            _mm256_storeu_ps(
                d.add((q + 4) * ds),
                _mm256_permute2f128_ps::<0x31>(u[q], u[q + 4]),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: Real + std::fmt::Debug>(rows: usize, cols: usize, make: impl Fn(usize) -> T) {
        let src: Vec<T> = (0..rows * cols).map(&make).collect();
        let mut dst = vec![MaybeUninit::<T>::uninit(); rows * cols];
        transpose(&src, rows, cols, &mut dst);
        for i in 0..rows {
            for j in 0..cols {
                // SAFETY: `transpose` writes every element.
                let got = unsafe { dst[j * rows + i].assume_init() };
                assert_eq!(got, src[i * cols + j], "{rows}x{cols} at ({i}, {j})");
            }
        }
    }

    #[test]
    fn transposes_every_shape_exactly() {
        for &(r, c) in &[
            (1, 1),
            (8, 8),
            (3, 1024),
            (64, 1024),
            (1024, 64),
            (17, 23),
            (40, 9),
            (512, 16),
            (33, 65),
            (0, 5),
        ] {
            check::<f32>(r, c, |k| k as f32 * 0.5 - 7.0);
            check::<f64>(r, c, |k| k as f64 * 0.25 + 1.0);
        }
    }

    #[test]
    fn transposes_images_in_parallel() {
        let (nb, rows, cols) = (3, 12, 20);
        let src: Vec<f32> = (0..nb * rows * cols).map(|k| k as f32).collect();
        let mut dst = vec![MaybeUninit::<f32>::uninit(); nb * rows * cols];
        transpose_images(&src, (nb, rows, cols), &mut dst);
        for b in 0..nb {
            for i in 0..rows {
                for j in 0..cols {
                    // SAFETY: every element is written.
                    let got = unsafe { dst[b * rows * cols + j * rows + i].assume_init() };
                    assert_eq!(got, src[b * rows * cols + i * cols + j]);
                }
            }
        }
    }
}
