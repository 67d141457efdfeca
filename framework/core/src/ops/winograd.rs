//! Winograd's minimal filtering F(m×m, 3×3) for the 3x3, stride-1
//! convolutions of [`super::conv2d`] (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", CVPR 2016).
//!
//! The output is cut into m×m tiles; each reads a P×P patch `d` (P = m+2)
//! of the padded input. With the fixed matrices `Bᵀ` (P×P), `G` (P×3) and
//! `Aᵀ` (m×P), a tile of the output is `Aᵀ [Σ_c (G g Gᵀ) ⊙ (Bᵀ d B)] A`:
//! the sum over input channels at each of the P² transformed positions is
//! one GEMM over all tiles, `[tiles, C]·[C, O]`. [`F2`] (m = 2) needs 16
//! multiply-adds per 4 outputs and channel where the direct convolution
//! needs 36 (2.25x fewer); [`F4`] (m = 4) 36 per 16 (4x fewer), with a
//! transformed input 2.25x the input's size where unfolded columns are 9x.
//!
//! The two gradients follow from the same identity read backwards (each
//! transform's adjoint): with `dM = A dY Aᵀ` per tile of the output
//! gradient, the kernel gradient is `Gᵀ [Σ_tiles (Bᵀ d B) ⊙ dM] G` (P²
//! GEMMs `[C, tiles]·[tiles, O]`) and the input gradient adds
//! `B [Σ_o dM ⊙ (G g Gᵀ)] Bᵀ` onto each tile's patch (P² GEMMs
//! `[tiles, O]·[O, C]`). Every 2-D transform is a 1-D one applied to the
//! columns and then the rows ([`sandwich`]), so an algorithm is its six
//! 1-D transforms ([`Algorithm`]).
//!
//! The transforms work channels-last (each image moved to `[H, W, C]` by
//! the register-tile transposes of [`super::transpose`]), so that every
//! step is an element-wise combination of runs of channels, which LLVM
//! vectorises ([`Lanes`]). The buffers are position-major (`[P², tiles,
//! channels]`): each GEMM reads and writes contiguous matrices. The work
//! runs in units of whole images, and inside a unit in blocks of tiles
//! small enough ([`BLOCK_BYTES`]) that the transformed input and the
//! products stay in the core's cache from the transform to the output
//! transform ([`Plan`]); units run in [`GROUPS`] groups, one thread and
//! one set of buffers each. Every sum runs in an order fixed by the shape,
//! so results do not depend on the number of threads.
//!
//! Measured against the unfolding path on the CIFAR ResNet-18 shapes
//! (`examples/winograd.rs`, batch 128): F(4×4, 3×3) takes 0.47-0.78 of its
//! time on the 3x3 layers of 8x8 maps and larger. At 4x4 (down to
//! [`MIN_PIXELS`]) F(2×2, 3×3) runs instead: there F(4×4, 3×3)'s single
//! tile per image wastes most of its 36 positions, and its kernel gradient
//! was slower than unfolding.

use super::conv2d::{gemm, split_images, ConvGeometry, Dst, Mat, Threads};
use super::scratch::with_scratch;
use super::transpose::{transpose, transpose_images};
use super::{simd, split_ranges, Real};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::{Add, Mul, Sub};
use std::sync::atomic::{AtomicBool, Ordering};

/// Target size of one block's transformed input, and the fewest tiles in
/// a block (tiny in the unit tests, so that they run several blocks and
/// units).
#[cfg(not(test))]
const BLOCK_BYTES: usize = 1 << 20;
#[cfg(not(test))]
const MIN_BLOCK: usize = 64;
#[cfg(test)]
const BLOCK_BYTES: usize = 1 << 10;
#[cfg(test)]
const MIN_BLOCK: usize = 3;

/// Fewest input and output channels for which the transforms pay off (a
/// first layer on 3 colour channels stays on the unfolding path).
const MIN_CHANNELS: usize = 16;

/// Fewest output pixels per image: 4x4, the last stage of a CIFAR ResNet
/// (F(2×2, 3×3), four tiles per image; measured, `examples/winograd.rs`).
const MIN_PIXELS: usize = 16;

/// Each product of a block packs its position's transformed kernel (`C·O`
/// values) for `blk` rows of tiles: blocks have at least `C·O /
/// KERNEL_VALUES_PER_ROW` tiles. It matters where the kernels are large and
/// the maps small: at 4x4 with 512 channels, blocks of the 64 tiles that
/// [`BLOCK_BYTES`] gives took 0.9-1.2 of unfolding's time for the input
/// gradient and 0.7-1.0 for the kernel gradient; blocks of 256 tiles take
/// 0.67-0.70 and 0.68-0.73 (`examples/winograd.rs`, batch 128).
const KERNEL_VALUES_PER_ROW: usize = 1024;

/// The process-wide switch of [`super::conv2d::set_winograd`].
static ENABLED: AtomicBool = AtomicBool::new(true);

pub(crate) fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the convolution of geometry `g` with `o` output channels in
/// `groups` groups runs here: a dense 3x3 kernel, stride 1, one group, at
/// least [`MIN_CHANNELS`] channels in and out and [`MIN_PIXELS`] outputs
/// per image, unless switched off.
pub(crate) fn applies(g: &ConvGeometry, groups: usize, o: usize) -> bool {
    enabled()
        && shape_fits(g, groups)
        && g.c >= MIN_CHANNELS
        && o >= MIN_CHANNELS
        && g.ho * g.wo >= MIN_PIXELS
}

/// The shapes the transforms are written for, whatever the channels.
fn shape_fits(g: &ConvGeometry, groups: usize) -> bool {
    g.kh == 3 && g.kw == 3 && g.stride == (1, 1) && g.dilation == (1, 1) && groups == 1
}

/// The tiling of one image: `th×tw` tiles of `m×m` outputs, reading a
/// padded input of `(m·th + 2)×(m·tw + 2)` positions.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    m: usize,
    th: usize,
    tw: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    ph: usize,
    pw: usize,
}

impl Tiles {
    fn new(g: &ConvGeometry, m: usize) -> Self {
        Self {
            m,
            th: g.ho.div_ceil(m),
            tw: g.wo.div_ceil(m),
            h: g.h,
            w: g.w,
            ho: g.ho,
            wo: g.wo,
            ph: g.padding.0,
            pw: g.padding.1,
        }
    }

