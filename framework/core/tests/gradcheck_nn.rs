//! Gradient checks of the non-convolution ops that training uses: layer
//! norm, RMS norm, group norm, softmax / log-softmax, GELU, embedding and
//! gather, matmul and linear on non-contiguous inputs, dropout. Each is
//! checked against central finite differences in f64 (with a random
//! upstream gradient), and its forward against a plain-loop reference.
//!
//! Where Candle 0.11.1 is wrong, the project has its own op in
//! `parallax_core::ops`, and a `candle_defect_*` test below asserts that the
//! defect is still there. When one of those fails after a Candle upgrade,
//! Candle has been fixed: the replacement can be dropped in favour of
//! Candle's op (after its gradient check here passes).

mod common;

use candle_core::{DType, Device, Module, Result, Tensor, Var, D};
use common::*;
use parallax_core::nn::encoder::ForwardCtx;
use parallax_core::nn::init::VarStore;
use parallax_core::ops::dropout::{dropout, Dropout};
use parallax_core::ops::layer_norm::{
    layer_norm, layer_norm_composite, rms_norm, rms_norm_composite, LayerNorm, RmsNorm,
};
use parallax_core::ops::linear::{linear, matmul, Linear};
use parallax_core::ops::softmax::{log_softmax_last_dim, softmax_last_dim};
use parallax_core::rng::Rng;

