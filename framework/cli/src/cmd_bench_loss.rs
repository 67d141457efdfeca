//! `parallax bench-loss`: times NT-Xent forward + backward at `N x D`.
//!
//! Prints one JSON line,
//! `{"impl":"parallax","loss":"nt_xent","n":..,"d":..,"step_s":..,"pairs_per_s":..}`,
//! comparable with `scripts/bench_loss_ref.py` (PyTorch + lightly).
//! `step_s` is the mean time of one forward + backward over `steps` timed
//! steps after `warmup` untimed ones; `pairs_per_s` is `n / step_s`
//! (positive pairs per second).

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Var};
use parallax_core::losses::{nt_xent, Loss, LossInputs};
use parallax_core::rng::Rng;

/// Runs the benchmark and prints its JSON line.
pub fn run(n: usize, d: usize, steps: usize, warmup: usize) -> Result<()> {
    ensure!(n >= 1 && d >= 1, "bench-loss: n and d must be at least 1");
    ensure!(steps >= 1, "bench-loss: steps must be at least 1");
    let device = Device::Cpu;
    let loss = nt_xent::NtXent::new(nt_xent::NtXentConfig { temperature: 0.5 })?;
    let mut rng = Rng::new(0);
    let z0 = Var::from_tensor(&rng.normal_tensor((n, d), 0.0, 1.0, DType::F32, &device)?)?;
    let z1 = Var::from_tensor(&rng.normal_tensor((n, d), 0.0, 1.0, DType::F32, &device)?)?;
    let inputs = LossInputs::new()
        .with("z0", z0.as_tensor().clone())
        .with("z1", z1.as_tensor().clone());
    let step = || -> Result<()> {
        let l = loss.forward(&inputs)?;
        let grads = l.backward()?;
        let g = grads.get(z0.as_tensor()).context("no gradient for z0")?;
        // force the result so that no lazy work escapes the timing
        let v = l.to_scalar::<f32>()? + g.sum_all()?.to_scalar::<f32>()?;
        ensure!(v.is_finite(), "bench-loss: non-finite loss or gradient");
        Ok(())
    };
    for _ in 0..warmup {
        step()?;
    }
    let start = Instant::now();
    for _ in 0..steps {
        step()?;
    }
    let step_s = start.elapsed().as_secs_f64() / steps as f64;
    // keys in a fixed order, as scripts/bench_loss_ref.py prints them
    println!(
        "{{\"impl\":\"parallax\",\"loss\":\"nt_xent\",\"n\":{n},\"d\":{d},\"step_s\":{},\"pairs_per_s\":{}}}",
        serde_json::Value::from(step_s),
        serde_json::Value::from(n as f64 / step_s)
    );
    Ok(())
}
