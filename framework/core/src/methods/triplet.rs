//! A triplet method with in-batch hard-negative mining.
//!
//! Self-supervised: the two views of an image are anchor and positive, the
//! other images of the batch are the negatives, and each anchor is paired
//! with its hardest (nearest) negative — the batch-hard triplet loss of
//! Hermans, Beyer, Leibe ("In Defense of the Triplet Loss for Person
//! Re-Identification", 2017) with the image index as the label. With
//! `use_labels = true` the batch's class labels define the positives
//! instead (supervised metric learning). Embeddings are L2-normalised
//! (FaceNet, Schroff et al. 2015), so the margin (0.2) is on the unit
//! sphere. The loss is `[loss]` (default `triplet_batch_hard`), which also
//! offers semi-hard and batch-all mining.

use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::losses::triplet_batch_hard::{TripletBatchHard, TripletBatchHardConfig};
use crate::losses::{l2_normalize, Loss, LossInputs};
use crate::methods::simclr::concat_batches;
use crate::methods::{build_head_at, head_spec, Method, MethodCtx, StepOutput};
use crate::nn::encoder::{Encoder, ForwardCtx, Head};

/// `[method] name = "triplet"` options (projector: `[method.projector]`,
/// SimCLR's head by default).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct TripletConfig {
    /// Positives from the batch's `label` field instead of the image index.
    use_labels: bool,
}

/// The triplet method.
pub struct Triplet {
    encoder: Box<dyn Encoder>,
    projector: Box<dyn Head>,
    loss: Box<dyn Loss>,
    use_labels: bool,
}

impl Triplet {
    fn build(mut ctx: MethodCtx) -> Result<Self> {
        let projector = ctx.params.take_component("projector")?;
        let cfg: TripletConfig = ctx.params.extract()?;
        let spec = head_spec(&ctx, projector, "projector", "simclr", Default::default())?;
        let projector = build_head_at(&spec, ctx.encoder.output_dim(), ctx.vb.pp("projector"))?;
        let loss = match ctx.loss.take() {
            Some(l) => l,
            None => Box::new(TripletBatchHard::new(TripletBatchHardConfig::default())?),
        };
        Ok(Triplet {
            encoder: ctx.encoder,
            projector,
            loss,
            use_labels: cfg.use_labels,
        })
    }
}

impl Method for Triplet {
    fn step(&mut self, views: &[Batch], ctx: &mut ForwardCtx) -> Result<StepOutput> {
        if views.len() != 2 {
            return Err(Error::Shape(format!(
                "triplet needs 2 views, got {}",
                views.len()
            )));
        }
        let n = views[0].len();
        let h = self.encoder.forward(&concat_batches(views)?, ctx)?;
        let z = l2_normalize(&self.projector.forward(&h, ctx)?)?;
        let labels = if self.use_labels {
            let l = views[0].get("label").map_err(|_| {
                Error::Data("triplet: use_labels = true needs a data source with labels".into())
            })?;
            let l = l.flatten_all()?.to_dtype(DType::I64)?;
            Tensor::cat(&[&l, &l], 0)?
        } else {
            let idx = Tensor::arange(0i64, n as i64, z.device())?;
            Tensor::cat(&[&idx, &idx], 0)?
        };
        let loss = self.loss.forward(
            &LossInputs::new()
                .with("embeddings", z.clone())
                .with("labels", labels),
        )?;
        let z = z.detach();
        let (n0, n1) = (z.narrow(0, 0, n)?, z.narrow(0, n, n)?);
        let pos = (&n0 * &n1)?.sum(1)?.mean_all()?.to_scalar::<f32>()? as f64;
        Ok(StepOutput {
            loss,
            scalars: vec![("train/positive_cosine".into(), pos)],
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
    "triplet",
    "triplet loss, the two views as anchor/positive, hardest in-batch negative (Hermans et al. 2017)",
    |ctx| Ok(Box::new(Triplet::build(ctx)?))
);
