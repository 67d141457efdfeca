//! Methods: generic self-supervised objectives (SimCLR, ...), independent of
//! the modality. A method owns its heads, target networks, queues and loss.

pub mod byol;
pub mod clip;
pub mod dino;
pub mod moco;
pub mod simclr;
pub mod simcse;
pub mod simsiam;
pub mod supervised;
pub mod target;
pub mod triplet;

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::batch::Batch;
use crate::data::DataMeta;
use crate::error::Result;
use crate::losses::Loss;
use crate::nn::encoder::Head;
use crate::nn::encoder::{Encoder, ForwardCtx};
use crate::recipe::{Component, Params};
use crate::registry;

/// What a training step returns.
pub struct StepOutput {
    /// The scalar loss to minimise.
    pub loss: Tensor,
    /// Extra scalars to log (e.g. positive similarity).
    pub scalars: Vec<(String, f64)>,
    /// L2-normalised embeddings of one view, for collapse monitoring.
    pub embeddings: Option<Tensor>,
    /// L2-normalised embeddings of two views of the same samples (rows
    /// paired), for the alignment and uniformity metrics of Wang & Isola.
    pub pair: Option<(Tensor, Tensor)>,
}

/// Everything a method constructor gets.
pub struct MethodCtx {
    /// The `[method]` parameters (with nested `projector`, ... tables).
    pub params: Params,
    /// The encoder, built from `[encoder]` under `encoder.`.
    pub encoder: Box<dyn Encoder>,
    /// The `[encoder]` component, to build copies (momentum encoders).
    pub encoder_spec: Component,
    /// The loss from `[loss]`, if the recipe names one.
    pub loss: Option<Box<dyn Loss>>,
    /// The root variable builder (use `vb.pp("projector")`, ...).
    pub vb: VarBuilder<'static>,
    /// The training data's description.
    pub meta: DataMeta,
    /// The run's seed.
    pub seed: u64,
    /// The store holding every variable (to pair a target network's
    /// variables with the online ones, see [`target::TargetNetwork`]).
    pub store: crate::nn::init::VarStore,
}

/// Step information passed to `after_step`.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// Optimizer steps done so far (after this one).
    pub step: u64,
    /// The total number of steps of the run.
    pub total_steps: u64,
}

/// A self-supervised method.
pub trait Method: Send {
    /// The forward pass on the views of a batch: returns the loss.
    fn step(&mut self, views: &[Batch], ctx: &mut ForwardCtx) -> Result<StepOutput>;
    /// Called after each optimizer step (EMA updates, queues, centres).
    fn after_step(&mut self, _info: &StepInfo) -> Result<()> {
        Ok(())
    }
    /// The encoder whose representations are evaluated.
    fn encoder(&self) -> &dyn Encoder;
    /// Whether the variable `name` is trained by the optimizer (targets
    /// updated by EMA are not).
    fn is_trainable(&self, _name: &str) -> bool {
        true
    }
    /// The number of views the method expects.
    fn num_views(&self) -> usize;
    /// Class logits `[B, K]` of a batch, for methods that train a classifier
    /// (the supervised baseline); `None` for the others.
    fn logits(&self, _batch: &Batch, _ctx: &mut ForwardCtx) -> Option<Result<Tensor>> {
        None
    }
    /// State outside the model variables (queues, centres), for checkpoints.
    fn state(&self) -> Result<std::collections::BTreeMap<String, Tensor>> {
        Ok(Default::default())
    }
    /// Restores [`Method::state`].
    fn load_state(&mut self, _state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        Ok(())
    }
}

/// The head `key` of a method: the recipe's `[method.KEY]` component when
/// given (already taken out of the parameters, see
/// [`Params::take_component`]), else `default_name` with `defaults`.
pub fn head_spec(
    ctx: &MethodCtx,
    given: Option<Component>,
    key: &str,
    default_name: &str,
    defaults: toml::Table,
) -> Result<Component> {
    match given {
        Some(c) => Ok(c),
        None => Component::new(
            &format!("{}.{key}", ctx.params.section()),
            default_name,
            defaults,
        ),
    }
}

/// Builds the head `spec` on inputs of width `in_dim` under `vb` (call
/// twice, under `vb.pp(key)` and `vb.pp("target").pp(key)`, for a head and
/// its target copy).
pub fn build_head_at(
    spec: &Component,
    in_dim: usize,
    vb: VarBuilder<'static>,
) -> Result<Box<dyn Head>> {
    (registry::head(&spec.name)?.build)(&spec.params, in_dim, vb)
}

/// Builds a predictor head `[method.predictor]` (default `default_name`)
/// that maps the projector's width `p` back to `p` (BYOL, SimSiam): a
/// `byol` or `simsiam_predictor` head without `out_dim` gets `p`, and any
/// other width is an error naming the key.
pub fn build_predictor(
    ctx: &MethodCtx,
    given: Option<Component>,
    default_name: &str,
    p: usize,
) -> Result<Box<dyn Head>> {
    let mut spec = head_spec(ctx, given, "predictor", default_name, toml::Table::new())?;
    if spec.name == "byol" || spec.name == "simsiam_predictor" {
        spec.params.set_default("out_dim", p)?;
    }
    let predictor = build_head_at(&spec, p, ctx.vb.pp("predictor"))?;
    if predictor.output_dim() != p {
        return Err(ctx.params.error(
            "predictor",
            format!(
                "the predictor must map back to the projector's width {p}, it gives {}",
                predictor.output_dim()
            ),
        ));
    }
    Ok(predictor)
}