/// Whether a gradient of `sum(f(x)·r)` reaches `x`.
fn gradient_reaches(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> bool {
    let v = Var::from_tensor(x).unwrap();
    let y = f(v.as_tensor()).unwrap();
    let r = y.ones_like().unwrap();
    let grads = weighted_sum(&y, &r).unwrap().backward().unwrap();
    grads.get(v.as_tensor()).is_some()
}

/// Checks the gradients of the `f32` and `f64` forward against each other's
/// scale: `a` (f32 run) against `b` (f64 reference).
fn assert_close(label: &str, a: &[f64], b: &[f64], tol: f64) {
    let err = rel_err(a, b, 1.0);
    println!("{label}: rel err {err:.1e}");
    assert!(err < tol, "{label}: off by {err:e}");
}

// --------------------------------------------------------- layer / rms norm

/// Plain-loop layer norm (`center`) or RMS norm over the last dimension.
fn norm_reference(x: &Tensor, w: &[f64], b: Option<&[f64]>, eps: f64, center: bool) -> Vec<f64> {
    let d = w.len();
    let xv = values(x);
    let mut y = Vec::with_capacity(xv.len());
    for row in xv.chunks(d) {
        let m = if center {
            row.iter().sum::<f64>() / d as f64
        } else {
            0.0
        };
        let v = row.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / d as f64;
        for (j, x) in row.iter().enumerate() {
            let z = (x - m) / (v + eps).sqrt() * w[j];
            y.push(z + b.map_or(0.0, |b| b[j]));
        }
    }
    y
}

fn norm_inputs(seed: u64, shape: &[usize], dtype: DType) -> (Tensor, Tensor, Tensor) {
    let mut rng = Rng::new(seed);
    let d = shape[shape.len() - 1];
    // A mean far from zero exercises the centring.
    let x = normal(&mut rng, shape, 3.0, 2.0, dtype);
    let w = normal(&mut rng, &[d], 1.0, 0.5, dtype);
    let b = normal(&mut rng, &[d], 0.0, 0.5, dtype);
    (x, w, b)
}

#[test]
fn layer_norm_and_rms_norm_forward_match_reference() {
    let eps = 1e-5;
    // d = 1 (a constant row), d < 8 and d > 8 with a tail for the lane sums.
    for shape in [&[4, 7][..], &[2, 3, 19], &[5, 1], &[33]] {
        let (x, w, b) = norm_inputs(1, shape, DType::F64);
        let (wv, bv) = (values(&w), values(&b));
        let ln_ref = norm_reference(&x, &wv, Some(&bv), eps, true);
        let rms_ref = norm_reference(&x, &wv, None, eps, false);
        let ln = layer_norm(&x, &w, &b, eps).unwrap();
        let rms = rms_norm(&x, &w, eps).unwrap();
        assert_eq!(ln.dims(), shape);
        assert_eq!(rms.dims(), shape);
        assert_close(
            &format!("layer norm {shape:?}"),
            &values(&ln),
            &ln_ref,
            1e-13,
        );
        assert_close(
            &format!("rms norm {shape:?}"),
            &values(&rms),
            &rms_ref,
            1e-13,
        );
        let ln_c = layer_norm_composite(&x, &w, &b, eps).unwrap();
        let rms_c = rms_norm_composite(&x, &w, eps).unwrap();
        assert_close("layer norm composite", &values(&ln_c), &ln_ref, 1e-13);
        assert_close("rms norm composite", &values(&rms_c), &rms_ref, 1e-13);
        // The f32 kernels.
        let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let ln32 = layer_norm(&f(&x), &f(&w), &f(&b), eps).unwrap();
        let rms32 = rms_norm(&f(&x), &f(&w), eps).unwrap();
        assert_eq!(ln32.dtype(), DType::F32);
        assert_close("layer norm f32", &values(&ln32), &ln_ref, 1e-5);
        assert_close("rms norm f32", &values(&rms32), &rms_ref, 1e-5);
    }
}

#[test]
fn layer_norm_and_rms_norm_take_non_contiguous_input() {
    let eps = 1e-5;
    let (x, w, b) = norm_inputs(2, &[6, 4, 3], DType::F64);
    let w6 = w.narrow(0, 0, 3).unwrap();
    let b6 = b.narrow(0, 0, 3).unwrap();
    let xt = x.transpose(0, 1).unwrap(); // [4, 6, 3], non-contiguous
    assert!(!xt.is_contiguous());
    let xc = xt.contiguous().unwrap();
    let ln_ref = norm_reference(&xc, &values(&w6), Some(&values(&b6)), eps, true);
    let rms_ref = norm_reference(&xc, &values(&w6), None, eps, false);
    let ln = values(&layer_norm(&xt, &w6, &b6, eps).unwrap());
    let rms = values(&rms_norm(&xt, &w6, eps).unwrap());
    assert_close("layer norm non-contiguous", &ln, &ln_ref, 1e-13);
    assert_close("rms norm non-contiguous", &rms, &rms_ref, 1e-13);
}

#[test]
fn layer_norm_gradcheck_f64() {
    let eps = 1e-5;
    let (x, w, b) = norm_inputs(3, &[3, 4, 10], DType::F64);
    let r = normal(&mut Rng::new(4), &[3, 4, 10], 0.0, 1.0, DType::F64);
    gradcheck(
        "layer norm",
        &[x.clone(), w.clone(), b.clone()],
        &|ts| weighted_sum(&layer_norm(&ts[0], &ts[1], &ts[2], eps)?, &r),
        1.0,
    );
    // Non-contiguous x: [10, 4, 3] seen as [3, 4, 10].
    let xt = x.permute((2, 1, 0)).unwrap().contiguous().unwrap();
    gradcheck(
        "layer norm, transposed input",
        &[xt, w, b],
        &|ts| {
            let x = ts[0].permute((2, 1, 0))?;
            weighted_sum(&layer_norm(&x, &ts[1], &ts[2], eps)?, &r)
        },
        1.0,
    );
}

#[test]
fn rms_norm_gradcheck_f64() {
    let eps = 1e-5;
    let (x, w, _) = norm_inputs(5, &[3, 4, 10], DType::F64);
    let r = normal(&mut Rng::new(6), &[3, 4, 10], 0.0, 1.0, DType::F64);
    gradcheck(
        "rms norm",
        &[x.clone(), w.clone()],
        &|ts| weighted_sum(&rms_norm(&ts[0], &ts[1], eps)?, &r),
        1.0,
    );
    let xt = x.permute((2, 1, 0)).unwrap().contiguous().unwrap();
    gradcheck(
        "rms norm, transposed input",
        &[xt, w],
        &|ts| {
            let x = ts[0].permute((2, 1, 0))?;
            weighted_sum(&rms_norm(&x, &ts[1], eps)?, &r)
        },
        1.0,
    );
}

/// Analytic gradients of the kernel and of the composite agree on an input
/// large enough for several row chunks (the parameter gradients are reduced
/// across chunks).
#[test]
fn norm_kernels_match_composites_over_many_chunks() {
    let eps = 1e-5;
    let shape = [900, 48];
    let (x, w, b) = norm_inputs(7, &shape, DType::F64);
    let r = normal(&mut Rng::new(8), &shape, 0.0, 1.0, DType::F64);
    let inputs = [x, w, b];
    let ours = analytic(&inputs, &|ts| {
        weighted_sum(&layer_norm(&ts[0], &ts[1], &ts[2], eps)?, &r)
    });
    let reference = analytic(&inputs, &|ts| {
        weighted_sum(&layer_norm_composite(&ts[0], &ts[1], &ts[2], eps)?, &r)
    });
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert_close(&format!("layer norm grad {i}"), a, b, 1e-12);
    }
    let ours = analytic(&inputs[..2], &|ts| {
        weighted_sum(&rms_norm(&ts[0], &ts[1], eps)?, &r)
    });
    let reference = analytic(&inputs[..2], &|ts| {
        weighted_sum(&rms_norm_composite(&ts[0], &ts[1], eps)?, &r)
    });
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert_close(&format!("rms norm grad {i}"), a, b, 1e-12);
    }
}

#[test]
fn norm_modules_load_parameters_and_reject_bad_shapes() {
    let store = VarStore::new(0);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let ln = LayerNorm::load(5, 1e-5, vb.pp("ln")).unwrap();
    let rms = RmsNorm::load(5, 1e-5, vb.pp("rms")).unwrap();
    assert_eq!(values(ln.weight()), vec![1.0; 5]);
    assert_eq!(values(ln.bias()), vec![0.0; 5]);
    assert_eq!(values(rms.weight()), vec![1.0; 5]);
    let names: Vec<String> = store.named_vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["ln.bias", "ln.weight", "rms.weight"]);
    let x = normal(&mut Rng::new(1), &[2, 5], 0.0, 1.0, DType::F32);
    assert_eq!(ln.forward(&x).unwrap().dims(), [2, 5]);
    assert_eq!(rms.forward(&x).unwrap().dims(), [2, 5]);
    let x4 = normal(&mut Rng::new(1), &[2, 4], 0.0, 1.0, DType::F32);
    assert!(ln.forward(&x4).is_err());
    assert!(rms.forward(&x4).is_err());
    let x64 = x.to_dtype(DType::F64).unwrap();
    assert!(ln.forward(&x64).is_err(), "dtype mismatch must be an error");
}

