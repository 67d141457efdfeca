//! The trainer: builds an experiment from a recipe and runs it.
//!
//! ```text
//! DataSource ─Loader (workers, prefetch)─▶ views ─Method::step─▶ loss
//! loss.backward ─▶ clip ─▶ Optimizer::step(lr from the schedule) ─▶ Method::after_step
//! every N steps: loggers, checkpoint; every N epochs and at the end: evaluators
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Var};

use crate::checkpoint::{self, CheckpointMeta, Rotation};
use crate::data::{BuildCtx, DataMeta, DataSource, Loader, LoaderConfig, Split};
use crate::error::{Error, Result};
use crate::eval::{EvalCtx, Evaluator};
use crate::logging::grid::image_grid;
use crate::logging::{Logger, RunInfo};
use crate::methods::{Method, MethodCtx, StepInfo};
use crate::nn::cast::CastEncoder;
use crate::nn::encoder::{EncoderCtx, ForwardCtx};
use crate::nn::init::VarStore;
use crate::optim::precision::LossScaler;
use crate::optim::{self, clip};
use crate::recipe::Recipe;
use crate::registry;
use crate::rng::Rng;
use crate::views::ViewGenerator;

/// The file name of a run's checkpoint.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The file name of the resolved recipe in a run directory.
pub const RECIPE: &str = "recipe.toml";
/// The file name of the final results in a run directory.
pub const RESULTS: &str = "results.json";

/// Everything a recipe builds.
pub struct Experiment {
    /// The model's variables.
    pub store: VarStore,
    /// The method (owns the encoder, heads and loss).
    pub method: Box<dyn Method>,
    /// The training data.
    pub source: Arc<dyn DataSource>,
    /// The view generator.
    pub views: Arc<dyn ViewGenerator>,
    /// The training data's description.
    pub meta: DataMeta,
    /// Where the model lives.
    pub device: Device,
    /// The evaluators of `[[eval]]`.
    pub evaluators: Vec<Box<dyn Evaluator>>,
}

impl Experiment {
    /// Builds every component of `recipe` on `device`.
    pub fn build(recipe: &Recipe, device: Device) -> Result<Experiment> {
        registry::check()?;
        let mut ctx = BuildCtx::new(recipe.seed, Split::Train);
        ctx.encoder = Some(recipe.encoder.clone());
        let source = (registry::data_source(&recipe.data.name)?.build)(&recipe.data.params, &ctx)?;
        if source.is_empty() {
            return Err(Error::Data(format!("{} has no samples", source.describe())));
        }
        let source: Arc<dyn DataSource> = match recipe.train.labels_per_class {
            Some(k) => {
                let idx = crate::data::subset::per_class_indices(
                    source.as_ref(),
                    k,
                    recipe.train.label_seed,
                )
                .map_err(|e| Error::Recipe(format!("train.labels_per_class: {e}")))?;
                Arc::new(crate::data::subset::SubsetSource::new(
                    source,
                    idx,
                    format!(
                        "{k} labelled examples per class (label seed {})",
                        recipe.train.label_seed
                    ),
                ))
            }
            None => source,
        };
        let meta = source.meta();
        ctx.meta = meta.clone();
        let views_spec = recipe
            .views
            .as_ref()
            .ok_or_else(|| Error::Recipe("missing section [views] (the view generator)".into()))?;
        let views = (registry::views(&views_spec.name)?.build)(&views_spec.params, &ctx)?;
        let store = VarStore::new(recipe.seed);
        let vb = store.var_builder(DType::F32, &device);
        // mixed precision: the encoder's variables in the compute dtype
        // (the optimizer keeps f32 masters), f32 at its interface
        let precision = recipe.train.precision;
        let encoder = (registry::encoder(&recipe.encoder.name)?.build)(
            &recipe.encoder.params,
            &EncoderCtx { meta: meta.clone() },
            store.var_builder(precision.dtype(), &device).pp("encoder"),
        )?;
        let encoder: Box<dyn crate::nn::encoder::Encoder> = if precision.is_mixed() {
            Box::new(CastEncoder::new(encoder, precision.dtype()))
        } else {
            encoder
        };
        let loss = match &recipe.loss {
            Some(l) => Some((registry::loss(&l.name)?.build)(&l.params)?),
            None => None,
        };
        let method = (registry::method(&recipe.method.name)?.build)(MethodCtx {
            params: recipe.method.params.clone(),
            encoder,
            encoder_spec: recipe.encoder.clone(),
            loss,
            vb,
            meta: meta.clone(),
            seed: recipe.seed,
            store: store.clone(),
        })?;
        if method.num_views() != views.num_views() {
            return Err(Error::Recipe(format!(
                "method `{}` needs {} views but view generator `{}` makes {}",
                recipe.method.name,
                method.num_views(),
                views_spec.name,
                views.num_views()
            )));
        }
        let evaluators = recipe
            .eval
            .iter()
            .map(|e| (registry::evaluator(&e.name)?.build)(&e.params, &ctx))
            .collect::<Result<Vec<_>>>()?;
        Ok(Experiment {
            store,
            method,
            source,
            views,
            meta,
            device,
            evaluators,
        })
    }

