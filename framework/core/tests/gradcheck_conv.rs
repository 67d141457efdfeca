//! Gradient checks of the convolution and pooling kernels in
//! `parallax_core::ops` (conv2d with per-axis stride / padding / dilation
//! and groups, conv1d, max and average pooling): forwards against plain-loop
//! references, gradients against central finite differences in f64 with a
//! random upstream gradient, and comparisons with Candle where Candle is
//! right.
//!
//! The `candle_defect_*` tests assert that each Candle 0.11.1 defect these
//! kernels replace is still there. When one of them fails after a Candle
//! upgrade, the defect is fixed upstream and the replacement can be dropped
//! in favour of Candle's op.

mod common;

use candle_core::{DType, Result, Tensor, Var};
use common::*;
use parallax_core::ops::conv1d::{conv1d, Conv1dConfig};
use parallax_core::ops::conv2d::{
    conv2d, conv2d_backward, conv2d_composite, conv2d_unfused, conv2d_with, set_winograd,
    winograd_enabled, ColsLayout, Conv2dConfig,
};
use parallax_core::ops::pool::{
    avg_pool2d, avg_pool2d_composite, avg_pool2d_with, global_avg_pool2d, max_pool2d,
    max_pool2d_composite, max_pool2d_with, Pool2dConfig,
};
use parallax_core::rng::Rng;

fn inputs(seed: u64, xs: &[usize], ws: &[usize], dtype: DType) -> (Tensor, Tensor) {
    let mut rng = Rng::new(seed);
    (
        normal(&mut rng, xs, 0.0, 1.0, dtype),
        normal(&mut rng, ws, 0.0, 0.5, dtype),
    )
}

fn cfg(
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
) -> Conv2dConfig {
    Conv2dConfig {
        stride,
        padding,
        dilation,
        groups,
    }
}

// ------------------------------------------------------------------- conv2d

