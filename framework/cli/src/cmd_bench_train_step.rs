//! `parallax bench train-step`: times full training steps of a recipe on
//! random images (the data pipeline is not timed).
//!
//! The default workload is `recipes/bench/train_step.toml` (SimCLR, CIFAR
//! ResNet-18, batch 64, two views, SGD with momentum), the same as
//! `../shared/bench/reference/simclr_step.py` runs in PyTorch + lightly. One
//! step is what the trainer does: the method's forward on every view, the
//! loss's backward and the optimizer's update. Prints one JSON line,
//! `{"impl":"parallax","batch":..,"step_s":..,"images_per_s":..,"peak_rss_mib":..}`
//! (with the recipe's `train.precision`, which `--set` changes),
//! where `step_s` is the mean over `steps` timed steps after `warmup` untimed
//! ones, `images_per_s` is `batch / step_s` (the views of an image count
//! once) and `peak_rss_mib` the process's peak resident memory; `forward_s`,
//! `backward_s` and `update_s` split the step (on CPU, where ops run
//! synchronously).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use candle_core::DType;
use parallax_core::batch::Batch;
use parallax_core::nn::encoder::ForwardCtx;
use parallax_core::optim::precision::LossScaler;
use parallax_core::recipe::Recipe;
use parallax_core::rng::Rng;
use parallax_core::trainer::Experiment;
use parallax_core::{device, optim};

/// The default workload.
pub const TRAIN_STEP_RECIPE: &str = include_str!("../../../recipes/bench/train_step.toml");

/// What to run.
pub struct TrainStepArgs<'a> {
    pub recipe: Option<&'a Path>,
    pub sets: &'a [String],
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
    pub device: Option<&'a str>,
}

/// The process's peak resident set size in MiB (Linux), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs the benchmark and prints its JSON line.
pub fn run(a: &TrainStepArgs) -> Result<()> {
    ensure!(a.batch >= 2, "bench train-step: --batch must be at least 2");
    ensure!(a.steps >= 1, "bench train-step: --steps must be at least 1");
    let recipe = match a.recipe {
        Some(p) => crate::cli::load_recipe(p, a.sets)?,
        None => Recipe::from_toml_str(TRAIN_STEP_RECIPE, a.sets)
            .context("cannot load the built-in recipes/bench/train_step.toml")?,
    };
    let dev = device::select(a.device.unwrap_or(&recipe.device))?;
    let mut exp = Experiment::build(&recipe, dev.clone())?;
    let Some([c, h, w]) = exp.meta.image_shape else {
        bail!("bench train-step needs an image data source (the recipe's has no image shape)")
    };
    let spec = optim::parse(&recipe.optimizer.name, &recipe.optimizer.params)?;
    let vars = exp.trainable_vars();
    let train_vars: Vec<_> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = optim::build(&spec, optim::param_groups(vars, &spec))?;
    // `--set train.precision="bf16"`: as the trainer, the loss scaled (f16)
    // and the gradients in f32 for the master weights
    let precision = recipe.train.precision;
    let scaler = LossScaler::new(precision);
    // Random images, one tensor per view, drawn once (as the reference does).
    let mut rng = Rng::new(recipe.seed);
    let views = (0..exp.method.num_views())
        .map(|_| -> Result<Batch> {
            let x = rng.normal_tensor((a.batch, c, h, w), 0.0, 1.0, DType::F32, &dev)?;
            let mut b = Batch::default();
            b.tensors.insert("image".into(), x);
            Ok(b)
        })
        .collect::<Result<Vec<_>>>()?;
    // seconds spent in the forward pass, the backward pass and the update
    let mut phases = [0.0f64; 3];
    let mut step = |i: usize, phases: &mut [f64; 3]| -> Result<f64> {
        let t0 = Instant::now();
        let mut ctx = ForwardCtx::train(Rng::derive(recipe.seed, "step", &[i as u64]));
        let out = exp.method.step(&views, &mut ctx)?;
        let t1 = Instant::now();
        let mut grads = scaler.scale_loss(&out.loss)?.backward()?;
        scaler.unscale(&mut grads, &train_vars)?;
        let t2 = Instant::now();
        opt.step(&grads, spec.lr)?;
        exp.method.after_step(&parallax_core::methods::StepInfo {
            step: i as u64 + 1,
            total_steps: (a.warmup + a.steps) as u64,
        })?;
        drop(grads);
        let t3 = Instant::now();
        let v = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        ensure!(
            v.is_finite(),
            "bench train-step: the loss is {v} at step {i}"
        );
        for (p, d) in phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
            *p += d.as_secs_f64();
        }
        Ok(v)
    };
    for i in 0..a.warmup {
        step(i, &mut [0.0; 3])?;
    }
    let start = Instant::now();
    let mut last = 0.0;
    for i in a.warmup..a.warmup + a.steps {
        last = step(i, &mut phases)?;
    }
    // on CUDA, wait for the queued kernels
    dev.synchronize()?;
    let step_s = start.elapsed().as_secs_f64() / a.steps as f64;
    let threads = rayon::current_num_threads();
    let line = serde_json::json!({
        "impl": "parallax",
        "recipe": recipe.name,
        "device": format!("{dev:?}"),
        "precision": precision,
        "threads": threads,
        "batch": a.batch,
        "step_s": (step_s * 1e4).round() / 1e4,
        "images_per_s": (a.batch as f64 / step_s * 100.0).round() / 100.0,
        "peak_rss_mib": peak_rss_mib().map(|m| (m * 10.0).round() / 10.0),
        "forward_s": (phases[0] / a.steps as f64 * 1e4).round() / 1e4,
        "backward_s": (phases[1] / a.steps as f64 * 1e4).round() / 1e4,
        "update_s": (phases[2] / a.steps as f64 * 1e4).round() / 1e4,
        "last_loss": last,
    });
    println!("{line}");
    Ok(())
}
