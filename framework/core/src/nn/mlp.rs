//! Heads described as data: a stack of linear layers, each optionally
//! followed by batch norm and an activation (lightly's heads). Registered
//! presets: `mlp` (layers given explicitly), `simclr` (SimCLR's projection
//! head), `linear` and `identity`.

use candle_core::Tensor;
use candle_nn::{BatchNorm, BatchNormConfig, Linear, Module, ModuleT, VarBuilder};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::encoder::{ForwardCtx, Head};

/// The normalisation after a layer.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// None.
    #[default]
    None,
    /// Batch norm (training mode uses batch statistics).
    Batch,
}

/// The activation after a layer.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// None.
    #[default]
    None,
    /// ReLU.
    Relu,
    /// GELU (tanh approximation).
    Gelu,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::None => Ok(x.clone()),
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
        }
    }
}

/// One layer of an [`Mlp`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Output size.
    pub dim: usize,
    /// Normalisation after the linear map.
    #[serde(default)]
    pub norm: Norm,
    /// Activation after the normalisation.
    #[serde(default)]
    pub activation: Activation,
    /// Whether the linear map has a bias (off when followed by batch norm).
    #[serde(default)]
    pub bias: Option<bool>,
}

/// A multi-layer perceptron built from [`LayerSpec`]s.
pub struct Mlp {
    layers: Vec<(Linear, Option<BatchNorm>, Activation)>,
    out_dim: usize,
}

impl Mlp {
    /// Builds the layers under `vb` (`0.linear`, `0.norm`, `1.linear`, ...).
    pub fn new(in_dim: usize, specs: &[LayerSpec], vb: VarBuilder) -> Result<Self> {
        let mut layers = Vec::new();
        let mut d = in_dim;
        for (i, s) in specs.iter().enumerate() {
            if s.dim == 0 {
                return Err(Error::invalid("head", format!("layer {i} has dim 0")));
            }
            let vb = vb.pp(i.to_string());
            let bias = s.bias.unwrap_or(s.norm == Norm::None);
            let linear = if bias {
                candle_nn::linear(d, s.dim, vb.pp("linear"))?
            } else {
                candle_nn::linear_no_bias(d, s.dim, vb.pp("linear"))?
            };
            let norm = match s.norm {
                Norm::None => None,
                Norm::Batch => Some(candle_nn::batch_norm(
                    s.dim,
                    BatchNormConfig {
                        eps: 1e-5,
                        remove_mean: true,
                        affine: true,
                        momentum: 0.1,
                    },
                    vb.pp("norm"),
                )?),
            };
            layers.push((linear, norm, s.activation));
            d = s.dim;
        }
        Ok(Mlp { layers, out_dim: d })
    }
}

impl Head for Mlp {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let mut x = x.contiguous()?;
        for (linear, norm, act) in &self.layers {
            x = linear.forward(&x)?;
            if let Some(bn) = norm {
                x = bn.forward_t(&x, ctx.train)?;
            }
            x = act.apply(&x)?;
        }
        Ok(x)
    }

    fn output_dim(&self) -> usize {
        self.out_dim
    }
}

/// The identity head.
pub struct Identity(usize);

impl Head for Identity {
    fn forward(&self, x: &Tensor, _ctx: &mut ForwardCtx) -> Result<Tensor> {
        Ok(x.clone())
    }
    fn output_dim(&self) -> usize {
        self.0
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlpConfig {
    layers: Vec<LayerSpec>,
}

/// SimCLR's projection head (Chen et al. 2020, Sec. 2.1 and B.9):
/// `num_layers - 1` hidden layers of linear + batch norm + ReLU, then a
/// linear layer to `out_dim` (128 in the paper).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SimclrHeadConfig {
    /// Hidden size; 0 means the input size (the paper uses the encoder's width).
    hidden_dim: usize,
    /// Output size (128 in the paper).
    out_dim: usize,
    /// Number of linear layers (2 in SimCLR v1, 3 in v2).
    num_layers: usize,
    /// Batch norm after the hidden layers (lightly's default).
    batch_norm: bool,
}

impl Default for SimclrHeadConfig {
    fn default() -> Self {
        SimclrHeadConfig {
            hidden_dim: 0,
            out_dim: 128,
            num_layers: 2,
            batch_norm: true,
        }
    }
}

/// The SimCLR head's layer list.
fn simclr_layers(c: &SimclrHeadConfig, in_dim: usize) -> Vec<LayerSpec> {
    let hidden = if c.hidden_dim == 0 {
        in_dim
    } else {
        c.hidden_dim
    };
    let mut layers: Vec<LayerSpec> = (0..c.num_layers.saturating_sub(1))
        .map(|_| LayerSpec {
            dim: hidden,
            norm: if c.batch_norm {
                Norm::Batch
            } else {
                Norm::None
            },
            activation: Activation::Relu,
            bias: None,
        })
        .collect();
    layers.push(LayerSpec {
        dim: c.out_dim,
        norm: Norm::None,
        activation: Activation::None,
        bias: None,
    });
    layers
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearHeadConfig {
    dim: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityConfig {}

crate::register!(
    head,
    "mlp",
    "an MLP given as a list of layers (dim, norm, activation)",
    |p, d, vb| {
        let c: MlpConfig = p.extract()?;
        Ok(Box::new(Mlp::new(d, &c.layers, vb)?))
    }
);
crate::register!(
    head,
    "simclr",
    "SimCLR's projection head: (linear, BN, ReLU) x (n-1), linear",
    |p, d, vb| {
        let c: SimclrHeadConfig = p.extract()?;
        if c.num_layers == 0 {
            return Err(p.error("num_layers", "must be at least 1"));
        }
        Ok(Box::new(Mlp::new(d, &simclr_layers(&c, d), vb)?))
    }
);
crate::register!(head, "linear", "one linear layer", |p, d, vb| {
    let c: LinearHeadConfig = p.extract()?;
    let layer = LayerSpec {
        dim: c.dim,
        norm: Norm::None,
        activation: Activation::None,
        bias: Some(true),
    };
    Ok(Box::new(Mlp::new(d, &[layer], vb)?))
});
crate::register!(
    head,
    "identity",
    "no head: the representation itself",
    |p, d, _vb| {
        let _: IdentityConfig = p.extract()?;
        Ok(Box::new(Identity(d)))
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::init::VarStore;
    use candle_core::{DType, Device};

    #[test]
    fn simclr_head_shapes_and_variables() {
        let store = VarStore::new(0);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let c = SimclrHeadConfig::default();
        let mlp = Mlp::new(16, &simclr_layers(&c, 16), vb.pp("projector")).unwrap();
        let x = Tensor::ones((4, 16), DType::F32, &Device::Cpu).unwrap();
        let y = mlp.forward(&x, &mut ForwardCtx::eval()).unwrap();
        assert_eq!(y.dims(), &[4, 128]);
        let names: Vec<String> = store.named_vars().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"projector.0.linear.weight".to_string()));
        assert!(names.contains(&"projector.0.norm.running_mean".to_string()));
        assert!(!names.contains(&"projector.0.linear.bias".to_string()));
        assert!(names.contains(&"projector.1.linear.bias".to_string()));
    }
}
