//! Winograd's convolutions (`ops::winograd`: F(4x4, 3x3) on 8x8 maps and
//! larger, F(2x2, 3x3) on the 4x4 maps of the last stage) against the
//! unfolding path on the 3x3 stride-1 convolutions of a CIFAR ResNet-18
//! (f32, one training step's batch of two 64-image views): forward, input
//! gradient and kernel gradient, the two variants alternated round by
//! round in one run (`parallax_core::ops::conv2d::set_winograd`), fastest
//! of the rounds. Prints one row per layer with both times and the ratio
//! Winograd / unfolding (below 1: Winograd is faster), then the totals.
//!
//! `cargo run --release -p parallax-core --example winograd [ROUNDS] [BATCH]`
//! (defaults: 7 rounds, batch 128).

use candle_core::{DType, Device, Result};
use parallax_core::ops::conv2d::{conv2d_backward, conv2d_with, set_winograd, Conv2dConfig};
use parallax_core::rng::Rng;
use std::time::Instant;

/// Seconds `f` takes.
fn time(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(7).max(1);
    let b = args.get(1).copied().unwrap_or(128).max(1);
    let mut rng = Rng::new(0);
    let cfg = Conv2dConfig::square(1, 1);
    println!(
        "batch {b}, f32, {} threads, fastest of {rounds} alternated rounds; ms (winograd / unfold)",
        rayon::current_num_threads()
    );
    println!(
        "| {:<15} | {:>21} | {:>21} | {:>21} |",
        "layer", "forward", "input gradient", "kernel gradient"
    );
    println!("|{:-<17}|{:-<23}|{:-<23}|{:-<23}|", "", "", "", "");
    let mut totals = [[0.0f64; 2]; 3];
    for (c, side) in [(64, 32), (128, 16), (256, 8), (512, 4)] {
        let x = rng.normal_tensor((b, c, side, side), 0.0, 1.0, DType::F32, &Device::Cpu)?;
        let w = rng.normal_tensor((c, c, 3, 3), 0.0, 0.05, DType::F32, &Device::Cpu)?;
        let dy = rng.normal_tensor((b, c, side, side), 0.0, 1.0, DType::F32, &Device::Cpu)?;
        // [part][variant]: fastest time.
        let mut best = [[f64::INFINITY; 2]; 3];
        for round in 0..=rounds {
            for variant in [round % 2, 1 - round % 2] {
                set_winograd(variant == 0);
                let t: [f64; 3] = [
                    time(|| conv2d_with(&x, &w, &cfg).map(drop))?,
                    time(|| conv2d_backward(&x, &w, &dy, &cfg, (true, false)).map(drop))?,
                    time(|| conv2d_backward(&x, &w, &dy, &cfg, (false, true)).map(drop))?,
                ];
                // Round 0 warms both variants up.
                if round > 0 {
                    for (b, t) in best.iter_mut().zip(t) {
                        b[variant] = b[variant].min(t);
                    }
                }
            }
        }
        set_winograd(true);
        let cell =
            |[wi, un]: [f64; 2]| format!("{:.1} / {:.1} = {:.2}", wi * 1e3, un * 1e3, wi / un);
        let name = format!("{c}->{c} @{side}");
        println!(
            "| {:<15} | {:>21} | {:>21} | {:>21} |",
            name,
            cell(best[0]),
            cell(best[1]),
            cell(best[2])
        );
        for (t, b) in totals.iter_mut().zip(best) {
            t[0] += b[0];
            t[1] += b[1];
        }
    }
    println!(
        "| {:<15} | {:>21} | {:>21} | {:>21} |",
        "the four layers",
        format!(
            "{:.1} / {:.1} = {:.2}",
            totals[0][0] * 1e3,
            totals[0][1] * 1e3,
            totals[0][0] / totals[0][1]
        ),
        format!(
            "{:.1} / {:.1} = {:.2}",
            totals[1][0] * 1e3,
            totals[1][1] * 1e3,
            totals[1][0] / totals[1][1]
        ),
        format!(
            "{:.1} / {:.1} = {:.2}",
            totals[2][0] * 1e3,
            totals[2][1] * 1e3,
            totals[2][0] / totals[2][1]
        ),
    );
    Ok(())
}
