//! Gradient checks of the custom CPU kernels in `parallax_core::ops`:
//! central finite differences in f64, independent reference forwards, and
//! comparisons with Candle's own ops in f32 (on shapes where Candle is right).

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use common::*;
use parallax_core::ops::batch_norm::{
    batch_norm_eval, batch_norm_relu_train, batch_norm_train, batch_norm_train_composite,
};
use parallax_core::ops::conv2d::{conv2d, conv2d_unfused, ColsLayout, Conv2dConfig};
use parallax_core::rng::Rng;

// ---------------------------------------------------------------- batch norm

/// Reference batch norm in plain f64 loops: (y, mean, biased var).
fn bn_reference(
    x: &Tensor,
    w: &[f64],
    b: &[f64],
    eps: f64,
    relu: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let dims = x.dims();
    let (n, c) = (dims[0], dims[1]);
    let s: usize = dims[2..].iter().product();
    let xv = values(x);
    let at = |i: usize, ch: usize, k: usize| (i * c + ch) * s + k;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    let mut y = vec![0.0; xv.len()];
    for ch in 0..c {
        let items: Vec<usize> = (0..n)
            .flat_map(|i| (0..s).map(move |k| (i, k)))
            .map(|(i, k)| at(i, ch, k))
            .collect();
        let m = items.iter().map(|&j| xv[j]).sum::<f64>() / items.len() as f64;
        let v = items.iter().map(|&j| (xv[j] - m).powi(2)).sum::<f64>() / items.len() as f64;
        for &j in &items {
            let z = (xv[j] - m) / (v + eps).sqrt() * w[ch] + b[ch];
            y[j] = if relu { z.max(0.0) } else { z };
        }
        mean[ch] = m;
        var[ch] = v;
    }
    (y, mean, var)
}

fn bn_inputs(seed: u64, shape: &[usize], dtype: DType) -> (Tensor, Tensor, Tensor) {
    let mut rng = Rng::new(seed);
    let c = shape[1];
    // A mean far from zero and per-channel scales exercise the centring.
    let x = normal(&mut rng, shape, 3.0, 2.0, dtype);
    let w = normal(&mut rng, &[c], 1.0, 0.5, dtype);
    let b = normal(&mut rng, &[c], 0.0, 0.5, dtype);
    (x, w, b)
}

fn check_bn_forward(shape: &[usize], relu: bool) {
    let (x, w, b) = bn_inputs(1, shape, DType::F64);
    let eps = 1e-5;
    let (y, mean, var) = if relu {
        batch_norm_relu_train(&x, &w, &b, eps).unwrap()
    } else {
        batch_norm_train(&x, &w, &b, eps).unwrap()
    };
    assert_eq!(y.dims(), shape);
    assert!(y.is_contiguous());
    let (ry, rm, rv) = bn_reference(&x, &values(&w), &values(&b), eps, relu);
    let errs = [
        rel_err(&values(&y), &ry, 1.0),
        rel_err(&values(&mean), &rm, 1.0),
        rel_err(&values(&var), &rv, 1.0),
    ];
    println!(
        "bn forward {shape:?} relu={relu}: rel err y/mean/var {}",
        fmt(&errs)
    );
    assert!(errs.iter().all(|&e| e < 1e-12), "{errs:?}");
}

#[test]
fn batch_norm_forward_matches_reference_f64() {
    check_bn_forward(&[3, 2, 4, 5], false);
    check_bn_forward(&[7, 3], false);
    check_bn_forward(&[2, 3, 6], false);
    check_bn_forward(&[3, 2, 4, 5], true);
    check_bn_forward(&[7, 3], true);
}