    /// The variables the optimizer trains (those with a float dtype that the
    /// method marks trainable; batch-norm running statistics get no
    /// gradient and are skipped by the optimizer).
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.store
            .named_vars()
            .into_iter()
            .filter(|(n, v)| {
                v.dtype().is_float()
                    && self.method.is_trainable(n)
                    && !n.ends_with("running_mean")
                    && !n.ends_with("running_var")
            })
            .collect()
    }

    /// Runs every evaluator; returns their metrics.
    pub fn evaluate(
        &mut self,
        recipe: &Recipe,
        only_every: Option<usize>,
    ) -> Result<Vec<(String, f64)>> {
        let ctx = EvalCtx {
            encoder: self.method.encoder(),
            data: &recipe.data,
            encoder_spec: &recipe.encoder,
            meta: &self.meta,
            device: &self.device,
            seed: recipe.seed,
            base_dir: PathBuf::from("."),
            store: Some(&self.store),
            method: Some(self.method.as_ref()),
        };
        let mut out = Vec::new();
        for e in self.evaluators.iter_mut() {
            if let Some(epoch) = only_every {
                let every = e.every_epochs();
                if every == 0 || epoch % every != 0 {
                    continue;
                }
            }
            out.extend(e.evaluate(&ctx)?);
        }
        Ok(out)
    }
}

/// Options of `parallax train`.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Stop once this many optimizer steps are done (the schedule is unchanged).
    pub max_steps: Option<u64>,
    /// Continue from the run directory's checkpoint.
    pub resume: bool,
    /// Overrides the recipe's device.
    pub device: Option<String>,
    /// Set (e.g. by a signal handler) to stop the run after the current
    /// optimizer step, with a checkpoint: the outcome is then `stopped`.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// Optimizer steps done.
    pub step: u64,
    /// Final metrics (last loss, evaluator results).
    pub metrics: Vec<(String, f64)>,
    /// Evaluator results at random initialisation (fresh runs only).
    pub init_metrics: Vec<(String, f64)>,
    /// The run directory.
    pub run_dir: PathBuf,
    /// The run stopped early on [`TrainOptions::stop`], after writing a
    /// checkpoint (no final evaluation, no `results.json`).
    pub stopped: bool,
}

fn build_loggers(recipe: &Recipe, info: &RunInfo) -> Result<Vec<Box<dyn Logger>>> {
    recipe
        .logger
        .iter()
        .map(|l| (registry::logger(&l.name)?.build)(&l.params, info))
        .collect()
}

fn log_all(
    loggers: &mut [Box<dyn Logger>],
    f: impl Fn(&mut dyn Logger) -> Result<()>,
) -> Result<()> {
    for l in loggers.iter_mut() {
        f(l.as_mut())?;
    }
    Ok(())
}

/// Everything a checkpoint holds, as (model, optimizer + scaler, method) maps.
type State = (
    BTreeMap<String, candle_core::Tensor>,
    BTreeMap<String, candle_core::Tensor>,
    BTreeMap<String, candle_core::Tensor>,
);

fn run_state(exp: &Experiment, opt: &dyn optim::Optimizer, scaler: &LossScaler) -> Result<State> {
    let mut optim_state = opt.state()?;
    optim_state.extend(scaler.state()?);
    Ok((exp.store.tensors(), optim_state, exp.method.state()?))
}

