//! An experiment for the kernels issue: a stride-1 3x3 convolution forward,
//! channels-last, computed two ways on the same data, side by side:
//!
//! - unfold + one product: the input unfolded into `[pixels, 9·C]`
//!   (tap-major within a pixel, zeros at the borders), then one GEMM with
//!   the `[9·C, C_out]` kernel;
//! - per-tap products, no unfolding: the input padded by one pixel on each
//!   side and laid out as one long `[rows, C]` matrix per chunk of images;
//!   each of the nine taps is a GEMM that reads that matrix in place at a
//!   constant row offset and accumulates into the output, computed at every
//!   padded position (the border rows are computed and dropped: 13% more
//!   products at 32x32, 27% at 16x16, 56% at 8x8).
//!
//! Both split the batch into chunks of images run in parallel with
//! single-threaded GEMMs (as `ops::conv2d` does), use `gemm` directly, and
//! leave the layout changes to and from NCHW out of the timing. It prints
//! the fastest of 7 runs of each, the useful GFLOP/s (border products not
//! counted), their ratio, and the largest difference on the interior
//! outputs.
//!
//! ```text
//! cargo run --release -p parallax-core --example conv_taps -- BATCH C_IN C_OUT SIDE [CHUNK]
//! cargo run --release -p parallax-core --example conv_taps -- 64 64 64 32 8
//! ```

use rayon::prelude::*;
use std::time::Instant;

/// `dst (+)= lhs · rhs`, all row-major with unit column stride, one thread.
///
/// # Safety
/// The three matrices must lie inside their allocations and `dst` must not
/// overlap the inputs.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_rs: usize,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        1,
        lhs_rs as isize,
        rhs,
        1,
        rhs_rs as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

fn arg(args: &[String], i: usize, name: &str, default: Option<usize>) -> usize {
    match args.get(i) {
        Some(a) => a
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a positive integer, got {a:?}")),
        None => default.unwrap_or_else(|| {
            panic!("usage: conv_taps BATCH C_IN C_OUT SIDE [CHUNK] (missing {name})")
        }),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let b = arg(&args, 0, "BATCH", None);
    let c = arg(&args, 1, "C_IN", None);
    let co = arg(&args, 2, "C_OUT", None);
    let side = arg(&args, 3, "SIDE", None);
    let chunk = arg(&args, 4, "CHUNK", Some(8)).clamp(1, b.max(1));
    let (h, w) = (side, side);
    let value = |i: usize, p: usize| ((i * p) % 1000) as f32 / 1000.0 - 0.5;
    let x: Vec<f32> = (0..b * h * w * c).map(|i| value(i, 7919)).collect();
    let kernel: Vec<f32> = (0..9 * c * co).map(|i| value(i, 104_729)).collect();

    // the padded input: per chunk, `slack` zero rows, the chunk's padded
    // images, `slack` zero rows (so every tap's offset stays inside)
    let (hp, wp) = (h + 2, w + 2);
    let slack = wp + 1;
    let chunks = b.div_ceil(chunk);
    let chunk_rows = chunk * hp * wp + 2 * slack;
    let mut padded = vec![0f32; chunks * chunk_rows * c];
    for img in 0..b {
        let (ci, ii) = (img / chunk, img % chunk);
        for y in 0..h {
            for xx in 0..w {
                let src = ((img * h + y) * w + xx) * c;
                let row = ci * chunk_rows + slack + ii * hp * wp + (y + 1) * wp + xx + 1;
                padded[row * c..(row + 1) * c].copy_from_slice(&x[src..src + c]);
            }
        }
    }

    let flops = 2.0 * (b * h * w * 9 * c * co) as f64;
    let (mut unfold_s, mut taps_s) = (f64::MAX, f64::MAX);
    let mut out_unfold = vec![0f32; b * h * w * co];
    let mut out_taps = vec![0f32; chunks * chunk * hp * wp * co];
    for _ in 0..7 {
        let t = Instant::now();
        out_unfold
            .par_chunks_mut(chunk * h * w * co)
            .enumerate()
            .for_each(|(ci, o)| {
                let images = o.len() / (h * w * co);
                let m = images * h * w;
                let mut cols = vec![0f32; m * 9 * c];
                for i in 0..images {
                    let img = ci * chunk + i;
                    for y in 0..h {
                        for xx in 0..w {
                            let r = (i * h + y) * w + xx;
                            for tap in 0..9 {
                                let sy = (y + tap / 3).checked_sub(1).filter(|&v| v < h);
                                let sx = (xx + tap % 3).checked_sub(1).filter(|&v| v < w);
                                if let (Some(sy), Some(sx)) = (sy, sx) {
                                    let s = ((img * h + sy) * w + sx) * c;
                                    cols[(r * 9 + tap) * c..(r * 9 + tap + 1) * c]
                                        .copy_from_slice(&x[s..s + c]);
                                }
                            }
                        }
                    }
                }
                // SAFETY: cols is m x 9c, kernel 9c x co, o m x co.
                unsafe {
                    product(
                        (m, co, 9 * c),
                        o.as_mut_ptr(),
                        co,
                        false,
                        cols.as_ptr(),
                        9 * c,
                        kernel.as_ptr(),
                        co,
                    )
                };
            });
        unfold_s = unfold_s.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        out_taps
            .par_chunks_mut(chunk * hp * wp * co)
            .enumerate()
            .for_each(|(ci, o)| {
                let m = o.len() / co;
                let first = ci * chunk_rows + slack;
                for tap in 0..9 {
                    // rows of the padded input under this tap, for output row 0
                    let start = first + (tap / 3) * wp + tap % 3 - wp - 1;
                    // SAFETY: start + m <= the chunk's rows (the slack rows
                    // cover the offsets of +-(wp + 1)); the kernel slice of a
                    // tap is c x co.
                    unsafe {
                        product(
                            (m, co, c),
                            o.as_mut_ptr(),
                            co,
                            tap > 0,
                            padded.as_ptr().add(start * c),
                            c,
                            kernel.as_ptr().add(tap * c * co),
                            co,
                        )
                    };
                }
            });
        taps_s = taps_s.min(t.elapsed().as_secs_f64());
    }

    let mut max_diff = 0f32;
    for img in 0..b {
        let (ci, ii) = (img / chunk, img % chunk);
        for y in 0..h {
            for xx in 0..w {
                let q = ci * chunk * hp * wp + ii * hp * wp + (y + 1) * wp + xx + 1;
                for o in 0..co {
                    let a = out_unfold[((img * h + y) * w + xx) * co + o];
                    max_diff = max_diff.max((a - out_taps[q * co + o]).abs());
                }
            }
        }
    }
    println!(
        "{{\"batch\":{b},\"c_in\":{c},\"c_out\":{co},\"side\":{side},\"chunk\":{chunk},\
         \"unfold_ms\":{:.2},\"unfold_gflops\":{:.1},\"taps_ms\":{:.2},\"taps_gflops\":{:.1},\
         \"taps_over_unfold\":{:.3},\"max_diff\":{max_diff:e}}}",
        unfold_s * 1e3,
        flops / unfold_s / 1e9,
        taps_s * 1e3,
        flops / taps_s / 1e9,
        taps_s / unfold_s
    );
    assert!(
        max_diff < 1e-3,
        "the two computations disagree by {max_diff}"
    );
}