/// Direct grouped, dilated convolution in f64 loops: (shape, values).
fn conv2d_reference(x: &Tensor, w: &Tensor, c: &Conv2dConfig) -> (Vec<usize>, Vec<f64>) {
    let (b, ci, h, wd) = x.dims4().unwrap();
    let (o, cg, kh, kw) = w.dims4().unwrap();
    let (xv, wv) = (values(x), values(w));
    let ((sh, sw), (ph, pw), (dh, dw)) = (c.stride, c.padding, c.dilation);
    let ho = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
    let wo = (wd + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
    let og = o / c.groups;
    assert_eq!(cg * c.groups, ci);
    let mut y = vec![0.0; b * o * ho * wo];
    for bi in 0..b {
        for oi in 0..o {
            let group = oi / og;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = 0.0;
                    for k in 0..cg {
                        let ch = group * cg + k;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * sh + ky * dh) as isize - ph as isize;
                                let ix = (ox * sw + kx * dw) as isize - pw as isize;
                                if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= wd {
                                    continue;
                                }
                                let xi = ((bi * ci + ch) * h + iy as usize) * wd + ix as usize;
                                let wi = ((oi * cg + k) * kh + ky) * kw + kx;
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

/// (x shape, w shape, config)
fn conv2d_cases() -> Vec<([usize; 4], [usize; 4], Conv2dConfig)> {
    vec![
        // Rectangular per-axis stride and padding, non-square input.
        ([2, 3, 5, 7], [4, 3, 3, 3], cfg((2, 1), (1, 0), (1, 1), 1)),
        ([2, 3, 6, 5], [2, 3, 3, 3], cfg((1, 2), (0, 2), (1, 1), 1)),
        // Non-square kernels.
        ([2, 2, 6, 5], [3, 2, 1, 3], cfg((1, 1), (0, 1), (1, 1), 1)),
        ([1, 2, 7, 4], [3, 2, 3, 2], cfg((2, 1), (1, 1), (1, 1), 1)),
        // Dilation, per axis and with stride.
        ([2, 2, 7, 6], [3, 2, 3, 3], cfg((1, 1), (2, 2), (2, 2), 1)),
        ([1, 3, 8, 7], [2, 3, 3, 2], cfg((2, 1), (1, 0), (2, 3), 1)),
        // Groups, depthwise, groups with stride and dilation.
        ([2, 4, 5, 6], [6, 2, 3, 3], cfg((1, 1), (1, 1), (1, 1), 2)),
        ([2, 3, 6, 5], [3, 1, 3, 3], cfg((2, 2), (1, 1), (1, 1), 3)),
        ([1, 6, 7, 6], [3, 2, 2, 3], cfg((1, 2), (1, 0), (2, 1), 3)),
        // The CIFAR ResNet's stride-2 3x3 and 1x1 downsample, non-square.
        ([2, 3, 6, 8], [4, 3, 3, 3], cfg((2, 2), (1, 1), (1, 1), 1)),
        ([2, 3, 5, 8], [4, 3, 1, 1], cfg((2, 2), (0, 0), (1, 1), 1)),
        // At least 16 channels per group: the input gradient takes the
        // channels-last path (the ones above, the tap-major one); with at
        // least 64 output pixels per image, the forward and kernel gradient
        // too. With groups, dilation and per-axis settings.
        (
            [1, 32, 9, 10],
            [4, 16, 3, 2],
            cfg((1, 1), (2, 1), (2, 1), 2),
        ),
        (
            [1, 16, 12, 17],
            [2, 16, 3, 3],
            cfg((1, 2), (1, 0), (1, 1), 1),
        ),
        ([2, 16, 5, 4], [3, 16, 3, 3], cfg((2, 1), (1, 1), (1, 1), 1)),
        // Dense 3x3, stride 1, at least 16 channels in and out and 64
        // outputs per image: Winograd's F(4x4, 3x3) (both sides 8 or more)
        // and F(2x2, 3x3) (6x16). Odd and even sizes, padding 0-2.
        (
            [1, 16, 9, 8],
            [16, 16, 3, 3],
            cfg((1, 1), (1, 1), (1, 1), 1),
        ),
        (
            [1, 17, 4, 18],
            [16, 17, 3, 3],
            cfg((1, 1), (2, 0), (1, 1), 1),
        ),
        // Padding wider than the dilated kernel reaches.
        ([1, 2, 3, 2], [2, 2, 2, 2], cfg((1, 1), (2, 3), (2, 1), 1)),
    ]
}

#[test]
fn conv2d_with_forward_matches_direct_f64() -> Result<()> {
    for (xs, ws, c) in conv2d_cases() {
        let (x, w) = inputs(20, &xs, &ws, DType::F64);
        let (shape, expect) = conv2d_reference(&x, &w, &c);
        for (name, y) in [
            ("fused", conv2d_with(&x, &w, &c)?),
            (
                "tap-major",
                conv2d_unfused(&x, &w, &c, ColsLayout::TapMajor)?,
            ),
            (
                "pixel-major",
                conv2d_unfused(&x, &w, &c, ColsLayout::PixelMajor)?,
            ),
        ] {
            assert_eq!(y.dims(), shape.as_slice(), "{name} x{xs:?} w{ws:?} {c:?}");
            assert!(y.is_contiguous());
            let err = rel_err(&values(&y), &expect, 1.0);
            assert!(err < 1e-12, "{name} x{xs:?} w{ws:?} {c:?}: {err}");
        }
    }
    Ok(())
}

/// Winograd's path and the unfolding path (`set_winograd`) agree on a
/// convolution both can run, forward and both gradients (f64).
#[test]
fn winograd_switch_gives_the_same_convolution_f64() -> Result<()> {
    let (xs, ws) = ([3usize, 16, 9, 10], [20usize, 16, 3, 3]);
    let c = cfg((1, 1), (1, 1), (1, 1), 1);
    let (x, w) = inputs(23, &xs, &ws, DType::F64);
    let dy = normal(&mut Rng::new(24), &[3, 20, 9, 10], 0.0, 1.0, DType::F64);
    let run = |on: bool| -> Result<Vec<Vec<f64>>> {
        set_winograd(on);
        assert_eq!(winograd_enabled(), on);
        let y = conv2d_with(&x, &w, &c)?;
        let (dx, dw) = conv2d_backward(&x, &w, &dy, &c, (true, true))?;
        set_winograd(true);
        Ok(vec![values(&y), values(&dx.unwrap()), values(&dw.unwrap())])
    };
    let (on, off) = (run(true)?, run(false)?);
    for (a, b) in on.iter().zip(&off) {
        let err = rel_err(a, b, 1.0);
        assert!(err < 1e-12, "{err}");
    }
    Ok(())
}

#[test]
fn conv2d_with_gradcheck_f64() {
    for (xs, ws, c) in conv2d_cases() {
        let (x, w) = inputs(21, &xs, &ws, DType::F64);
        let (shape, _) = conv2d_reference(&x, &w, &c);
        let r = normal(&mut Rng::new(22), &shape, 0.0, 1.0, DType::F64);
        let loss = |ts: &[Tensor]| weighted_sum(&conv2d_with(&ts[0], &ts[1], &c)?, &r);
        let label = format!("conv2d x{xs:?} w{ws:?} {c:?}");
        gradcheck(&label, &[x.clone(), w.clone()], &loss, 1e-3);
    }
}

#[test]
fn conv2d_unfused_gradcheck_with_groups_and_dilation_f64() {
    let (xs, ws) = ([1usize, 4, 5, 6], [4usize, 2, 2, 3]);
    let c = cfg((2, 1), (1, 1), (2, 1), 2);
    let (x, w) = inputs(23, &xs, &ws, DType::F64);
    let (shape, _) = conv2d_reference(&x, &w, &c);
    let r = normal(&mut Rng::new(24), &shape, 0.0, 1.0, DType::F64);
    for layout in [ColsLayout::TapMajor, ColsLayout::PixelMajor] {
        let loss = |ts: &[Tensor]| weighted_sum(&conv2d_unfused(&ts[0], &ts[1], &c, layout)?, &r);
        gradcheck(
            &format!("unfused {layout:?}"),
            &[x.clone(), w.clone()],
            &loss,
            1e-3,
        );
    }
}

#[test]
fn conv2d_square_is_conv2d_with_square_config() -> Result<()> {
    let (x, w) = inputs(25, &[2, 3, 7, 6], &[4, 3, 3, 3], DType::F64);
    let a = conv2d(&x, &w, 2, 1)?;
    let b = conv2d_with(&x, &w, &Conv2dConfig::square(2, 1))?;
    assert_eq!(values(&a), values(&b));
    Ok(())
}

#[test]
fn conv2d_with_rejects_bad_configurations() {
    let (x, w) = inputs(26, &[1, 4, 5, 5], &[6, 2, 3, 3], DType::F64);
    let bad = [
        cfg((0, 1), (0, 0), (1, 1), 2), // zero stride
        cfg((1, 1), (0, 0), (0, 1), 2), // zero dilation
        cfg((1, 1), (0, 0), (1, 1), 0), // zero groups
        cfg((1, 1), (0, 0), (1, 1), 1), // 4 channels, kernel expects 2
        cfg((1, 1), (0, 0), (1, 1), 4), // 6 outputs in 4 groups
        cfg((1, 1), (0, 0), (3, 1), 2), // dilated kernel taller than the input
    ];
    for c in bad {
        assert!(conv2d_with(&x, &w, &c).is_err(), "{c:?} accepted");
    }
}

#[test]
fn conv2d_with_handles_an_empty_batch() -> Result<()> {
    let (x, w) = inputs(29, &[0, 16, 9, 9], &[4, 16, 3, 3], DType::F64);
    let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
    let y = conv2d_with(xv.as_tensor(), wv.as_tensor(), &Conv2dConfig::square(1, 1))?;
    assert_eq!(y.dims(), &[0, 4, 9, 9]);
    let g = y.sum_all()?.backward()?;
    assert_eq!(
        values(g.get(wv.as_tensor()).unwrap()),
        vec![0.0; 4 * 16 * 9]
    );
    Ok(())
}

#[test]
fn conv2d_with_matches_candle_f32() -> Result<()> {
    // Square inputs and square settings, where Candle's conv2d and its
    // backward are right (groups go through Candle's chunk + cat).
    for (xs, ws, stride, pad, dil, groups) in [
        (
            [4usize, 4, 9, 9],
            [6usize, 2, 3, 3],
            1usize,
            1usize,
            1usize,
            2usize,
        ),
        ([4, 4, 9, 9], [4, 1, 3, 3], 2, 1, 1, 4),
        ([4, 3, 9, 9], [5, 3, 3, 3], 1, 2, 2, 1),
    ] {
        let c = cfg((stride, stride), (pad, pad), (dil, dil), groups);
        let (x, w) = inputs(27, &xs, &ws, DType::F32);
        let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
        let y = conv2d_with(xv.as_tensor(), wv.as_tensor(), &c)?;
        let r = normal(&mut Rng::new(28), y.dims(), 0.0, 1.0, DType::F32);
        let g = weighted_sum(&y, &r)?.backward()?;
        let (xc, wc) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
        let yc = xc
            .as_tensor()
            .conv2d(wc.as_tensor(), pad, stride, dil, groups)?;
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
        println!("conv2d vs candle {c:?}: y/dx/dw {}", fmt(&errs));
        assert!(errs.iter().all(|&e| e < 1e-5), "{c:?}: {errs:?}");
    }
    Ok(())
}

// ------------------------------------------------------------------- conv1d

/// Direct 1-D convolution in f64 loops: (shape, values).
fn conv1d_reference(x: &Tensor, w: &Tensor, c: &Conv1dConfig) -> (Vec<usize>, Vec<f64>) {
    let (b, ci, l) = x.dims3().unwrap();
    let (o, cg, k) = w.dims3().unwrap();
    let (xv, wv) = (values(x), values(w));
    let lo = (l + 2 * c.padding - c.dilation * (k - 1) - 1) / c.stride + 1;
    let og = o / c.groups;
    let mut y = vec![0.0; b * o * lo];
    for bi in 0..b {
        for oi in 0..o {
            for ox in 0..lo {
                let mut acc = 0.0;
                for kc in 0..cg {
                    let ch = (oi / og) * cg + kc;
                    for kx in 0..k {
                        let ix = (ox * c.stride + kx * c.dilation) as isize - c.padding as isize;
                        if ix >= 0 && (ix as usize) < l {
                            acc +=
                                xv[(bi * ci + ch) * l + ix as usize] * wv[(oi * cg + kc) * k + kx];
                        }
                    }
                }
                y[(bi * o + oi) * lo + ox] = acc;
            }
        }
    }
    (vec![b, o, lo], y)
}

fn conv1d_cases() -> Vec<([usize; 3], [usize; 3], Conv1dConfig)> {
    let c = |stride, padding, dilation, groups| Conv1dConfig {
        stride,
        padding,
        dilation,
        groups,
    };
    vec![
        ([2, 3, 9], [4, 3, 3], c(1, 0, 1, 1)), // padding 0: Candle's dx is wrong
        ([2, 3, 9], [4, 3, 3], c(1, 1, 1, 1)),
        ([2, 3, 10], [2, 3, 4], c(2, 1, 1, 1)),
        ([1, 2, 11], [3, 2, 3], c(3, 2, 2, 1)),
        ([2, 4, 8], [6, 2, 3], c(1, 1, 1, 2)),
        ([2, 3, 7], [3, 1, 5], c(2, 2, 1, 3)),
        ([2, 2, 6], [3, 2, 1], c(1, 0, 1, 1)),
    ]
}

#[test]
fn conv1d_forward_matches_direct_f64() -> Result<()> {
    for (xs, ws, c) in conv1d_cases() {
        let (x, w) = inputs(30, &xs, &ws, DType::F64);
        let (shape, expect) = conv1d_reference(&x, &w, &c);
        let y = conv1d(&x, &w, &c)?;
        assert_eq!(y.dims(), shape.as_slice());
        let err = rel_err(&values(&y), &expect, 1.0);
        assert!(err < 1e-12, "x{xs:?} w{ws:?} {c:?}: {err}");
    }
    Ok(())
}

#[test]
fn conv1d_gradcheck_f64() {
    for (xs, ws, c) in conv1d_cases() {
        let (x, w) = inputs(31, &xs, &ws, DType::F64);
        let (shape, _) = conv1d_reference(&x, &w, &c);
        let r = normal(&mut Rng::new(32), &shape, 0.0, 1.0, DType::F64);
        let loss = |ts: &[Tensor]| weighted_sum(&conv1d(&ts[0], &ts[1], &c)?, &r);
        gradcheck(
            &format!("conv1d x{xs:?} w{ws:?} {c:?}"),
            &[x, w],
            &loss,
            1e-3,
        );
    }
}

// ------------------------------------------------------------------ pooling

/// Plain-loop pooling in f64: (shape, values, for max the flat input index
/// of each output's first maximum).
fn pool_reference(x: &Tensor, c: &Pool2dConfig, max: bool) -> (Vec<usize>, Vec<f64>, Vec<usize>) {
    let (b, ch, h, w) = x.dims4().unwrap();
    let xv = values(x);
    let ((kh, kw), (sh, sw), (ph, pw)) = (c.kernel, c.stride, c.padding);
    let ho = (h + 2 * ph - kh) / sh + 1;
    let wo = (w + 2 * pw - kw) / sw + 1;
    let (mut y, mut arg) = (Vec::new(), Vec::new());
    for p in 0..b * ch {
        for oy in 0..ho {
            for ox in 0..wo {
                let (mut best, mut best_i, mut sum) = (f64::NEG_INFINITY, usize::MAX, 0.0);
                for ky in 0..kh {
                    for kx in 0..kw {
                        let iy = (oy * sh + ky) as isize - ph as isize;
                        let ix = (ox * sw + kx) as isize - pw as isize;
                        if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                            continue;
                        }
                        let i = (p * h + iy as usize) * w + ix as usize;
                        sum += xv[i];
                        if xv[i] > best {
                            (best, best_i) = (xv[i], i);
                        }
                    }
                }
                y.push(if max { best } else { sum / (kh * kw) as f64 });
                arg.push(best_i);
            }
        }
    }
    (vec![b, ch, ho, wo], y, arg)
}

fn pool_cases() -> Vec<([usize; 4], Pool2dConfig)> {
    let c = |kernel, stride, padding| Pool2dConfig {
        kernel,
        stride,
        padding,
    };
    vec![
        // The ImageNet stem's max-pool: overlapping, padded.
        ([2, 2, 7, 7], c((3, 3), (2, 2), (1, 1))),
        ([2, 2, 8, 6], c((3, 3), (2, 2), (1, 1))),
        // kernel != stride, no padding; kernel == stride on sizes it does
        // not divide.
        ([1, 3, 6, 7], c((3, 3), (1, 1), (0, 0))),
        ([2, 2, 5, 7], c((2, 2), (2, 2), (0, 0))),
        // Per-axis kernel, stride and padding.
        ([2, 2, 7, 5], c((3, 2), (2, 1), (1, 0))),
        ([1, 2, 6, 9], c((2, 4), (1, 3), (1, 2))),
    ]
}

#[test]
fn pooling_forward_matches_reference_f64() -> Result<()> {
    for (xs, c) in pool_cases() {
        let x = normal(&mut Rng::new(40), &xs, 0.0, 1.0, DType::F64);
        for max in [true, false] {
            let (shape, expect, _) = pool_reference(&x, &c, max);
            let y = if max {
                max_pool2d_with(&x, &c)?
            } else {
                avg_pool2d_with(&x, &c)?
            };
            assert_eq!(y.dims(), shape.as_slice(), "x{xs:?} {c:?} max={max}");
            let err = rel_err(&values(&y), &expect, 1.0);
            assert!(err < 1e-14, "x{xs:?} {c:?} max={max}: {err}");
        }
    }
    Ok(())
}

#[test]
fn pooling_gradcheck_f64() {
    for (xs, c) in pool_cases() {
        let x = normal(&mut Rng::new(41), &xs, 0.0, 1.0, DType::F64);
        // Finite differences must not move a window's argmax: keep the
        // largest two values of every window well apart.
        let xv = values(&x);
        let (shape, best, arg) = pool_reference(&x, &c, true);
        for (o, (&b, &i)) in best.iter().zip(&arg).enumerate() {
            let others = pool_window_values(&xv, &xs, &c, o, i);
            let second = others.into_iter().fold(f64::NEG_INFINITY, f64::max);
            assert!(b - second > 1e-4, "near tie in window {o} of x{xs:?} {c:?}");
        }
        let r = normal(&mut Rng::new(42), &shape, 0.0, 1.0, DType::F64);
        let max_loss = |ts: &[Tensor]| weighted_sum(&max_pool2d_with(&ts[0], &c)?, &r);
        gradcheck(
            &format!("max pool x{xs:?} {c:?}"),
            std::slice::from_ref(&x),
            &max_loss,
            1e-3,
        );
        let avg_loss = |ts: &[Tensor]| weighted_sum(&avg_pool2d_with(&ts[0], &c)?, &r);
        gradcheck(&format!("avg pool x{xs:?} {c:?}"), &[x], &avg_loss, 1e-3);
    }
}

/// The values of window `o` other than the one at flat index `skip`.
fn pool_window_values(
    xv: &[f64],
    xs: &[usize; 4],
    c: &Pool2dConfig,
    o: usize,
    skip: usize,
) -> Vec<f64> {
    let (h, w) = (xs[2], xs[3]);
    let ho = (h + 2 * c.padding.0 - c.kernel.0) / c.stride.0 + 1;
    let wo = (w + 2 * c.padding.1 - c.kernel.1) / c.stride.1 + 1;
    let (p, oy, ox) = (o / (ho * wo), (o / wo) % ho, o % wo);
    let mut out = Vec::new();
    for ky in 0..c.kernel.0 {
        for kx in 0..c.kernel.1 {
            let iy = (oy * c.stride.0 + ky) as isize - c.padding.0 as isize;
            let ix = (ox * c.stride.1 + kx) as isize - c.padding.1 as isize;
            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                let i = (p * h + iy as usize) * w + ix as usize;
                if i != skip {
                    out.push(xv[i]);
                }
            }
        }
    }
    out
}

#[test]
fn max_pool_ties_route_to_the_first_maximum() -> Result<()> {
    // Rounded values: many ties inside the windows.
    let x = normal(&mut Rng::new(43), &[2, 2, 7, 6], 0.0, 1.0, DType::F64);
    let x = (x * 2.0)?.round()?.clamp(-1.0, 1.0)?;
    let c = Pool2dConfig::square(3, 2, 1);
    let (shape, _, arg) = pool_reference(&x, &c, true);
    let r = normal(&mut Rng::new(44), &shape, 0.0, 1.0, DType::F64);
    let xv = Var::from_tensor(&x)?;
    let g = weighted_sum(&max_pool2d_with(xv.as_tensor(), &c)?, &r)?.backward()?;
    let mut expect = vec![0.0; x.elem_count()];
    for (&i, &rv) in arg.iter().zip(&values(&r)) {
        expect[i] += rv;
    }
    assert_eq!(values(g.get(xv.as_tensor()).unwrap()), expect);
    Ok(())
}

#[test]
fn pooling_square_helpers_and_global_average() -> Result<()> {
    let x = normal(&mut Rng::new(45), &[2, 3, 6, 5], 0.0, 1.0, DType::F64);
    let c = Pool2dConfig::square(3, 2, 1);
    assert_eq!(
        values(&max_pool2d(&x, 3, 2, 1)?),
        values(&max_pool2d_with(&x, &c)?)
    );
    assert_eq!(
        values(&avg_pool2d(&x, 3, 2, 1)?),
        values(&avg_pool2d_with(&x, &c)?)
    );
    let g = global_avg_pool2d(&x)?;
    assert_eq!(g.dims(), &[2, 3]);
    let xv = values(&x);
    let expect: Vec<f64> = xv
        .chunks(30)
        .map(|p| p.iter().sum::<f64>() / 30.0)
        .collect();
    assert!(rel_err(&values(&g), &expect, 1.0) < 1e-14);
    // Bad configurations are errors, not panics.
    assert!(max_pool2d(&x, 0, 1, 0).is_err());
    assert!(max_pool2d(&x, 2, 0, 0).is_err());
    assert!(max_pool2d(&x, 2, 2, 2).is_err()); // padding >= kernel
    assert!(avg_pool2d(&x, 7, 1, 0).is_err()); // window larger than the image
    Ok(())
}

#[test]
fn pooling_of_other_dtypes_goes_through_the_cpu_kernel() -> Result<()> {
    // bf16 has no kernel: pooled in f32 through differentiable casts.
    let x = normal(&mut Rng::new(48), &[2, 2, 7, 6], 0.0, 1.0, DType::F32);
    let xb = Var::from_tensor(&x.to_dtype(DType::BF16)?)?;
    let y = max_pool2d(xb.as_tensor(), 3, 2, 1)?;
    assert_eq!(y.dtype(), DType::BF16);
    let expect = max_pool2d(&xb.as_tensor().to_dtype(DType::F32)?, 3, 2, 1)?;
    assert_eq!(values(&y), values(&expect));
    let r = normal(&mut Rng::new(49), y.dims(), 0.0, 1.0, DType::BF16);
    let g = weighted_sum(&y, &r)?.backward()?;
    let gx = g
        .get(xb.as_tensor())
        .expect("no gradient reached the input");
    assert_eq!(gx.dtype(), DType::BF16);
    // Every output's gradient lands on one input (no ties in normal data).
    let (gsum, rsum) = (
        values(&gx.sum_all()?)[0],
        values(&r.to_dtype(DType::F32)?.sum_all()?)[0],
    );
    assert!((gsum - rsum).abs() < 0.1, "{gsum} vs {rsum}");
    Ok(())
}

#[test]
fn pooling_matches_candle_where_candle_is_right_f32() -> Result<()> {
    // kernel == stride dividing the input size: Candle's forwards and its
    // average-pool backward agree with ours (its max-pool backward does not:
    // `candle_defect_max_pool_backward_even_when_kernel_equals_stride`).
    let x = normal(&mut Rng::new(46), &[4, 3, 8, 6], 0.0, 1.0, DType::F32);
    let r = normal(&mut Rng::new(47), &[4, 3, 4, 3], 0.0, 1.0, DType::F32);
    let ours = max_pool2d(&x, 2, 2, 0)?;
    assert!(rel_err(&values(&ours), &values(&x.max_pool2d(2)?), 1.0) < 1e-7);
    let (a, b) = (Var::from_tensor(&x)?, Var::from_tensor(&x)?);
    let (ya, yb) = (
        avg_pool2d(a.as_tensor(), 2, 2, 0)?,
        b.as_tensor().avg_pool2d(2)?,
    );
    assert!(rel_err(&values(&ya), &values(&yb), 1.0) < 1e-6);
    let (ga, gb) = (
        weighted_sum(&ya, &r)?.backward()?,
        weighted_sum(&yb, &r)?.backward()?,
    );
    let da = values(ga.get(a.as_tensor()).unwrap());
    let db = values(gb.get(b.as_tensor()).unwrap());
    assert!(rel_err(&da, &db, 1.0) < 1e-6);
    Ok(())
}

// --------------------------------------- off-CPU paths: Candle's ops, exact

// Tensors off the CPU (CUDA) go through `conv2d_composite` and the pooling
// composites, built from Candle ops whose gradients are right on every
// device. They run here on the CPU in f64 against the same references and
// finite differences as the kernels.

#[test]
fn conv2d_composite_matches_the_reference_and_finite_differences_f64() -> Result<()> {
    let mut cases = conv2d_cases();
    // Candle's defect case (5x6, stride 2), conv1d's height-1 layout with a
    // per-axis stride, dilation and padding, and a 1xk kernel with per-axis
    // dilation
    cases.push(([2, 2, 5, 6], [3, 2, 3, 3], cfg((2, 2), (1, 1), (1, 1), 1)));
    cases.push(([2, 3, 1, 11], [4, 3, 1, 3], cfg((1, 3), (0, 2), (1, 2), 1)));
    cases.push(([1, 4, 3, 9], [4, 2, 1, 3], cfg((1, 1), (0, 1), (3, 2), 2)));
    let mut ran = 0;
    for (xs, ws, c) in cases {
        let (x, w) = inputs(25, &xs, &ws, DType::F64);
        let (shape, expect) = conv2d_reference(&x, &w, &c);
        let label = format!("composite conv2d x{xs:?} w{ws:?} {c:?}");
        let y = match conv2d_composite(&x, &w, &c) {
            Ok(y) => y,
            Err(e) => {
                // only per-axis strides or dilations that matter are refused
                assert!(
                    c.stride.0 != c.stride.1 || c.dilation.0 != c.dilation.1,
                    "{label}: {e}"
                );
                assert!(e.to_string().contains("per-axis"), "{label}: {e}");
                continue;
            }
        };
        assert_eq!(y.dims(), shape.as_slice(), "{label}");
        let err = rel_err(&values(&y), &expect, 1.0);
        assert!(err < 1e-12, "{label}: {err}");
        let r = normal(&mut Rng::new(26), &shape, 0.0, 1.0, DType::F64);
        let loss = |ts: &[Tensor]| weighted_sum(&conv2d_composite(&ts[0], &ts[1], &c)?, &r);
        gradcheck(&label, &[x.clone(), w.clone()], &loss, 1e-3);
        ran += 1;
    }
    assert!(ran >= 9, "only {ran} cases ran");
    Ok(())
}

#[test]
fn conv1d_layout_through_the_composite_f64() -> Result<()> {
    // what `conv1d` runs off the CPU: the height-1 image through the
    // composite, on every conv1d case (padding 0 included, where Candle's
    // conv1d input gradient is wrong)
    for (xs, ws, c) in conv1d_cases() {
        let (x, w) = inputs(33, &xs, &ws, DType::F64);
        let (shape, expect) = conv1d_reference(&x, &w, &c);
        let as4 = |t: &Tensor| t.unsqueeze(2);
        let y = conv2d_composite(&as4(&x)?, &as4(&w)?, &c.as_2d())?.squeeze(2)?;
        assert_eq!(y.dims(), shape.as_slice());
        assert!(rel_err(&values(&y), &expect, 1.0) < 1e-12);
        let r = normal(&mut Rng::new(34), &shape, 0.0, 1.0, DType::F64);
        let loss = |ts: &[Tensor]| {
            let y = conv2d_composite(&as4(&ts[0])?, &as4(&ts[1])?, &c.as_2d())?;
            weighted_sum(&y.squeeze(2)?, &r)
        };
        gradcheck(
            &format!("composite conv1d x{xs:?} w{ws:?} {c:?}"),
            &[x, w],
            &loss,
            1e-3,
        );
    }
    Ok(())
}

#[test]
fn pooling_composites_match_the_kernels_and_finite_differences_f64() -> Result<()> {
    for (xs, c) in pool_cases() {
        // the same inputs as `pooling_gradcheck_f64` (no near ties)
        let x = normal(&mut Rng::new(41), &xs, 0.0, 1.0, DType::F64);
        let (shape, _, _) = pool_reference(&x, &c, true);
        let r = normal(&mut Rng::new(43), &shape, 0.0, 1.0, DType::F64);
        for max in [true, false] {
            let (ours, comp) = if max {
                (max_pool2d_with(&x, &c)?, max_pool2d_composite(&x, &c)?)
            } else {
                (avg_pool2d_with(&x, &c)?, avg_pool2d_composite(&x, &c)?)
            };
            let label = format!(
                "composite {} pool x{xs:?} {c:?}",
                if max { "max" } else { "avg" }
            );
            assert_eq!(comp.dims(), ours.dims(), "{label}");
            assert!(
                rel_err(&values(&comp), &values(&ours), 1.0) < 1e-12,
                "{label}"
            );
            let loss = |ts: &[Tensor]| {
                let y = if max {
                    max_pool2d_composite(&ts[0], &c)?
                } else {
                    avg_pool2d_composite(&ts[0], &c)?
                };
                weighted_sum(&y, &r)
            };
            gradcheck(&label, std::slice::from_ref(&x), &loss, 1e-3);
        }
    }
    Ok(())
}

// ----------------------------------------------------------- Candle defects

/// Relative error of Candle's analytic gradients against finite
/// differences, or `None` when Candle's backward fails.
fn candle_grad_errors(
    inputs: &[Tensor],
    loss: &dyn Fn(&[Tensor]) -> Result<Tensor>,
) -> Option<Vec<f64>> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = loss(&ts).ok()?.backward().ok()?;
    let numeric = numeric(inputs, loss);
    let errs = ts
        .iter()
        .zip(&numeric)
        .map(|(t, n)| match grads.get(t) {
            Some(g) if g.dims() == t.dims() => rel_err(&values(g), n, 1e-3),
            _ => f64::INFINITY,
        })
        .collect();
    Some(errs)
}

#[test]
fn candle_defect_conv1d_weight_gradient() {
    // Padding 1: Candle's input gradient is right here, its kernel gradient
    // is not. Ours: `conv1d_gradcheck_f64`.
    let (x, w) = inputs(50, &[2, 3, 9], &[4, 3, 3], DType::F64);
    let r = normal(&mut Rng::new(51), &[2, 4, 9], 0.0, 1.0, DType::F64);
    let loss = |ts: &[Tensor]| weighted_sum(&ts[0].conv1d(&ts[1], 1, 1, 1, 1)?, &r);
    let errs = candle_grad_errors(&[x, w], &loss).expect("candle conv1d backward failed");
    println!("candle conv1d p1: dx/dw rel err {}", fmt(&errs));
    assert!(errs[0] < FD_RTOL, "input gradient: {errs:?}");
    assert!(
        errs[1] > 1e-2,
        "Candle's conv1d kernel gradient is right now: {errs:?}"
    );
}

#[test]
fn candle_defect_conv1d_input_gradient_at_padding_0() {
    let (x, w) = inputs(52, &[2, 3, 9], &[4, 3, 3], DType::F64);
    let r = normal(&mut Rng::new(53), &[2, 4, 7], 0.0, 1.0, DType::F64);
    let loss = |ts: &[Tensor]| weighted_sum(&ts[0].conv1d(&ts[1], 0, 1, 1, 1)?, &r);
    let errs = candle_grad_errors(&[x, w], &loss).expect("candle conv1d backward failed");
    println!("candle conv1d p0: dx/dw rel err {}", fmt(&errs));
    assert!(
        errs[0] > 1e-2,
        "Candle's conv1d input gradient is right now: {errs:?}"
    );
}

#[test]
fn candle_defect_conv2d_backward_on_non_square_input() {
    // Stride 2 on a 5x6 input: the output padding of the transposed
    // convolution is derived from the height alone.
    let (x, w) = inputs(54, &[2, 2, 5, 6], &[3, 2, 3, 3], DType::F64);
    let r = normal(&mut Rng::new(55), &[2, 3, 3, 3], 0.0, 1.0, DType::F64);
    let loss = |ts: &[Tensor]| weighted_sum(&ts[0].conv2d(&ts[1], 1, 2, 1, 1)?, &r);
    let errs = candle_grad_errors(&[x, w], &loss);
    println!("candle conv2d 5x6 s2: dx/dw rel err {errs:?}");
    let broken = errs.as_ref().is_none_or(|e| e.iter().any(|&v| v > 1e-2));
    assert!(
        broken,
        "Candle's conv2d backward is right now on 5x6 stride 2: {errs:?}"
    );
}

#[test]
fn candle_defect_pooling_backward_kernel_ne_stride() {
    let x = normal(&mut Rng::new(56), &[1, 2, 7, 7], 0.0, 1.0, DType::F64);
    let xv = Var::from_tensor(&x).unwrap();
    let max = xv.as_tensor().max_pool2d_with_stride(3, 2).unwrap();
    assert!(
        max.sum_all().unwrap().backward().is_err(),
        "Candle's max_pool2d has a backward for kernel != stride now"
    );
    let avg = xv.as_tensor().avg_pool2d_with_stride(3, 2).unwrap();
    assert!(
        avg.sum_all().unwrap().backward().is_err(),
        "Candle's avg_pool2d has a backward for kernel != stride now"
    );
}

#[test]
fn candle_defect_max_pool_backward_even_when_kernel_equals_stride() {
    let x = normal(&mut Rng::new(59), &[1, 2, 4, 6], 0.0, 1.0, DType::F64);
    let r = normal(&mut Rng::new(60), &[1, 2, 2, 3], 0.0, 1.0, DType::F64);
    // kernel == stride == 2 dividing 4x6, no ties: Candle's gradient comes
    // out divided by kernel² (it multiplies by the share of maxima in each
    // window instead of dividing by their number): rel err 0.75. Its
    // average-pool backward is right on this shape.
    let loss = |ts: &[Tensor]| weighted_sum(&ts[0].max_pool2d(2)?, &r);
    let errs = candle_grad_errors(std::slice::from_ref(&x), &loss).expect("candle backward failed");
    println!("candle max pool 2 on 4x6: rel err {errs:?}");
    assert!(
        errs[0] > 0.5,
        "Candle's max_pool2d backward is right now: {errs:?}"
    );
    let avg_loss = |ts: &[Tensor]| weighted_sum(&ts[0].avg_pool2d(2)?, &r);
    let errs = candle_grad_errors(&[x], &avg_loss).expect("candle backward failed");
    assert!(errs[0] < FD_RTOL, "{errs:?}");
}

#[test]
fn candle_defect_pooling_backward_when_the_kernel_does_not_divide_the_input() {
    // kernel == stride == 2 on 5x7: the last row and column are in no
    // window, but Candle upsamples the gradient over the whole input.
    let x = normal(&mut Rng::new(57), &[1, 2, 5, 7], 0.0, 1.0, DType::F64);
    let r = normal(&mut Rng::new(58), &[1, 2, 2, 3], 0.0, 1.0, DType::F64);
    let max_loss = |ts: &[Tensor]| weighted_sum(&ts[0].max_pool2d(2)?, &r);
    let avg_loss = |ts: &[Tensor]| weighted_sum(&ts[0].avg_pool2d(2)?, &r);
    for (name, loss) in [
        ("max", &max_loss as &dyn Fn(&[Tensor]) -> Result<Tensor>),
        ("avg", &avg_loss),
    ] {
        let errs = candle_grad_errors(std::slice::from_ref(&x), loss);
        println!("candle {name} pool 2 on 5x7: rel err {errs:?}");
        let broken = errs.as_ref().is_none_or(|e| e[0] > 1e-2);
        assert!(
            broken,
            "Candle's {name} pool backward is right now on 5x7: {errs:?}"
        );
    }
}