fn meta(recipe: &Recipe, step: u64) -> CheckpointMeta {
    CheckpointMeta {
        step,
        seed: recipe.seed,
        name: recipe.name.clone(),
        format: 1,
    }
}

fn save_checkpoint(
    exp: &Experiment,
    opt: &dyn optim::Optimizer,
    scaler: &LossScaler,
    recipe: &Recipe,
    step: u64,
    rotation: &Rotation,
) -> Result<()> {
    let (model, optim_state, method) = run_state(exp, opt, scaler)?;
    rotation.save(&meta(recipe, step), &model, &optim_state, &method)
}

/// After an evaluation: writes `checkpoint-best.safetensors` when the
/// recipe's `train.best_metric` is among `metrics` and improves on the best
/// so far; returns a line to log when it did.
#[allow(clippy::too_many_arguments)]
fn keep_best(
    exp: &Experiment,
    opt: &dyn optim::Optimizer,
    scaler: &LossScaler,
    recipe: &Recipe,
    step: u64,
    rotation: &Rotation,
    metrics: &[(String, f64)],
) -> Result<Option<String>> {
    let Some(name) = &recipe.train.best_metric else {
        return Ok(None);
    };
    let Some((_, value)) = metrics.iter().find(|(k, _)| k == name) else {
        return Ok(None);
    };
    let mode = recipe.train.best_mode;
    if let Some((old_name, old)) = rotation.best_value() {
        if old_name == *name && !mode.improves(*value, old) {
            return Ok(None);
        }
    }
    let (model, optim_state, method) = run_state(exp, opt, scaler)?;
    rotation.save_best(
        &meta(recipe, step),
        &model,
        &optim_state,
        &method,
        name,
        *value,
    )?;
    Ok(Some(format!(
        "best {name} so far ({value:.4}) at step {step}: {}",
        rotation.best().display()
    )))
}

/// Collapse monitor: the mean per-dimension standard deviation of
/// L2-normalised embeddings times sqrt(D); about 1 for well-spread
/// embeddings, near 0 when they collapse to a point (Chen & He 2021, Sec. 4.1).
pub fn spread(embeddings: &candle_core::Tensor) -> Result<f64> {
    let d = embeddings.dim(1)? as f64;
    let z = embeddings.to_dtype(DType::F32)?;
    let mean = z.mean_keepdim(0)?;
    let std = z
        .broadcast_sub(&mean)?
        .sqr()?
        .mean(0)?
        .sqrt()?
        .mean_all()?
        .to_scalar::<f32>()? as f64;
    Ok(std * d.sqrt())
}

/// Alignment, uniformity and RankMe of a step's paired embeddings (on at
/// most 512 rows), see [`crate::eval::representation`].
fn pair_metrics(a: &candle_core::Tensor, b: &candle_core::Tensor) -> Result<Vec<(String, f64)>> {
    use crate::eval::representation::{alignment, rankme, uniformity};
    let n = a.dim(0)?.min(512);
    let (a, b) = (
        a.narrow(0, 0, n)?.to_dtype(DType::F32)?,
        b.narrow(0, 0, n)?.to_dtype(DType::F32)?,
    );
    if n < 2 {
        return Ok(Vec::new());
    }
    Ok(vec![
        ("train/alignment".to_string(), alignment(&a, &b)?),
        ("train/uniformity".to_string(), uniformity(&a)?),
        ("train/rankme".to_string(), rankme(&a)?),
    ])
}

