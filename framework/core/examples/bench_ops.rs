//! Side-by-side timings of the custom CPU kernels in `parallax_core::ops`
//! against Candle's own ops, in one run:
//!
//! ```text
//! cargo run --release -p parallax-core --example bench_ops
//! ```
//!
//! - batch norm (+ ReLU), forward and forward + backward: each case runs
//!   `BENCH_ITERS` (default 3) interleaved rounds after one warm-up,
//!   alternating the variants so that machine noise hits them alike; the
//!   table shows medians and the ratio to Candle's op (the last row of each
//!   case). The backward is seeded with ones (`y.backward()`).
//! - conv2d on the layer shapes of a CIFAR ResNet-18 at batch 64: forward,
//!   input gradient and kernel gradient timed separately
//!   (`conv2d_backward` with one half asked for), in GFLOP/s and as a share
//!   of the GEMM peak measured the same way (Candle's f32 matmul on a few
//!   conv-like sizes), next to Candle's conv2d and the two convolutions its
//!   autograd runs for the gradients. One JSON line per layer follows each
//!   table row.
//!
//! Environment: `BENCH_FILTER=text` runs only the cases whose label
//! contains `text` (`BENCH_FILTER=-` for the convolutions only);
//! `BENCH_CANDLE=0` skips Candle's convolutions (slow); `BENCH_STAT=min`
//! reports the fastest run instead of the median (steadier on a shared
//! machine); `BENCH_GEMM="m,k,n;..."` times more GEMM sizes;
//! `BENCH_LAYOUTS=fwd|bwd|im2col` times the GEMM stride arrangements and
//! unfoldings that `ops::conv2d` chooses between, instead of the tables.

use candle_core::{DType, Device, Result, Tensor, Var};
use parallax_core::ops::batch_norm::{batch_norm_relu_train, batch_norm_train};
use parallax_core::ops::conv2d::{conv2d_backward, conv2d_with, ColsLayout, Conv2dConfig, Im2col};
use parallax_core::rng::Rng;
use std::time::Instant;

type Forward<'a> = Box<dyn Fn(&[Tensor]) -> Result<Tensor> + 'a>;

struct Variant<'a> {
    name: &'static str,
    forward: Forward<'a>,
}

fn variant<'a>(name: &'static str, f: impl Fn(&[Tensor]) -> Result<Tensor> + 'a) -> Variant<'a> {
    Variant {
        name,
        forward: Box::new(f),
    }
}

