//! Side-by-side timings of the custom CPU kernels in `parallax_core::ops`
//! against Candle's own ops, forward + backward, in one run:
//!
//! ```text
//! cargo run --release -p parallax-core --example bench_ops
//! ```
//!
//! Each case runs `BENCH_ITERS` (default 3) interleaved rounds after one
//! warm-up, alternating the variants so that machine noise hits them alike;
//! the table shows medians and the ratio to Candle's op (the last row of each
//! case). The backward is seeded with ones (`y.backward()`), the same for
//! every variant. `BENCH_FILTER=text` runs only the variants whose
//! "case variant" label contains `text`.

use candle_core::{DType, Device, Result, Tensor, Var};
use parallax_core::ops::batch_norm::{batch_norm_relu_train, batch_norm_train};
use parallax_core::ops::conv2d::{conv2d_backward, conv2d_with, Conv2dConfig};
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
    let peaks = [(512, 576, 4096), (128, 1152, 4096), (512, 4608, 1024)];
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

    conv_table(&mut rng, iters)?;
    Ok(())
}