fn fmt_metrics(m: &[(String, f64)]) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} = {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Trains `recipe`; see [`TrainOptions`].
pub fn train(recipe: &Recipe, opts: &TrainOptions) -> Result<TrainOutcome> {
    let device = crate::device::select(opts.device.as_deref().unwrap_or(&recipe.device))?;
    let run_dir = opts.run_dir.clone();
    let ck_path = run_dir.join(CHECKPOINT);
    let rotation = Rotation {
        dir: run_dir.clone(),
        keep: recipe.train.keep_checkpoints,
    };
    if rotation.exists() && !opts.resume {
        return Err(Error::Recipe(format!(
            "{} already holds a checkpoint: pass --resume to continue it, or --out to start a new run elsewhere",
            run_dir.display()
        )));
    }
    if opts.resume && !rotation.exists() {
        return Err(Error::Recipe(format!(
            "--resume: no checkpoint at {}",
            ck_path.display()
        )));
    }
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    let mut exp = Experiment::build(recipe, device.clone())?;
    let trainable = exp.trainable_vars();
    let spec = optim::parse(&recipe.optimizer.name, &recipe.optimizer.params)?;
    let groups = optim::param_groups(trainable.clone(), &spec);
    let mut opt = optim::build(&spec, groups)?;
    let mut scaler = LossScaler::new(recipe.train.precision);
    let train_vars: Vec<Var> = trainable.iter().map(|(_, v)| v.clone()).collect();

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
    let batches_per_epoch = loader.batches_per_epoch();
    let steps_per_epoch = (batches_per_epoch / tc.accumulate) as u64;
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
    let stop_at = opts.max_steps.map_or(total_steps, |m| m.min(total_steps));
    let schedule =
        optim::schedule::Schedule::new(&spec.schedule, spec.lr, total_steps, steps_per_epoch);

    let mut step = 0u64;
    // what resuming found, for the log once the loggers exist
    let mut resume_notes = Vec::new();
    if opts.resume {
        let found = checkpoint::load_newest(&rotation, &device)?;
        for (path, why) in &found.skipped {
            resume_notes.push(format!("--resume: skipping {}: {why}", path.display()));
        }
        resume_notes.push(format!(
            "--resume: continuing from {} (step {})",
            found.path.display(),
            found.checkpoint.meta.step
        ));
        let ck_path = found.path;
        let ck = found.checkpoint;
        if ck.meta.seed != recipe.seed {
            return Err(Error::Recipe(format!(
                "--resume: the checkpoint was made with seed {}, the recipe has seed {}",
                ck.meta.seed, recipe.seed
            )));
        }
        exp.store
            .assign_all(&ck.model)
            .map_err(|e| Error::Checkpoint {
                path: ck_path.display().to_string(),
                message: e.to_string(),
            })?;
        let mut optim_state = ck.optim;
        scaler.take_state(&mut optim_state)?;
        opt.load_state(&optim_state)?;
        exp.method.load_state(&ck.method)?;
        step = ck.meta.step;
    }
    let recipe_text = recipe.to_toml_string();
    checkpoint::write_atomic(&run_dir.join(RECIPE), recipe_text.as_bytes())?;

    let info = RunInfo {
        run_dir: run_dir.clone(),
        name: recipe.name.clone(),
        total_steps: stop_at,
        start_step: step,
        recipe_toml: recipe_text,
        hparams: recipe.flat_settings().into_iter().collect(),
        batch_size: tc.batch_size * tc.accumulate,
    };
    let mut loggers = build_loggers(recipe, &info)?;
    let describe = format!(
        "run `{}`: {} | {} steps ({} per epoch) | {} trainable tensors, {} parameters | {}",
        recipe.name,
        exp.source.describe(),
        stop_at,
        steps_per_epoch,
        trainable.len(),
        trainable.iter().map(|(_, v)| v.elem_count()).sum::<usize>(),
        if device.is_cpu() {
            "cpu".to_string()
        } else {
            format!("{device:?}")
        }
    );
    log_all(&mut loggers, |l| l.message(step, &describe))?;
    for note in &resume_notes {
        log_all(&mut loggers, |l| l.message(step, note))?;
    }
    let stop_requested = || opts.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
    let mut stopped = false;

    let mut init_metrics = Vec::new();
    if step == 0 && !exp.evaluators.is_empty() {
        init_metrics = exp.evaluate(recipe, None)?;
        log_all(&mut loggers, |l| l.scalars(0, &init_metrics))?;
        let text = format!(
            "before training (random or pretrained initialisation): {}",
            fmt_metrics(&init_metrics)
        );
        log_all(&mut loggers, |l| l.message(0, &text))?;
    }

    let mut last_loss = f64::NAN;
    let mut loss_sum = 0.0;
    let mut loss_n = 0u64;
    let mut interval_start = Instant::now();
    let mut interval_examples = 0usize;
    let mut data_wait = 0.0f64;
    let mut collapse_warned = false;
    let mut skipped_steps = 0u64;
    let mut epoch = step / steps_per_epoch;
    // wall-clock time of the training loop (evaluations between epochs
    // excluded), reported in results.json as `train_seconds`
    let mut train_seconds = 0.0f64;
    let mut loop_start = Instant::now();
    'epochs: while step < stop_at {
        let skip = ((step - epoch * steps_per_epoch) as usize) * tc.accumulate;
        let mut batches = loader.epoch(epoch, skip);
        loop {
            if step >= stop_at {
                break 'epochs;
            }
            if (step - epoch * steps_per_epoch) >= steps_per_epoch {
                break;
            }
            let mut grads: Option<GradStore> = None;
            let mut step_loss = 0.0;
            let mut scalars = Vec::new();
            let mut embeddings = None;
            let mut pair = None;
            for micro in 0..tc.accumulate {
                let wait = Instant::now();
                let next = batches.next();
                data_wait += wait.elapsed().as_secs_f64();
                let views = match next {
                    Some(v) => v?,
                    None => break 'epochs,
                };
                if step == 0 && micro == 0 && tc.log_views {
                    let imgs: Vec<_> = views
                        .iter()
                        .filter_map(|b| b.tensors.get("image").cloned())
                        .collect();
                    if imgs.len() == views.len() {
                        if let Ok(grid) = image_grid(&imgs, 16, 2) {
                            log_all(&mut loggers, |l| l.image(0, "views", &grid))?;
                        }
                    }
                }
                interval_examples += views.first().map_or(0, |b| b.len());
                let views = views
                    .iter()
                    .map(|b| b.to_device(&device))
                    .collect::<Result<Vec<_>>>()?;
                let mut ctx =
                    ForwardCtx::train(Rng::derive(recipe.seed, "step", &[step, micro as u64]));
                let out = exp.method.step(&views, &mut ctx)?;
                let value = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                // with f16, an overflow in the forward pass reaches the
                // gradients too, and the loss scaler skips the step
                if !value.is_finite() && !scaler.checks_overflow() {
                    let kept = if rotation.exists() {
                        format!("the last good checkpoint is kept at {}", ck_path.display())
                    } else {
                        "no checkpoint had been written yet".to_string()
                    };
                    return Err(Error::Diverged(format!(
                        "the loss is {value} at step {} (epoch {epoch}); stopping: {kept}",
                        step + 1
                    )));
                }
                step_loss += value / tc.accumulate as f64;
                let loss = if tc.accumulate > 1 {
                    (out.loss / tc.accumulate as f64)?
                } else {
                    out.loss
                };
                let mut g = scaler.scale_loss(&loss)?.backward()?;
                // mixed precision: f32, unscaled gradients from here on
                scaler.unscale(&mut g, &train_vars)?;
                match grads.as_mut() {
                    None => grads = Some(g),
                    Some(acc) => clip::accumulate(acc, &g, &train_vars)?,
                }
                scalars = out.scalars;
                embeddings = out.embeddings;
                pair = out.pair;
            }
            let Some(mut grads) = grads else {
                break 'epochs;
            };
            let grad_norm = match tc.grad_clip {
                Some(max) => clip::clip_grad_norm(&mut grads, &train_vars, max)?,
                None if (step + 1) % tc.log_every == 0 || scaler.checks_overflow() => {
                    clip::grad_norm(&grads, &train_vars)?
                }
                None => f64::NAN,
            };
            let lr = schedule.lr_at(step);
            if scaler.update(grad_norm)? {
                opt.step(&grads, lr)?;
            } else {
                skipped_steps += 1;
                let msg = format!(
                    "f16 gradients overflowed at step {}: the step is skipped, the loss scale is now {}",
                    step + 1,
                    scaler.scale()
                );
                log_all(&mut loggers, |l| l.message(step + 1, &msg))?;
            }
            step += 1;
            exp.method.after_step(&StepInfo { step, total_steps })?;
            last_loss = step_loss;
            loss_sum += step_loss;
            loss_n += 1;

            if step % tc.log_every == 0 || step == stop_at {
                let secs = interval_start.elapsed().as_secs_f64();
                let mut s = vec![
                    ("train/loss".to_string(), loss_sum / loss_n as f64),
                    ("train/lr".to_string(), lr),
                    ("train/step_time_s".to_string(), secs / loss_n as f64),
                    (
                        "train/examples_per_s".to_string(),
                        interval_examples as f64 / secs.max(1e-9),
                    ),
                    // the share of the interval the training thread waited for data
                    (
                        "train/data_wait_fraction".to_string(),
                        data_wait / secs.max(1e-9),
                    ),
                    (
                        "train/epoch".to_string(),
                        step as f64 / steps_per_epoch as f64,
                    ),
                ];
                if grad_norm.is_finite() {
                    s.push(("train/grad_norm".to_string(), grad_norm));
                }
                if scaler.checks_overflow() {
                    s.push(("train/loss_scale".to_string(), scaler.scale()));
                    s.push(("train/skipped_steps".to_string(), skipped_steps as f64));
                }
                if let Some(e) = &embeddings {
                    let sp = spread(e)?;
                    s.push(("train/embedding_spread".to_string(), sp));
                    if sp < 0.1 && !collapse_warned && step > steps_per_epoch.min(50) {
                        collapse_warned = true;
                        let msg = format!(
                            "warning: embeddings are collapsing at step {step}: per-dimension std x sqrt(D) = {sp:.3} (about 1 when spread out)"
                        );
                        log_all(&mut loggers, |l| l.message(step, &msg))?;
                    }
                }
                if let Some((a, b)) = &pair {
                    s.extend(pair_metrics(a, b)?);
                }
                s.extend(scalars.iter().cloned());
                log_all(&mut loggers, |l| l.scalars(step, &s))?;
                loss_sum = 0.0;
                loss_n = 0;
                interval_examples = 0;
                data_wait = 0.0;
                interval_start = Instant::now();
            }
            if tc.histogram_every > 0 && step % tc.histogram_every == 0 {
                for (name, var) in &trainable {
                    if var.rank() > 1 {
                        let v = var
                            .as_tensor()
                            .flatten_all()?
                            .to_dtype(DType::F32)?
                            .to_vec1::<f32>()?;
                        log_all(&mut loggers, |l| {
                            l.histogram(step, &format!("weights/{name}"), &v)
                        })?;
                    }
                }
            }
            if step < stop_at && stop_requested() {
                stopped = true;
                break 'epochs;
            }
            if step % tc.checkpoint_every == 0 && step < stop_at {
                save_checkpoint(&exp, opt.as_ref(), &scaler, recipe, step, &rotation)?;
            }
        }
        drop(batches);
        epoch += 1;
        train_seconds += loop_start.elapsed().as_secs_f64();
        if step < stop_at {
            let m = exp.evaluate(recipe, Some(epoch as usize))?;
            if !m.is_empty() {
                log_all(&mut loggers, |l| l.scalars(step, &m))?;
                let text = format!("epoch {epoch}: {}", fmt_metrics(&m));
                log_all(&mut loggers, |l| l.message(step, &text))?;
                let best = keep_best(&exp, opt.as_ref(), &scaler, recipe, step, &rotation, &m)?;
                if let Some(line) = best {
                    log_all(&mut loggers, |l| l.message(step, &line))?;
                }
            }
            if stop_requested() {
                stopped = true;
                break 'epochs;
            }
        }
        loop_start = Instant::now();
    }
    train_seconds += loop_start.elapsed().as_secs_f64();
    save_checkpoint(&exp, opt.as_ref(), &scaler, recipe, step, &rotation)?;
    let mut metrics = vec![("train/loss".to_string(), last_loss)];
    if stopped {
        let text = format!(
            "stopped on request at step {step} of {stop_at}: checkpoint written to {}; continue with --resume",
            rotation.latest().display()
        );
        log_all(&mut loggers, |l| l.message(step, &text))?;
        log_all(&mut loggers, |l| l.finish(step, &metrics))?;
        return Ok(TrainOutcome {
            step,
            metrics,
            init_metrics,
            run_dir,
            stopped: true,
        });
    }
    if !exp.evaluators.is_empty() {
        let m = exp.evaluate(recipe, None)?;
        log_all(&mut loggers, |l| l.scalars(step, &m))?;
        if let Some(line) = keep_best(&exp, opt.as_ref(), &scaler, recipe, step, &rotation, &m)? {
            log_all(&mut loggers, |l| l.message(step, &line))?;
        }
        metrics.extend(m);
    }
    write_results(&run_dir, step, &metrics, &init_metrics, train_seconds)?;
    log_all(&mut loggers, |l| l.finish(step, &metrics))?;
    Ok(TrainOutcome {
        step,
        metrics,
        init_metrics,
        run_dir,
        stopped: false,
    })
}