fn bn_gradcheck(shape: &[usize], relu: bool, upstream: bool) {
    let (x, w, b) = bn_inputs(2, shape, DType::F64);
    let mut rng = Rng::new(3);
    let r = normal(&mut rng, shape, 0.0, 1.0, DType::F64);
    let eps = 1e-5;
    if relu {
        // Finite differences must not cross the kink: keep pre-activations
        // away from zero, and make sure the mask is not trivial.
        let (pre, _, _) = bn_reference(&x, &values(&w), &values(&b), eps, false);
        let closest = pre.iter().map(|v| v.abs()).fold(f64::INFINITY, f64::min);
        assert!(
            closest > 1e-4,
            "pre-activation {closest} too close to the kink"
        );
        let zeros = pre.iter().filter(|&&v| v <= 0.0).count();
        assert!(zeros > 0 && zeros < pre.len(), "trivial ReLU mask");
    }
    let loss = move |ts: &[Tensor]| -> Result<Tensor> {
        let (y, _, _) = if relu {
            batch_norm_relu_train(&ts[0], &ts[1], &ts[2], eps)?
        } else {
            batch_norm_train(&ts[0], &ts[1], &ts[2], eps)?
        };
        if upstream {
            weighted_sum(&y, &r)
        } else {
            y.sum_all()
        }
    };
    let label = format!(
        "bn{} {shape:?} upstream={upstream}",
        if relu { "+relu" } else { "" }
    );
    if upstream || relu {
        gradcheck(&label, &[x, w, b], &loss, 1e-3);
    } else {
        // d sum(bn(x)) / dx is zero in exact arithmetic (and so is the
        // weight gradient, as sum(x_hat) = 0): check that directly, and the
        // finite differences against a unit scale (only their noise is left).
        let grads = gradcheck(&label, &[x, w, b], &loss, 1.0);
        let max_abs = |g: &[f64]| g.iter().map(|v| v.abs()).fold(0.0, f64::max);
        assert!(
            max_abs(&grads[0]) < 1e-12,
            "dx should vanish: {:?}",
            grads[0]
        );
        assert!(
            max_abs(&grads[1]) < 1e-12,
            "dweight should vanish: {:?}",
            grads[1]
        );
    }
}

#[test]
fn batch_norm_gradcheck_f64() {
    bn_gradcheck(&[3, 2, 4, 5], false, true);
    bn_gradcheck(&[3, 2, 4, 5], false, false);
    bn_gradcheck(&[6, 4], false, true);
    bn_gradcheck(&[4, 3, 7], false, true);
    // A spatial size that is not a multiple of the 8 accumulator lanes plus
    // enough elements to use several of them.
    bn_gradcheck(&[2, 2, 5, 3], false, true);
}

#[test]
fn batch_norm_relu_gradcheck_f64() {
    bn_gradcheck(&[3, 2, 4, 5], true, true);
    bn_gradcheck(&[6, 4], true, true);
    bn_gradcheck(&[3, 2, 4, 5], true, false);
}

#[test]
fn batch_norm_handles_non_contiguous_input() {
    let (x, w, b) = bn_inputs(4, &[3, 2, 5, 4], DType::F64);
    let xt = x.transpose(2, 3).unwrap(); // [3,2,4,5], strided
    assert!(!xt.is_contiguous());
    let (y1, m1, v1) = batch_norm_train(&xt, &w, &b, 1e-5).unwrap();
    let (y2, m2, v2) = batch_norm_train(&xt.contiguous().unwrap(), &w, &b, 1e-5).unwrap();
    assert_eq!(values(&y1), values(&y2));
    assert_eq!(values(&m1), values(&m2));
    assert_eq!(values(&v1), values(&v2));
    // A narrowed view starts at an offset into its storage.
    let big = normal(&mut Rng::new(5), &[5, 2, 4, 5], 1.0, 1.0, DType::F64);
    let view = big.narrow(0, 2, 3).unwrap();
    let (y3, _, _) = batch_norm_train(&view, &w, &b, 1e-5).unwrap();
    let (ry, _, _) = bn_reference(&view, &values(&w), &values(&b), 1e-5, false);
    assert!(rel_err(&values(&y3), &ry, 1.0) < 1e-12);
}