// ---------------------------------------------------------------- group norm

/// Candle's `GroupNorm` is a composite of ops with gradients and checks out:
/// the project uses it as is.
#[test]
fn candle_group_norm_gradcheck_f64() {
    let (groups, c) = (3, 6);
    let shape = [2, c, 2, 3];
    let mut rng = Rng::new(9);
    let x = normal(&mut rng, &shape, 2.0, 1.5, DType::F64);
    let w = normal(&mut rng, &[c], 1.0, 0.5, DType::F64);
    let b = normal(&mut rng, &[c], 0.0, 0.5, DType::F64);
    let r = normal(&mut rng, &shape, 0.0, 1.0, DType::F64);
    let eps = 1e-5;
    let gn = |ts: &[Tensor]| -> Result<Tensor> {
        candle_nn::GroupNorm::new(ts[1].clone(), ts[2].clone(), c, groups, eps)?.forward(&ts[0])
    };
    // Reference: each group of c/groups channels of a sample normalised
    // together, then the per-channel affine.
    let y = values(&gn(&[x.clone(), w.clone(), b.clone()]).unwrap());
    let (xv, wv, bv) = (values(&x), values(&w), values(&b));
    let per_group = c / groups * 6;
    let mut want = Vec::new();
    for (gi, grp) in xv.chunks(per_group).enumerate() {
        let m = grp.iter().sum::<f64>() / per_group as f64;
        let v = grp.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / per_group as f64;
        for (k, x) in grp.iter().enumerate() {
            let ch = (gi % groups) * (c / groups) + k / 6;
            want.push((x - m) / (v + eps).sqrt() * wv[ch] + bv[ch]);
        }
    }
    assert_close("group norm forward", &y, &want, 1e-13);
    gradcheck(
        "group norm",
        &[x, w, b],
        &|ts| weighted_sum(&gn(ts)?, &r),
        1.0,
    );
}

// ---------------------------------------------------------------- softmax

fn softmax_reference(x: &Tensor, log: bool) -> Vec<f64> {
    let d = x.dim(D::Minus1).unwrap();
    let mut y = Vec::new();
    for row in values(x).chunks(d) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
        y.extend(row.iter().map(|v| {
            if log {
                v - m - s.ln()
            } else {
                (v - m).exp() / s
            }
        }));
    }
    y
}

#[test]
fn softmax_forward_matches_reference() {
    for shape in [&[4, 7][..], &[2, 3, 19], &[5, 1], &[33]] {
        let x = normal(&mut Rng::new(10), shape, 0.0, 3.0, DType::F64);
        for log in [false, true] {
            let f = if log {
                log_softmax_last_dim
            } else {
                softmax_last_dim
            };
            let want = softmax_reference(&x, log);
            let y = f(&x).unwrap();
            assert_eq!(y.dims(), shape);
            assert_close(
                &format!("softmax {shape:?} log={log}"),
                &values(&y),
                &want,
                1e-14,
            );
            let y32 = f(&x.to_dtype(DType::F32).unwrap()).unwrap();
            assert_close("softmax f32", &values(&y32), &want, 1e-6);
            if shape.len() > 1 && shape[shape.len() - 1] > 1 {
                // The same values in a non-contiguous layout.
                let xt = x.t().unwrap().contiguous().unwrap().t().unwrap();
                assert!(!xt.is_contiguous());
                let y = values(&f(&xt).unwrap());
                assert_close("softmax non-contiguous", &y, &want, 1e-14);
            }
        }
    }
}

#[test]
fn softmax_gradcheck_f64() {
    let shape = [3, 4, 7];
    let x = normal(&mut Rng::new(11), &shape, 0.0, 2.0, DType::F64);
    let r = normal(&mut Rng::new(12), &shape, 0.0, 1.0, DType::F64);
    gradcheck(
        "softmax",
        std::slice::from_ref(&x),
        &|ts| weighted_sum(&softmax_last_dim(&ts[0])?, &r),
        1e-3,
    );
    gradcheck(
        "log softmax",
        std::slice::from_ref(&x),
        &|ts| weighted_sum(&log_softmax_last_dim(&ts[0])?, &r),
        1e-3,
    );
    // Non-contiguous: [7, 4, 3] seen as [3, 4, 7].
    let xt = x.permute((2, 1, 0)).unwrap().contiguous().unwrap();
    gradcheck(
        "softmax, transposed input",
        std::slice::from_ref(&xt),
        &|ts| weighted_sum(&softmax_last_dim(&ts[0].permute((2, 1, 0))?)?, &r),
        1e-3,
    );
    gradcheck(
        "log softmax, transposed input",
        &[xt],
        &|ts| weighted_sum(&log_softmax_last_dim(&ts[0].permute((2, 1, 0))?)?, &r),
        1e-3,
    );
}