fn write_results(
    dir: &Path,
    step: u64,
    metrics: &[(String, f64)],
    init: &[(String, f64)],
    train_seconds: f64,
) -> Result<()> {
    let to_map = |m: &[(String, f64)]| m.iter().cloned().collect::<BTreeMap<String, f64>>();
    let v = serde_json::json!({
        "step": step,
        "train_seconds": train_seconds,
        "final": to_map(metrics),
        "init": to_map(init),
    });
    checkpoint::write_atomic(&dir.join(RESULTS), format!("{v:#}\n").as_bytes())
}

/// Rebuilds a finished run's recipe (with or without its evaluators) and
/// loads its checkpoint.
fn load_run(run_dir: &Path, device: Option<&str>, with_eval: bool) -> Result<(Recipe, Experiment)> {
    // the run's resolved recipe as it was written: no environment layer
    let mut recipe = Recipe::load_with_env(&run_dir.join(RECIPE), &[], std::iter::empty())?;
    if !with_eval {
        recipe.eval.clear();
    }
    let device = crate::device::select(device.unwrap_or(&recipe.device))?;
    let rotation = Rotation {
        dir: run_dir.to_path_buf(),
        keep: recipe.train.keep_checkpoints,
    };
    let found = checkpoint::load_newest(&rotation, &device)?;
    for (path, why) in &found.skipped {
        eprintln!("warning: skipping {}: {why}", path.display());
    }
    let (ck_path, ck) = (found.path, found.checkpoint);
    let exp = Experiment::build(&recipe, device)?;
    exp.store
        .assign_all(&ck.model)
        .map_err(|e| Error::Checkpoint {
            path: ck_path.display().to_string(),
            message: e.to_string(),
        })?;
    Ok((recipe, exp))
}