#[test]
fn batch_norm_matches_candle_f32() -> Result<()> {
    for (shape, relu) in [
        (vec![8usize, 4, 6, 6], false),
        (vec![8, 4, 6, 6], true),
        (vec![16, 5], false),
        (vec![32, 16, 14, 14], false),
    ] {
        let c = shape[1];
        let (x, w, b) = bn_inputs(6, &shape, DType::F32);
        let r = normal(&mut Rng::new(7), &shape, 0.0, 1.0, DType::F32);
        let eps = 1e-5;
        // Ours.
        let (xv, wv, bv) = (
            Var::from_tensor(&x)?,
            Var::from_tensor(&w)?,
            Var::from_tensor(&b)?,
        );
        let (y, mean, var) = if relu {
            batch_norm_relu_train(xv.as_tensor(), wv.as_tensor(), bv.as_tensor(), eps)?
        } else {
            batch_norm_train(xv.as_tensor(), wv.as_tensor(), bv.as_tensor(), eps)?
        };
        let g = weighted_sum(&y, &r)?.backward()?;
        // Candle's, from elementary ops.
        let (xc, wc, bc) = (
            Var::from_tensor(&x)?,
            Var::from_tensor(&w)?,
            Var::from_tensor(&b)?,
        );
        let bn = candle_nn::BatchNorm::new_with_momentum(
            c,
            Tensor::zeros(c, DType::F32, &Device::Cpu)?,
            Tensor::ones(c, DType::F32, &Device::Cpu)?,
            wc.as_tensor().clone(),
            bc.as_tensor().clone(),
            eps,
            1.0,
        )?;
        let yc = bn.forward_train(xc.as_tensor())?;
        let yc = if relu { yc.relu()? } else { yc };
        let gc = weighted_sum(&yc, &r)?.backward()?;
        let n = (x.elem_count() / c) as f64;
        // With momentum 1 the running stats are the batch stats (the
        // variance unbiased).
        let rm = bn.running_mean().clone();
        let rv = (bn.running_var() * ((n - 1.0) / n))?;
        let errs = [
            rel_err(&values(&y), &values(&yc), 1.0),
            rel_err(&values(&mean), &values(&rm), 1.0),
            rel_err(&values(&var), &values(&rv), 1.0),
            rel_err(
                &values(g.get(xv.as_tensor()).unwrap()),
                &values(gc.get(xc.as_tensor()).unwrap()),
                1.0,
            ),
            rel_err(
                &values(g.get(wv.as_tensor()).unwrap()),
                &values(gc.get(wc.as_tensor()).unwrap()),
                1.0,
            ),
            rel_err(
                &values(g.get(bv.as_tensor()).unwrap()),
                &values(gc.get(bc.as_tensor()).unwrap()),
                1.0,
            ),
        ];
        println!(
            "bn vs candle f32 {shape:?} relu={relu}: y/mean/var/dx/dw/db {}",
            fmt(&errs)
        );
        assert!(errs.iter().all(|&e| e < 2e-4), "{errs:?}");
        // The composite fallback agrees as well.
        let (yf, _, _) = batch_norm_train_composite(&x, &w, &b, eps, relu)?;
        assert!(rel_err(&values(&y), &values(&yf), 1.0) < 2e-5);
    }
    Ok(())
}

#[test]
fn batch_norm_eval_uses_running_stats() -> Result<()> {
    let (x, w, b) = bn_inputs(8, &[3, 2, 4, 5], DType::F64);
    let rm = Tensor::new(&[0.5f64, -1.0], &Device::Cpu)?;
    let rv = Tensor::new(&[2.0f64, 0.25], &Device::Cpu)?;
    let y = batch_norm_eval(&x, &w, &b, &rm, &rv, 1e-5)?;
    let (xv, wv, bv, mv, vv) = (values(&x), values(&w), values(&b), values(&rm), values(&rv));
    let expect: Vec<f64> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / 20) % 2;
            (v - mv[c]) / (vv[c] + 1e-5).sqrt() * wv[c] + bv[c]
        })
        .collect();
    assert!(rel_err(&values(&y), &expect, 1.0) < 1e-12);
    Ok(())
}

// ------------------------------------------------------------------- conv2d