/// Logits around ±1000 overflow a naive `exp`; the row maximum is
/// subtracted first, so values and gradients stay finite and right.
#[test]
fn softmax_is_stable_for_large_logits() {
    let mut rng = Rng::new(13);
    let x = normal(&mut rng, &[3, 6], 0.0, 2.0, DType::F64);
    let shift = Tensor::new(&[[1000.0f64], [-1000.0], [0.0]], &Device::Cpu).unwrap();
    let x = x.broadcast_add(&shift).unwrap();
    let x = x.slice_assign(
        &[2..3, 0..1],
        &Tensor::new(&[[1500.0f64]], &Device::Cpu).unwrap(),
    );
    let x = x.unwrap();
    for dtype in [DType::F32, DType::F64] {
        let xd = x.to_dtype(dtype).unwrap();
        for log in [false, true] {
            let y = if log {
                log_softmax_last_dim(&xd).unwrap()
            } else {
                softmax_last_dim(&xd).unwrap()
            };
            let y = values(&y);
            assert!(
                y.iter().all(|v| v.is_finite()),
                "{dtype:?} log={log}: {y:?}"
            );
            let want = softmax_reference(&x, log);
            assert_close("large logits", &y, &want, 1e-5);
        }
    }
    let r = normal(&mut rng, &[3, 6], 0.0, 1.0, DType::F64);
    gradcheck(
        "softmax, large logits",
        std::slice::from_ref(&x),
        &|ts| weighted_sum(&softmax_last_dim(&ts[0])?, &r),
        1e-3,
    );
    gradcheck(
        "log softmax, large logits",
        &[x],
        &|ts| weighted_sum(&log_softmax_last_dim(&ts[0])?, &r),
        1e-3,
    );
}

/// Our ops against Candle's generic (correct) `softmax` / `log_softmax` on
/// an input of several row chunks, forward and analytic gradient.
#[test]
fn softmax_matches_candle_generic_softmax() {
    let shape = [600, 40];
    let x = normal(&mut Rng::new(14), &shape, 0.0, 3.0, DType::F64);
    let r = normal(&mut Rng::new(15), &shape, 0.0, 1.0, DType::F64);
    for log in [false, true] {
        let ours = |t: &Tensor| {
            if log {
                log_softmax_last_dim(t)
            } else {
                softmax_last_dim(t)
            }
        };
        let candle = |t: &Tensor| {
            if log {
                candle_nn::ops::log_softmax(t, D::Minus1)
            } else {
                candle_nn::ops::softmax(t, D::Minus1)
            }
        };
        assert_close(
            "softmax vs candle",
            &values(&ours(&x).unwrap()),
            &values(&candle(&x).unwrap()),
            1e-14,
        );
        let a = analytic(std::slice::from_ref(&x), &|ts| {
            weighted_sum(&ours(&ts[0])?, &r)
        });
        let b = analytic(std::slice::from_ref(&x), &|ts| {
            weighted_sum(&candle(&ts[0])?, &r)
        });
        assert_close("softmax grad vs candle", &a[0], &b[0], 1e-12);
    }
}

// ---------------------------------------------------------------- GELU

/// Candle's `gelu` (tanh approximation) and `gelu_erf` have gradients that
/// agree with finite differences (their backward uses 6-digit constants,
/// ~2e-7 relative, inside the tolerance): the project uses them as they are.
#[test]
fn candle_gelu_gradcheck_f64() {
    let mut rng = Rng::new(16);
    let x = normal(&mut rng, &[6, 8], 0.0, 2.0, DType::F64);
    let r = normal(&mut rng, &[6, 8], 0.0, 1.0, DType::F64);
    let reference = |tanh: bool| -> Vec<f64> {
        values(&x)
            .iter()
            .map(|&v| {
                if tanh {
                    let k = (2.0 / std::f64::consts::PI).sqrt();
                    0.5 * v * (1.0 + (k * (v + 0.044715 * v * v * v)).tanh())
                } else {
                    // erf by its Taylor series, which loses a few digits to
                    // cancellation for |v| ≈ 6 (hence the 1e-10 below).
                    let z = v / 2f64.sqrt();
                    let mut term = z;
                    let mut sum = z;
                    for n in 1..200 {
                        term *= -z * z / n as f64;
                        sum += term / (2 * n + 1) as f64;
                    }
                    let erf = 2.0 / std::f64::consts::PI.sqrt() * sum;
                    0.5 * v * (1.0 + erf)
                }
            })
            .collect()
    };
    assert_close(
        "gelu forward",
        &values(&x.gelu().unwrap()),
        &reference(true),
        1e-14,
    );
    assert_close(
        "gelu_erf forward",
        &values(&x.gelu_erf().unwrap()),
        &reference(false),
        1e-10,
    );
    gradcheck(
        "gelu",
        std::slice::from_ref(&x),
        &|ts| weighted_sum(&ts[0].gelu()?, &r),
        1.0,
    );
    gradcheck(
        "gelu_erf",
        &[x],
        &|ts| weighted_sum(&ts[0].gelu_erf()?, &r),
        1.0,
    );
}

// ---------------------------------------------------------- embedding, gather

