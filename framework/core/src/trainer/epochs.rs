//! The loop over epochs of a data set: batches of views from the
//! [`Loader`], the method's loss, the [`Stepper`]; reports every
//! `train.log_every` steps, checkpoints every `train.checkpoint_every`,
//! evaluations every N epochs and at the end.

use std::time::Instant;

use candle_core::DType;

use super::monitor::step_scalars;
use super::{
    fmt_metrics, Experiment, Interval, Run, Stepper, TrainOptions, TrainOutcome, TrainingLoop,
};
use crate::data::{Loader, LoaderConfig};
use crate::error::{Error, Result};
use crate::logging::grid::image_grid;
use crate::methods::StepInfo;
use crate::nn::encoder::ForwardCtx;
use crate::recipe::Recipe;
use crate::rng::Rng;

/// The loop over epochs of a data set (`train.loop = "epochs"`).
pub struct EpochLoop;

crate::register!(
    training_loop,
    "epochs",
    "epochs of batches of views from a data set (vision, text, CLIP)",
    || Box::new(EpochLoop)
);

impl TrainingLoop for EpochLoop {
    fn train(&self, recipe: &Recipe, opts: &TrainOptions) -> Result<TrainOutcome> {
        train(recipe, opts)
    }

    fn evaluate(
        &self,
        _recipe: &Recipe,
        run_dir: &std::path::Path,
        device: Option<&str>,
    ) -> Result<Vec<(String, f64)>> {
        super::evaluate_run(run_dir, device)
    }
}

