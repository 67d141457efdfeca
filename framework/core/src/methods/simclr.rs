//! SimCLR: two augmented views, a projection head and the NT-Xent loss.
//!
//! Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive
//! Learning of Visual Representations", ICML 2020. Generic over the
//! modality: any encoder, any two-view generator.

use candle_core::Tensor;
use serde::Deserialize;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::losses::nt_xent::{NtXent, NtXentConfig};
use crate::losses::{l2_normalize, Loss, LossInputs};
use crate::methods::{Method, MethodCtx, StepOutput};
use crate::nn::encoder::{Encoder, ForwardCtx, Head};
use crate::recipe::Component;
use crate::registry;

/// `[method]` options of SimCLR (the projector is `[method.projector]`,
/// by default SimCLR's 2-layer head with 128 outputs).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SimclrConfig {
    /// Encode both views in one forward pass (batch statistics over 2N, as
    /// with SimCLR's global batch norm); faster on CPU.
    joint_forward: bool,
}

impl Default for SimclrConfig {
    fn default() -> Self {
        SimclrConfig {
            joint_forward: true,
        }
    }
}

/// The SimCLR method.
pub struct Simclr {
    encoder: Box<dyn Encoder>,
    projector: Box<dyn Head>,
    loss: Box<dyn Loss>,
    joint_forward: bool,
}

/// Builds the head `key` of a method (a nested component), or `default`.
pub fn build_head(
    ctx: &mut MethodCtx,
    key: &str,
    default: &str,
    in_dim: usize,
) -> Result<Box<dyn Head>> {
    let comp = match ctx.params.take_component(key)? {
        Some(c) => c,
        None => Component::new(
            &format!("{}.{key}", ctx.params.section()),
            default,
            toml::Table::new(),
        )?,
    };
    (registry::head(&comp.name)?.build)(&comp.params, in_dim, ctx.vb.pp(key))
}

impl Simclr {
    fn build(mut ctx: MethodCtx) -> Result<Self> {
        let d = ctx.encoder.output_dim();
        let projector = build_head(&mut ctx, "projector", "simclr", d)?;
        let cfg: SimclrConfig = ctx.params.extract()?;
        let loss = match ctx.loss.take() {
            Some(l) => l,
            None => Box::new(NtXent::new(NtXentConfig::default())?),
        };
        Ok(Simclr {
            encoder: ctx.encoder,
            projector,
            loss,
            joint_forward: cfg.joint_forward,
        })
    }

    fn embed(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let h = self.encoder.forward(batch, ctx)?;
        self.projector.forward(&h, ctx)
    }
}

/// Concatenates the tensors of several batches along the batch dimension.
pub fn concat_batches(views: &[Batch]) -> Result<Batch> {
    let mut out = Batch::default();
    let first = views
        .first()
        .ok_or_else(|| Error::Shape("no views to concatenate".into()))?;
    for name in first.tensors.keys() {
        let parts: Vec<&Tensor> = views.iter().map(|v| v.get(name)).collect::<Result<_>>()?;
        out.tensors.insert(name.clone(), Tensor::cat(&parts, 0)?);
    }
    Ok(out)
}

impl Method for Simclr {
    fn step(&mut self, views: &[Batch], ctx: &mut ForwardCtx) -> Result<StepOutput> {
        if views.len() != 2 {
            return Err(Error::Shape(format!(
                "simclr needs 2 views, got {}",
                views.len()
            )));
        }
        let (z0, z1) = if self.joint_forward {
            let n = views[0].len();
            let z = self.embed(&concat_batches(views)?, ctx)?;
            (z.narrow(0, 0, n)?, z.narrow(0, n, n)?)
        } else {
            (self.embed(&views[0], ctx)?, self.embed(&views[1], ctx)?)
        };
        let loss = self.loss.forward(
            &LossInputs::new()
                .with("z0", z0.clone())
                .with("z1", z1.clone()),
        )?;
        let (n0, n1) = (l2_normalize(&z0.detach())?, l2_normalize(&z1.detach())?);
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
    "simclr",
    "SimCLR: two views, projection head, NT-Xent (Chen et al. 2020)",
    |ctx| Ok(Box::new(Simclr::build(ctx)?))
);
