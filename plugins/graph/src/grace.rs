//! GRACE (Zhu, Xu, Yu, Liu, Wu, Wang. "Deep Graph Contrastive
//! Representation Learning", ICML GRL+ workshop 2020): two views of the
//! graph by edge dropping and feature masking, a shared GCN, a projection
//! head, and node-level NT-Xent where a node's positive is itself in the
//! other view and its negatives are every other node in both views.

use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use parallax_core::graph::{GraphEncoder, GraphInput, GraphMethod, GraphMethodCtx};
use parallax_core::losses::nt_xent::{NtXent, NtXentConfig};
use parallax_core::losses::{l2_normalize, Loss, LossInputs};
use parallax_core::methods::StepOutput;
use parallax_core::nn::encoder::ForwardCtx;
use parallax_core::ops::linear::Linear;
use parallax_core::Result;
use serde::Deserialize;

use crate::views::GraphView;

/// `[method] name = "grace"` options. Defaults: the paper's Cora settings
/// (Table 5: edge dropping 0.2 / 0.4, feature masking 0.3 / 0.4, tau 0.4,
/// a 128-wide projection).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraceConfig {
    /// Edge-dropping rate of each view.
    pub drop_edge: [f64; 2],
    /// Feature-masking rate of each view.
    pub mask_feature: [f64; 2],
    /// The NT-Xent temperature (CiteSeer: 0.9).
    pub tau: f64,
    /// Width of the projection head (CiteSeer: 256).
    pub proj_dim: usize,
}

impl Default for GraceConfig {
    fn default() -> Self {
        GraceConfig {
            drop_edge: [0.2, 0.4],
            mask_feature: [0.3, 0.4],
            tau: 0.4,
            proj_dim: 128,
        }
    }
}

/// A [`Linear`] layer `in_dim -> out_dim` under `vb`, initialised as
/// PyTorch's `nn.Linear` (uniform in `±1/sqrt(in)` for weight and bias), as
/// GRACE's projection head is.
fn torch_linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let b = 1.0 / (in_dim as f64).sqrt();
    let init = Init::Uniform { lo: -b, up: b };
    Ok(Linear::new(
        vb.get_with_hints((out_dim, in_dim), "weight", init)?,
        Some(vb.get_with_hints(out_dim, "bias", init)?),
    ))
}

/// The GRACE method.
pub struct Grace {
    encoder: Box<dyn GraphEncoder>,
    fc1: Linear,
    fc2: Linear,
    views: [GraphView; 2],
    loss: Box<dyn Loss>,
}

impl Grace {
    fn project(&self, h: &Tensor) -> Result<Tensor> {
        Ok(self.fc2.forward(&self.fc1.forward(h)?.elu(1.0)?)?)
    }
}

impl GraphMethod for Grace {
    fn step(&mut self, input: &GraphInput, ctx: &mut ForwardCtx) -> Result<StepOutput> {
        let mut z = Vec::with_capacity(2);
        for view in &self.views {
            let (x, a) = view.apply(&input.graph, &mut ctx.rng);
            let h = self.encoder.forward(&x, &a, ctx)?;
            z.push(self.project(&h)?);
        }
        let loss = self.loss.forward(
            &LossInputs::new()
                .with("z0", z[0].clone())
                .with("z1", z[1].clone()),
        )?;
        let (a, b) = (l2_normalize(&z[0].detach())?, l2_normalize(&z[1].detach())?);
        Ok(StepOutput {
            loss,
            scalars: Vec::new(),
            embeddings: Some(a.clone()),
            pair: Some((a, b)),
        })
    }

    fn embed(&self, input: &GraphInput) -> Result<Tensor> {
        self.encoder.embed(input)
    }
}

fn build(ctx: GraphMethodCtx) -> Result<Box<dyn GraphMethod>> {
    let c: GraceConfig = ctx.params.extract()?;
    if c.proj_dim == 0 {
        return Err(ctx.params.error("proj_dim", "must be at least 1"));
    }
    let views = [
        GraphView::new(c.drop_edge[0], c.mask_feature[0])
            .map_err(|e| ctx.params.error("drop_edge", e))?,
        GraphView::new(c.drop_edge[1], c.mask_feature[1])
            .map_err(|e| ctx.params.error("mask_feature", e))?,
    ];
    let loss: Box<dyn Loss> = match ctx.loss {
        Some(l) => l,
        None => Box::new(
            NtXent::new(NtXentConfig { temperature: c.tau })
                .map_err(|e| ctx.params.error("tau", e))?,
        ),
    };
    let d = ctx.encoder.output_dim();
    Ok(Box::new(Grace {
        fc1: torch_linear(d, c.proj_dim, ctx.vb.pp("projector.0"))?,
        fc2: torch_linear(c.proj_dim, d, ctx.vb.pp("projector.1"))?,
        encoder: ctx.encoder,
        views,
        loss,
    }))
}

parallax_core::register!(
    graph_method,
    "grace",
    "GRACE (Zhu et al. 2020): node-level NT-Xent between two edge-dropped, feature-masked views",
    build
);
