//! Winograd's minimal filtering F(2x2, 3x3) for the 3x3, stride-1
//! convolutions of [`super::conv2d`] (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", CVPR 2016).
//!
//! The output is cut into 2x2 tiles; each reads a 4x4 patch `d` of the
//! padded input. With the fixed matrices `Bᵀ` (4x4), `G` (4x3) and `Aᵀ`
//! (2x4), a tile of the output is `Aᵀ [Σ_c (G g Gᵀ) ⊙ (Bᵀ d B)] A`: the sum
//! over input channels at each of the 16 transformed positions is one GEMM
//! over all tiles, `[tiles, C]·[C, O]`, with 16 multiply-adds per 4 outputs
//! and channel where the direct convolution needs 36 — 2.25x fewer
//! products, and a transformed input 4x the input's size where the unfolded
//! columns are 9x.
//!
//! The two gradients follow from the same identity read backwards (each
//! transform's adjoint): with `dM = A dY Aᵀ` per tile of the output
//! gradient, the kernel gradient is `Gᵀ [Σ_tiles (Bᵀ d B) ⊙ dM] G` (16 GEMMs
//! `[C, tiles]·[tiles, O]`) and the input gradient adds
//! `B [Σ_o dM ⊙ (G g Gᵀ)] Bᵀ` onto each tile's 4x4 patch (16 GEMMs
//! `[tiles, O]·[O, C]`). The transforms multiply by 0, ±1 and ±1/2 only.
//!
//! The transforms work channels-last (each image moved to `[H, W, C]` by
//! the register-tile transposes of [`super::transpose`]), so that every
//! step is an element-wise combination of runs of channels, which LLVM
//! vectorises ([`Lanes`]). The buffers are position-major (`[16, tiles,
//! channels]`): each GEMM reads and writes contiguous matrices. The work
//! runs in units of whole images, one thread each, and inside a unit in
//! blocks of tiles small enough ([`BLOCK_BYTES`]) that the transformed
//! input and the products stay in the core's cache from the transform to
//! the output transform ([`Plan`]). Every sum runs in an order fixed by the
//! shape, so results do not depend on the number of threads.
//!
//! Measured against the unfolding path on the CIFAR ResNet-18 shapes
//! (`examples/bench_ops.rs`): about even on 64 channels at 32x32, 15-30%
//! faster on 128 at 16x16 and 256 at 8x8, slower at 4x4, which stays on
//! the unfolding path ([`MIN_PIXELS`]).

use super::conv2d::{gemm, ConvGeometry, Dst, Mat, Threads};
use super::transpose::transpose;
use super::{simd, split_ranges, Real};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::{Add, Mul, Sub};
use std::sync::atomic::{AtomicBool, Ordering};

/// Transformed positions per tile (4x4).
const POS: usize = 16;

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

/// Fewest output pixels per image: on smaller maps (4x4 in a CIFAR
/// ResNet's last stage) the transformed kernel, re-read for every block of
/// a few tiles, costs more than the products save
/// (`examples/bench_ops.rs`).
const MIN_PIXELS: usize = 64;

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

/// The tiling of one image: `th×tw` tiles of 2x2 outputs, reading a padded
/// input of `(2·th + 2)×(2·tw + 2)` positions.
#[derive(Clone, Copy, Debug)]
struct Tiles {
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
    fn new(g: &ConvGeometry) -> Self {
        Self {
            th: g.ho.div_ceil(2),
            tw: g.wo.div_ceil(2),
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
        2 * self.tw + 2
    }

    /// Positions of the padded input the tiles read.
    fn padded_len(&self) -> usize {
        (2 * self.th + 2) * self.padded_w()
    }

    /// Whether the tiles cover exactly the output (even sizes).
    fn exact(&self) -> bool {
        self.ho % 2 == 0 && self.wo % 2 == 0
    }
}

/// `L` values of `T` combined element-wise: LLVM turns the straight-line
/// arithmetic on these arrays into vector instructions.
#[derive(Clone, Copy)]
struct Lanes<T, const L: usize>([T; L]);

impl<T: Real, const L: usize> Lanes<T, L> {
    #[inline(always)]
    fn load(s: &[T], at: usize) -> Self {
        let mut a = [T::zero(); L];
        a.copy_from_slice(&s[at..at + L]);
        Self(a)
    }

