//! The gradient-check suite on CUDA: every op of `parallax_core::ops` run
//! on the GPU (where it goes through Candle's CUDA ops, or the composites
//! built from them) against the CPU kernels, forward and gradients, in f32;
//! and in bf16 against f32. Built only with `--features cuda`:
//!
//! ```sh
//! source <(scripts/setup-cuda.sh)
//! cargo test -p parallax-core --features cuda --test cuda_ops
//! ```
//!
//! Without a GPU each test says so and passes, unless `CUDA_TESTS_REQUIRE_GPU=1`
//! (the device script sets it), where a missing GPU is a failure.
#![cfg(feature = "cuda")]

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use common::*;
use parallax_core::ops::add_relu::add_relu;
use parallax_core::ops::batch_norm::{batch_norm_relu_train, batch_norm_train};
use parallax_core::ops::conv1d::{conv1d, Conv1dConfig};
use parallax_core::ops::conv2d::{conv2d_with, Conv2dConfig};
use parallax_core::ops::layer_norm::{layer_norm, rms_norm};
use parallax_core::ops::linear::linear;
use parallax_core::ops::pool::{avg_pool2d_with, max_pool2d_with, Pool2dConfig};
use parallax_core::ops::residual::{residual_train, ConvBnParams};
use parallax_core::ops::softmax::{log_softmax_last_dim, softmax_last_dim};
use parallax_core::rng::Rng;

/// The first GPU, or `None` (after saying so) when there is none and none
/// is required.
fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            // Candle's errors carry a backtrace: the first line says it
            let e = e.to_string();
            let e = e.lines().next().unwrap_or_default();
            if std::env::var("CUDA_TESTS_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("CUDA_TESTS_REQUIRE_GPU=1 but no CUDA device: {e}");
            }
            eprintln!("no CUDA device ({e}): skipped");
            None
        }
    }
}

/// `f(inputs)` and the gradients of `Σ r · f(inputs)` for every input, on
/// `device` in `dtype`, as f64 values.
fn run(
    device: &Device,
    dtype: DType,
    inputs: &[Tensor],
    r: &Tensor,
    f: &dyn Fn(&[Tensor]) -> Result<Tensor>,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.to_dtype(dtype).unwrap().to_device(device).unwrap()).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts).unwrap();
    assert_eq!(
        y.device().location(),
        device.location(),
        "the output left the device"
    );
    let r = r.to_dtype(DType::F32).unwrap().to_device(device).unwrap();
    let loss = (y.to_dtype(DType::F32).unwrap() * &r)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let gs = ts
        .iter()
        .map(|t| {
            values(
                &grads
                    .get(t)
                    .expect("no gradient")
                    .to_device(&Device::Cpu)
                    .unwrap(),
            )
        })
        .collect();
    (values(&y.to_device(&Device::Cpu).unwrap()), gs)
}

/// Compares `f` on the GPU with the CPU kernels: f32 within `tol`, bf16
/// within `tol_bf16` (relative to the largest value; the gradients only
/// with `bf16_grads`).
fn compare(
    label: &str,
    gpu: &Device,
    inputs: &[Tensor],
    f: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    tol: f64,
    (tol_bf16, bf16_grads): (f64, bool),
) {
    let cpu_inputs: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.to_dtype(DType::F32).unwrap())
        .collect();
    let shape = f(&cpu_inputs).unwrap().dims().to_vec();
    let r = normal(&mut Rng::new(99), &shape, 0.0, 1.0, DType::F32);
    let (y_cpu, g_cpu) = run(&Device::Cpu, DType::F32, inputs, &r, f);
    for (dtype, tol) in [(DType::F32, tol), (DType::BF16, tol_bf16)] {
        let (y, g) = run(gpu, dtype, inputs, &r, f);
        let e = rel_err(&y, &y_cpu, 1e-3);
        assert!(e < tol, "{label} {dtype:?}: forward rel err {e:.1e}");
        if dtype == DType::BF16 && !bf16_grads {
            println!("{label} {dtype:?}: forward ok");
            continue;
        }
        for (i, (a, b)) in g.iter().zip(&g_cpu).enumerate() {
            let e = rel_err(a, b, 1e-3);
            assert!(e < tol, "{label} {dtype:?}: gradient {i} rel err {e:.1e}");
        }
        println!("{label} {dtype:?}: ok");
    }
}