/// Runs the evaluators of a finished run's recipe on its checkpoint.
pub fn evaluate_run(run_dir: &Path, device: Option<&str>) -> Result<Vec<(String, f64)>> {
    let (recipe, mut exp) = load_run(run_dir, device, true)?;
    if exp.evaluators.is_empty() {
        return Err(Error::Recipe(format!(
            "{}: the recipe has no [[eval]] section",
            run_dir.join(RECIPE).display()
        )));
    }
    exp.evaluate(&recipe, None)
}

/// Writes a finished run's encoder in its exchange layout (e.g. Hugging
/// Face's `config.json` + `model.safetensors`) into `out`.
pub fn export_run(run_dir: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let (_, exp) = load_run(run_dir, Some("cpu"), false)?;
    exp.method.encoder().export(out)
}

/// A grid of augmented views of the first `images` training samples of
/// `recipe`: one row per view, one column per image (`parallax views`).
pub fn preview_views(recipe: &Recipe, images: usize) -> Result<crate::logging::ImageU8> {
    registry::check()?;
    let mut ctx = BuildCtx::new(recipe.seed, Split::Train);
    ctx.encoder = Some(recipe.encoder.clone());
    let source = (registry::data_source(&recipe.data.name)?.build)(&recipe.data.params, &ctx)?;
    ctx.meta = source.meta();
    let spec = recipe
        .views
        .as_ref()
        .ok_or_else(|| Error::Recipe("missing section [views] (the view generator)".into()))?;
    let views = (registry::views(&spec.name)?.build)(&spec.params, &ctx)?;
    let n = images.min(source.len());
    if n == 0 {
        return Err(Error::Data(format!("{} has no samples", source.describe())));
    }
    let mut per_view: Vec<Vec<crate::batch::Sample>> = vec![Vec::new(); views.num_views()];
    for i in 0..n {
        let mut rng = Rng::derive(recipe.seed, "views/preview", &[i as u64]);
        for (v, s) in views
            .generate(&source.get(i)?, &mut rng)?
            .into_iter()
            .enumerate()
        {
            per_view[v].push(s);
        }
    }
    let rows = per_view
        .iter()
        .map(|samples| {
            let b = crate::batch::Batch::collate(samples, &Device::Cpu)?;
            b.get("image").cloned().map_err(|_| {
                Error::Data(format!(
                    "view generator `{}` makes no `image` field to draw",
                    spec.name
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    image_grid(&rows, n, 2)
}
