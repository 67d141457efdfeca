//! BYOL: an online network predicts a slowly moving target's projection of
//! the other view; no negatives.
//!
//! Grill et al. "Bootstrap Your Own Latent: A New Approach to
//! Self-Supervised Learning", NeurIPS 2020. Online: encoder, projector
//! (`byol`: 4096 hidden, 256 out) and predictor (same shape). Target: copies
//! of the encoder and projector, updated by EMA with the momentum going
//! from 0.996 to 1 along a cosine (section 3.3). The loss (`byol`) is the
//! symmetrised `2 - 2 cos(p, z')` with stop-gradient on the target.

use serde::Deserialize;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::losses::byol::{Byol as ByolLoss, ByolConfig};
use crate::losses::{l2_normalize, Loss, LossInputs};
use crate::methods::target::{self, MomentumSchedule, TargetNetwork};
use crate::methods::{
    build_head_at, build_predictor, head_spec, Method, MethodCtx, StepInfo, StepOutput,
};
use crate::nn::encoder::{Encoder, ForwardCtx, Head};

/// `[method] name = "byol"` options (heads: `[method.projector]`,
/// `[method.predictor]`, both `byol` by default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ByolMethodConfig {
    /// Base momentum of the target: 0.996.
    momentum: f64,
    /// `cosine` (the paper: towards 1) or `constant`.
    momentum_schedule: MomentumSchedule,
}

impl Default for ByolMethodConfig {
    fn default() -> Self {
        ByolMethodConfig {
            momentum: 0.996,
            momentum_schedule: MomentumSchedule::Cosine,
        }
    }
}

/// The BYOL method.
pub struct Byol {
    encoder: Box<dyn Encoder>,
    projector: Box<dyn Head>,
    predictor: Box<dyn Head>,
    target_encoder: Box<dyn Encoder>,
    target_projector: Box<dyn Head>,
    target: TargetNetwork,
    loss: Box<dyn Loss>,
    cfg: ByolMethodConfig,
}

impl Byol {
    fn build(mut ctx: MethodCtx) -> Result<Self> {
        let projector = ctx.params.take_component("projector")?;
        let predictor = ctx.params.take_component("predictor")?;
        let cfg: ByolMethodConfig = ctx.params.extract()?;
        target::check_momentum(cfg.momentum).map_err(|m| ctx.params.error("momentum", m))?;
        let proj_spec = head_spec(&ctx, projector, "projector", "byol", Default::default())?;
        let d = ctx.encoder.output_dim();
        let projector = build_head_at(&proj_spec, d, ctx.vb.pp("projector"))?;
        let p = projector.output_dim();
        let predictor = build_predictor(&ctx, predictor, "byol", p)?;
        let target_encoder = target::target_encoder(&ctx)?;
        let target_projector = build_head_at(&proj_spec, d, ctx.vb.pp("target").pp("projector"))?;
        let target = TargetNetwork::link(&ctx.store)?;
        let loss = match ctx.loss.take() {
            Some(l) => l,
            None => Box::new(ByolLoss::new(ByolConfig::default())?),
        };
        Ok(Byol {
            encoder: ctx.encoder,
            projector,
            predictor,
            target_encoder,
            target_projector,
            target,
            loss,
            cfg,
        })
    }
}

impl Method for Byol {
    fn step(&mut self, views: &[Batch], ctx: &mut ForwardCtx) -> Result<StepOutput> {
        if views.len() != 2 {
            return Err(Error::Shape(format!(
                "byol needs 2 views, got {}",
                views.len()
            )));
        }
        let mut online = Vec::new();
        let mut targets = Vec::new();
        for v in views {
            let z = self
                .projector
                .forward(&self.encoder.forward(v, ctx)?, ctx)?;
            online.push((self.predictor.forward(&z, ctx)?, z));
            let t = self
                .target_projector
                .forward(&self.target_encoder.forward(v, ctx)?, ctx)?;
            targets.push(t.detach());
        }
        let loss = self.loss.forward(
            &LossInputs::new()
                .with("p0", online[0].0.clone())
                .with("p1", online[1].0.clone())
                .with("z0", targets[0].clone())
                .with("z1", targets[1].clone()),
        )?;
        let n0 = l2_normalize(&online[0].1.detach())?;
        let n1 = l2_normalize(&online[1].1.detach())?;
        let cos = (l2_normalize(&online[0].0.detach())? * l2_normalize(&targets[1])?)?
            .sum(1)?
            .mean_all()?
            .to_scalar::<f32>()? as f64;
        Ok(StepOutput {
            loss,
            scalars: vec![("train/prediction_cosine".into(), cos)],
            embeddings: Some(n0.clone()),
            pair: Some((n0, n1)),
        })
    }

    fn after_step(&mut self, info: &StepInfo) -> Result<()> {
        self.target.update(target::momentum_at(
            self.cfg.momentum,
            self.cfg.momentum_schedule,
            info.step,
            info.total_steps,
        ))
    }

    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    fn is_trainable(&self, name: &str) -> bool {
        !target::is_target(name)
    }

    fn num_views(&self) -> usize {
        2
    }
}

crate::register!(
    method,
    "byol",
    "BYOL: online predictor regresses an EMA target's projection (Grill et al. 2020)",
    |ctx| Ok(Box::new(Byol::build(ctx)?))
);