fn input(seed: u64, shape: &[usize], std: f64) -> Tensor {
    normal(&mut Rng::new(seed), shape, 0.0, std, DType::F32)
}

#[test]
fn convolutions_on_cuda_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let c = |s, p, d, g| Conv2dConfig {
        stride: (s, s),
        padding: p,
        dilation: (d, d),
        groups: g,
    };
    for (xs, ws, cfg) in [
        // Candle's defect shape (5x6, stride 2), the ResNet stem and
        // downsample, dilation, groups, per-axis padding
        ([2, 2, 5, 6], [3, 2, 3, 3], c(2, (1, 1), 1, 1)),
        ([2, 3, 16, 16], [8, 3, 7, 7], c(2, (3, 3), 1, 1)),
        ([2, 8, 9, 7], [16, 8, 1, 1], c(2, (0, 0), 1, 1)),
        ([1, 4, 8, 9], [6, 2, 3, 3], c(1, (2, 1), 2, 2)),
    ] {
        let (x, w) = (input(1, &xs, 1.0), input(2, &ws, 0.3));
        let f = |ts: &[Tensor]| conv2d_with(&ts[0], &ts[1], &cfg);
        compare(
            &format!("conv2d x{xs:?} {cfg:?}"),
            &gpu,
            &[x, w],
            &f,
            1e-4,
            (3e-2, true),
        );
    }
    for (xs, ws, s, p) in [([2, 3, 20], [4, 3, 5], 3, 0), ([2, 4, 17], [4, 4, 3], 2, 1)] {
        let cfg = Conv1dConfig {
            stride: s,
            padding: p,
            ..Default::default()
        };
        let (x, w) = (input(3, &xs, 1.0), input(4, &ws, 0.3));
        let f = |ts: &[Tensor]| conv1d(&ts[0], &ts[1], &cfg);
        compare(
            &format!("conv1d x{xs:?} {cfg:?}"),
            &gpu,
            &[x, w],
            &f,
            1e-4,
            (3e-2, true),
        );
    }
}

#[test]
fn pooling_on_cuda_matches_the_cpu() {
    let Some(gpu) = gpu() else { return };
    for (xs, k, s, p) in [
        ([2, 3, 7, 7], 3, 2, 1),
        ([2, 2, 8, 6], 2, 2, 0),
        ([1, 2, 6, 9], 3, 1, 1),
    ] {
        let cfg = Pool2dConfig::square(k, s, p);
        let x = input(5, &xs, 1.0);
        let f = |ts: &[Tensor]| max_pool2d_with(&ts[0], &cfg);
        // bf16 rounding creates ties, where the CPU kernel routes the
        // gradient to the first maximum and the composite to all of them:
        // in bf16 only the forward is compared
        compare(
            &format!("max pool x{xs:?} {cfg:?}"),
            &gpu,
            std::slice::from_ref(&x),
            &f,
            1e-5,
            (3e-2, false),
        );
        let f = |ts: &[Tensor]| avg_pool2d_with(&ts[0], &cfg);
        compare(
            &format!("avg pool x{xs:?} {cfg:?}"),
            &gpu,
            &[x],
            &f,
            1e-5,
            (3e-2, true),
        );
    }
}