    fn per_image(&self) -> usize {
        self.th * self.tw
    }

    /// Width of the padded input the tiles read.
    fn padded_w(&self) -> usize {
        self.m * self.tw + 2
    }

    /// Positions of the padded input the tiles read.
    fn padded_len(&self) -> usize {
        (self.m * self.th + 2) * self.padded_w()
    }

    /// Width of the output frame the tiles cover.
    fn frame_w(&self) -> usize {
        self.m * self.tw
    }

    /// Positions of the output frame the tiles cover.
    fn frame_len(&self) -> usize {
        self.m * self.th * self.frame_w()
    }

    /// Whether the tiles cover exactly the output.
    fn exact(&self) -> bool {
        self.ho % self.m == 0 && self.wo % self.m == 0
    }

    /// The image and tile position `(image, i, j)` of tile `k` of a unit.
    #[inline(always)]
    fn at(&self, k: usize) -> (usize, usize, usize) {
        let tpi = self.per_image();
        let (img, rem) = (k / tpi, k % tpi);
        (img, rem / self.tw, rem % self.tw)
    }
}

/// `L` values of `T` combined element-wise: LLVM turns the straight-line
/// arithmetic on these arrays into vector instructions.
#[derive(Clone, Copy)]
struct Lanes<T, const L: usize>([T; L]);

impl<T: Real, const L: usize> Lanes<T, L> {
    #[inline(always)]
    fn zero() -> Self {
        Self([T::zero(); L])
    }

    #[inline(always)]
    fn load(s: &[T], at: usize) -> Self {
        let mut a = [T::zero(); L];
        a.copy_from_slice(&s[at..at + L]);
        Self(a)
    }

    #[inline(always)]
    fn store(self, d: &mut [T], at: usize) {
        d[at..at + L].copy_from_slice(&self.0);
    }

    #[inline(always)]
    fn add_to(self, d: &mut [T], at: usize) {
        for (d, v) in d[at..at + L].iter_mut().zip(self.0) {
            *d += v;
        }
    }

    #[inline(always)]
    fn neg(self) -> Self {
        let mut a = self.0;
        for v in &mut a {
            *v = T::zero() - *v;
        }
        Self(a)
    }
}

impl<T: Real, const L: usize> Add for Lanes<T, L> {
    type Output = Self;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        let mut a = self.0;
        for (x, y) in a.iter_mut().zip(o.0) {
            *x += y;
        }
        Self(a)
    }
}

impl<T: Real, const L: usize> Sub for Lanes<T, L> {
    type Output = Self;
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        let mut a = self.0;
        for (x, y) in a.iter_mut().zip(o.0) {
            *x -= y;
        }
        Self(a)
    }
}

impl<T: Real, const L: usize> Mul<f64> for Lanes<T, L> {
    type Output = Self;
    #[inline(always)]
    fn mul(self, k: f64) -> Self {
        let k = T::from_f64(k);
        let mut a = self.0;
        for v in &mut a {
            *v *= k;
        }
        Self(a)
    }
}

/// Runs `$body` for `$at` over `0..$n` in blocks of `$l` lanes: 8 while
/// they fit, then 1 (`$l` is a `const` in the body, for [`Lanes`]).
macro_rules! by_lanes {
    ($n:expr, |$at:ident, $l:ident| $body:block) => {{
        let n: usize = $n;
        let full = n - n % 8;
        {
            const $l: usize = 8;
            for $at in (0..full).step_by(8) $body
        }
        {
            const $l: usize = 1;
            for $at in full..n $body
        }
    }};
}

/// `X d Fᵀ` for a square `d` (`R×R`, element `(r, s)` from `load`),
/// where `f` applies a matrix `X` to a vector: `f` on every column, then
/// on every row of the result, each element `(i, s)` of which goes to
/// `store`. Only the intermediate is an array (the others would be zeroed
/// first, by a call to `memset`).
#[inline(always)]
fn sandwich<T: Real, const L: usize, const R: usize, const K: usize>(
    load: impl Fn(usize, usize) -> Lanes<T, L>,
    f: impl Fn([Lanes<T, L>; R]) -> [Lanes<T, L>; K],
    mut store: impl FnMut(usize, usize, Lanes<T, L>),
) {
    let mut cols = [[Lanes::zero(); K]; R];
    for (j, cj) in cols.iter_mut().enumerate() {
        let mut col = [Lanes::zero(); R];
        for (r, c) in col.iter_mut().enumerate() {
            *c = load(r, j);
        }
        *cj = f(col);
    }
    for i in 0..K {
        let mut row = [Lanes::zero(); R];
        for (r, cj) in row.iter_mut().zip(&cols) {
            *r = cj[i];
        }
        for (s, v) in f(row).into_iter().enumerate() {
            store(i, s, v);
        }
    }
}

/// One of Winograd's algorithms F(M×M, 3×3) on `P×P = (M+2)×(M+2)`
/// patches, by its 1-D transforms: `Bᵀ` (input), `Aᵀ` (output), `G`
/// (kernel), and their transposes for the adjoints.
trait Algorithm<const M: usize, const P: usize> {
    fn bt<T: Real, const L: usize>(d: [Lanes<T, L>; P]) -> [Lanes<T, L>; P];
    fn b<T: Real, const L: usize>(v: [Lanes<T, L>; P]) -> [Lanes<T, L>; P];
    fn at<T: Real, const L: usize>(m: [Lanes<T, L>; P]) -> [Lanes<T, L>; M];
    fn a<T: Real, const L: usize>(y: [Lanes<T, L>; M]) -> [Lanes<T, L>; P];
    fn g<T: Real, const L: usize>(g: [Lanes<T, L>; 3]) -> [Lanes<T, L>; P];
    fn gt<T: Real, const L: usize>(u: [Lanes<T, L>; P]) -> [Lanes<T, L>; 3];
}

/// F(2×2, 3×3): 16 products per 4 outputs (2.25x fewer than direct);
/// transforms by 0, ±1 and ±1/2 only.
struct F2;

