//! SimCSE: the same sentence encoded twice, with different dropout masks,
//! is a positive pair; the other sentences of the batch are negatives.
//!
//! Gao, Yao, Chen. "SimCSE: Simple Contrastive Learning of Sentence
//! Embeddings", EMNLP 2021. Unsupervised (section 3): two views that are
//! identical copies (`[views] name = "copies"`), dropout in the encoder
//! makes them differ. Supervised (section 4): three views — a sentence, its
//! entailment (the positive) and its contradiction (a hard negative) — from
//! a triples source. Generic over the encoder: any encoder whose forward
//! pass is stochastic in training mode works.
//!
//! The loss is `[loss]`, by default `simcse` (temperature 0.05); any loss on
//! `z0`/`z1` (e.g. `debiased_info_nce`) can replace it. With three views the
//! third view's embeddings are passed as `hard_negative`, which `simcse`
//! and `hard_negative_info_nce` use.

use candle_core::Tensor;
use serde::Deserialize;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::losses::simcse::{SimCse, SimCseConfig};
use crate::losses::{l2_normalize, Loss, LossInputs};
use crate::methods::simclr::concat_batches;
use crate::methods::{Method, MethodCtx, StepOutput};
use crate::nn::encoder::{Encoder, ForwardCtx, Head};
use crate::registry;

/// `[method]` options of SimCSE.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SimcseConfig {
    /// 2 (unsupervised: two dropout views) or 3 (supervised: sentence,
    /// entailment, contradiction).
    views: usize,
    /// Encode all views in one forward pass (faster; dropout masks still
    /// differ between the copies).
    joint_forward: bool,
}

impl Default for SimcseConfig {
    fn default() -> Self {
        SimcseConfig {
            views: 2,
            joint_forward: true,
        }
    }
}

/// The SimCSE method.
pub struct Simcse {
    encoder: Box<dyn Encoder>,
    /// SimCSE's optional MLP over the sentence embedding during training
    /// (`[method.projector]`; none by default, as for pretrained
    /// sentence encoders with mean pooling).
    projector: Option<Box<dyn Head>>,
    loss: Box<dyn Loss>,
    views: usize,
    joint_forward: bool,
}

impl Simcse {
    fn build(mut ctx: MethodCtx) -> Result<Self> {
        let d = ctx.encoder.output_dim();
        let projector = match ctx.params.take_component("projector")? {
            Some(c) => Some((registry::head(&c.name)?.build)(
                &c.params,
                d,
                ctx.vb.pp("projector"),
            )?),
            None => None,
        };
        let cfg: SimcseConfig = ctx.params.extract()?;
        if !(2..=3).contains(&cfg.views) {
            return Err(ctx.params.error(
                "views",
                format!(
                    "must be 2 (unsupervised) or 3 (supervised), got {}",
                    cfg.views
                ),
            ));
        }
        let loss = match ctx.loss.take() {
            Some(l) => l,
            None => Box::new(SimCse::new(SimCseConfig::default())?),
        };
        Ok(Simcse {
            encoder: ctx.encoder,
            projector,
            loss,
            views: cfg.views,
            joint_forward: cfg.joint_forward,
        })
    }

    fn embed(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let h = self.encoder.forward(batch, ctx)?;
        let h = if h.rank() == 3 { h.mean(1)? } else { h };
        match &self.projector {
            Some(p) => p.forward(&h, ctx),
            None => Ok(h),
        }
    }
}

impl Method for Simcse {
    fn step(&mut self, views: &[Batch], ctx: &mut ForwardCtx) -> Result<StepOutput> {
        if views.len() != self.views {
            return Err(Error::Shape(format!(
                "simcse is set up for {} views, got {}",
                self.views,
                views.len()
            )));
        }
        let z: Vec<Tensor> = if self.joint_forward {
            let n = views[0].len();
            let all = self.embed(&concat_batches(views)?, ctx)?;
            (0..views.len())
                .map(|i| all.narrow(0, i * n, n))
                .collect::<candle_core::Result<_>>()?
        } else {
            views
                .iter()
                .map(|v| self.embed(v, ctx))
                .collect::<Result<_>>()?
        };
        let mut inputs = LossInputs::new()
            .with("z0", z[0].clone())
            .with("z1", z[1].clone());
        if let Some(neg) = z.get(2) {
            inputs.insert("hard_negative", neg.clone());
        }
        let loss = self.loss.forward(&inputs)?;
        let n0 = l2_normalize(&z[0].detach())?;
        let n1 = l2_normalize(&z[1].detach())?;
        let mut scalars = vec![(
            "train/positive_cosine".to_string(),
            (&n0 * &n1)?.sum(1)?.mean_all()?.to_scalar::<f32>()? as f64,
        )];
        if let Some(neg) = z.get(2) {
            let nn = l2_normalize(&neg.detach())?;
            scalars.push((
                "train/hard_negative_cosine".to_string(),
                (&n0 * &nn)?.sum(1)?.mean_all()?.to_scalar::<f32>()? as f64,
            ));
        }
        Ok(StepOutput {
            loss,
            scalars,
            embeddings: Some(n0.clone()),
            pair: Some((n0, n1)),
        })
    }

    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    fn num_views(&self) -> usize {
        self.views
    }
}

crate::register!(
    method,
    "simcse",
    "SimCSE: dropout views (or entailment + contradiction triples), simcse loss (Gao et al. 2021)",
    |ctx| Ok(Box::new(Simcse::build(ctx)?))
);