/// Direct convolution in f64 loops.
fn conv_reference(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> (Vec<usize>, Vec<f64>) {
    let (b, c, h, wd) = x.dims4().unwrap();
    let (o, _, kh, kw) = w.dims4().unwrap();
    let (xv, wv) = (values(x), values(w));
    let ho = (h + 2 * pad - kh) / stride + 1;
    let wo = (wd + 2 * pad - kw) / stride + 1;
    let mut y = vec![0.0; b * o * ho * wo];
    for bi in 0..b {
        for oi in 0..o {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = 0.0;
                    for ci in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * stride + ky) as isize - pad as isize;
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= wd {
                                    continue;
                                }
                                let xi = ((bi * c + ci) * h + iy as usize) * wd + ix as usize;
                                let wi = ((oi * c + ci) * kh + ky) * kw + kx;
                                acc += xv[xi] * wv[wi];
                            }
                        }
                    }
                    y[((bi * o + oi) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    (vec![b, o, ho, wo], y)
}

/// (x shape, w shape, stride, padding)
type ConvCase = ([usize; 4], [usize; 4], usize, usize);

const CONV_CASES: &[ConvCase] = &[
    ([2, 3, 5, 7], [4, 3, 3, 3], 1, 1),
    ([2, 3, 5, 7], [4, 3, 3, 3], 1, 0),
    ([2, 3, 6, 5], [4, 3, 3, 3], 2, 0),
    ([2, 3, 7, 6], [2, 3, 3, 3], 2, 1),
    ([2, 2, 5, 4], [3, 2, 1, 1], 1, 0),
    ([1, 2, 6, 7], [3, 2, 1, 1], 2, 0),
    ([2, 2, 4, 6], [3, 2, 1, 1], 1, 1),
    ([2, 2, 5, 6], [3, 2, 2, 3], 1, 1),
    ([1, 1, 3, 4], [2, 1, 3, 3], 3, 1),
    // Padding wider than the image on one axis: taps with no valid column.
    ([1, 2, 3, 1], [2, 2, 3, 3], 1, 2),
    ([2, 1, 5, 4], [2, 1, 3, 3], 2, 2),
];

fn conv_inputs(seed: u64, xs: &[usize], ws: &[usize], dtype: DType) -> (Tensor, Tensor) {
    let mut rng = Rng::new(seed);
    (
        normal(&mut rng, xs, 0.0, 1.0, dtype),
        normal(&mut rng, ws, 0.0, 0.5, dtype),
    )
}

/// The fused op (`None`) and the unfused Im2col + matmul in both layouts.
const VARIANTS: [Option<ColsLayout>; 3] = [
    None,
    Some(ColsLayout::TapMajor),
    Some(ColsLayout::PixelMajor),
];

fn conv_variant(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    pad: usize,
    variant: Option<ColsLayout>,
) -> Result<Tensor> {
    match variant {
        None => conv2d(x, w, stride, pad),
        Some(layout) => conv2d_unfused(x, w, &Conv2dConfig::square(stride, pad), layout),
    }
}

#[test]
fn conv2d_forward_matches_direct_f64() {
    for &(xs, ws, stride, pad) in CONV_CASES {
        let (x, w) = conv_inputs(10, &xs, &ws, DType::F64);
        let (shape, expect) = conv_reference(&x, &w, stride, pad);
        for variant in VARIANTS {
            let y = conv_variant(&x, &w, stride, pad, variant).unwrap();
            assert_eq!(y.dims(), shape.as_slice());
            assert!(y.is_contiguous());
            let err = rel_err(&values(&y), &expect, 1.0);
            println!(
                "conv2d forward {variant:?} x{xs:?} w{ws:?} s{stride} p{pad}: rel err {err:.2e}"
            );
            assert!(err < 1e-12, "{err}");
        }
    }
}

#[test]
fn conv2d_gradcheck_f64() {
    for &(xs, ws, stride, pad) in CONV_CASES {
        let (x, w) = conv_inputs(11, &xs, &ws, DType::F64);
        let (shape, _) = conv_reference(&x, &w, stride, pad);
        let r = normal(&mut Rng::new(12), &shape, 0.0, 1.0, DType::F64);
        for variant in VARIANTS {
            let r = r.clone();
            let loss = move |ts: &[Tensor]| {
                weighted_sum(&conv_variant(&ts[0], &ts[1], stride, pad, variant)?, &r)
            };
            let label = format!("conv2d {variant:?} x{xs:?} w{ws:?} s{stride} p{pad}");
            gradcheck(&label, &[x.clone(), w.clone()], &loss, 1e-3);
        }
    }
}

#[test]
fn conv2d_over_several_image_chunks_matches_unfused_f64() -> Result<()> {
    // 16·3·3 taps × 64·64 positions × 8 bytes ≈ 4.7 MB of columns per image
    // (and 132 channels × 64·64 × 8 bytes = 4.3 MB for the 1x1 kernel): the
    // fused op processes these images in separate chunks, one after the
    // other (3 images) or in parallel (8 images, 8 chunks).
    for (xs, ws, pad) in [
        ([3usize, 16, 64, 64], [2usize, 16, 3, 3], 1usize),
        ([8, 16, 64, 64], [2, 16, 3, 3], 1),
        ([8, 132, 64, 64], [2, 132, 1, 1], 0),
    ] {
        let (x, w) = conv_inputs(18, &xs, &ws, DType::F64);
        let (shape, _) = conv_reference(&x.narrow(0, 0, 1)?, &w, 1, pad);
        let mut yshape = shape.clone();
        yshape[0] = xs[0];
        let r = normal(&mut Rng::new(19), &yshape, 0.0, 1.0, DType::F64);
        let run = |fused: bool| -> Result<Vec<Vec<f64>>> {
            let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
            let y = if fused {
                conv2d(xv.as_tensor(), wv.as_tensor(), 1, pad)?
            } else {
                conv2d_unfused(
                    xv.as_tensor(),
                    wv.as_tensor(),
                    &Conv2dConfig::square(1, pad),
                    ColsLayout::TapMajor,
                )?
            };
            let g = weighted_sum(&y, &r)?.backward()?;
            Ok(vec![
                values(&y),
                values(g.get(xv.as_tensor()).unwrap()),
                values(g.get(wv.as_tensor()).unwrap()),
            ])
        };
        let (fused, unfused) = (run(true)?, run(false)?);
        let errs: Vec<f64> = fused
            .iter()
            .zip(&unfused)
            .map(|(a, b)| rel_err(a, b, 1.0))
            .collect();
        println!(
            "conv2d chunked x{xs:?} w{ws:?} vs unfused: y/dx/dw {}",
            fmt(&errs)
        );
        assert!(errs.iter().all(|&e| e < 1e-12), "x{xs:?} w{ws:?}: {errs:?}");
    }
    Ok(())
}

#[test]
fn conv2d_weight_gradient_with_constant_input() -> Result<()> {
    // The first layer: x needs no gradient, so the op skips the input half.
    let (x, w) = conv_inputs(16, &[2, 3, 6, 5], &[4, 3, 3, 3], DType::F64);
    let (shape, _) = conv_reference(&x, &w, 2, 1);
    let r = normal(&mut Rng::new(17), &shape, 0.0, 1.0, DType::F64);
    let wv = Var::from_tensor(&w)?;
    let grads = weighted_sum(&conv2d(&x, wv.as_tensor(), 2, 1)?, &r)?.backward()?;
    assert!(grads.get(&x).is_none());
    let loss = |ts: &[Tensor]| weighted_sum(&conv2d(&x, &ts[0], 2, 1)?, &r);
    let expect = numeric(&[w], &loss);
    let err = rel_err(
        &values(grads.get(wv.as_tensor()).unwrap()),
        &expect[0],
        1e-3,
    );
    println!("conv2d dw with constant x: rel err {err:.2e}");
    assert!(err < FD_RTOL, "{err}");
    Ok(())
}

#[test]
fn conv2d_handles_non_contiguous_input() -> Result<()> {
    let (x, w) = conv_inputs(13, &[2, 3, 6, 5], &[4, 3, 3, 3], DType::F64);
    let xt = x.transpose(2, 3)?; // [2,3,5,6], strided
    let y = conv2d(&xt, &w, 1, 1)?;
    let (_, expect) = conv_reference(&xt.contiguous()?, &w, 1, 1);
    assert!(rel_err(&values(&y), &expect, 1.0) < 1e-12);
    // A kernel view that is not contiguous either.
    let wt = w.transpose(2, 3)?;
    let y = conv2d(&x, &wt, 1, 1)?;
    let (_, expect) = conv_reference(&x, &wt.contiguous()?, 1, 1);
    assert!(rel_err(&values(&y), &expect, 1.0) < 1e-12);
    Ok(())
}

#[test]
fn conv2d_matches_candle_f32() -> Result<()> {
    // Square inputs: Candle's conv2d backward fails on some non-square ones.
    for &(xs, ws, stride, pad) in &[
        ([4usize, 3, 8, 8], [5usize, 3, 3, 3], 1usize, 1usize),
        ([4, 3, 9, 9], [5, 3, 3, 3], 2, 1),
        ([4, 3, 8, 8], [5, 3, 3, 3], 1, 0),
        ([4, 6, 7, 7], [5, 6, 1, 1], 1, 0),
        ([8, 16, 14, 14], [32, 16, 3, 3], 1, 1),
    ] {
        let (x, w) = conv_inputs(14, &xs, &ws, DType::F32);
        let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
        let y = conv2d(xv.as_tensor(), wv.as_tensor(), stride, pad)?;
        let r = normal(&mut Rng::new(15), y.dims(), 0.0, 1.0, DType::F32);
        let g = weighted_sum(&y, &r)?.backward()?;
        let (xc, wc) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
        let yc = xc.as_tensor().conv2d(wc.as_tensor(), pad, stride, 1, 1)?;
        let gc = weighted_sum(&yc, &r)?.backward()?;
        let errs = [
            rel_err(&values(&y), &values(&yc), 1.0),
            rel_err(
                &values(g.get(xv.as_tensor()).unwrap()),
                &values(gc.get(xc.as_tensor()).unwrap()),
                1.0,
            ),
            rel_err(
                &values(g.get(wv.as_tensor()).unwrap()),
                &values(gc.get(wc.as_tensor()).unwrap()),
                1.0,
            ),
        ];
        println!(
            "conv2d vs candle f32 x{xs:?} w{ws:?} s{stride} p{pad}: y/dx/dw {}",
            fmt(&errs)
        );
        assert!(errs.iter().all(|&e| e < 1e-5), "{errs:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------- add + ReLU

#[test]
fn add_relu_gradcheck_and_matches_candle_f64() -> Result<()> {
    use parallax_core::ops::add_relu::add_relu;
    let mut rng = Rng::new(11);
    let a = normal(&mut rng, &[3, 4, 5, 6], 0.0, 1.0, DType::F64);
    let b = normal(&mut rng, &[3, 4, 5, 6], 0.0, 1.0, DType::F64);
    let r = normal(&mut rng, &[3, 4, 5, 6], 0.0, 1.0, DType::F64);
    // forward against Candle's add + relu, also with a non-contiguous input
    let want = values(&(&a + &b)?.relu()?);
    assert_eq!(values(&add_relu(&a, &b)?), want);
    let at = a.transpose(2, 3)?.contiguous()?.transpose(2, 3)?;
    assert_eq!(values(&add_relu(&at, &b)?), want);
    // gradients to both inputs (random values are never within 1e-6 of the kink)
    let loss = |t: &[Tensor]| weighted_sum(&add_relu(&t[0], &t[1])?, &r);
    let g = gradcheck("add_relu", &[a.clone(), b.clone()], &loss, 1.0);
    assert_eq!(g[0], g[1]);
    let candle = analytic(&[a, b], &|t: &[Tensor]| {
        weighted_sum(&(&t[0] + &t[1])?.relu()?, &r)
    });
    assert_eq!(g[0], candle[0]);
    // shapes must match
    let c = Tensor::zeros((3, 4), DType::F64, &Device::Cpu)?;
    assert!(add_relu(&c, &c.t()?).is_err());
    Ok(())
}
