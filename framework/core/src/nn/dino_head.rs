//! DINO's projection head (Caron et al., "Emerging Properties in
//! Self-Supervised Vision Transformers", ICCV 2021, section 3.1 and
//! appendix): an MLP (`num_layers` linear layers, hidden width 2048, GELU)
//! to a bottleneck of 256, L2 normalisation, then a weight-normalised
//! linear layer without bias to `out_dim` prototypes (65536 in the paper).
//! The last layer's norm is fixed to 1 (`norm_last_layer = True`, the
//! paper's setting for stability), so its rows are unit vectors.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::error::Result;
use crate::losses::l2_normalize;
use crate::nn::encoder::{ForwardCtx, Head};
use crate::nn::mlp::{Activation, LayerSpec, Mlp, Norm};

/// `[method.head] name = "dino"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinoHeadConfig {
    /// Hidden width of the MLP: 2048.
    pub hidden_dim: usize,
    /// Bottleneck width before the prototypes: 256.
    pub bottleneck_dim: usize,
    /// Number of prototypes (the output width): 65536.
    pub out_dim: usize,
    /// Linear layers of the MLP, the bottleneck included: 3.
    pub num_layers: usize,
    /// Batch norm in the MLP (off for ViTs in the paper).
    pub batch_norm: bool,
}

impl Default for DinoHeadConfig {
    fn default() -> Self {
        DinoHeadConfig {
            hidden_dim: 2048,
            bottleneck_dim: 256,
            out_dim: 65536,
            num_layers: 3,
            batch_norm: false,
        }
    }
}

/// The DINO head.
pub struct DinoHead {
    mlp: Mlp,
    prototypes: Tensor,
    out_dim: usize,
}

impl DinoHead {
    /// Builds the head on inputs of width `in_dim` under `vb`
    /// (`mlp.*`, `prototypes.weight`).
    pub fn new(cfg: &DinoHeadConfig, in_dim: usize, vb: VarBuilder) -> Result<Self> {
        let norm = if cfg.batch_norm {
            Norm::Batch
        } else {
            Norm::None
        };
        let mut layers: Vec<LayerSpec> = (0..cfg.num_layers.saturating_sub(1))
            .map(|_| LayerSpec {
                dim: cfg.hidden_dim,
                norm,
                activation: Activation::Gelu,
                bias: None,
            })
            .collect();
        layers.push(LayerSpec {
            dim: cfg.bottleneck_dim,
            norm: Norm::None,
            activation: Activation::None,
            bias: None,
        });
        let mlp = Mlp::new(in_dim, &layers, vb.pp("mlp"))?;
        let prototypes = vb.pp("prototypes").get_with_hints(
            (cfg.out_dim, cfg.bottleneck_dim),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_UNIFORM,
        )?;
        Ok(DinoHead {
            mlp,
            prototypes,
            out_dim: cfg.out_dim,
        })
    }
}

impl Head for DinoHead {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let z = l2_normalize(&self.mlp.forward(x, ctx)?)?;
        let w = self.prototypes.broadcast_div(
            &self
                .prototypes
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .sqrt()?
                .clamp(1e-12, f64::INFINITY)?,
        )?;
        Ok(z.matmul(&w.t()?)?)
    }

    fn output_dim(&self) -> usize {
        self.out_dim
    }
}

crate::register!(
    head,
    "dino",
    "DINO's head: MLP (GELU) to a bottleneck, L2 norm, weight-normalised prototypes",
    |p, d, vb| {
        let c: DinoHeadConfig = p.extract()?;
        for (k, v) in [
            ("hidden_dim", c.hidden_dim),
            ("bottleneck_dim", c.bottleneck_dim),
            ("out_dim", c.out_dim),
            ("num_layers", c.num_layers),
        ] {
            if v == 0 {
                return Err(p.error(k, "must be at least 1"));
            }
        }
        Ok(Box::new(DinoHead::new(&c, d, vb)?))
    }
);
