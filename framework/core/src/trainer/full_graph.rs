//! The full-graph loop (`train.loop = "full_graph"`): a graph is one big
//! sample, so every step is one epoch over the whole graph — the method
//! draws its views (dropped edges, masked or shuffled features) from the
//! step's seeded generator, and the [`Stepper`] takes one optimizer step.
//! `train.epochs` (or `train.max_steps`) counts the steps; the method may
//! end training early (DGI's patience on the training loss). Reports,
//! checkpoints, `--resume`, the stop request and `results.json` are the
//! epoch loop's pieces.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device};

use super::monitor::step_scalars;
use super::{fmt_metrics, Interval, Run, Stepper, TrainOptions, TrainOutcome, TrainingLoop};
use crate::data::{BuildCtx, Split};
use crate::error::{Error, Result};
use crate::graph::{GraphEvalCtx, GraphEvaluator, GraphInput, GraphMethod, GraphMethodCtx};
use crate::losses::Loss;
use crate::methods::StepInfo;
use crate::nn::encoder::ForwardCtx;
use crate::nn::init::VarStore;
use crate::recipe::Recipe;
use crate::registry;
use crate::rng::Rng;

/// The full-graph loop.
pub struct FullGraphLoop;

crate::register!(
    training_loop,
    "full_graph",
    "one whole graph per step (GRACE, DGI, a supervised GCN)",
    || Box::new(FullGraphLoop)
);

/// What a graph recipe builds.
pub struct GraphExperiment {
    /// The model's variables.
    pub store: VarStore,
    /// The method (owns the encoder and heads).
    pub method: Box<dyn GraphMethod>,
    /// The graph on its device.
    pub input: GraphInput,
    /// The `[[eval]]` graph evaluators.
    pub evaluators: Vec<Box<dyn GraphEvaluator>>,
}

impl GraphExperiment {
    /// Builds `recipe`'s graph, encoder, method and evaluators on `device`.
    pub fn build(recipe: &Recipe, device: Device) -> Result<GraphExperiment> {
        if let Some(v) = &recipe.views {
            return Err(Error::Recipe(format!(
                "[views] `{}`: train.loop = \"full_graph\" takes no view generator; a graph method draws its own views (see its [method] keys)",
                v.name
            )));
        }
        let mut ctx = BuildCtx::new(recipe.seed, Split::Train);
        ctx.encoder = Some(recipe.encoder.clone());
        let graph = (registry::graph_data(&recipe.data.name)
            .map_err(|e| Error::Recipe(format!("[data]: {e}")))?
            .build)(&recipe.data.params, &ctx)?;
        graph.validate(&graph.describe)?;
        let store = VarStore::new(recipe.seed);
        let vb = store.var_builder(DType::F32, &device);
        let encoder = (registry::graph_encoder(&recipe.encoder.name)
            .map_err(|e| Error::Recipe(format!("[encoder]: {e}")))?
            .build)(
            &recipe.encoder.params,
            graph.num_features(),
            vb.pp("encoder"),
        )?;
        let loss: Option<Box<dyn Loss>> = match &recipe.loss {
            Some(l) => Some((registry::loss(&l.name)?.build)(&l.params)?),
            None => None,
        };
        let method = (registry::graph_method(&recipe.method.name)
            .map_err(|e| Error::Recipe(format!("[method]: {e}")))?
            .build)(GraphMethodCtx {
            params: recipe.method.params.clone(),
            encoder,
            encoder_spec: recipe.encoder.clone(),
            loss,
            vb,
            graph: graph.clone(),
            seed: recipe.seed,
            store: store.clone(),
        })?;
        let evaluators = recipe
            .eval
            .iter()
            .map(|e| {
                (registry::graph_evaluator(&e.name)
                    .map_err(|err| Error::Recipe(format!("[[eval]]: {err}")))?
                    .build)(&e.params)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GraphExperiment {
            store,
            method,
            input: GraphInput::new(graph, device),
            evaluators,
        })
    }

    /// The variables the optimizer trains.
    pub fn trainable_vars(&self) -> Vec<(String, candle_core::Var)> {
        self.store
            .named_vars()
            .into_iter()
            .filter(|(n, v)| v.dtype().is_float() && self.method.is_trainable(n))
            .collect()
    }

    /// Runs the evaluators (only those due at `epoch` when given).
    pub fn evaluate(&mut self, seed: u64, epoch: Option<u64>) -> Result<Vec<(String, f64)>> {
        let ctx = GraphEvalCtx {
            input: &self.input,
            method: self.method.as_ref(),
            seed,
        };
        let mut out = Vec::new();
        for e in self.evaluators.iter_mut() {
            if epoch.is_some_and(|epoch| !super::due(e.every_epochs(), epoch)) {
                continue;
            }
            out.extend(e.evaluate(&ctx)?);
        }
        Ok(out)
    }
}

impl TrainingLoop for FullGraphLoop {
    fn train(&self, recipe: &Recipe, opts: &TrainOptions) -> Result<TrainOutcome> {
        train(recipe, opts)
    }