/// `index_select` (Candle's `Embedding`) and `gather` accumulate the
/// gradient of repeated indices into the table: Candle is right.
#[test]
fn candle_index_select_and_gather_gradcheck_f64() {
    let mut rng = Rng::new(17);
    let table = normal(&mut rng, &[5, 3], 0.0, 1.0, DType::F64);
    let ids = Tensor::new(&[[3u32, 0, 3], [1, 3, 0]], &Device::Cpu).unwrap();
    // Embedding forward: rows of the table.
    let emb = candle_nn::Embedding::new(table.clone(), 3);
    let y = emb.forward(&ids).unwrap();
    assert_eq!(y.dims(), [2, 3, 3]);
    let tv = values(&table);
    let want: Vec<f64> = [3, 0, 3, 1, 3, 0]
        .iter()
        .flat_map(|&i| tv[i * 3..i * 3 + 3].to_vec())
        .collect();
    assert_eq!(values(&y), want);
    let r = normal(&mut rng, &[2, 3, 3], 0.0, 1.0, DType::F64);
    let g = gradcheck(
        "embedding (index_select)",
        std::slice::from_ref(&table),
        &|ts| {
            weighted_sum(
                &candle_nn::Embedding::new(ts[0].clone(), 3).forward(&ids)?,
                &r,
            )
        },
        1.0,
    );
    // Row 3 appears three times: its gradient is the sum of three rows of r.
    let rv = values(&r);
    for k in 0..3 {
        let want = rv[k] + rv[6 + k] + rv[12 + k];
        assert!((g[0][9 + k] - want).abs() < 1e-12);
    }
    assert_eq!(&g[0][6..9], &[0.0; 3], "row 2 is never selected");
    // gather along dim 1, repeated indices within a row.
    let idx = Tensor::new(&[[2u32, 2, 0, 1], [1, 1, 1, 0]], &Device::Cpu).unwrap();
    let src = normal(&mut rng, &[2, 3], 0.0, 1.0, DType::F64);
    let r = normal(&mut rng, &[2, 4], 0.0, 1.0, DType::F64);
    let sv = values(&src);
    let want: Vec<f64> = [2, 2, 0, 1, 4, 4, 4, 3].iter().map(|&i| sv[i]).collect();
    assert_eq!(values(&src.gather(&idx, 1).unwrap()), want);
    gradcheck(
        "gather",
        &[src],
        &|ts| weighted_sum(&ts[0].gather(&idx, 1)?, &r),
        1.0,
    );
    // A non-contiguous table is an error (not a silent one) on the CPU: make
    // it contiguous first; the gradient flows back through the copy.
    let r = normal(&mut rng, &[4, 5], 0.0, 1.0, DType::F64);
    let sel = Tensor::new(&[2u32, 0, 2, 1], &Device::Cpu).unwrap();
    assert!(table.t().unwrap().index_select(&sel, 0).is_err());
    gradcheck(
        "index_select, transposed table",
        &[table],
        &|ts| weighted_sum(&ts[0].t()?.contiguous()?.index_select(&sel, 0)?, &r),
        1.0,
    );
}

// ------------------------------------------------------------ matmul, linear