impl Algorithm<2, 4> for F2 {
    #[inline(always)]
    fn bt<T: Real, const L: usize>([d0, d1, d2, d3]: [Lanes<T, L>; 4]) -> [Lanes<T, L>; 4] {
        [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
    }
    #[inline(always)]
    fn b<T: Real, const L: usize>([v0, v1, v2, v3]: [Lanes<T, L>; 4]) -> [Lanes<T, L>; 4] {
        [v0, v1 - v2 + v3, v1 + v2 - v0, v3.neg()]
    }
    #[inline(always)]
    fn at<T: Real, const L: usize>([m0, m1, m2, m3]: [Lanes<T, L>; 4]) -> [Lanes<T, L>; 2] {
        [m0 + m1 + m2, m1 - m2 - m3]
    }
    #[inline(always)]
    fn a<T: Real, const L: usize>([y0, y1]: [Lanes<T, L>; 2]) -> [Lanes<T, L>; 4] {
        [y0, y0 + y1, y0 - y1, y1.neg()]
    }
    #[inline(always)]
    fn g<T: Real, const L: usize>([g0, g1, g2]: [Lanes<T, L>; 3]) -> [Lanes<T, L>; 4] {
        [g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2]
    }
    #[inline(always)]
    fn gt<T: Real, const L: usize>([u0, u1, u2, u3]: [Lanes<T, L>; 4]) -> [Lanes<T, L>; 3] {
        [u0 + (u1 + u2) * 0.5, (u1 - u2) * 0.5, (u1 + u2) * 0.5 + u3]
    }
}

/// F(4×4, 3×3): 36 products per 16 outputs (4x fewer than direct), on the
/// interpolation points 0, ±1, ±2 (Lavin & Gray's matrices); the
/// transforms multiply by up to 8 and the rounding error is a few times
/// F(2×2, 3×3)'s.
struct F4;

impl Algorithm<4, 6> for F4 {
    #[inline(always)]
    fn bt<T: Real, const L: usize>([d0, d1, d2, d3, d4, d5]: [Lanes<T, L>; 6]) -> [Lanes<T, L>; 6] {
        [
            d0 * 4.0 - d2 * 5.0 + d4,
            d3 + d4 - (d1 + d2) * 4.0,
            (d1 - d2) * 4.0 - d3 + d4,
            (d3 - d1) * 2.0 - d2 + d4,
            (d1 - d3) * 2.0 - d2 + d4,
            d1 * 4.0 - d3 * 5.0 + d5,
        ]
    }
    #[inline(always)]
    fn b<T: Real, const L: usize>([v0, v1, v2, v3, v4, v5]: [Lanes<T, L>; 6]) -> [Lanes<T, L>; 6] {
        [
            v0 * 4.0,
            (v2 - v1 + v5) * 4.0 + (v4 - v3) * 2.0,
            (v1 + v2) * -4.0 - v0 * 5.0 - v3 - v4,
            v1 - v2 + (v3 - v4) * 2.0 - v5 * 5.0,
            v0 + v1 + v2 + v3 + v4,
            v5,
        ]
    }
    #[inline(always)]
    fn at<T: Real, const L: usize>([m0, m1, m2, m3, m4, m5]: [Lanes<T, L>; 6]) -> [Lanes<T, L>; 4] {
        let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        [
            m0 + s12 + s34,
            d12 + d34 * 2.0,
            s12 + s34 * 4.0,
            d12 + d34 * 8.0 + m5,
        ]
    }
    #[inline(always)]
    fn a<T: Real, const L: usize>([y0, y1, y2, y3]: [Lanes<T, L>; 4]) -> [Lanes<T, L>; 6] {
        let (e, o) = (y0 + y2, y1 + y3);
        let (e2, o2) = (y0 + y2 * 4.0, (y1 + y3 * 4.0) * 2.0);
        [y0, e + o, e - o, e2 + o2, e2 - o2, y3]
    }
    #[inline(always)]
    fn g<T: Real, const L: usize>([g0, g1, g2]: [Lanes<T, L>; 3]) -> [Lanes<T, L>; 6] {
        let (s, t) = (g0 + g2, g0 + g2 * 4.0);
        [
            g0 * 0.25,
            (s + g1) * (-1.0 / 6.0),
            (s - g1) * (-1.0 / 6.0),
            (t + g1 * 2.0) * (1.0 / 24.0),
            (t - g1 * 2.0) * (1.0 / 24.0),
            g2,
        ]
    }
    #[inline(always)]
    fn gt<T: Real, const L: usize>([u0, u1, u2, u3, u4, u5]: [Lanes<T, L>; 6]) -> [Lanes<T, L>; 3] {
        let (s12, d12, s34, d34) = (u1 + u2, u2 - u1, u3 + u4, u3 - u4);
        [
            u0 * 0.25 - s12 * (1.0 / 6.0) + s34 * (1.0 / 24.0),
            d12 * (1.0 / 6.0) + d34 * (1.0 / 12.0),
            (s34 - s12) * (1.0 / 6.0) + u5,
        ]
    }
}

/// A buffer that parallel tasks fill in disjoint runs, through a raw
/// pointer (the runs of one task interleave with the others' in memory).
#[derive(Clone, Copy)]
struct Runs<T> {
    ptr: *mut MaybeUninit<T>,
    len: usize,
}

// SAFETY: tasks only touch disjoint runs (the contract of `run`), and the
// elements are plain `Send` numbers.
unsafe impl<T: Send> Send for Runs<T> {}
unsafe impl<T: Send> Sync for Runs<T> {}

impl<T> Runs<T> {
    fn new(buf: &mut [MaybeUninit<T>]) -> Self {
        Self {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }

    /// The run `start..start + len`.
    ///
    /// # Safety
    /// No other live run from this buffer may overlap it.
    unsafe fn run<'b>(&self, start: usize, len: usize) -> &'b mut [MaybeUninit<T>] {
        assert!(start + len <= self.len, "winograd: run out of bounds");
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }
}

/// A fresh vector of `n` elements that `fill` writes completely, through
/// disjoint [`Runs`].
fn filled_runs<T: Real>(n: usize, fill: impl FnOnce(Runs<T>)) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    fill(Runs::new(&mut v.spare_capacity_mut()[..n]));
    // SAFETY: `fill` wrote every element (its contract); `T: Copy`.
    unsafe { v.set_len(n) };
    v
}

/// `&mut [T]` as `&mut [MaybeUninit<T>]`, for the GEMM's fresh outputs
/// (writing through it only stores valid `T`s).
fn as_uninit<T>(s: &mut [T]) -> &mut [MaybeUninit<T>] {
    // SAFETY: `MaybeUninit<T>` has the layout of `T`, and the slice is only
    // written with initialised values.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut MaybeUninit<T>, s.len()) }
}

/// `U = G g Gᵀ` of every kernel of `w: [O, C, 3, 3]`, as `[P², C, O]`.
fn kernel_transform<A: Algorithm<M, P>, T: Real, const M: usize, const P: usize>(
    w: &[T],
    o: usize,
    c: usize,
) -> Vec<T> {
    filled_runs(P * P * c * o, |out| {
        (0..c).into_par_iter().for_each_init(
            || (vec![T::zero(); 9 * o], vec![T::zero(); P * P * o]),
            |(taps, rows), ch| {
                // The 9 taps of input channel `ch` as rows of O.
                for k in 0..o {
                    for (tap, &v) in w[(k * c + ch) * 9..][..9].iter().enumerate() {
                        taps[tap * o + k] = v;
                    }
                }
                simd(
                    #[inline(always)]
                    || {
                        by_lanes!(o, |at, L| {
                            sandwich(
                                |r, s| Lanes::<T, L>::load(taps, (r * 3 + s) * o + at),
                                A::g,
                                |a, b, v| v.store(rows, (a * P + b) * o + at),
                            );
                        })
                    },
                );
                for (p, row) in rows.chunks_exact(o).enumerate() {
                    // SAFETY: channel `ch` writes row `ch` of each position.
                    let d = unsafe { out.run((p * c + ch) * o, o) };
                    for (d, &v) in d.iter_mut().zip(row) {
                        d.write(v);
                    }
                }
            },
        )
    })
}

/// `dw = Gᵀ dU G`, the adjoint of [`kernel_transform`]: from
/// `du: [P², C, O]` to `[O, C, 3, 3]`.
fn kernel_adjoint<A: Algorithm<M, P>, T: Real, const M: usize, const P: usize>(
    du: &[T],
    o: usize,
    c: usize,
) -> Vec<T> {
    filled_runs(o * c * 9, |out| {
        (0..c).into_par_iter().for_each_init(
            || vec![T::zero(); 9 * o],
            |taps, ch| {
                let base = ch * o;
                let stride = c * o;
                simd(
                    #[inline(always)]
                    || {
                        by_lanes!(o, |at, L| {
                            sandwich(
                                |a, b| Lanes::<T, L>::load(du, (a * P + b) * stride + base + at),
                                A::gt,
                                |r, s, v| v.store(taps, (r * 3 + s) * o + at),
                            );
                        })
                    },
                );
                for k in 0..o {
                    // SAFETY: channel `ch` writes its own 9 taps of each kernel.
                    let d = unsafe { out.run((k * c + ch) * 9, 9) };
                    for (tap, d) in d.iter_mut().enumerate() {
                        d.write(taps[tap * o + k]);
                    }
                }
            },
        )
    })
}

/// How the work is cut: units of whole images, each run by one thread,
/// and inside a unit blocks of at most `blk` tiles whose transformed
/// input (`P²·blk·C` values) stays in the core's cache between the
/// transform, the products and the output transform. Small images share a
/// unit (one block); a large one is a unit of several blocks. A function
/// of the shape only.
struct Plan {
    blk: usize,
    units: Vec<std::ops::Range<usize>>,
}

impl Plan {
    fn new(g: &ConvGeometry, t: &Tiles, o: usize, pos: usize, size: usize) -> Self {
        let tpi = t.per_image().max(1);
        // Enough rows to amortise the kernel's packing, but at most half
        // the batch's tiles, so that at least two units run side by side.
        let rows = (g.c * o / KERNEL_VALUES_PER_ROW).min(g.b * tpi / 2);
        let blk = (BLOCK_BYTES / (pos * g.c.max(1) * size))
            .max(MIN_BLOCK)
            .max(rows);
        let per_unit = (blk / tpi).max(1);
        Self {
            blk,
            units: split_ranges(g.b, g.b.div_ceil(per_unit)),
        }
    }