    fn evaluate(
        &self,
        recipe: &Recipe,
        run_dir: &Path,
        device: Option<&str>,
    ) -> Result<Vec<(String, f64)>> {
        if recipe.eval.is_empty() {
            return Err(Error::Recipe(format!(
                "{}: the recipe has no [[eval]] section",
                run_dir.join(super::RECIPE).display()
            )));
        }
        let device = crate::device::select(device.unwrap_or(&recipe.device))?;
        let found = super::checkpoints::load_finished(run_dir, recipe, &device)?;
        let mut exp = GraphExperiment::build(recipe, device)?;
        found.assign_to(&exp.store)?;
        exp.method.load_state(&found.checkpoint.method)?;
        exp.method.finish()?;
        exp.evaluate(recipe.seed, None)
    }
}

fn train(recipe: &Recipe, opts: &TrainOptions) -> Result<TrainOutcome> {
    let run = Run::open(recipe, opts)?;
    let mut exp = GraphExperiment::build(recipe, run.device.clone())?;
    let trainable = exp.trainable_vars();
    let tc = &recipe.train;
    let total_steps = tc.max_steps.unwrap_or(tc.epochs as u64);
    let stop_at = run.stop_at(total_steps);
    let mut stepper = Stepper::new(recipe, trainable.clone(), total_steps, 1)?;
    let (mut step, resume_notes, method_state) = run.resume(&exp.store, &mut stepper)?;
    if opts.resume {
        exp.method.load_state(&method_state)?;
    }
    let graph = exp.input.graph.clone();
    let mut report = run.reporters(stop_at, step, graph.num_nodes())?;
    let what = format!("{} | {stop_at} steps over the whole graph", graph.describe);
    run.announce(&mut report, step, &what, &trainable, &resume_notes)?;
    let save = |exp: &GraphExperiment, stepper: &Stepper, step| -> Result<()> {
        run.checkpoints
            .save(step, &exp.store, stepper, &exp.method.state()?)
    };

    let mut init_metrics = Vec::new();
    if step == 0 && !exp.evaluators.is_empty() {
        init_metrics = exp.evaluate(recipe.seed, None)?;
        report.initial(&init_metrics, "random initialisation")?;
    }

    let mut last_loss = f64::NAN;
    let mut interval = Interval::default();
    let mut stopped = false;
    let mut early = None;
    let start = Instant::now();
    let mut eval_seconds = 0.0;
    while step < stop_at {
        if let Some(why) = exp.method.should_stop() {
            early = Some(why);
            break;
        }
        let mut ctx = ForwardCtx::train(Rng::derive(recipe.seed, "step", &[step]));
        let out = exp.method.step(&exp.input, &mut ctx)?;
        let value = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            return Err(Error::Diverged(format!(
                "the loss is {value} at step {}; stopping (checkpoints: {})",
                step + 1,
                run.checkpoints.latest().display()
            )));
        }
        interval.examples(graph.num_nodes());
        stepper.backward(&out.loss, 1)?;
        let Some(done) = stepper.update(step, (step + 1) % tc.log_every == 0)? else {
            break;
        };
        step += 1;
        let info = StepInfo { step, total_steps };
        exp.method.after_step(&info, value, &exp.input)?;
        last_loss = value;
        interval.step(value);
        if step % tc.log_every == 0 || step == stop_at {
            let mut s = interval.take(done.lr);
            s.extend(step_scalars(&out, done.grad_norm)?.0);
            report.scalars(step, &s)?;
        }
        if tc.histogram_every > 0 && step % tc.histogram_every == 0 {
            report.weight_histograms(step, &trainable)?;
        }
        if step < stop_at {
            let t = Instant::now();
            let m = exp.evaluate(recipe.seed, Some(step))?;
            if !m.is_empty() {
                report.scalars(step, &m)?;
                report.message(step, &format!("epoch {step}: {}", fmt_metrics(&m)))?;
                let best = run.checkpoints.keep_best(
                    step,
                    &exp.store,
                    &stepper,
                    &exp.method.state()?,
                    &m,
                )?;
                if let Some(line) = best {
                    report.message(step, &line)?;
                }
            }
            eval_seconds += t.elapsed().as_secs_f64();
            if run.stop_requested() {
                stopped = true;
                break;
            }
            if step % tc.checkpoint_every == 0 {
                save(&exp, &stepper, step)?;
            }
        }
    }
    let train_seconds = start.elapsed().as_secs_f64() - eval_seconds;
    if let Some(why) = &early {
        report.message(step, &format!("early stop at step {step}: {why}"))?;
    }
    let mut metrics = vec![("train/loss".to_string(), last_loss)];
    if stopped {
        save(&exp, &stepper, step)?;
        run.finish_stopped(&mut report, step, stop_at, &metrics)?;
    } else {
        // the checkpoint keeps the last step's parameters, so that
        // `--resume` continues the run; `finish` may then change them for
        // the evaluation (as `eval` does after loading it)
        save(&exp, &stepper, step)?;
        if let Some(line) = exp.method.finish()? {
            report.message(step, &line)?;
        }
        if !exp.evaluators.is_empty() {
            let m = exp.evaluate(recipe.seed, None)?;
            report.scalars(step, &m)?;
            metrics.extend(m);
        }
        metrics.push(("train/steps".to_string(), step as f64));
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