/// Plain-loop `x · wᵀ + b` over the last dimension.
fn linear_reference(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Vec<f64> {
    let (o, k) = w.dims2().unwrap();
    let (xv, wv) = (values(&x.contiguous().unwrap()), values(w));
    let bv = b.map(values);
    let mut y = Vec::new();
    for row in xv.chunks(k) {
        for j in 0..o {
            let dot: f64 = (0..k).map(|i| row[i] * wv[j * k + i]).sum();
            y.push(dot + bv.as_ref().map_or(0.0, |b| b[j]));
        }
    }
    y
}

/// Plain-loop batched `a · b` of `[n, m, k]` and `[n, k, p]` (any layout).
fn bmm_reference(a: &Tensor, b: &Tensor) -> Vec<f64> {
    let (n, m, k) = a.dims3().unwrap();
    let p = b.dim(2).unwrap();
    let (av, bv) = (
        values(&a.contiguous().unwrap()),
        values(&b.contiguous().unwrap()),
    );
    let mut y = Vec::new();
    for s in 0..n {
        for i in 0..m {
            for j in 0..p {
                y.push(
                    (0..k)
                        .map(|l| av[(s * m + i) * k + l] * bv[(s * k + l) * p + j])
                        .sum(),
                );
            }
        }
    }
    y
}

/// Non-contiguous inputs of `linear`: transposes of different axes, a
/// permuted 4-D tensor, a narrowed view, a 1-D vector.
fn linear_cases(rng: &mut Rng, k: usize) -> Vec<(&'static str, Tensor)> {
    let t = |rng: &mut Rng, s: &[usize]| normal(rng, s, 0.0, 1.0, DType::F64);
    vec![
        (
            "[B,D,S] transpose(1,2)",
            t(rng, &[2, k, 3]).transpose(1, 2).unwrap(),
        ),
        (
            "[S,B,D] transpose(0,1)",
            t(rng, &[3, 2, k]).transpose(0, 1).unwrap(),
        ),
        (
            "4-D permuted",
            t(rng, &[2, k, 2, 3]).permute((0, 2, 3, 1)).unwrap(),
        ),
        ("narrowed", t(rng, &[3, 4, k + 2]).narrow(2, 1, k).unwrap()),
        ("2-D transposed", t(rng, &[k, 4]).t().unwrap()),
        ("1-D", t(rng, &[k])),
        (
            "2-D broadcast rows",
            t(rng, &[k]).broadcast_as((3, k)).unwrap(),
        ),
        (
            "3-D broadcast",
            t(rng, &[1, 2, k]).broadcast_as((3, 2, k)).unwrap(),
        ),
    ]
}

#[test]
fn linear_is_right_for_non_contiguous_inputs() {
    let mut rng = Rng::new(18);
    let k = 5;
    let w = normal(&mut rng, &[4, k], 0.0, 1.0, DType::F64);
    let b = normal(&mut rng, &[4], 0.0, 1.0, DType::F64);
    for (label, x) in linear_cases(&mut rng, k) {
        let want = linear_reference(&x, &w, Some(&b));
        let y = linear(&x, &w, Some(&b)).unwrap();
        let mut dims = x.dims().to_vec();
        *dims.last_mut().unwrap() = 4;
        assert_eq!(y.dims(), dims.as_slice(), "{label}");
        assert_close(&format!("linear {label}"), &values(&y), &want, 1e-14);
        let layer = Linear::new(w.clone(), None);
        let want = linear_reference(&x, &w, None);
        assert_close(
            &format!("Linear {label}"),
            &values(&layer.forward(&x).unwrap()),
            &want,
            1e-14,
        );
    }
    assert!(
        linear(&w.t().unwrap(), &w, None).is_err(),
        "input size mismatch"
    );
    assert!(linear(&w, &w, Some(&w)).is_err(), "bad bias");
}

#[test]
fn linear_gradcheck_f64_non_contiguous() {
    let mut rng = Rng::new(19);
    let (k, o) = (5, 4);
    let x = normal(&mut rng, &[2, k, 3], 0.0, 1.0, DType::F64);
    let w = normal(&mut rng, &[o, k], 0.0, 1.0, DType::F64);
    let b = normal(&mut rng, &[o], 0.0, 1.0, DType::F64);
    let r = normal(&mut rng, &[2, 3, o], 0.0, 1.0, DType::F64);
    gradcheck(
        "linear, [B,D,S] transpose(1,2)",
        &[x, w.clone(), b.clone()],
        &|ts| weighted_sum(&linear(&ts[0].transpose(1, 2)?, &ts[1], Some(&ts[2]))?, &r),
        1.0,
    );
    let x = normal(&mut rng, &[2, k, 2, 3], 0.0, 1.0, DType::F64);
    let r = normal(&mut rng, &[2, 2, 3, o], 0.0, 1.0, DType::F64);
    gradcheck(
        "linear, 4-D permuted",
        &[x, w, b],
        &|ts| {
            let x = ts[0].permute((0, 2, 3, 1))?;
            weighted_sum(&linear(&x, &ts[1], Some(&ts[2]))?, &r)
        },
        1.0,
    );
}

#[test]
fn matmul_is_right_for_non_contiguous_and_broadcast_inputs() {
    let mut rng = Rng::new(20);
    let t = |rng: &mut Rng, s: &[usize]| normal(rng, s, 0.0, 1.0, DType::F64);
    let (n, m, k, p) = (3, 4, 5, 2);
    // (lhs, rhs) pairs: transposed lhs against a broadcast rhs (the case
    // Candle gets wrong), transposed both, broadcast lhs, contiguous.
    let cases = vec![
        (
            "transposed lhs, broadcast rhs",
            t(&mut rng, &[n, k, m]).transpose(1, 2).unwrap(),
            t(&mut rng, &[k, p]).broadcast_left(n).unwrap(),
        ),
        (
            "transposed lhs, broadcast transposed rhs",
            t(&mut rng, &[n, k, m]).transpose(1, 2).unwrap(),
            t(&mut rng, &[p, k]).broadcast_left(n).unwrap().t().unwrap(),
        ),
        (
            "transposed lhs and rhs",
            t(&mut rng, &[n, k, m]).transpose(1, 2).unwrap(),
            t(&mut rng, &[n, p, k]).transpose(1, 2).unwrap(),
        ),
        (
            "broadcast lhs, transposed rhs",
            t(&mut rng, &[m, k]).broadcast_left(n).unwrap(),
            t(&mut rng, &[n, p, k]).transpose(1, 2).unwrap(),
        ),
        (
            "batch-transposed lhs",
            t(&mut rng, &[m, n, k]).transpose(0, 1).unwrap(),
            t(&mut rng, &[n, k, p]),
        ),
    ];
    for (label, a, b) in cases {
        let want = bmm_reference(&a, &b);
        assert_close(label, &values(&matmul(&a, &b).unwrap()), &want, 1e-14);
    }
    // broadcast_matmul of a transposed 3-D lhs with a 2-D rhs.
    let a = t(&mut rng, &[n, k, m]).transpose(1, 2).unwrap();
    let w = t(&mut rng, &[k, p]);
    let want = bmm_reference(&a, &w.broadcast_left(n).unwrap());
    assert_close(
        "broadcast_matmul",
        &values(&a.broadcast_matmul(&w).unwrap()),
        &want,
        1e-14,
    );
}

#[test]
fn matmul_gradcheck_f64_non_contiguous() {
    let mut rng = Rng::new(21);
    let (n, m, k, p) = (2, 3, 4, 2);
    let a = normal(&mut rng, &[n, k, m], 0.0, 1.0, DType::F64);
    let w = normal(&mut rng, &[p, k], 0.0, 1.0, DType::F64);
    let b = normal(&mut rng, &[n, p, k], 0.0, 1.0, DType::F64);
    let r = normal(&mut rng, &[n, m, p], 0.0, 1.0, DType::F64);
    gradcheck(
        "matmul, transposed lhs, broadcast rhs",
        &[a.clone(), w],
        &|ts| {
            let rhs = ts[1].broadcast_left(n)?.t()?;
            weighted_sum(&matmul(&ts[0].transpose(1, 2)?, &rhs)?, &r)
        },
        1.0,
    );
    gradcheck(
        "matmul, transposed lhs and rhs",
        &[a, b],
        &|ts| {
            let (lhs, rhs) = (ts[0].transpose(1, 2)?, ts[1].transpose(1, 2)?);
            weighted_sum(&matmul(&lhs, &rhs)?, &r)
        },
        1.0,
    );
}

/// The layer's variables have Candle's names and seeded initial values.
#[test]
fn linear_layer_loads_like_candle_linear() {
    for bias in [true, false] {
        let (a, b) = (VarStore::new(3), VarStore::new(3));
        let ours = Linear::load(6, 4, bias, a.var_builder(DType::F32, &Device::Cpu).pp("l"));
        let theirs =
            candle_nn::linear_b(6, 4, bias, b.var_builder(DType::F32, &Device::Cpu).pp("l"));
        let (ours, theirs) = (ours.unwrap(), theirs.unwrap());
        assert_eq!(values(ours.weight()), values(theirs.weight()));
        assert_eq!(ours.bias().map(values), theirs.bias().map(values));
        let names =
            |s: &VarStore| -> Vec<String> { s.named_vars().into_iter().map(|(n, _)| n).collect() };
        assert_eq!(names(&a), names(&b));
    }
}

// ---------------------------------------------------------------- dropout

#[test]
fn dropout_gradient_is_mask_over_keep_probability() {
    let p = 0.3;
    let mut rng = Rng::new(22);
    let x = normal(&mut rng, &[4, 6], 0.0, 1.0, DType::F64);
    let r = normal(&mut rng, &[4, 6], 0.0, 1.0, DType::F64);
    let state = Rng::new(23);
    // The same generator state in every evaluation: a fixed mask.
    let g = gradcheck(
        "dropout",
        std::slice::from_ref(&x),
        &|ts| weighted_sum(&dropout(&ts[0], p, &mut state.clone())?, &r),
        1.0,
    );
    let mask = values(&dropout(&x.ones_like().unwrap(), p, &mut state.clone()).unwrap());
    let scale = 1.0 / (1.0 - p);
    assert!(mask.iter().all(|&v| v == 0.0 || v == scale), "{mask:?}");
    assert!(mask.contains(&0.0) && mask.contains(&scale), "trivial mask");
    for ((gi, mi), ri) in g[0].iter().zip(&mask).zip(values(&r)) {
        assert!((gi - mi * ri).abs() < 1e-15, "gradient {gi} != {mi}·{ri}");
    }
    let y = values(&dropout(&x, p, &mut state.clone()).unwrap());
    for ((yi, xi), mi) in y.iter().zip(values(&x)).zip(&mask) {
        assert_eq!(*yi, xi * mi);
    }
}

#[test]
fn dropout_masks_are_seeded() {
    let x = Tensor::ones((64, 32), DType::F32, &Device::Cpu).unwrap();
    let draw = |seed: u64| values(&dropout(&x, 0.5, &mut Rng::derive(seed, "drop", &[1])).unwrap());
    assert_eq!(draw(1), draw(1), "same seed, same mask");
    assert_ne!(draw(1), draw(2), "different seed, different mask");
    // Successive calls on one generator draw different masks.
    let mut rng = Rng::new(4);
    let a = values(&dropout(&x, 0.5, &mut rng).unwrap());
    let b = values(&dropout(&x, 0.5, &mut rng).unwrap());
    assert_ne!(a, b);
}

#[test]
fn dropout_preserves_the_mean() {
    // 200,000 elements: the kept fraction has a standard deviation of about
    // 0.001, so the 0.01 tolerances are ten standard deviations (and the
    // seed is fixed, so the test cannot fail by chance).
    let n = 200_000;
    let x = Tensor::full(2.0f32, n, &Device::Cpu).unwrap();
    for p in [0.1, 0.5, 0.9] {
        let y = values(&dropout(&x, p, &mut Rng::new(5)).unwrap());
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        let mean = y.iter().sum::<f64>() / n as f64;
        println!("dropout p={p}: dropped {dropped:.4}, mean {mean:.4}");
        assert!((dropped - p).abs() < 0.01, "p={p}: dropped {dropped}");
        assert!(
            (mean - 2.0).abs() < 0.01 * 2.0 / (1.0 - p),
            "p={p}: mean {mean}"
        );
    }
}

#[test]
fn dropout_p_zero_is_identity_and_bad_p_is_rejected() {
    let x = normal(&mut Rng::new(6), &[3, 4], 0.0, 1.0, DType::F64);
    let mut rng = Rng::new(7);
    let y = dropout(&x, 0.0, &mut rng).unwrap();
    assert_eq!(values(&y), values(&x));
    assert_eq!(rng.uniform(), Rng::new(7).uniform(), "p = 0 draws nothing");
    for p in [1.0, 1.5, -0.1, f64::NAN, f64::INFINITY] {
        assert!(dropout(&x, p, &mut rng).is_err(), "p = {p} accepted");
        assert!(Dropout::new(p).is_err(), "p = {p} accepted");
    }
    // The layer: identity in evaluation mode, seeded dropout in training.
    let layer = Dropout::new(0.5).unwrap();
    let eval = layer.forward(&x, &mut ForwardCtx::eval()).unwrap();
    assert_eq!(values(&eval), values(&x));
    let train = layer
        .forward(&x, &mut ForwardCtx::train(Rng::new(8)))
        .unwrap();
    let want = dropout(&x, 0.5, &mut Rng::new(8)).unwrap();
    assert_eq!(values(&train), values(&want));
}

// ------------------------------------------------------------ Candle defects
//
// Each test asserts that a defect of Candle 0.11.1 is still present. When one
// fails after a Candle upgrade, Candle has been fixed: the project's
// replacement (named in the test) can be dropped once Candle's op passes the
// gradient checks above.

fn defect_inputs() -> (Tensor, Tensor, Tensor) {
    // f32: Candle's fused norms have no f64 CPU kernel.
    norm_inputs(30, &[3, 8], DType::F32)
}

/// Replaced by `ops::softmax::softmax_last_dim`.
#[test]
fn candle_defect_softmax_last_dim_has_no_gradient() {
    let (x, _, _) = defect_inputs();
    assert!(!gradient_reaches(&x, candle_nn::ops::softmax_last_dim));
    // The generic softmax does have one.
    assert!(gradient_reaches(&x, |x| candle_nn::ops::softmax(
        x,
        D::Minus1
    )));
    assert!(gradient_reaches(&x, softmax_last_dim));
    assert!(gradient_reaches(&x, log_softmax_last_dim));
}

/// Replaced by `ops::layer_norm::layer_norm`.
#[test]
fn candle_defect_layer_norm_has_no_gradient() {
    let (x, w, b) = defect_inputs();
    assert!(!gradient_reaches(&x, |x| candle_nn::ops::layer_norm(
        x, &w, &b, 1e-5
    )));
    assert!(!gradient_reaches(&w, |w| candle_nn::ops::layer_norm(
        &x, w, &b, 1e-5
    )));
    // `layer_norm_slow` does have one.
    assert!(gradient_reaches(&x, |x| candle_nn::ops::layer_norm_slow(
        x, &w, &b, 1e-5
    )));
    assert!(gradient_reaches(&x, |x| layer_norm(x, &w, &b, 1e-5)));
}

/// Replaced by `ops::layer_norm::LayerNorm`.
#[test]
fn candle_defect_layer_norm_module_has_no_gradient() {
    let (x, w, b) = defect_inputs();
    let ln = candle_nn::LayerNorm::new(w.clone(), b.clone(), 1e-5);
    assert!(x.is_contiguous());
    assert!(!gradient_reaches(&x, |x| ln.forward(x)));
    let ours = LayerNorm::new(w, b, 1e-5);
    assert!(gradient_reaches(&x, |x| ours.forward(x)));
}

/// Replaced by `ops::layer_norm::rms_norm` / `RmsNorm`.
#[test]
fn candle_defect_rms_norm_has_no_gradient() {
    let (x, w, _) = defect_inputs();
    assert!(!gradient_reaches(&x, |x| candle_nn::ops::rms_norm(
        x, &w, 1e-5
    )));
    let module = candle_nn::RmsNorm::new(w.clone(), 1e-5);
    assert!(!gradient_reaches(&x, |x| module.forward(x)));
    assert!(gradient_reaches(&x, |x| rms_norm(x, &w, 1e-5)));
}

/// Replaced by `ops::linear::linear` / `Linear` (and `ops::linear::matmul`).
#[test]
fn candle_defect_linear_non_contiguous_input_gives_wrong_values() {
    let mut rng = Rng::new(31);
    let w = normal(&mut rng, &[4, 5], 0.0, 1.0, DType::F32);
    let layer = candle_nn::Linear::new(w.clone(), None);
    // [B, D, S] -> [B, S, D]: the matrices of x are column-major.
    let x = normal(&mut rng, &[2, 5, 3], 0.0, 1.0, DType::F32)
        .transpose(1, 2)
        .unwrap();
    let want = linear_reference(&x, &w, None);
    let err = rel_err(&values(&layer.forward(&x).unwrap()), &want, 1.0);
    println!("candle Linear on x.transpose(1, 2): rel err {err:.2}");
    assert!(err > 0.1, "Candle's Linear is right now (err {err:e})");
    // A contiguous copy is right.
    let err = rel_err(
        &values(&layer.forward(&x.contiguous().unwrap()).unwrap()),
        &want,
        1.0,
    );
    assert!(err < 1e-6);
    // The cause: matmul of such an x with a batch-broadcast rhs.
    let rhs = w.t().unwrap().broadcast_left(2).unwrap();
    let err = rel_err(&values(&x.matmul(&rhs).unwrap()), &want, 1.0);
    assert!(err > 0.1, "Candle's matmul is right now (err {err:e})");
    let err = rel_err(&values(&matmul(&x, &rhs).unwrap()), &want, 1.0);
    assert!(err < 1e-6);
}

/// Replaced by `ops::dropout::dropout` (masks from the seeded `Rng`).
#[test]
fn candle_defect_cpu_rng_cannot_be_seeded() {
    assert!(Device::Cpu.set_seed(0).is_err());
    // So Candle's dropout draws a different mask every time.
    let x = Tensor::ones(256, DType::F32, &Device::Cpu).unwrap();
    let a = values(&candle_nn::ops::dropout(&x, 0.5).unwrap());
    let b = values(&candle_nn::ops::dropout(&x, 0.5).unwrap());
    assert_ne!(a, b);
}
