//! The sparse x dense product of graph methods (`ops::spmm`): forward
//! against a dense f64 reference, the gradient against central finite
//! differences in f64 (the CPU kernel and the composite that other devices
//! run), through two chained products as in a GCN layer `Â (X W)`.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use parallax_core::graph::Csr;
use parallax_core::ops::spmm::{spmm, spmm_composite, SparseMatrix};
use parallax_core::rng::Rng;

/// A random `rows x cols` sparse matrix with about `density` of its
/// entries set, some rows empty.
fn random_csr(rng: &mut Rng, rows: usize, cols: usize, density: f32) -> Csr {
    let mut e = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            if rng.uniform() < density {
                e.push((r as u32, c as u32, rng.normal()));
            }
        }
    }
    Csr::from_entries(rows, cols, &e)
}

fn dense_product(a: &Csr, d: &[f64], k: usize) -> Vec<f64> {
    let dense = a.to_dense();
    let mut out = vec![0.0; a.rows * k];
    for r in 0..a.rows {
        for c in 0..a.cols {
            let v = dense[r * a.cols + c] as f64;
            for j in 0..k {
                out[r * k + j] += v * d[c * k + j];
            }
        }
    }
    out
}

#[test]
fn spmm_matches_the_dense_product() {
    let mut rng = Rng::new(3);
    let a = random_csr(&mut rng, 9, 7, 0.3);
    let s = SparseMatrix::new(a.clone());
    for dtype in [DType::F32, DType::F64] {
        let d = normal(&mut rng, &[7, 5], 0.0, 1.0, dtype);
        let want = dense_product(&a, &values(&d), 5);
        let cpu = spmm(&s, &d).unwrap();
        let comp = spmm_composite(&s, &d).unwrap();
        assert_eq!(cpu.dims(), &[9, 5]);
        assert!(rel_err(&values(&cpu), &want, 1.0) < 1e-5);
        assert!(rel_err(&values(&comp), &want, 1.0) < 1e-5);
    }
    // a non-contiguous dense operand is read right
    let d = normal(&mut rng, &[5, 7], 0.0, 1.0, DType::F64).t().unwrap();
    let want = dense_product(&a, &values(&d), 5);
    assert!(rel_err(&values(&spmm(&s, &d).unwrap()), &want, 1.0) < 1e-12);
    // shapes that do not fit are an error
    let bad = Tensor::zeros((6, 2), DType::F32, &Device::Cpu).unwrap();
    assert!(spmm(&s, &bad)
        .unwrap_err()
        .to_string()
        .contains("9x7 sparse"));
}

#[test]
fn spmm_gradcheck_f64() {
    let mut rng = Rng::new(5);
    // Â (X W) with a square propagation matrix and sparse features
    let prop = SparseMatrix::new(random_csr(&mut rng, 6, 6, 0.4).gcn_normalized());
    let feats = SparseMatrix::new(random_csr(&mut rng, 6, 8, 0.3));
    let w = normal(&mut rng, &[8, 3], 0.0, 1.0, DType::F64);
    let r = normal(&mut rng, &[6, 3], 0.0, 1.0, DType::F64);
    for (label, composite) in [("spmm cpu", false), ("spmm composite", true)] {
        let f = |ts: &[Tensor]| {
            let mm = |s: &SparseMatrix, d: &Tensor| {
                if composite {
                    spmm_composite(s, d)
                } else {
                    spmm(s, d)
                }
            };
            let xw = mm(&feats, &ts[0])?;
            weighted_sum(&mm(&prop, &xw)?.tanh()?, &r)
        };
        gradcheck(label, std::slice::from_ref(&w), &f, 1e-3);
    }
}

#[test]
fn the_transpose_is_kept_and_shared() {
    let mut rng = Rng::new(7);
    let a = random_csr(&mut rng, 4, 3, 0.5);
    let s = SparseMatrix::new(a.clone());
    let t = s.t();
    assert_eq!(t.csr(), &a.transpose());
    assert_eq!(t.t().csr(), &a);
}