/// Forward and forward+backward wall time of one call, in seconds. Inputs
/// flagged in `trainable` are variables and must receive a gradient.
fn time_once(forward: &Forward<'_>, inputs: &[Tensor], trainable: &[bool]) -> Result<(f64, f64)> {
    let ts: Vec<Tensor> = inputs
        .iter()
        .zip(trainable)
        .map(|(t, &var)| {
            Ok(if var {
                Var::from_tensor(t)?.as_tensor().clone()
            } else {
                t.clone()
            })
        })
        .collect::<Result<_>>()?;
    let start = Instant::now();
    let y = forward(&ts)?;
    let fwd = start.elapsed().as_secs_f64();
    let grads = y.backward()?;
    for (t, _) in ts.iter().zip(trainable).filter(|(_, &var)| var) {
        grads.get(t).expect("no gradient reached an input");
    }
    drop(grads);
    drop(y);
    Ok((fwd, start.elapsed().as_secs_f64()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs the variants interleaved; the last one is the baseline (Candle).
fn bench(
    case: &str,
    inputs: &[Tensor],
    trainable: &[bool],
    variants: &[Variant<'_>],
    iters: usize,
) -> Result<()> {
    let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
    let variants: Vec<&Variant<'_>> = variants
        .iter()
        .filter(|v| format!("{case} {}", v.name).contains(&filter))
        .collect();
    if variants.is_empty() {
        return Ok(());
    }
    let mut fwd = vec![Vec::new(); variants.len()];
    let mut total = vec![Vec::new(); variants.len()];
    for round in 0..=iters {
        for (i, v) in variants.iter().enumerate() {
            let (f, t) = time_once(&v.forward, inputs, trainable)?;
            if round > 0 {
                fwd[i].push(f);
                total[i].push(t);
            }
        }
    }
    let base_fwd = median(fwd[variants.len() - 1].clone());
    let base_total = median(total[variants.len() - 1].clone());
    for (i, v) in variants.iter().enumerate() {
        let (f, t) = (median(fwd[i].clone()), median(total[i].clone()));
        println!(
            "| {case:<50} | {:<17} | {:>8.1} | {:>10.1} | {:>9.3} | {:>13.3} |",
            v.name,
            f * 1e3,
            t * 1e3,
            f / base_fwd,
            t / base_total
        );
    }
    Ok(())
}

/// Candle's training-mode batch norm (candle_nn, elementary ops).
fn candle_bn(ts: &[Tensor], relu: bool) -> Result<Tensor> {
    let c = ts[1].dim(0)?;
    let bn = candle_nn::BatchNorm::new(
        c,
        Tensor::zeros(c, DType::F32, &Device::Cpu)?,
        Tensor::ones(c, DType::F32, &Device::Cpu)?,
        ts[1].clone(),
        ts[2].clone(),
        1e-5,
    )?;
    let y = bn.forward_train(&ts[0])?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// Median wall time in seconds of `f` over `iters` runs after one warm-up.
fn time_median(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    if std::env::var("BENCH_STAT").as_deref() == Ok("min") {
        return Ok(times.iter().copied().fold(f64::INFINITY, f64::min));
    }
    Ok(median(times))
}

/// GFLOP/s of Candle's f32 matmul `[m,k]·[k,n]`: the GEMM peak the
/// convolutions are compared with (they run the same GEMM library).
fn gemm_peak(rng: &mut Rng, (m, k, n): (usize, usize, usize), iters: usize) -> Result<f64> {
    let a = rng.normal_tensor(&[m, k], 0.0, 1.0, DType::F32, &Device::Cpu)?;
    let b = rng.normal_tensor(&[k, n], 0.0, 1.0, DType::F32, &Device::Cpu)?;
    let t = time_median(iters, || a.matmul(&b).map(drop))?;
    Ok(2.0 * (m * k * n) as f64 / t / 1e9)
}

/// One convolution layer of the benchmark.
struct ConvLayer {
    name: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    stride: usize,
    padding: usize,
}

/// Candle's own conv2d input gradient, as its autograd computes it (a
/// conv_transpose2d of the output gradient).
fn candle_dx(x: &Tensor, w: &Tensor, dy: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let (kh, h) = (w.dim(2)?, x.dim(2)?);
    let out_size = (dy.dim(2)? - 1) * stride + kh - 2 * padding;
    dy.conv_transpose2d(w, padding, h - out_size, stride, 1)
}

/// Candle's own conv2d kernel gradient, as its autograd computes it (a
/// conv2d of the transposed input by the transposed output gradient).
fn candle_dw(x: &Tensor, w: &Tensor, dy: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let dw = x
        .transpose(0, 1)?
        .conv2d(&dy.transpose(0, 1)?, padding, 1, stride, 1)?
        .transpose(0, 1)?;
    dw.narrow(2, 0, w.dim(2)?)?.narrow(3, 0, w.dim(3)?)
}

/// Per-op GFLOP/s of the convolutions of a CIFAR ResNet-18 at batch 64:
/// forward, input gradient and kernel gradient, ours and Candle's, next to
/// the GEMM peak. Prints a table and one JSON line per layer.
fn conv_table(rng: &mut Rng, iters: usize) -> Result<()> {
    let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
    let with_candle = std::env::var("BENCH_CANDLE").map_or(true, |v| v != "0");
    let b = 64;
    let layers = [
        ConvLayer {
            name: "stem 3->64 3x3 @32",
            x: [b, 3, 32, 32],
            w: [64, 3, 3, 3],
            stride: 1,
            padding: 1,
        },
        ConvLayer {
            name: "64->64 3x3 @32",
            x: [b, 64, 32, 32],
            w: [64, 64, 3, 3],
            stride: 1,
            padding: 1,
        },
        ConvLayer {
            name: "64->128 3x3 s2 @32",
            x: [b, 64, 32, 32],
            w: [128, 64, 3, 3],
            stride: 2,
            padding: 1,
        },
        ConvLayer {
            name: "64->128 1x1 s2 @32",
            x: [b, 64, 32, 32],
            w: [128, 64, 1, 1],
            stride: 2,
            padding: 0,
        },
        ConvLayer {
            name: "128->128 3x3 @16",
            x: [b, 128, 16, 16],
            w: [128, 128, 3, 3],
            stride: 1,
            padding: 1,
        },
        ConvLayer {
            name: "128->256 3x3 s2 @16",
            x: [b, 128, 16, 16],
            w: [256, 128, 3, 3],
            stride: 2,
            padding: 1,
        },
        ConvLayer {
            name: "128->256 1x1 s2 @16",
            x: [b, 128, 16, 16],
            w: [256, 128, 1, 1],
            stride: 2,
            padding: 0,
        },
        ConvLayer {
            name: "256->256 3x3 @8",
            x: [b, 256, 8, 8],
            w: [256, 256, 3, 3],
            stride: 1,
            padding: 1,
        },
        ConvLayer {
            name: "256->512 3x3 s2 @8",
            x: [b, 256, 8, 8],
            w: [512, 256, 3, 3],
            stride: 2,
            padding: 1,
        },
        ConvLayer {
            name: "256->512 1x1 s2 @8",
            x: [b, 256, 8, 8],
            w: [512, 256, 1, 1],
            stride: 2,
            padding: 0,
        },
        ConvLayer {
            name: "512->512 3x3 @4",
            x: [b, 512, 4, 4],
            w: [512, 512, 3, 3],
            stride: 1,
            padding: 1,
        },
    ];
    let mut peaks = vec![(512, 576, 4096), (128, 1152, 4096), (512, 4608, 1024)];
    // BENCH_GEMM="m,k,n;m,k,n": more GEMM shapes to time (they count
    // towards the peak too).
    for shape in std::env::var("BENCH_GEMM").unwrap_or_default().split(';') {
        let v: Vec<usize> = shape
            .split(',')
            .filter_map(|d| d.trim().parse().ok())
            .collect();
        if let &[m, k, n] = v.as_slice() {
            peaks.push((m, k, n));
        }
    }
    let mut peak = 0.0f64;
    for shape in peaks {
        let gf = gemm_peak(rng, shape, iters)?;
        println!(
            "gemm peak: candle matmul f32 {:?}x{:?}: {gf:.1} GFLOP/s",
            [shape.0, shape.1],
            [shape.1, shape.2]
        );
        println!(
            "{{\"bench\":\"gemm\",\"m\":{},\"k\":{},\"n\":{},\"gflops\":{gf:.2}}}",
            shape.0, shape.1, shape.2
        );
        peak = peak.max(gf);
    }
    println!(
        "\nconv2d, batch {b}, f32: GFLOP/s (ms) per op; % = ours / GEMM peak {peak:.1} GFLOP/s; \
         x = ours / candle"
    );
    println!(
        "| {:<20} | {:>17} | {:>17} | {:>17} | {:>5} | {:>5} | {:>5} | {:>6} | {:>6} | {:>6} |",
        "layer", "fwd", "dx", "dw", "fwd %", "dx %", "dw %", "fwd x", "dx x", "dw x"
    );
    println!(
        "|{:-<22}|{:-<19}|{:-<19}|{:-<19}|{:-<7}|{:-<7}|{:-<7}|{:-<8}|{:-<8}|{:-<8}|",
        "", "", "", "", "", "", "", "", "", ""
    );
    let mut total = [0.0f64; 6];
    for l in &layers {
        if !l.name.contains(&filter) {
            continue;
        }
        let x = rng.normal_tensor(&l.x, 0.0, 1.0, DType::F32, &Device::Cpu)?;
        let w = rng.normal_tensor(&l.w, 0.0, 0.1, DType::F32, &Device::Cpu)?;
        let cfg = Conv2dConfig::square(l.stride, l.padding);
        let y = conv2d_with(&x, &w, &cfg)?;
        let dy = rng.normal_tensor(y.dims(), 0.0, 1.0, DType::F32, &Device::Cpu)?;
        let flops = 2.0 * (y.elem_count() * l.w[1] * l.w[2] * l.w[3]) as f64;
        let ours = [
            time_median(iters, || conv2d_with(&x, &w, &cfg).map(drop))?,
            time_median(iters, || {
                conv2d_backward(&x, &w, &dy, &cfg, (true, false)).map(drop)
            })?,
            time_median(iters, || {
                conv2d_backward(&x, &w, &dy, &cfg, (false, true)).map(drop)
            })?,
        ];
        let theirs = if with_candle {
            [
                time_median(iters, || x.conv2d(&w, l.padding, l.stride, 1, 1).map(drop))?,
                time_median(iters, || {
                    candle_dx(&x, &w, &dy, l.stride, l.padding).map(drop)
                })?,
                time_median(iters, || {
                    candle_dw(&x, &w, &dy, l.stride, l.padding).map(drop)
                })?,
            ]
        } else {
            [f64::NAN; 3]
        };
        let gf = |t: f64| flops / t / 1e9;
        for i in 0..3 {
            total[i] += ours[i];
            total[3 + i] += theirs[i];
        }
        println!(
            "| {:<20} | {:>6.1} ({:>7.1}) | {:>6.1} ({:>7.1}) | {:>6.1} ({:>7.1}) | {:>5.0} | {:>5.0} | {:>5.0} | {:>6.2} | {:>6.2} | {:>6.2} |",
            l.name,
            gf(ours[0]), ours[0] * 1e3,
            gf(ours[1]), ours[1] * 1e3,
            gf(ours[2]), ours[2] * 1e3,
            100.0 * gf(ours[0]) / peak,
            100.0 * gf(ours[1]) / peak,
            100.0 * gf(ours[2]) / peak,
            theirs[0] / ours[0],
            theirs[1] / ours[1],
            theirs[2] / ours[2],
        );
        let json = format!(
            "{{\"bench\":\"conv2d\",\"layer\":\"{}\",\"x\":{:?},\"w\":{:?},\"stride\":{},\"padding\":{},\"gflop\":{:.3},\
             \"ours_ms\":{{\"fwd\":{:.3},\"dx\":{:.3},\"dw\":{:.3}}},\"candle_ms\":{{\"fwd\":{:.3},\"dx\":{:.3},\"dw\":{:.3}}},\"gemm_peak_gflops\":{peak:.2}}}",
            l.name, l.x, l.w, l.stride, l.padding, flops / 1e9,
            ours[0] * 1e3, ours[1] * 1e3, ours[2] * 1e3,
            theirs[0] * 1e3, theirs[1] * 1e3, theirs[2] * 1e3,
        );
        println!("{}", json.replace("NaN", "null"));
    }
    println!(
        "total ms: ours fwd {:.1} dx {:.1} dw {:.1} | candle fwd {:.1} dx {:.1} dw {:.1}",
        total[0] * 1e3,
        total[1] * 1e3,
        total[2] * 1e3,
        total[3] * 1e3,
        total[4] * 1e3,
        total[5] * 1e3
    );
    Ok(())
}

fn main() -> Result<()> {
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    println!(
        "rayon threads: {}; {iters} rounds after a warm-up; median wall times; \
         ratio = variant / candle (last row of each case)",
        rayon::current_num_threads()
    );
    println!(
        "| {:<50} | {:<17} | {:>8} | {:>10} | {:>9} | {:>13} |",
        "case", "variant", "fwd ms", "fwd+bwd ms", "fwd ratio", "fwd+bwd ratio"
    );
    println!(
        "|{:-<52}|{:-<19}|{:-<10}|{:-<12}|{:-<11}|{:-<15}|",
        "", "", "", "", "", ""
    );

    for shape in [
        vec![512usize, 32, 28, 28],
        vec![512, 64, 14, 14],
        vec![512, 512],
    ] {
        let c = shape[1];
        let x = rng.normal_tensor(shape.as_slice(), 0.5, 2.0, DType::F32, &dev)?;
        let w = rng.normal_tensor(c, 1.0, 0.2, DType::F32, &dev)?;
        let b = rng.normal_tensor(c, 0.0, 0.2, DType::F32, &dev)?;
        let inputs = [x, w, b];
        bench(
            &format!("batch norm {shape:?}"),
            &inputs,
            &[true; 3],
            &[
                variant("ours", |ts| {
                    Ok(batch_norm_train(&ts[0], &ts[1], &ts[2], 1e-5)?.0)
                }),
                variant("candle", |ts| candle_bn(ts, false)),
            ],
            iters,
        )?;
        if shape.len() == 4 {
            bench(
                &format!("batch norm + relu {shape:?}"),
                &inputs,
                &[true; 3],
                &[
                    variant("ours (fused)", |ts| {
                        Ok(batch_norm_relu_train(&ts[0], &ts[1], &ts[2], 1e-5)?.0)
                    }),
                    variant("candle", |ts| candle_bn(ts, true)),
                ],
                iters,
            )?;
        }
    }

    if std::env::var("BENCH_LAYOUTS").is_ok() {
        return gemm_layouts(iters);
    }
    conv_table(&mut rng, iters)?;
    Ok(())
}

/// Direct `gemm` call: dst (m×n) = lhs (m×k) · rhs (k×n), strides as
/// (row, column) pairs.
#[allow(clippy::too_many_arguments)]
fn raw_gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (drs, dcs): (isize, isize),
    lhs: &[f32],
    (lrs, lcs): (isize, isize),
    rhs: &[f32],
    (rrs, rcs): (isize, isize),
) {
    raw_gemm_acc(
        (m, n, k),
        dst,
        (drs, dcs),
        lhs,
        (lrs, lcs),
        rhs,
        (rrs, rcs),
        false,
    )
}

#[allow(clippy::too_many_arguments)]
fn raw_gemm_acc(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (drs, dcs): (isize, isize),
    lhs: &[f32],
    (lrs, lcs): (isize, isize),
    rhs: &[f32],
    (rrs, rcs): (isize, isize),
    acc: bool,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dcs,
            drs,
            acc,
            lhs.as_ptr(),
            lcs,
            lrs,
            rhs.as_ptr(),
            rcs,
            rrs,
            if acc { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    }
}

/// `BENCH_LAYOUTS`: GEMM throughput of the stride arrangements available
/// to the convolution (A: output channels as `m`, pixels as `n`, unfolded
/// rows read in place; B: the transposed problem on tap-major columns; C:
/// one GEMM per image; X: input gradient; W: kernel gradient), on chunk
/// shapes of the ResNet-18 layers, and the cost of the two unfoldings.
fn gemm_layouts(iters: usize) -> Result<()> {
    for (o, k, hw, nb) in [
        (64usize, 576usize, 1024usize, 3usize),
        (128, 1152, 256, 7),
        (512, 4608, 16, 28),
        (64, 576, 1024, 16),
        (256, 2304, 64, 14),
    ] {
        let n = hw * nb;
        let w = vec![0.5f32; o * k];
        let cols = vec![0.25f32; k * n];
        let mut dst = vec![0.0f32; o * n];
        let flops = 2.0 * (o * k * n) as f64;
        let (o_, k_, n_, hw_) = (o as isize, k as isize, n as isize, hw as isize);
        let mut run = |name: &str, f: &mut dyn FnMut(&mut [f32])| -> Result<()> {
            let t = time_median(iters, || {
                f(&mut dst);
                Ok(())
            })?;
            println!(
                "gemm layout O{o} K{k} N{n} (hw {hw}) {name:<40}: {:.1} GFLOP/s",
                flops / t / 1e9
            );
            Ok(())
        };
        // A: m=O, n=N; dst [N, O] (NHWC); lhs W row-major; rhs pixel-major cols.
        run("A m=O n=N dst[N,O] rhs pixel-major", &mut |d| {
            raw_gemm((o, n, k), d, (1, o_), &w, (k_, 1), &cols, (1, k_))
        })?;
        // A2: same with W transposed storage.
        run("A2 m=O n=N dst[N,O] lhs W^T rhs pixel", &mut |d| {
            raw_gemm((o, n, k), d, (1, o_), &w, (1, o_), &cols, (1, k_))
        })?;
        // B: dst [O, N] row-major; rhs tap-major cols.
        run("B m=O n=N dst[O,N] rhs tap-major", &mut |d| {
            raw_gemm((o, n, k), d, (n_, 1), &w, (k_, 1), &cols, (n_, 1))
        })?;
        // B2: dst [O, N] row-major; rhs pixel-major.
        run("B2 dst[O,N] rhs pixel-major", &mut |d| {
            raw_gemm((o, n, k), d, (n_, 1), &w, (k_, 1), &cols, (1, k_))
        })?;
        // E: dst [N, O]; rhs tap-major.
        run("E dst[N,O] rhs tap-major", &mut |d| {
            raw_gemm((o, n, k), d, (1, o_), &w, (k_, 1), &cols, (n_, 1))
        })?;
        if std::env::var("BENCH_LAYOUTS").as_deref() == Ok("im2col") {
            let c = k / 9;
            let side = (hw as f64).sqrt() as usize;
            let x = Tensor::ones((nb, c, side, side), DType::F32, &Device::Cpu)?;
            for layout in [ColsLayout::TapMajor, ColsLayout::PixelMajor] {
                let op = Im2col::new((3, 3), &Conv2dConfig::square(1, 1), layout);
                let t = time_median(iters, || x.apply_op1(op).map(drop))?;
                let gb = (k * n * 4) as f64 / 1e9;
                println!("im2col {layout:?} C{c} {side}x{side} nb{nb}: {:.2} ms, {:.1} GB/s written, {:.1} ms per 4.8 GFLOP-equivalent", t * 1e3, gb / t, t * 1e3);
            }
            continue;
        }
        if std::env::var("BENCH_LAYOUTS").as_deref() == Ok("bwd") {
            let mut dx = vec![0.0f32; k * n];
            let dyv = vec![0.5f32; o * n];
            let mut runx = |name: &str, f: &mut dyn FnMut(&mut [f32])| -> Result<()> {
                let t = time_median(iters, || {
                    f(&mut dx);
                    Ok(())
                })?;
                println!(
                    "gemm layout O{o} K{k} N{n} (hw {hw}) {name:<40}: {:.1} GFLOP/s",
                    flops / t / 1e9
                );
                Ok(())
            };
            runx("X1 dx tap chunk dst[K,N] lhs dy_t", &mut |d| {
                raw_gemm((n, k, o), d, (1, n_), &dyv, (1, n_), &w, (k_, 1))
            })?;
            runx("X2 dx pix dst[N,K] rhs dyT[N,O]", &mut |d| {
                raw_gemm((k, n, o), d, (1, k_), &w, (1, k_), &dyv, (1, o_))
            })?;
            runx("X3 dx pix dst[N,K] rhs dy_t[O,N]", &mut |d| {
                raw_gemm((k, n, o), d, (1, k_), &w, (1, k_), &dyv, (n_, 1))
            })?;
            runx("X4 dx per-image tap from dy", &mut |d| {
                for i in 0..nb {
                    raw_gemm(
                        (hw, k, o),
                        &mut d[i * k * hw..],
                        (1, hw_),
                        &dyv[i * o * hw..],
                        (1, hw_),
                        &w,
                        (k_, 1),
                    );
                }
            })?;
            let mut dwv = vec![0.0f32; o * k];
            let mut runw = |name: &str, f: &mut dyn FnMut(&mut [f32])| -> Result<()> {
                let t = time_median(iters, || {
                    f(&mut dwv);
                    Ok(())
                })?;
                println!(
                    "gemm layout O{o} K{k} N{n} (hw {hw}) {name:<40}: {:.1} GFLOP/s",
                    flops / t / 1e9
                );
                Ok(())
            };
            runw("W1 dw tap cols, dy_t", &mut |d| {
                raw_gemm((o, k, n), d, (k_, 1), &dyv, (n_, 1), &cols, (1, n_))
            })?;
            runw("W1t dw^T tap cols, dy_t", &mut |d| {
                raw_gemm((k, o, n), d, (1, k_), &cols, (n_, 1), &dyv, (1, n_))
            })?;
            runw("W2 dw pix cols, dyT", &mut |d| {
                raw_gemm((o, k, n), d, (k_, 1), &dyv, (1, o_), &cols, (k_, 1))
            })?;
            runw("W2b dw pix cols, dy_t", &mut |d| {
                raw_gemm((o, k, n), d, (k_, 1), &dyv, (n_, 1), &cols, (k_, 1))
            })?;
            runw("W3 dw tap cols, dy per image acc", &mut |d| {
                for i in 0..nb {
                    raw_gemm_acc(
                        (o, k, hw),
                        d,
                        (k_, 1),
                        &dyv[i * o * hw..],
                        (hw_, 1),
                        &cols[i * hw..],
                        (1, n_),
                        i > 0,
                    );
                }
            })?;
            runw("W4 dw img-tap cols, dy per image acc", &mut |d| {
                for i in 0..nb {
                    raw_gemm_acc(
                        (o, k, hw),
                        d,
                        (k_, 1),
                        &dyv[i * o * hw..],
                        (hw_, 1),
                        &cols[i * k * hw..],
                        (1, hw_),
                        i > 0,
                    );
                }
            })?;
            continue;
        }
        // C: per image, dst [O, hw] per image (NCHW), rhs tap-major chunk.
        run("C per-image dst[O,hw] rhs tap-major", &mut |d| {
            for i in 0..nb {
                raw_gemm(
                    (o, hw, k),
                    &mut d[i * o * hw..],
                    (hw_, 1),
                    &w,
                    (k_, 1),
                    &cols[i * hw..],
                    (n_, 1),
                );
            }
        })?;
        // C2: per image, rhs per-image tap-major [K, hw].
        run("C2 per-image dst[O,hw] rhs img tap-major", &mut |d| {
            for i in 0..nb {
                raw_gemm(
                    (o, hw, k),
                    &mut d[i * o * hw..],
                    (hw_, 1),
                    &w,
                    (k_, 1),
                    &cols[i * k * hw..],
                    (hw_, 1),
                );
            }
        })?;
        // C3: per image, rhs pixel-major.
        run("C3 per-image dst[O,hw] rhs pixel-major", &mut |d| {
            for i in 0..nb {
                raw_gemm(
                    (o, hw, k),
                    &mut d[i * o * hw..],
                    (hw_, 1),
                    &w,
                    (k_, 1),
                    &cols[i * hw * k..],
                    (1, k_),
                );
            }
        })?;
    }
    Ok(())
}