#[test]
fn norms_softmax_linear_and_add_relu_on_cuda_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let x4 = input(6, &[4, 6, 5, 3], 1.5);
    let (w, b) = (input(7, &[6], 1.0), input(8, &[6], 1.0));
    let f = |ts: &[Tensor]| Ok(batch_norm_train(&ts[0], &ts[1], &ts[2], 1e-5)?.0);
    compare(
        "batch norm",
        &gpu,
        &[x4.clone(), w.clone(), b.clone()],
        &f,
        1e-4,
        (5e-2, true),
    );
    let f = |ts: &[Tensor]| Ok(batch_norm_relu_train(&ts[0], &ts[1], &ts[2], 1e-5)?.0);
    compare(
        "batch norm + relu",
        &gpu,
        &[x4.clone(), w, b],
        &f,
        1e-4,
        (5e-2, true),
    );

    let x3 = input(9, &[3, 5, 16], 2.0);
    let (w, b) = (input(10, &[16], 1.0), input(11, &[16], 1.0));
    let f = |ts: &[Tensor]| layer_norm(&ts[0], &ts[1], &ts[2], 1e-5);
    compare(
        "layer norm",
        &gpu,
        &[x3.clone(), w.clone(), b],
        &f,
        1e-4,
        (5e-2, true),
    );
    let f = |ts: &[Tensor]| rms_norm(&ts[0], &ts[1], 1e-6);
    compare("rms norm", &gpu, &[x3.clone(), w], &f, 1e-4, (5e-2, true));
    let f = |ts: &[Tensor]| softmax_last_dim(&ts[0]);
    compare(
        "softmax",
        &gpu,
        std::slice::from_ref(&x3),
        &f,
        1e-5,
        (3e-2, true),
    );
    let f = |ts: &[Tensor]| log_softmax_last_dim(&ts[0]);
    compare(
        "log softmax",
        &gpu,
        std::slice::from_ref(&x3),
        &f,
        1e-5,
        (3e-2, true),
    );

    // a transposed (non-contiguous) 3-D input, where Candle's Linear is wrong
    let (w, b) = (input(12, &[7, 5], 0.5), input(13, &[7], 0.5));
    let f = |ts: &[Tensor]| linear(&ts[0].transpose(1, 2)?, &ts[1], Some(&ts[2]));
    compare(
        "linear (transposed input)",
        &gpu,
        &[x3, w, b],
        &f,
        1e-4,
        (3e-2, true),
    );

    let a = input(14, &[4, 6, 5, 3], 1.0);
    let f = |ts: &[Tensor]| add_relu(&ts[0], &ts[1]);
    compare("add + relu", &gpu, &[x4, a], &f, 1e-6, (3e-2, true));
}

#[test]
fn a_residual_block_on_cuda_matches_the_fused_cpu_op() {
    let Some(gpu) = gpu() else { return };
    // a basic block with a strided projection: on the GPU the separate
    // ops, on the CPU the fused op
    let mut inputs = vec![input(20, &[2, 4, 6, 6], 1.0)];
    for (i, (o, c, k)) in [(6, 4, 3), (6, 6, 3), (6, 4, 1)].into_iter().enumerate() {
        let seed = 21 + 3 * i as u64;
        inputs.push(input(seed, &[o, c, k, k], 0.3));
        inputs.push((input(seed + 1, &[o], 0.3) + 1.0).unwrap());
        inputs.push(input(seed + 2, &[o], 0.3));
    }
    let f = |ts: &[Tensor]| {
        let layer = |i: usize, stride: usize, k: usize| ConvBnParams {
            conv: &ts[1 + 3 * i],
            cfg: Conv2dConfig::square(stride, k / 2),
            bn_weight: &ts[2 + 3 * i],
            bn_bias: &ts[3 + 3 * i],
            eps: 1e-5,
        };
        let layers = [layer(0, 2, 3), layer(1, 1, 3)];
        Ok(residual_train(&ts[0], &layers, Some(&layer(2, 2, 1)))?.y)
    };
    compare("residual block", &gpu, &inputs, &f, 1e-4, (5e-2, false));
}