/// Trains `recipe` over epochs of its data set; see [`TrainOptions`].
fn train(recipe: &Recipe, opts: &TrainOptions) -> Result<TrainOutcome> {
    let run = Run::open(recipe, opts)?;
    let mut exp = Experiment::build(recipe, run.device.clone())?;
    let trainable = exp.trainable_vars();

    let tc = &recipe.train;
    let loader = Loader::new(
        exp.source.clone(),
        exp.views.clone(),
        LoaderConfig {
            batch_size: tc.batch_size,
            drop_last: tc.drop_last,
            workers: tc.workers,
            prefetch: tc.prefetch,
            seed: recipe.seed,
        },
    );
    let steps_per_epoch = (loader.batches_per_epoch() / tc.accumulate) as u64;
    if steps_per_epoch == 0 {
        return Err(Error::Recipe(format!(
            "train.batch_size {} x train.accumulate {} exceeds the {} samples of {}",
            tc.batch_size,
            tc.accumulate,
            exp.source.len(),
            exp.source.describe()
        )));
    }
    let total_steps = tc.max_steps.unwrap_or(tc.epochs as u64 * steps_per_epoch);
    let stop_at = run.stop_at(total_steps);
    let mut stepper = Stepper::new(recipe, trainable.clone(), total_steps, steps_per_epoch)?;
    let (mut step, resume_notes, method_state) = run.resume(&exp.store, &mut stepper)?;
    if opts.resume {
        exp.method.load_state(&method_state)?;
    }

    let mut report = run.reporters(stop_at, step, tc.batch_size * tc.accumulate)?;
    let what = format!(
        "{} | {stop_at} steps ({steps_per_epoch} per epoch)",
        exp.source.describe()
    );
    run.announce(&mut report, step, &what, &trainable, &resume_notes)?;
    let mut stopped = false;
    let save = |exp: &Experiment, stepper: &Stepper, step| {
        run.checkpoints
            .save(step, &exp.store, stepper, &exp.method.state()?)
    };
    let keep_best = |exp: &Experiment, stepper: &Stepper, step, m: &[(String, f64)]| {
        run.checkpoints
            .keep_best(step, &exp.store, stepper, &exp.method.state()?, m)
    };

    let mut init_metrics = Vec::new();
    if step == 0 && !exp.evaluators.is_empty() {
        init_metrics = exp.evaluate(recipe, None)?;
        report.initial(&init_metrics, "random or pretrained initialisation")?;
    }

    let mut last_loss = f64::NAN;
    let mut interval = Interval::default();
    let mut collapse_warned = false;
    let mut epoch = step / steps_per_epoch;
    // wall-clock time of the training loop (evaluations between epochs
    // excluded), reported in results.json as `train_seconds`
    let mut train_seconds = 0.0f64;
    let mut loop_start = Instant::now();
    'epochs: while step < stop_at {
        let skip = ((step - epoch * steps_per_epoch) as usize) * tc.accumulate;
        let mut batches = loader.epoch(epoch, skip);
        while step < stop_at && step - epoch * steps_per_epoch < steps_per_epoch {
            let mut step_loss = 0.0;
            let mut out = None;
            for micro in 0..tc.accumulate {
                let wait = Instant::now();
                let next = batches.next();
                interval.waited(wait.elapsed().as_secs_f64());
                let Some(views) = next else {
                    break 'epochs;
                };
                let views = views?;
                if step == 0 && micro == 0 && tc.log_views {
                    let imgs: Vec<_> = views
                        .iter()
                        .filter_map(|b| b.tensors.get("image").cloned())
                        .collect();
                    if imgs.len() == views.len() {
                        if let Ok(grid) = image_grid(&imgs, 16, 2) {
                            report.image(0, "views", &grid)?;
                        }
                    }
                }
                interval.examples(views.first().map_or(0, |b| b.len()));
                let views = views
                    .iter()
                    .map(|b| b.to_device(&run.device))
                    .collect::<Result<Vec<_>>>()?;
                let mut ctx =
                    ForwardCtx::train(Rng::derive(recipe.seed, "step", &[step, micro as u64]));
                let o = exp.method.step(&views, &mut ctx)?;
                let value = o.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                // with f16, an overflow in the forward pass reaches the
                // gradients too, and the loss scaler skips the step
                if !value.is_finite() && !stepper.checks_overflow() {
                    let kept = if run.checkpoints.exist() {
                        format!(
                            "the last good checkpoint is kept at {}",
                            run.checkpoints.latest().display()
                        )
                    } else {
                        "no checkpoint had been written yet".to_string()
                    };
                    return Err(Error::Diverged(format!(
                        "the loss is {value} at step {} (epoch {epoch}); stopping: {kept}",
                        step + 1
                    )));
                }
                step_loss += value / tc.accumulate as f64;
                stepper.backward(&o.loss, tc.accumulate)?;
                out = Some(o);
            }
            let (Some(out), Some(done)) =
                (out, stepper.update(step, (step + 1) % tc.log_every == 0)?)
            else {
                break 'epochs;
            };
            if !done.applied {
                let msg = format!(
                    "f16 gradients overflowed at step {}: the step is skipped, the loss scale is now {}",
                    step + 1,
                    stepper.loss_scale()
                );
                report.message(step + 1, &msg)?;
            }
            step += 1;
            exp.method.after_step(&StepInfo { step, total_steps })?;
            last_loss = step_loss;
            interval.step(step_loss);

            if step % tc.log_every == 0 || step == stop_at {
                let mut s = interval.take(done.lr);
                s.push((
                    "train/epoch".to_string(),
                    step as f64 / steps_per_epoch as f64,
                ));
                if stepper.checks_overflow() {
                    s.push(("train/loss_scale".to_string(), stepper.loss_scale()));
                    s.push((
                        "train/skipped_steps".to_string(),
                        stepper.skipped_steps() as f64,
                    ));
                }
                let (more, sp) = step_scalars(&out, done.grad_norm)?;
                s.extend(more);
                if let Some(sp) = sp {
                    if sp < 0.1 && !collapse_warned && step > steps_per_epoch.min(50) {
                        collapse_warned = true;
                        let msg = format!(
                            "warning: embeddings are collapsing at step {step}: per-dimension std x sqrt(D) = {sp:.3} (about 1 when spread out)"
                        );
                        report.message(step, &msg)?;
                    }
                }
                report.scalars(step, &s)?;
            }
            if tc.histogram_every > 0 && step % tc.histogram_every == 0 {
                report.weight_histograms(step, &trainable)?;
            }
            if step < stop_at && run.stop_requested() {
                stopped = true;
                break 'epochs;
            }
            if step % tc.checkpoint_every == 0 && step < stop_at {
                save(&exp, &stepper, step)?;
            }
        }
        drop(batches);
        epoch += 1;
        train_seconds += loop_start.elapsed().as_secs_f64();
        if step < stop_at {
            let m = exp.evaluate(recipe, Some(epoch as usize))?;
            if !m.is_empty() {
                report.scalars(step, &m)?;
                report.message(step, &format!("epoch {epoch}: {}", fmt_metrics(&m)))?;
                if let Some(line) = keep_best(&exp, &stepper, step, &m)? {
                    report.message(step, &line)?;
                }
            }
            if run.stop_requested() {
                stopped = true;
                break 'epochs;
            }
        }
        loop_start = Instant::now();
    }
    train_seconds += loop_start.elapsed().as_secs_f64();
    save(&exp, &stepper, step)?;
    let mut metrics = vec![("train/loss".to_string(), last_loss)];
    if stopped {
        run.finish_stopped(&mut report, step, stop_at, &metrics)?;
    } else {
        if !exp.evaluators.is_empty() {
            let m = exp.evaluate(recipe, None)?;
            report.scalars(step, &m)?;
            if let Some(line) = keep_best(&exp, &stepper, step, &m)? {
                report.message(step, &line)?;
            }
            metrics.extend(m);
        }
        run.write_results(step, &metrics, &init_metrics, train_seconds)?;
        report.finish(step, &metrics)?;
    }
    Ok(TrainOutcome {
        step,
        metrics,
        init_metrics,
        run_dir: run.dir().clone(),
        stopped,
    })
}
