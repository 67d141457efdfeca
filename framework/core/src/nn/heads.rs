//! The heads of the published methods, as layer lists for [`Mlp`]:
//!
//! | name | layers | paper |
//! | --- | --- | --- |
//! | `moco` | v1: linear to 128; v2: linear (hidden), ReLU, linear to 128 | He et al. 2020; Chen et al. 2020 ("Improved Baselines", MoCo v2) |
//! | `byol` | linear (4096), BN, ReLU, linear to 256 (projector and predictor alike) | Grill et al. 2020, section 3.3 |
//! | `simsiam_projector` | 3 x linear (2048) + BN, ReLU after the first two | Chen & He 2021, section 4 |
//! | `simsiam_predictor` | linear (512), BN, ReLU, linear to 2048 | Chen & He 2021, section 4 |
//!
//! Widths are options, so the same head fits a small encoder.

use serde::Deserialize;

use crate::nn::mlp::{Activation, LayerSpec, Mlp, Norm};

fn layer(dim: usize, norm: Norm, activation: Activation) -> LayerSpec {
    LayerSpec {
        dim,
        norm,
        activation,
        bias: None,
    }
}

/// `moco` head options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MocoHeadConfig {
    /// 1: one linear layer (MoCo v1); 2: a 2-layer MLP (MoCo v2).
    version: u8,
    /// Hidden width of v2's MLP; 0 means the input width (2048 for a
    /// ResNet-50, as in the paper).
    hidden_dim: usize,
    /// Output width: 128.
    out_dim: usize,
}

impl Default for MocoHeadConfig {
    fn default() -> Self {
        MocoHeadConfig {
            version: 2,
            hidden_dim: 0,
            out_dim: 128,
        }
    }
}

/// BYOL's projector / predictor options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ByolHeadConfig {
    /// Hidden width: 4096.
    hidden_dim: usize,
    /// Output width: 256.
    out_dim: usize,
}

impl Default for ByolHeadConfig {
    fn default() -> Self {
        ByolHeadConfig {
            hidden_dim: 4096,
            out_dim: 256,
        }
    }
}

/// SimSiam's projector options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SimSiamProjectorConfig {
    /// Width of every layer: 2048.
    dim: usize,
}

impl Default for SimSiamProjectorConfig {
    fn default() -> Self {
        SimSiamProjectorConfig { dim: 2048 }
    }
}

/// SimSiam's predictor options (a bottleneck).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SimSiamPredictorConfig {
    /// Bottleneck width: 512.
    hidden_dim: usize,
    /// Output width (the projector's): 2048.
    out_dim: usize,
}

impl Default for SimSiamPredictorConfig {
    fn default() -> Self {
        SimSiamPredictorConfig {
            hidden_dim: 512,
            out_dim: 2048,
        }
    }
}

fn positive(p: &crate::recipe::Params, key: &str, v: usize) -> crate::error::Result<()> {
    if v == 0 {
        Err(p.error(key, "must be at least 1"))
    } else {
        Ok(())
    }
}

crate::register!(
    head,
    "moco",
    "MoCo's projection: linear to 128 (v1) or linear, ReLU, linear (v2)",
    |p, d, vb| {
        let c: MocoHeadConfig = p.extract()?;
        positive(p, "out_dim", c.out_dim)?;
        let hidden = if c.hidden_dim == 0 { d } else { c.hidden_dim };
        let layers = match c.version {
            1 => vec![layer(c.out_dim, Norm::None, Activation::None)],
            2 => vec![
                layer(hidden, Norm::None, Activation::Relu),
                layer(c.out_dim, Norm::None, Activation::None),
            ],
            v => return Err(p.error("version", format!("must be 1 or 2, got {v}"))),
        };
        Ok(Box::new(Mlp::new(d, &layers, vb)?))
    }
);

crate::register!(
    head,
    "byol",
    "BYOL's projector / predictor: linear, BN, ReLU, linear (4096 -> 256)",
    |p, d, vb| {
        let c: ByolHeadConfig = p.extract()?;
        positive(p, "hidden_dim", c.hidden_dim)?;
        positive(p, "out_dim", c.out_dim)?;
        let layers = [
            layer(c.hidden_dim, Norm::Batch, Activation::Relu),
            layer(c.out_dim, Norm::None, Activation::None),
        ];
        Ok(Box::new(Mlp::new(d, &layers, vb)?))
    }
);

crate::register!(
    head,
    "simsiam_projector",
    "SimSiam's projector: 3 x (linear, BN), ReLU after the first two (2048 wide)",
    |p, d, vb| {
        let c: SimSiamProjectorConfig = p.extract()?;
        positive(p, "dim", c.dim)?;
        let layers = [
            layer(c.dim, Norm::Batch, Activation::Relu),
            layer(c.dim, Norm::Batch, Activation::Relu),
            layer(c.dim, Norm::Batch, Activation::None),
        ];
        Ok(Box::new(Mlp::new(d, &layers, vb)?))
    }
);

crate::register!(
    head,
    "simsiam_predictor",
    "SimSiam's predictor: linear, BN, ReLU, linear (bottleneck 512)",
    |p, d, vb| {
        let c: SimSiamPredictorConfig = p.extract()?;
        positive(p, "hidden_dim", c.hidden_dim)?;
        positive(p, "out_dim", c.out_dim)?;
        let layers = [
            layer(c.hidden_dim, Norm::Batch, Activation::Relu),
            layer(c.out_dim, Norm::None, Activation::None),
        ];
        Ok(Box::new(Mlp::new(d, &layers, vb)?))
    }
);