    #[inline(always)]
    fn store(self, d: &mut [MaybeUninit<T>]) {
        for (d, v) in d[..L].iter_mut().zip(self.0) {
            d.write(v);
        }
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

impl<T: Real, const L: usize> Mul<T> for Lanes<T, L> {
    type Output = Self;
    #[inline(always)]
    fn mul(self, k: T) -> Self {
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

fn half<T: Real>() -> T {
    T::from_f64(0.5)
}

/// `[f(0), ..., f(15)]`, written out (`std::array::from_fn` goes through
/// memory, which keeps LLVM from holding the values in registers).
#[inline(always)]
fn arr16<X>(f: impl Fn(usize) -> X) -> [X; 16] {
    [
        f(0),
        f(1),
        f(2),
        f(3),
        f(4),
        f(5),
        f(6),
        f(7),
        f(8),
        f(9),
        f(10),
        f(11),
        f(12),
        f(13),
        f(14),
        f(15),
    ]
}

/// `Bᵀ` applied to four values: `(d0−d2, d1+d2, d2−d1, d1−d3)`.
#[inline(always)]
fn bt<T: Real, const L: usize>([d0, d1, d2, d3]: [Lanes<T, L>; 4]) -> [Lanes<T, L>; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

/// `B` applied to four values: `(v0, v1−v2+v3, −v0+v1+v2, −v3)`.
#[inline(always)]
fn b<T: Real, const L: usize>([v0, v1, v2, v3]: [Lanes<T, L>; 4]) -> [Lanes<T, L>; 4] {
    [v0, v1 - v2 + v3, v1 + v2 - v0, v3.neg()]
}

/// `Aᵀ` applied to four values: `(m0+m1+m2, m1−m2−m3)`.
#[inline(always)]
fn at<T: Real, const L: usize>([m0, m1, m2, m3]: [Lanes<T, L>; 4]) -> [Lanes<T, L>; 2] {
    [m0 + m1 + m2, m1 - m2 - m3]
}

/// `A` applied to two values: `(y0, y0+y1, y0−y1, −y1)`.
#[inline(always)]
fn a<T: Real, const L: usize>([y0, y1]: [Lanes<T, L>; 2]) -> [Lanes<T, L>; 4] {
    [y0, y0 + y1, y0 - y1, y1.neg()]
}

/// `X d Yᵀ` for a 4x4 `d` (row-major), with `X` and `Y` given by their
/// action on a 4-vector (`f`): `f` on every column, then on every row.
#[inline(always)]
fn both_sides_4<T: Real, const L: usize>(
    d: [Lanes<T, L>; 16],
    f: impl Fn([Lanes<T, L>; 4]) -> [Lanes<T, L>; 4],
) -> [Lanes<T, L>; 16] {
    let c0 = f([d[0], d[4], d[8], d[12]]);
    let c1 = f([d[1], d[5], d[9], d[13]]);
    let c2 = f([d[2], d[6], d[10], d[14]]);
    let c3 = f([d[3], d[7], d[11], d[15]]);
    let r0 = f([c0[0], c1[0], c2[0], c3[0]]);
    let r1 = f([c0[1], c1[1], c2[1], c3[1]]);
    let r2 = f([c0[2], c1[2], c2[2], c3[2]]);
    let r3 = f([c0[3], c1[3], c2[3], c3[3]]);
    [
        r0[0], r0[1], r0[2], r0[3], r1[0], r1[1], r1[2], r1[3], r2[0], r2[1], r2[2], r2[3], r3[0],
        r3[1], r3[2], r3[3],
    ]
}

/// `Bᵀ d B` of one tile, `d[r·4 + s]` the padded input at row `r`, column
/// `s` of the tile's patch: the 16 transformed values, position `a·4 + b`.
#[inline(always)]
fn input_tile<T: Real, const L: usize>(d: [Lanes<T, L>; 16]) -> [Lanes<T, L>; 16] {
    both_sides_4(d, bt)
}

/// The adjoint of [`input_tile`]: `B v Bᵀ` of 16 transformed values, the
/// 4x4 patch (row `r`, column `s` at `r·4 + s`).
#[inline(always)]
fn input_tile_adjoint<T: Real, const L: usize>(v: [Lanes<T, L>; 16]) -> [Lanes<T, L>; 16] {
    both_sides_4(v, b)
}

/// `Aᵀ m A` of one tile's 16 products: the 2x2 outputs (row `r`, column
/// `s` at `r·2 + s`).
#[inline(always)]
fn output_tile<T: Real, const L: usize>(m: [Lanes<T, L>; 16]) -> [Lanes<T, L>; 4] {
    let c0 = at([m[0], m[4], m[8], m[12]]);
    let c1 = at([m[1], m[5], m[9], m[13]]);
    let c2 = at([m[2], m[6], m[10], m[14]]);
    let c3 = at([m[3], m[7], m[11], m[15]]);
    let r0 = at([c0[0], c1[0], c2[0], c3[0]]);
    let r1 = at([c0[1], c1[1], c2[1], c3[1]]);
    [r0[0], r0[1], r1[0], r1[1]]
}

/// The adjoint of [`output_tile`]: `A y Aᵀ` of a 2x2 output gradient, the
/// 16 transformed values.
#[inline(always)]
fn output_tile_adjoint<T: Real, const L: usize>(y: [Lanes<T, L>; 4]) -> [Lanes<T, L>; 16] {
    let c0 = a([y[0], y[2]]);
    let c1 = a([y[1], y[3]]);
    let r: [[Lanes<T, L>; 4]; 4] = [
        a([c0[0], c1[0]]),
        a([c0[1], c1[1]]),
        a([c0[2], c1[2]]),
        a([c0[3], c1[3]]),
    ];
    [
        r[0][0], r[0][1], r[0][2], r[0][3], r[1][0], r[1][1], r[1][2], r[1][3], r[2][0], r[2][1],
        r[2][2], r[2][3], r[3][0], r[3][1], r[3][2], r[3][3],
    ]
}

/// `G g Gᵀ` of one 3x3 kernel (`g[r·3 + s]`): 16 values.
#[inline(always)]
fn kernel_tile<T: Real, const L: usize>(g: [Lanes<T, L>; 9]) -> [Lanes<T, L>; 16] {
    let h = half::<T>();
    // G along the rows: (g0, (g0+g1+g2)/2, (g0−g1+g2)/2, g2), per column.
    let t: [Lanes<T, L>; 12] = std::array::from_fn(|k| {
        let (a, s) = (k / 3, k % 3);
        match a {
            0 => g[s],
            1 => (g[s] + g[3 + s] + g[6 + s]) * h,
            2 => (g[s] - g[3 + s] + g[6 + s]) * h,
            _ => g[6 + s],
        }
    });
    std::array::from_fn(|k| {
        let (a, b) = (3 * (k / 4), k % 4);
        match b {
            0 => t[a],
            1 => (t[a] + t[a + 1] + t[a + 2]) * h,
            2 => (t[a] - t[a + 1] + t[a + 2]) * h,
            _ => t[a + 2],
        }
    })
}

/// The adjoint of [`kernel_tile`]: `Gᵀ u G`, a 3x3 kernel gradient.
#[inline(always)]
fn kernel_tile_adjoint<T: Real, const L: usize>(u: [Lanes<T, L>; 16]) -> [Lanes<T, L>; 9] {
    let h = half::<T>();
    // Gᵀ along the rows: (u0 + (u1+u2)/2, (u1−u2)/2, (u1+u2)/2 + u3).
    let t: [Lanes<T, L>; 12] = std::array::from_fn(|k| {
        let (r, b) = (k / 4, k % 4);
        match r {
            0 => u[b] + (u[4 + b] + u[8 + b]) * h,
            1 => (u[4 + b] - u[8 + b]) * h,
            _ => (u[4 + b] + u[8 + b]) * h + u[12 + b],
        }
    });
    std::array::from_fn(|k| {
        let (r, s) = (4 * (k / 3), k % 3);
        match s {
            0 => t[r] + (t[r + 1] + t[r + 2]) * h,
            1 => (t[r + 1] - t[r + 2]) * h,
            _ => (t[r + 1] + t[r + 2]) * h + t[r + 3],
        }
    })
}

/// `U = G g Gᵀ` of every kernel of `w: [O, C, 3, 3]`, as `[16, C, O]`.
fn kernel_transform<T: Real>(w: &[T], o: usize, c: usize) -> Vec<T> {
    filled_runs(POS * c * o, |out| {
        (0..c).into_par_iter().for_each_init(
            || vec![T::zero(); 9 * o],
            |taps, ch| {
                // The 9 taps of input channel `ch` as rows of O.
                for k in 0..o {
                    for (tap, &v) in w[(k * c + ch) * 9..][..9].iter().enumerate() {
                        taps[tap * o + k] = v;
                    }
                }
                // SAFETY: channel `ch` writes row `ch` of each position.
                let mut rows: [&mut [MaybeUninit<T>]; 16] =
                    std::array::from_fn(|p| unsafe { out.run((p * c + ch) * o, o) });
                let taps = &taps[..];
                simd(
                    #[inline(always)]
                    || {
                        by_lanes!(o, |at, L| {
                            let g = std::array::from_fn(|t| Lanes::<T, L>::load(taps, t * o + at));
                            for (row, v) in rows.iter_mut().zip(kernel_tile(g)) {
                                v.store(&mut row[at..]);
                            }
                        })
                    },
                );
            },
        )
    })
}

/// `dw = Gᵀ dU G`, the adjoint of [`kernel_transform`]: from
/// `du: [16, C, O]` to `[O, C, 3, 3]`.
fn kernel_adjoint<T: Real>(du: &[T], o: usize, c: usize) -> Vec<T> {
    filled_runs(o * c * 9, |out| {
        (0..c).into_par_iter().for_each_init(
            || vec![T::zero(); 9 * o],
            |taps, ch| {
                let rows: [&[T]; 16] = std::array::from_fn(|p| &du[(p * c + ch) * o..][..o]);
                simd(
                    #[inline(always)]
                    || {
                        by_lanes!(o, |at, L| {
                            let u = std::array::from_fn(|p| Lanes::<T, L>::load(rows[p], at));
                            for (t, v) in kernel_tile_adjoint(u).into_iter().enumerate() {
                                let d = &mut taps[t * o + at..t * o + at + L];
                                d.copy_from_slice(&v.0);
                            }
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

/// `&mut [T]` as `&mut [MaybeUninit<T>]`, for the GEMM's fresh outputs
/// (writing through it only stores valid `T`s).
fn as_uninit<T>(s: &mut [T]) -> &mut [MaybeUninit<T>] {
    // SAFETY: `MaybeUninit<T>` has the layout of `T`, and the slice is only
    // written with initialised values.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut MaybeUninit<T>, s.len()) }
}

/// How the work is cut: units of whole images, each run by one thread,
/// and inside a unit blocks of at most `blk` tiles whose transformed
/// input (`16·blk·C` values) stays in the core's cache between the
/// transform, the 16 products and the output transform. Small images
/// share a unit (one block); a large one is a unit of several blocks. A
/// function of the shape only.
struct Plan {
    blk: usize,
    units: Vec<std::ops::Range<usize>>,
}

impl Plan {
    fn new(g: &ConvGeometry, t: &Tiles, size: usize) -> Self {
        let tpi = t.per_image().max(1);
        let blk = (BLOCK_BYTES / (POS * g.c.max(1) * size)).max(MIN_BLOCK);
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
/// `pad: [(2·th + 2)·(2·tw + 2), C]`, zero outside the image. `xt` is
/// scratch for `H·W·C` elements.
fn pad_channels_last<T: Real>(x: &[T], c: usize, t: &Tiles, xt: &mut [T], pad: &mut [T]) {
    let (hw, pw_) = (t.h * t.w, t.padded_w());
    transpose(x, c, hw, as_uninit(&mut xt[..hw * c]));
    pad.fill(T::zero());
    for y in 0..t.h {
        let row = (y + t.ph) * pw_ + t.pw;
        pad[row * c..(row + t.w) * c].copy_from_slice(&xt[y * t.w * c..(y + 1) * t.w * c]);
    }
}

/// Image `src: [O, Ho·Wo]` channels-last in the tiles' even frame
/// `frame: [2·th·2·tw, O]`, zero past the edges. `xt` is scratch for
/// `Ho·Wo·O` elements.
fn frame_channels_last<T: Real>(src: &[T], o: usize, t: &Tiles, xt: &mut [T], frame: &mut [T]) {
    let (ohw, tw2) = (t.ho * t.wo, 2 * t.tw);
    if t.exact() {
        transpose(src, o, ohw, as_uninit(&mut frame[..ohw * o]));
        return;
    }
    transpose(src, o, ohw, as_uninit(&mut xt[..ohw * o]));
    frame.fill(T::zero());
    for r in 0..t.ho {
        frame[r * tw2 * o..(r * tw2 + t.wo) * o]
            .copy_from_slice(&xt[r * t.wo * o..(r + 1) * t.wo * o]);
    }
}

/// The image and tile position `(image, i, j)` of tile `k` of a unit.
#[inline(always)]
fn tile_at(k: usize, t: &Tiles) -> (usize, usize, usize) {
    let tpi = t.per_image();
    let (img, rem) = (k / tpi, k % tpi);
    (img, rem / t.tw, rem % t.tw)
}

/// [`input_tile`] of tiles `b0..b0 + n` of a unit from its padded images
/// `pad: [nb, padded, C]`, into `v: [16, n, C]`.
#[inline(always)]
fn input_block<T: Real>(pad: &[T], c: usize, t: &Tiles, (b0, n): (usize, usize), v: &mut [T]) {
    let (pw_, plen) = (t.padded_w(), t.padded_len());
    for k in 0..n {
        let (img, i, j) = tile_at(b0 + k, t);
        let src: [usize; 16] =
            std::array::from_fn(|q| (img * plen + (2 * i + q / 4) * pw_ + 2 * j + q % 4) * c);
        by_lanes!(c, |at, L| {
            let d = arr16(|q| Lanes::<T, L>::load(pad, src[q] + at));
            for (p, r) in input_tile(d).into_iter().enumerate() {
                let o = (p * n + k) * c + at;
                v[o..o + L].copy_from_slice(&r.0);
            }
        })
    }
}

/// [`output_tile`] of tiles `b0..b0 + n` of a unit from `m: [16, n, O]`,
/// into the unit's output frames `frame: [nb, 2·th·2·tw, O]`.
#[inline(always)]
fn output_block<T: Real>(m: &[T], o: usize, t: &Tiles, (b0, n): (usize, usize), frame: &mut [T]) {
    let (tw2, flen) = (2 * t.tw, 4 * t.per_image());
    for k in 0..n {
        let (img, i, j) = tile_at(b0 + k, t);
        let dst: [usize; 4] =
            std::array::from_fn(|q| (img * flen + (2 * i + q / 2) * tw2 + 2 * j + q % 2) * o);
        by_lanes!(o, |at, L| {
            let v = arr16(|p| Lanes::<T, L>::load(m, (p * n + k) * o + at));
            for (q, r) in output_tile(v).into_iter().enumerate() {
                frame[dst[q] + at..dst[q] + at + L].copy_from_slice(&r.0);
            }
        })
    }
}

/// [`output_tile_adjoint`] of tiles `b0..b0 + n` of a unit from its
/// output-gradient frames `frame: [nb, 2·th·2·tw, O]`, into `dm: [16, n, O]`.
#[inline(always)]
fn output_adjoint_block<T: Real>(
    frame: &[T],
    o: usize,
    t: &Tiles,
    (b0, n): (usize, usize),
    dm: &mut [T],
) {
    let (tw2, flen) = (2 * t.tw, 4 * t.per_image());
    for k in 0..n {
        let (img, i, j) = tile_at(b0 + k, t);
        let src: [usize; 4] =
            std::array::from_fn(|q| (img * flen + (2 * i + q / 2) * tw2 + 2 * j + q % 2) * o);
        by_lanes!(o, |at, L| {
            let y = [0, 1, 2, 3].map(|q| Lanes::<T, L>::load(frame, src[q] + at));
            for (p, r) in output_tile_adjoint(y).into_iter().enumerate() {
                let d = (p * n + k) * o + at;
                dm[d..d + L].copy_from_slice(&r.0);
            }
        })
    }
}

/// [`input_tile_adjoint`] of tiles `b0..b0 + n` of a unit from
/// `dv: [16, n, C]`, added into its padded input-gradient frames
/// `acc: [nb, padded, C]`.
#[inline(always)]
fn input_adjoint_block<T: Real>(
    dv: &[T],
    c: usize,
    t: &Tiles,
    (b0, n): (usize, usize),
    acc: &mut [T],
) {
    let (pw_, plen) = (t.padded_w(), t.padded_len());
    for k in 0..n {
        let (img, i, j) = tile_at(b0 + k, t);
        let dst: [usize; 16] =
            std::array::from_fn(|q| (img * plen + (2 * i + q / 4) * pw_ + 2 * j + q % 4) * c);
        by_lanes!(c, |at, L| {
            let v = arr16(|p| Lanes::<T, L>::load(dv, (p * n + k) * c + at));
            for (q, r) in input_tile_adjoint(v).into_iter().enumerate() {
                r.add_to(acc, dst[q] + at);
            }
        })
    }
}

/// The 16 products of a block, `dst_p [rows, cols] (+)= lhs_p · rhs_p`,
/// one after the other on the calling thread.
fn products<'a, T: Real + 'a>(
    (rows, cols, inner): (usize, usize, usize),
    dst: &mut [T],
    add: bool,
    lhs: impl Fn(usize) -> Mat<'a, T>,
    rhs: impl Fn(usize) -> Mat<'a, T>,
) {
    for (p, d) in dst[..POS * rows * cols]
        .chunks_exact_mut((rows * cols).max(1))
        .enumerate()
        .take(POS)
    {
        let d = if add {
            Dst::Add(d)
        } else {
            Dst::Fresh(as_uninit(d))
        };
        gemm(
            (rows, cols, inner),
            d,
            (cols, 1),
            lhs(p),
            rhs(p),
            Threads::One,
        );
    }
}

/// `out` cut into the runs of the image ranges `units`, `per_image`
/// elements per image.
fn split_units<'a, T>(
    mut out: &'a mut [T],
    units: &[std::ops::Range<usize>],
    per_image: usize,
) -> Vec<&'a mut [T]> {
    units
        .iter()
        .map(|r| {
            let (head, tail) = std::mem::take(&mut out).split_at_mut(r.len() * per_image);
            out = tail;
            head
        })
        .collect()
}

/// The forward convolution of `x: [B, C, H, W]` with `w: [O, C, 3, 3]`
/// (geometry `g`: a dense 3x3 kernel, stride 1): `[B, O, Ho, Wo]`.
pub(crate) fn forward<T: Real>(x: &[T], w: &[T], g: &ConvGeometry, o: usize) -> Vec<T> {
    assert!(shape_fits(g, 1), "winograd: unsupported convolution {g:?}");
    let t = Tiles::new(g);
    let c = g.c;
    let (hw, ohw) = (g.h * g.w, g.ho * g.wo);
    let plan = Plan::new(g, &t, std::mem::size_of::<T>());
    let u = kernel_transform(w, o, c);
    let (nbm, blk, flen) = (plan.max_images(), plan.blk, 4 * t.per_image());
    let mut y: Vec<T> = Vec::with_capacity(g.b * o * ohw);
    let outs = split_units(
        &mut y.spare_capacity_mut()[..g.b * o * ohw],
        &plan.units,
        o * ohw,
    );
    plan.units.clone().into_par_iter().zip(outs).for_each_init(
        || {
            (
                vec![T::zero(); hw.max(ohw) * c.max(o)],
                vec![T::zero(); nbm * t.padded_len() * c],
                vec![T::zero(); POS * blk * c],
                vec![T::zero(); POS * blk * o],
                vec![T::zero(); nbm * flen * o],
            )
        },
        |(xt, pad, v, m, frame), (r, out)| {
            let nb = r.len();
            for (img, x) in x[r.start * c * hw..r.end * c * hw]
                .chunks_exact(c * hw)
                .enumerate()
            {
                let plen = t.padded_len() * c;
                pad_channels_last(x, c, &t, xt, &mut pad[img * plen..(img + 1) * plen]);
            }
            for (b0, n) in plan.blocks(nb, &t) {
                simd(
                    #[inline(always)]
                    || input_block(pad, c, &t, (b0, n), v),
                );
                // M_p [n, O] = V_p [n, C] · U_p [C, O]
                products(
                    (n, o, c),
                    m,
                    false,
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
                    || output_block(m, o, &t, (b0, n), frame),
                );
            }
            // Each image's frame [Ho·Wo (cut from the even frame), O] -> [O, Ho·Wo].
            for (img, dst) in out.chunks_exact_mut(o * ohw).enumerate() {
                let f = &frame[img * flen * o..(img + 1) * flen * o];
                let src = if t.exact() {
                    f
                } else {
                    for row in 0..t.ho {
                        xt[row * t.wo * o..(row + 1) * t.wo * o]
                            .copy_from_slice(&f[row * 2 * t.tw * o..(row * 2 * t.tw + t.wo) * o]);
                    }
                    &xt[..ohw * o]
                };
                transpose(src, ohw, o, dst);
            }
        },
    );
    // SAFETY: the units cover all images, and each image was written by
    // its transpose.
    unsafe { y.set_len(g.b * o * ohw) };
    y
}

/// Units run in this many groups for the kernel gradient, each summing its
/// units' products into its own buffer (the groups' sums are then added in
/// order, so the result depends on the shape only).
const DW_GROUPS: usize = 4;

/// The gradients `(dx, dw)` of [`forward`] for the output gradient `dy`,
/// each computed only if asked for in `need` (empty otherwise).
pub(crate) fn backward<T: Real>(
    x: &[T],
    w: &[T],
    dy: &[T],
    g: &ConvGeometry,
    o: usize,
    (need_x, need_w): (bool, bool),
) -> (Vec<T>, Vec<T>) {
    assert!(shape_fits(g, 1), "winograd: unsupported convolution {g:?}");
    let t = Tiles::new(g);
    let c = g.c;
    let (hw, ohw, plen) = (g.h * g.w, g.ho * g.wo, t.padded_len());
    let plan = Plan::new(g, &t, std::mem::size_of::<T>());
    let u = if need_x {
        kernel_transform(w, o, c)
    } else {
        Vec::new()
    };
    let (nbm, blk, flen) = (plan.max_images(), plan.blk, 4 * t.per_image());
    let mut dx: Vec<T> = Vec::with_capacity(if need_x { g.b * c * hw } else { 0 });
    let outs: Vec<Option<&mut [MaybeUninit<T>]>> = if need_x {
        split_units(
            &mut dx.spare_capacity_mut()[..g.b * c * hw],
            &plan.units,
            c * hw,
        )
        .into_iter()
        .map(Some)
        .collect()
    } else {
        plan.units.iter().map(|_| None).collect()
    };
    // The units in DW_GROUPS runs of consecutive units.
    let mut work: Vec<_> = plan.units.iter().cloned().zip(outs).collect();
    let mut groups = Vec::new();
    for part in split_ranges(work.len(), DW_GROUPS).into_iter().rev() {
        groups.push(work.split_off(part.start));
    }
    groups.reverse();
    let dw_len = if need_w { POS * c * o } else { 0 };
    let parts: Vec<Vec<T>> = groups
        .into_par_iter()
        .map(|group| {
            let mut du = vec![T::zero(); dw_len];
            let mut xt = vec![T::zero(); hw.max(ohw) * c.max(o)];
            let mut pad = vec![T::zero(); if need_w { nbm * plen * c } else { 0 }];
            let mut acc = vec![T::zero(); if need_x { nbm * plen * c } else { 0 }];
            let mut frame = vec![T::zero(); nbm * flen * o];
            let mut dm = vec![T::zero(); POS * blk * o];
            let mut v = vec![T::zero(); POS * blk * c];
            for (r, out) in group {
                let nb = r.len();
                for (img, d) in dy[r.start * o * ohw..r.end * o * ohw]
                    .chunks_exact(o * ohw)
                    .enumerate()
                {
                    frame_channels_last(
                        d,
                        o,
                        &t,
                        &mut xt,
                        &mut frame[img * flen * o..(img + 1) * flen * o],
                    );
                }
                if need_w {
                    for (img, x) in x[r.start * c * hw..r.end * c * hw]
                        .chunks_exact(c * hw)
                        .enumerate()
                    {
                        pad_channels_last(
                            x,
                            c,
                            &t,
                            &mut xt,
                            &mut pad[img * plen * c..(img + 1) * plen * c],
                        );
                    }
                }
                if need_x {
                    acc[..nb * plen * c].fill(T::zero());
                }
                for (b0, n) in plan.blocks(nb, &t) {
                    simd(
                        #[inline(always)]
                        || output_adjoint_block(&frame, o, &t, (b0, n), &mut dm),
                    );
                    if need_w {
                        simd(
                            #[inline(always)]
                            || input_block(&pad, c, &t, (b0, n), &mut v),
                        );
                        // dU_p [C, O] += V_pᵀ [C, n] · dM_p [n, O]
                        products(
                            (c, o, n),
                            &mut du,
                            true,
                            |p| Mat {
                                data: &v[p * n * c..],
                                rs: 1,
                                cs: c,
                            },
                            |p| Mat {
                                data: &dm[p * n * o..],
                                rs: o,
                                cs: 1,
                            },
                        );
                    }
                    if need_x {
                        // dV_p [n, C] = dM_p [n, O] · U_pᵀ [O, C]
                        products(
                            (n, c, o),
                            &mut v,
                            false,
                            |p| Mat {
                                data: &dm[p * n * o..],
                                rs: o,
                                cs: 1,
                            },
                            |p| Mat {
                                data: &u[p * c * o..],
                                rs: 1,
                                cs: o,
                            },
                        );
                        simd(
                            #[inline(always)]
                            || input_adjoint_block(&v, c, &t, (b0, n), &mut acc),
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
            du
        })
        .collect();
    if need_x {
        // SAFETY: the units cover all images, and each image was written
        // by its transpose.
        unsafe { dx.set_len(g.b * c * hw) };
    }
    let dw = if need_w {
        let mut du = vec![T::zero(); dw_len];
        for part in &parts {
            for (d, &p) in du.iter_mut().zip(part) {
                *d += p;
            }
        }
        kernel_adjoint(&du, o, c)
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

    #[test]
    fn forward_and_gradients_match_the_direct_convolution_f64() {
        let mut rng = Rng::new(3);
        for ((b, c, h, wd), o, padding) in cases() {
            let g = ConvGeometry::new((b, c, h, wd), (3, 3), (1, 1), padding, (1, 1)).unwrap();
            let x = random(&mut rng, b * c * h * wd);
            let w = random(&mut rng, o * c * 9);
            let dy = random(&mut rng, b * o * g.ho * g.wo);
            let (y0, dx0, dw0) = direct(&x, &w, &dy, &g, o);
            let y = forward(&x, &w, &g, o);
            let (dx, dw) = backward(&x, &w, &dy, &g, o, (true, true));
            for (name, got, want) in [("y", &y, &y0), ("dx", &dx, &dx0), ("dw", &dw, &dw0)] {
                let err = max_err(got, want);
                assert!(err < 1e-13, "{name} of {g:?}: {err}");
            }
            // Each half alone gives the same values, the other one empty.
            let (dx_only, none) = backward(&x, &w, &dy, &g, o, (true, false));
            assert!(none.is_empty() && dx_only == dx);
            let (none, dw_only) = backward(&x, &w, &dy, &g, o, (false, true));
            assert!(none.is_empty() && dw_only == dw);
        }
    }

    #[test]
    fn f32_stays_close_to_f64() {
        let mut rng = Rng::new(4);
        let ((b, c, h, wd), o) = ((2, 32, 9, 8), 24);
        let g = ConvGeometry::new((b, c, h, wd), (3, 3), (1, 1), (1, 1), (1, 1)).unwrap();
        let x = random(&mut rng, b * c * h * wd);
        let w = random(&mut rng, o * c * 9);
        let dy = random(&mut rng, b * o * g.ho * g.wo);
        let (y0, dx0, dw0) = direct(&x, &w, &dy, &g, o);
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<_>>();
        let back = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
        let y = back(forward(&f(&x), &f(&w), &g, o));
        let (dx, dw) = backward(&f(&x), &f(&w), &f(&dy), &g, o, (true, true));
        for (name, got, want) in [("y", y, y0), ("dx", back(dx), dx0), ("dw", back(dw), dw0)] {
            let err = max_err(&got, &want);
            assert!(err < 1e-5, "{name}: {err}");
        }
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
    }
}
