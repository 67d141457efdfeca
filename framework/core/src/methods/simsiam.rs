//! SimSiam: a predictor on one branch and stop-gradient on the other; no
//! negatives, no momentum encoder.
//!
//! Chen, He. "Exploring Simple Siamese Representation Learning", CVPR 2021.
//! Encoder, projector (`simsiam_projector`: 3 layers of 2048 with batch
//! norm) and predictor (`simsiam_predictor`: a 512 bottleneck). The loss
//! (`simsiam`) is `-(cos(p0, sg(z1)) + cos(p1, sg(z0))) / 2`. Without the
//! stop-gradient the method collapses (section 4.1); the trainer's spread
//! monitor warns when it does.

use serde::Deserialize;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::losses::simsiam::{SimSiam as SimSiamLoss, SimSiamConfig};
use crate::losses::{l2_normalize, Loss, LossInputs};
use crate::methods::simclr::concat_batches;
use crate::methods::{build_head_at, build_predictor, head_spec, Method, MethodCtx, StepOutput};
use crate::nn::encoder::{Encoder, ForwardCtx, Head};

/// `[method] name = "simsiam"` options (heads: `[method.projector]`,
/// `[method.predictor]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SimSiamMethodConfig {
    /// Encode both views in one pass (batch-norm statistics over both).
    joint_forward: bool,
}

impl Default for SimSiamMethodConfig {
    fn default() -> Self {
        SimSiamMethodConfig {
            joint_forward: true,
        }
    }
}

/// The SimSiam method.
pub struct SimSiam {
    encoder: Box<dyn Encoder>,
    projector: Box<dyn Head>,
    predictor: Box<dyn Head>,
    loss: Box<dyn Loss>,
    joint_forward: bool,
}

impl SimSiam {
    fn build(mut ctx: MethodCtx) -> Result<Self> {
        let projector = ctx.params.take_component("projector")?;
        let predictor = ctx.params.take_component("predictor")?;
        let cfg: SimSiamMethodConfig = ctx.params.extract()?;
        let spec = head_spec(
            &ctx,
            projector,
            "projector",
            "simsiam_projector",
            Default::default(),
        )?;
        let d = ctx.encoder.output_dim();
        let projector = build_head_at(&spec, d, ctx.vb.pp("projector"))?;
        let p = projector.output_dim();
        let predictor = build_predictor(&ctx, predictor, "simsiam_predictor", p)?;
        let loss = match ctx.loss.take() {
            Some(l) => l,
            None => Box::new(SimSiamLoss::new(SimSiamConfig::default())?),
        };
        Ok(SimSiam {
            encoder: ctx.encoder,
            projector,
            predictor,
            loss,
            joint_forward: cfg.joint_forward,
        })
    }
}

impl Method for SimSiam {
    fn step(&mut self, views: &[Batch], ctx: &mut ForwardCtx) -> Result<StepOutput> {
        if views.len() != 2 {
            return Err(Error::Shape(format!(
                "simsiam needs 2 views, got {}",
                views.len()
            )));
        }
        let (z0, z1) = if self.joint_forward {
            let n = views[0].len();
            let h = self.encoder.forward(&concat_batches(views)?, ctx)?;
            let z = self.projector.forward(&h, ctx)?;
            (z.narrow(0, 0, n)?, z.narrow(0, n, n)?)
        } else {
            let z0 = self
                .projector
                .forward(&self.encoder.forward(&views[0], ctx)?, ctx)?;
            let z1 = self
                .projector
                .forward(&self.encoder.forward(&views[1], ctx)?, ctx)?;
            (z0, z1)
        };
        let p0 = self.predictor.forward(&z0, ctx)?;
        let p1 = self.predictor.forward(&z1, ctx)?;
        let loss = self.loss.forward(
            &LossInputs::new()
                .with("p0", p0)
                .with("p1", p1)
                .with("z0", z0.detach())
                .with("z1", z1.detach()),
        )?;
        let n0 = l2_normalize(&z0.detach())?;
        let n1 = l2_normalize(&z1.detach())?;
        Ok(StepOutput {
            loss,
            scalars: Vec::new(),
            embeddings: Some(n0.clone()),
            pair: Some((n0, n1)),
        })
    }

    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    fn num_views(&self) -> usize {
        2
    }
}

crate::register!(
    method,
    "simsiam",
    "SimSiam: predictor + stop-gradient, no negatives (Chen & He 2021)",
    |ctx| Ok(Box::new(SimSiam::build(ctx)?))
);
