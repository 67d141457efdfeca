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
use parallax_core::ops::conv2d::{conv2d, conv2d_unfused, ColsLayout, Im2col};
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

/// Pixel-major columns with the matmul broadcast over the batch instead of
/// one 2-D GEMM (stride 1, padding 1).
fn conv_broadcast(ts: &[Tensor]) -> Result<Tensor> {
    let (b, c, h, wd) = ts[0].dims4()?;
    let (o, _, kh, kw) = ts[1].dims4()?;
    let op = Im2col {
        kh,
        kw,
        stride: 1,
        padding: 1,
        layout: ColsLayout::PixelMajor,
    };
    let g = op.geometry(&[b, c, h, wd])?;
    let cols = ts[0].apply_op1(op)?.reshape((b, g.ho * g.wo, g.patch()))?;
    let w2 = ts[1].reshape((o, g.patch()))?.t()?;
    cols.broadcast_matmul(&w2)?
        .reshape((b, g.ho, g.wo, o))?
        .permute((0, 3, 1, 2))?
        .contiguous()
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

    // (x, w, all variants?, first layer?)
    let convs = [
        ([512usize, 32, 14, 14], [64usize, 32, 3, 3], true, false),
        ([512, 1, 28, 28], [32, 1, 3, 3], true, true),
        ([512, 64, 7, 7], [128, 64, 3, 3], false, false),
    ];
    for (xs, ws, all, first) in convs {
        let x = rng.normal_tensor(&xs, 0.0, 1.0, DType::F32, &dev)?;
        let w = rng.normal_tensor(&ws, 0.0, 0.1, DType::F32, &dev)?;
        let inputs = [x, w];
        let mut variants = vec![variant("ours (fused)", |ts| conv2d(&ts[0], &ts[1], 1, 1))];
        if all {
            variants.push(variant("unfused tap-major", |ts| {
                conv2d_unfused(&ts[0], &ts[1], 1, 1, ColsLayout::TapMajor)
            }));
            variants.push(variant("unfused pixel-maj", |ts| {
                conv2d_unfused(&ts[0], &ts[1], 1, 1, ColsLayout::PixelMajor)
            }));
            variants.push(variant("unfused pix. bmm", conv_broadcast));
        }
        variants.push(variant("candle", |ts| ts[0].conv2d(&ts[1], 1, 1, 1, 1)));
        let case = format!("conv2d x{xs:?} w{ws:?} s1 p1");
        bench(&case, &inputs, &[true, true], &variants, iters)?;
        if first {
            // A first layer: the images need no gradient.
            let variants = [
                variant("ours (fused)", |ts| conv2d(&ts[0], &ts[1], 1, 1)),
                variant("candle", |ts| ts[0].conv2d(&ts[1], 1, 1, 1, 1)),
            ];
            let case = format!("{case}, x const");
            bench(&case, &inputs, &[false, true], &variants, iters)?;
        }
    }
    Ok(())
}
