//! [`Experiment`]: every component a recipe builds (variables, method,
//! data, views, evaluators), and what is done with a finished run's
//! experiment (`parallax eval`, `export`, `views`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Var};

use super::RECIPE;
use crate::data::{BuildCtx, DataMeta, DataSource, Split};
use crate::error::{Error, Result};
use crate::eval::{EvalCtx, Evaluator};
use crate::logging::grid::image_grid;
use crate::methods::{Method, MethodCtx};
use crate::nn::cast::CastEncoder;
use crate::nn::encoder::EncoderCtx;
use crate::nn::init::VarStore;
use crate::recipe::Recipe;
use crate::registry;
use crate::rng::Rng;
use crate::views::ViewGenerator;

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
        let (mut ctx, source) = training_source(recipe)?;
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
        let (views_name, views) = view_generator(recipe, &ctx)?;
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
                views_name,
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
            if only_every.is_some_and(|epoch| !super::due(e.every_epochs(), epoch as u64)) {
                continue;
            }
            out.extend(e.evaluate(&ctx)?);
        }
        Ok(out)
    }
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
    let found = super::checkpoints::load_finished(run_dir, &recipe, &device)?;
    let exp = Experiment::build(&recipe, device)?;
    found.assign_to(&exp.store)?;
    Ok((recipe, exp))
}

/// Runs the evaluators of a finished run's recipe on its checkpoint.
pub fn evaluate_run(run_dir: &Path, device: Option<&str>) -> Result<Vec<(String, f64)>> {
    let recipe = Recipe::load_with_env(&run_dir.join(RECIPE), &[], std::iter::empty())?;
    if recipe.train.train_loop != super::EPOCHS {
        let lp = (registry::training_loop(&recipe.train.train_loop)?.build)();
        return lp.evaluate(&recipe, run_dir, device);
    }
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

/// The recipe's training data source (not empty) and the build context
/// its components share.
fn training_source(recipe: &Recipe) -> Result<(BuildCtx, Arc<dyn DataSource>)> {
    registry::check()?;
    let mut ctx = BuildCtx::new(recipe.seed, Split::Train);
    ctx.encoder = Some(recipe.encoder.clone());
    let source = (registry::data_source(&recipe.data.name)?.build)(&recipe.data.params, &ctx)?;
    if source.is_empty() {
        return Err(Error::Data(format!("{} has no samples", source.describe())));
    }
    Ok((ctx, source))
}

/// The recipe's `[views]` generator, with its name.
fn view_generator<'r>(
    recipe: &'r Recipe,
    ctx: &BuildCtx,
) -> Result<(&'r str, Arc<dyn ViewGenerator>)> {
    let spec = recipe
        .views
        .as_ref()
        .ok_or_else(|| Error::Recipe("missing section [views] (the view generator)".into()))?;
    Ok((
        &spec.name,
        (registry::views(&spec.name)?.build)(&spec.params, ctx)?,
    ))
}

/// A grid of augmented views of the first `images` training samples of
/// `recipe`: one row per view, one column per image (`parallax views`).
pub fn preview_views(recipe: &Recipe, images: usize) -> Result<crate::logging::ImageU8> {
    let (mut ctx, source) = training_source(recipe)?;
    ctx.meta = source.meta();
    let (views_name, views) = view_generator(recipe, &ctx)?;
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
                    views_name
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    image_grid(&rows, n, 2)
}
