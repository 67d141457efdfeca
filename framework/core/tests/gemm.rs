//! The GEMM under Candle's matmul runs gemm's AVX-512 (`x86-v4`) kernels
//! where the CPU has them (enabled in the workspace's Cargo.toml). Checks
//! them against a plain f64 reference on shapes that hit the kernels' edge
//! cases: sizes that are not multiples of the register tiles, k = 1,
//! transposed operands and batches.

use candle_core::{DType, Device, Result, Tensor};
use parallax_core::rng::Rng;

fn reference(a: &[f64], b: &[f64], (m, k, n): (usize, usize, usize)) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p];
            for j in 0..n {
                c[i * n + j] += x * b[p * n + j];
            }
        }
    }
    c
}

fn flat(t: &Tensor) -> Result<Vec<f64>> {
    t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()
}

#[test]
fn matmul_matches_reference_on_edge_shapes() -> Result<()> {
    let mut rng = Rng::new(7);
    for &(m, k, n) in &[
        (1, 1, 1),
        (17, 1, 33),
        (47, 65, 31),
        (64, 576, 250),
        (129, 37, 97),
        (3, 1000, 5),
    ] {
        for dtype in [DType::F32, DType::F64] {
            let a = rng.normal_tensor((m, k), 0.0, 1.0, dtype, &Device::Cpu)?;
            let b = rng.normal_tensor((k, n), 0.0, 1.0, dtype, &Device::Cpu)?;
            let want = reference(&flat(&a)?, &flat(&b)?, (m, k, n));
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 } * (k as f64).sqrt();
            // plain, with a transposed (non-contiguous) right operand, batched
            let bt = b.t()?.contiguous()?.t()?;
            let batched = a
                .unsqueeze(0)?
                .repeat((2, 1, 1))?
                .matmul(&b.unsqueeze(0)?.repeat((2, 1, 1))?)?;
            for (what, c) in [
                ("plain", a.matmul(&b)?),
                ("transposed rhs", a.matmul(&bt)?),
                ("batch 1", batched.get(1)?),
            ] {
                let got = flat(&c)?;
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
                assert!(
                    err < tol * 10.0,
                    "{what} {dtype:?} {m}x{k}x{n}: max error {err:e}"
                );
            }
        }
    }
    Ok(())
}