    /// Most images in a unit.
    fn max_images(&self) -> usize {
        self.units.iter().map(|r| r.len()).max().unwrap_or(0)
    }

    /// The blocks `(first tile, tiles)` of a unit of `nb` images.
    fn blocks(&self, nb: usize, t: &Tiles) -> impl Iterator<Item = (usize, usize)> {
        let (n, blk) = (nb * t.per_image(), self.blk);
        (0..n).step_by(blk).map(move |b0| (b0, blk.min(n - b0)))
    }
}

/// Image `x: [C, H, W]` channels-last in the padded frame the tiles read:
/// `pad: [padded_len, C]`, zero outside the image. `xt` is scratch for
/// `H·W·C` elements.
fn pad_channels_last<T: Real>(x: &[T], c: usize, t: &Tiles, xt: &mut [T], pad: &mut [T]) {
    let (hw, pw_) = (t.h * t.w, t.padded_w());
    transpose(x, c, hw, as_uninit(&mut xt[..hw * c]));
    // Zeros above and below the image, and left and right of each row.
    let rows = t.padded_len() / pw_;
    pad[..t.ph * pw_ * c].fill(T::zero());
    pad[(t.ph + t.h).min(rows) * pw_ * c..rows * pw_ * c].fill(T::zero());
    for y in 0..t.h {
        let row = (y + t.ph) * pw_;
        let (l, r) = (row + t.pw, row + t.pw + t.w);
        pad[row * c..l * c].fill(T::zero());
        pad[l * c..r * c].copy_from_slice(&xt[y * t.w * c..(y + 1) * t.w * c]);
        pad[r * c..(row + pw_) * c].fill(T::zero());
    }
}

/// Image `src: [O, Ho·Wo]` channels-last in the tiles' output frame
/// `frame: [frame_len, O]`, zero past the edges. `xt` is scratch for
/// `Ho·Wo·O` elements.
fn frame_channels_last<T: Real>(src: &[T], o: usize, t: &Tiles, xt: &mut [T], frame: &mut [T]) {
    let (ohw, fw) = (t.ho * t.wo, t.frame_w());
    if t.exact() {
        transpose(src, o, ohw, as_uninit(&mut frame[..ohw * o]));
        return;
    }
    transpose(src, o, ohw, as_uninit(&mut xt[..ohw * o]));
    frame.fill(T::zero());
    for r in 0..t.ho {
        frame[r * fw * o..(r * fw + t.wo) * o]
            .copy_from_slice(&xt[r * t.wo * o..(r + 1) * t.wo * o]);
    }
}

/// `Bᵀ d B` of tiles `b0..b0 + n` of a unit from its padded images
/// `pad: [nb, padded_len, C]`, into `v: [P², n, C]`.
#[inline(always)]
fn input_block<A: Algorithm<M, P>, T: Real, const M: usize, const P: usize>(
    pad: &[T],
    c: usize,
    t: &Tiles,
    (b0, n): (usize, usize),
    v: &mut [T],
) {
    let (pw_, plen) = (t.padded_w(), t.padded_len());
    for k in 0..n {
        let (img, i, j) = t.at(b0 + k);
        let base = (img * plen + M * i * pw_ + M * j) * c;
        by_lanes!(c, |at, L| {
            sandwich(
                |r, s| Lanes::<T, L>::load(pad, base + (r * pw_ + s) * c + at),
                A::bt,
                |a, b, x| x.store(v, ((a * P + b) * n + k) * c + at),
            );
        })
    }
}

/// `Aᵀ m A` of tiles `b0..b0 + n` of a unit from `m: [P², n, O]`, into the
/// unit's output frames `frame: [nb, frame_len, O]`.
#[inline(always)]
fn output_block<A: Algorithm<M, P>, T: Real, const M: usize, const P: usize>(
    m: &[T],
    o: usize,
    t: &Tiles,
    (b0, n): (usize, usize),
    frame: &mut [T],
) {
    let (fw, flen) = (t.frame_w(), t.frame_len());
    for k in 0..n {
        let (img, i, j) = t.at(b0 + k);
        let base = (img * flen + M * i * fw + M * j) * o;
        by_lanes!(o, |at, L| {
            sandwich(
                |a, b| Lanes::<T, L>::load(m, ((a * P + b) * n + k) * o + at),
                A::at,
                |r, s, y| y.store(frame, base + (r * fw + s) * o + at),
            );
        })
    }
}

/// `A dY Aᵀ` of tiles `b0..b0 + n` of a unit from its output-gradient
/// frames `frame: [nb, frame_len, O]`, into `dm: [P², n, O]`.
#[inline(always)]
fn output_adjoint_block<A: Algorithm<M, P>, T: Real, const M: usize, const P: usize>(
    frame: &[T],
    o: usize,
    t: &Tiles,
    (b0, n): (usize, usize),
    dm: &mut [T],
) {
    let (fw, flen) = (t.frame_w(), t.frame_len());
    for k in 0..n {
        let (img, i, j) = t.at(b0 + k);
        let base = (img * flen + M * i * fw + M * j) * o;
        by_lanes!(o, |at, L| {
            sandwich(
                |r, s| Lanes::<T, L>::load(frame, base + (r * fw + s) * o + at),
                A::a,
                |a, b, x| x.store(dm, ((a * P + b) * n + k) * o + at),
            );
        })
    }
}

/// `B dV Bᵀ` of tiles `b0..b0 + n` of a unit from `dv: [P², n, C]`, added
/// into its padded input-gradient frames `acc: [nb, padded_len, C]`.
#[inline(always)]
fn input_adjoint_block<A: Algorithm<M, P>, T: Real, const M: usize, const P: usize>(
    dv: &[T],
    c: usize,
    t: &Tiles,
    (b0, n): (usize, usize),
    acc: &mut [T],
) {
    let (pw_, plen) = (t.padded_w(), t.padded_len());
    for k in 0..n {
        let (img, i, j) = t.at(b0 + k);
        let base = (img * plen + M * i * pw_ + M * j) * c;
        by_lanes!(c, |at, L| {
            sandwich(
                |a, b| Lanes::<T, L>::load(dv, ((a * P + b) * n + k) * c + at),
                A::b,
                |r, s, d| d.add_to(acc, base + (r * pw_ + s) * c + at),
            );
        })
    }
}

/// The `pos` products of a block, `dst_p [rows, cols] = lhs_p · rhs_p`
/// into a fresh buffer or `+=` onto one, one after the other on the
/// calling thread.
fn products<'a, T: Real + 'a>(
    pos: usize,
    (rows, cols, inner): (usize, usize, usize),
    dst: Dst<'_, T>,
    lhs: impl Fn(usize) -> Mat<'a, T>,
    rhs: impl Fn(usize) -> Mat<'a, T>,
) {
    let (len, dims) = ((rows * cols).max(1), (rows, cols, inner));
    match dst {
        Dst::Fresh(d) => {
            for (p, d) in d[..pos * rows * cols]
                .chunks_exact_mut(len)
                .enumerate()
                .take(pos)
            {
                gemm(dims, Dst::Fresh(d), (cols, 1), lhs(p), rhs(p), Threads::One);
            }
        }
        Dst::Add(d) => {
            for (p, d) in d[..pos * rows * cols]
                .chunks_exact_mut(len)
                .enumerate()
                .take(pos)
            {
                gemm(dims, Dst::Add(d), (cols, 1), lhs(p), rhs(p), Threads::One);
            }
        }
    }
}

/// Which algorithm a shape runs: F(4×4, 3×3) on maps of 8x8 and larger
/// (measured faster than F(2×2, 3×3) on the ResNet-18 shapes:
/// `examples/winograd.rs`), F(2×2, 3×3) on smaller ones.
fn use_f4(g: &ConvGeometry) -> bool {
    g.ho >= 8 && g.wo >= 8
}

/// The forward convolution of `x: [B, C, H, W]` with `w: [O, C, 3, 3]`
/// (geometry `g`: a dense 3x3 kernel, stride 1): `[B, O, Ho, Wo]`.
pub(crate) fn forward<T: Real>(x: &[T], w: &[T], g: &ConvGeometry, o: usize) -> Vec<T> {
    if use_f4(g) {
        forward_with::<F4, T, 4, 6>(x, w, g, o)
    } else {
        forward_with::<F2, T, 2, 4>(x, w, g, o)
    }
}

/// The gradients `(dx, dw)` of [`forward`] for the output gradient `dy`,
/// each computed only if asked for in `need` (empty otherwise).
pub(crate) fn backward<T: Real>(
    x: &[T],
    w: &[T],
    dy: &[T],
    g: &ConvGeometry,
    o: usize,
    need: (bool, bool),
) -> (Vec<T>, Vec<T>) {
    if use_f4(g) {
        backward_with::<F4, T, 4, 6>(x, w, dy, g, o, need)
    } else {
        backward_with::<F2, T, 2, 4>(x, w, dy, g, o, need)
    }
}

/// Units run in this many groups of consecutive units, each on one thread
/// with one set of scratch buffers; for the kernel gradient each group sums
/// its units' products into its own buffer and the groups' sums are added
/// in order, so the result depends on the shape only.
const GROUPS: usize = 4;

/// `work` cut into `n` runs of consecutive items (fewer if it is shorter).
fn groups<W>(mut work: Vec<W>, n: usize) -> Vec<Vec<W>> {
    let mut out = Vec::new();
    for part in split_ranges(work.len(), n).into_iter().rev() {
        out.push(work.split_off(part.start));
    }
    out.reverse();
    out
}

/// [`forward`] by the algorithm `A`.
fn forward_with<A: Algorithm<M, P>, T: Real, const M: usize, const P: usize>(
    x: &[T],
    w: &[T],
    g: &ConvGeometry,
    o: usize,
) -> Vec<T> {
    assert!(shape_fits(g, 1), "winograd: unsupported convolution {g:?}");
    let t = Tiles::new(g, M);
    let (c, pos) = (g.c, P * P);
    let (hw, ohw, flen) = (g.h * g.w, g.ho * g.wo, t.frame_len());
    let plan = Plan::new(g, &t, o, pos, std::mem::size_of::<T>());
    let u = kernel_transform::<A, T, M, P>(w, o, c);
    let (nbm, blk) = (plan.max_images(), plan.blk);
    let mut y: Vec<T> = Vec::with_capacity(g.b * o * ohw);
    let work = split_images(
        &mut y.spare_capacity_mut()[..g.b * o * ohw],
        &plan.units,
        o * ohw,
    );
    // Groups of units, one set of scratch buffers each.
    let lens = [
        hw.max(ohw) * c.max(o),
        nbm * t.padded_len() * c,
        pos * blk * c,
        pos * blk * o,
        nbm * flen * o,
    ];
    groups(work, GROUPS).into_par_iter().for_each(|group| {
        // Every buffer is written before it is read.
        with_scratch(lens, |[xt, pad, v, m, frame]| {
            for (r, out) in group {
                let nb = r.len();
                let plen = t.padded_len() * c;
                for (img, x) in x[r.start * c * hw..r.end * c * hw]
                    .chunks_exact(c * hw)
                    .enumerate()
                {
                    pad_channels_last(x, c, &t, xt, &mut pad[img * plen..(img + 1) * plen]);
                }
                for (b0, n) in plan.blocks(nb, &t) {
                    simd(
                        #[inline(always)]
                        || input_block::<A, T, M, P>(pad, c, &t, (b0, n), v),
                    );
                    // M_p [n, O] = V_p [n, C] · U_p [C, O]
                    products(
                        pos,
                        (n, o, c),
                        Dst::Fresh(as_uninit(m)),
                        |p| Mat {
                            data: &v[p * n * c..],
                            rs: c,
                            cs: 1,
                        },
                        |p| Mat {
                            data: &u[p * c * o..],
                            rs: o,
                            cs: 1,
                        },
                    );
                    simd(
                        #[inline(always)]
                        || output_block::<A, T, M, P>(m, o, &t, (b0, n), frame),
                    );
                }
                // Each image's frame [Ho·Wo (cut from the tiles' frame), O] -> [O, Ho·Wo].
                let fw = t.frame_w();
                for (img, dst) in out.chunks_exact_mut(o * ohw).enumerate() {
                    let f = &frame[img * flen * o..(img + 1) * flen * o];
                    let src = if t.exact() {
                        f
                    } else {
                        for row in 0..t.ho {
                            xt[row * t.wo * o..(row + 1) * t.wo * o]
                                .copy_from_slice(&f[row * fw * o..(row * fw + t.wo) * o]);
                        }
                        &xt[..ohw * o]
                    };
                    transpose(src, ohw, o, dst);
                }
            }
        })
    });
    // SAFETY: the units cover all images, and each image was written by
    // its transpose.
    unsafe { y.set_len(g.b * o * ohw) };
    y
}

/// [`backward`] by the algorithm `A`.
fn backward_with<A: Algorithm<M, P>, T: Real, const M: usize, const P: usize>(
    x: &[T],
    w: &[T],
    dy: &[T],
    g: &ConvGeometry,
    o: usize,
    (need_x, need_w): (bool, bool),
) -> (Vec<T>, Vec<T>) {
    assert!(shape_fits(g, 1), "winograd: unsupported convolution {g:?}");
    let t = Tiles::new(g, M);
    let (c, pos) = (g.c, P * P);
    let (hw, ohw, plen, flen) = (g.h * g.w, g.ho * g.wo, t.padded_len(), t.frame_len());
    let plan = Plan::new(g, &t, o, pos, std::mem::size_of::<T>());
    // The transformed kernel as `[P², O, C]`: the input gradient's products
    // then read it as `gemm`'s column-major left operand, which it does
    // not have to gather into a packed copy for every block.
    let ut = if need_x {
        let u = kernel_transform::<A, T, M, P>(w, o, c);
        let mut ut = Vec::with_capacity(u.len());
        transpose_images(&u, (pos, c, o), &mut ut.spare_capacity_mut()[..u.len()]);
        // SAFETY: the transposes wrote every element.
        unsafe { ut.set_len(u.len()) };
        ut
    } else {
        Vec::new()
    };
    let (nbm, blk) = (plan.max_images(), plan.blk);
    let mut dx: Vec<T> = Vec::with_capacity(if need_x { g.b * c * hw } else { 0 });
    let work: Vec<(_, Option<&mut [MaybeUninit<T>]>)> = if need_x {
        split_images(
            &mut dx.spare_capacity_mut()[..g.b * c * hw],
            &plan.units,
            c * hw,
        )
        .into_iter()
        .map(|(r, out)| (r, Some(out)))
        .collect()
    } else {
        plan.units.iter().map(|r| (r.clone(), None)).collect()
    };
    let dw_len = if need_w { pos * c * o } else { 0 };
    let lens = [
        hw.max(ohw) * c.max(o),
        if need_w { nbm * plen * c } else { 0 },
        if need_x { nbm * plen * c } else { 0 },
        nbm * flen * o,
        pos * blk * o,
        pos * blk * c,
    ];
    let parts: Vec<Vec<T>> = groups(work, GROUPS)
        .into_par_iter()
        .map(|group| {
            let mut du: Vec<T> = Vec::with_capacity(dw_len);
            // Every buffer is written before it is read (`acc` is zeroed
            // per unit).
            with_scratch(lens, |[xt, pad, acc, frame, dm, v]| {
                for (r, out) in group {
                    let nb = r.len();
                    let dys = &dy[r.start * o * ohw..r.end * o * ohw];
                    for (img, d) in dys.chunks_exact(o * ohw).enumerate() {
                        let f = &mut frame[img * flen * o..(img + 1) * flen * o];
                        frame_channels_last(d, o, &t, xt, f);
                    }
                    if need_w {
                        let xs = &x[r.start * c * hw..r.end * c * hw];
                        for (img, x) in xs.chunks_exact(c * hw).enumerate() {
                            let p = &mut pad[img * plen * c..(img + 1) * plen * c];
                            pad_channels_last(x, c, &t, xt, p);
                        }
                    }
                    if need_x {
                        acc[..nb * plen * c].fill(T::zero());
                    }
                    for (b0, n) in plan.blocks(nb, &t) {
                        simd(
                            #[inline(always)]
                            || output_adjoint_block::<A, T, M, P>(frame, o, &t, (b0, n), dm),
                        );
                        if need_w {
                            simd(
                                #[inline(always)]
                                || input_block::<A, T, M, P>(pad, c, &t, (b0, n), v),
                            );
                            // dU_p [C, O] += V_pᵀ [C, n] · dM_p [n, O]
                            // The group's first block writes `du` fresh (no
                            // zeroing), the others add onto it.
                            let lhs = |p: usize| Mat {
                                data: &v[p * n * c..],
                                rs: 1,
                                cs: c,
                            };
                            let rhs = |p: usize| Mat {
                                data: &dm[p * n * o..],
                                rs: o,
                                cs: 1,
                            };
                            if du.is_empty() {
                                let fresh = &mut du.spare_capacity_mut()[..dw_len];
                                products(pos, (c, o, n), Dst::Fresh(fresh), lhs, rhs);
                                // SAFETY: the products wrote all `dw_len` values.
                                unsafe { du.set_len(dw_len) };
                            } else {
                                products(pos, (c, o, n), Dst::Add(&mut du), lhs, rhs);
                            }
                        }
                        if need_x {
                            // dV_p [n, C] = dM_p [n, O] · U_pᵀ [O, C]
                            products(
                                pos,
                                (n, c, o),
                                Dst::Fresh(as_uninit(v)),
                                |p| Mat {
                                    data: &dm[p * n * o..],
                                    rs: o,
                                    cs: 1,
                                },
                                |p| Mat {
                                    data: &ut[p * o * c..],
                                    rs: c,
                                    cs: 1,
                                },
                            );
                            simd(
                                #[inline(always)]
                                || input_adjoint_block::<A, T, M, P>(v, c, &t, (b0, n), acc),
                            );
                        }
                    }
                    if let Some(out) = out {
                        // Each image's positions of the padded frame -> [C, H·W].
                        for (img, dst) in out.chunks_exact_mut(c * hw).enumerate() {
                            for y in 0..t.h {
                                let row = img * plen + (y + t.ph) * t.padded_w() + t.pw;
                                xt[y * t.w * c..(y + 1) * t.w * c]
                                    .copy_from_slice(&acc[row * c..(row + t.w) * c]);
                            }
                            transpose(&xt[..hw * c], hw, c, dst);
                        }
                    }
                }
            });
            du
        })
        .collect();
    if need_x {
        // SAFETY: the units cover all images, and each image was written
        // by its transpose.
        unsafe { dx.set_len(g.b * c * hw) };
    }
    let dw = if need_w {
        // The groups' sums added in group order (a group without units
        // has none).
        let mut sums = parts.into_iter().filter(|p| !p.is_empty());
        let du = match sums.next() {
            Some(mut du) => {
                for part in sums {
                    for (d, p) in du.iter_mut().zip(part) {
                        *d += p;
                    }
                }
                du
            }
            None => vec![T::zero(); dw_len],
        };
        kernel_adjoint::<A, T, M, P>(&du, o, c)
    } else {
        Vec::new()
    };
    (dx, dw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Direct 3x3 stride-1 convolution and its two gradients in f64 loops:
    /// (y, dx, dw) for the output gradient `dy`.
    fn direct(
        x: &[f64],
        w: &[f64],
        dy: &[f64],
        g: &ConvGeometry,
        o: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (b, c, h, wd, ho, wo) = (g.b, g.c, g.h, g.w, g.ho, g.wo);
        let (ph, pw) = g.padding;
        let mut y = vec![0.0; b * o * ho * wo];
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        for n in 0..b {
            for k in 0..o {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let yi = ((n * o + k) * ho + oy) * wo + ox;
                        for ch in 0..c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) =
                                        ((oy + ky).wrapping_sub(ph), (ox + kx).wrapping_sub(pw));
                                    if iy >= h || ix >= wd {
                                        continue;
                                    }
                                    let xi = ((n * c + ch) * h + iy) * wd + ix;
                                    let wi = ((k * c + ch) * 3 + ky) * 3 + kx;
                                    y[yi] += x[xi] * w[wi];
                                    dx[xi] += dy[yi] * w[wi];
                                    dw[wi] += dy[yi] * x[xi];
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, dx, dw)
    }

    fn random(rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.normal() as f64).collect()
    }

    fn max_err(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()))
            / scale
    }

    /// (x dims, output channels, padding)
    type Case = ((usize, usize, usize, usize), usize, (usize, usize));

    /// Odd and even sizes, non-square inputs, padding 0-2 per axis, batches
    /// that split into several units and blocks.
    fn cases() -> Vec<Case> {
        vec![
            ((2, 3, 5, 7), 4, (1, 1)),
            ((1, 2, 6, 4), 3, (0, 2)),
            ((3, 4, 4, 4), 2, (2, 1)),
            ((1, 1, 3, 3), 1, (0, 0)),
            ((2, 5, 8, 9), 3, (1, 0)),
            ((70, 2, 3, 5), 2, (1, 1)),
        ]
    }

    /// Forward and both gradients by one algorithm.
    type Run<T> = fn(&[T], &[T], &[T], &ConvGeometry, usize) -> (Vec<T>, Vec<T>, Vec<T>);

    fn run_with<A: Algorithm<M, P>, T: Real, const M: usize, const P: usize>(
        x: &[T],
        w: &[T],
        dy: &[T],
        g: &ConvGeometry,
        o: usize,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let y = forward_with::<A, T, M, P>(x, w, g, o);
        let (dx, dw) = backward_with::<A, T, M, P>(x, w, dy, g, o, (true, true));
        // Each half alone gives the same values, the other one empty.
        let (dx_only, none) = backward_with::<A, T, M, P>(x, w, dy, g, o, (true, false));
        assert!(none.is_empty() && dx_only == dx);
        let (none, dw_only) = backward_with::<A, T, M, P>(x, w, dy, g, o, (false, true));
        assert!(none.is_empty() && dw_only == dw);
        (y, dx, dw)
    }

    #[test]
    fn forward_and_gradients_match_the_direct_convolution_f64() {
        let mut rng = Rng::new(3);
        let algorithms: [(&str, Run<f64>); 2] = [
            ("F(2x2,3x3)", run_with::<F2, f64, 2, 4>),
            ("F(4x4,3x3)", run_with::<F4, f64, 4, 6>),
        ];
        for ((b, c, h, wd), o, padding) in cases() {
            let g = ConvGeometry::new((b, c, h, wd), (3, 3), (1, 1), padding, (1, 1)).unwrap();
            let x = random(&mut rng, b * c * h * wd);
            let w = random(&mut rng, o * c * 9);
            let dy = random(&mut rng, b * o * g.ho * g.wo);
            let (y0, dx0, dw0) = direct(&x, &w, &dy, &g, o);
            for (name, run) in algorithms {
                let (y, dx, dw) = run(&x, &w, &dy, &g, o);
                for (what, got, want) in [("y", &y, &y0), ("dx", &dx, &dx0), ("dw", &dw, &dw0)] {
                    let err = max_err(got, want);
                    assert!(err < 1e-12, "{name} {what} of {g:?}: {err}");
                }
            }
        }
    }

    #[test]
    fn f32_stays_close_to_f64() {
        let mut rng = Rng::new(4);
        let ((b, c, h, wd), o) = ((2, 32, 17, 16), 24);
        let g = ConvGeometry::new((b, c, h, wd), (3, 3), (1, 1), (1, 1), (1, 1)).unwrap();
        let x = random(&mut rng, b * c * h * wd);
        let w = random(&mut rng, o * c * 9);
        let dy = random(&mut rng, b * o * g.ho * g.wo);
        let (y0, dx0, dw0) = direct(&x, &w, &dy, &g, o);
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<_>>();
        let back = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
        // The maximum error relative to the largest value: F(4x4, 3x3)'s
        // transforms multiply by up to 8 and lose a few more bits.
        let algorithms: [(&str, Run<f32>, f64); 2] = [
            ("F(2x2,3x3)", run_with::<F2, f32, 2, 4>, 2e-6),
            ("F(4x4,3x3)", run_with::<F4, f32, 4, 6>, 2e-5),
        ];
        for (name, run, tol) in algorithms {
            let (y, dx, dw) = run(&f(&x), &f(&w), &f(&dy), &g, o);
            for (what, got, want) in [("y", y, &y0), ("dx", dx, &dx0), ("dw", dw, &dw0)] {
                let err = max_err(&back(got), want);
                assert!(err < tol, "{name} {what}: {err}");
            }
        }
    }

    #[test]
    fn blocks_hold_enough_tiles_for_large_kernels_and_two_units_run() {
        // The last stage of a CIFAR ResNet-18: 512 channels, 4x4 maps,
        // F(2×2, 3×3) (four tiles per image, 16 positions).
        let plan = |b| {
            let g = ConvGeometry::new((b, 512, 4, 4), (3, 3), (1, 1), (1, 1), (1, 1)).unwrap();
            Plan::new(&g, &Tiles::new(&g, 2), 512, 16, 4)
        };
        let p = plan(128);
        assert_eq!(p.blk, 512 * 512 / KERNEL_VALUES_PER_ROW);
        assert_eq!(p.units, vec![0..64, 64..128]);
        // Half the batch's tiles at most.
        let p = plan(64);
        assert_eq!((p.blk, p.units.len()), (128, 2));
        // Small kernels keep the cache-sized blocks.
        let g = ConvGeometry::new((128, 16, 8, 8), (3, 3), (1, 1), (1, 1), (1, 1)).unwrap();
        let p = Plan::new(&g, &Tiles::new(&g, 2), 16, 16, 4);
        assert_eq!(p.blk, (BLOCK_BYTES / (16 * 16 * 4)).max(MIN_BLOCK));
    }

    #[test]
    fn applies_to_dense_3x3_stride_1_convolutions_only() {
        let geo =
            |k: (usize, usize), s, d| ConvGeometry::new((1, 16, 8, 8), k, s, (1, 1), d).unwrap();
        assert!(applies(&geo((3, 3), (1, 1), (1, 1)), 1, 16));
        assert!(!applies(&geo((3, 3), (1, 1), (1, 1)), 2, 16));
        assert!(!applies(&geo((3, 3), (1, 1), (1, 1)), 1, 8));
        assert!(!applies(&geo((3, 3), (2, 2), (1, 1)), 1, 16));
        assert!(!applies(&geo((3, 3), (1, 1), (2, 2)), 1, 16));
        assert!(!applies(&geo((1, 1), (1, 1), (1, 1)), 1, 16));
        assert!(!applies(&geo((3, 2), (1, 1), (1, 1)), 1, 16));
        // Maps down to 4x4 outputs.
        let small = |h, w| ConvGeometry::new((1, 16, h, w), (3, 3), (1, 1), (1, 1), (1, 1));
        assert!(applies(&small(4, 4).unwrap(), 1, 16));
        assert!(!applies(&small(3, 4).unwrap(), 1, 16));
    }
}
