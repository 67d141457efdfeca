//! The graph convolutional network of Kipf and Welling (2017): each layer
//! is `act(Â H W + b)` with `Â` the symmetrically normalised adjacency with
//! self-loops. The first layer multiplies the sparse features directly
//! (`X W` as a sparse x dense product: Cora's features are 1.3% non-zero),
//! the propagation is a sparse x dense product too ([`spmm`]).

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};
use parallax_core::graph::{Csr, GraphEncoder};
use parallax_core::nn::encoder::ForwardCtx;
use parallax_core::ops::dropout::dropout;
use parallax_core::ops::spmm::{spmm, SparseMatrix};
use parallax_core::recipe::Params;
use parallax_core::rng::Rng;
use parallax_core::Result;
use serde::Deserialize;

/// `[encoder] name = "gcn"` options. Defaults: GRACE's Cora encoder (Zhu
/// et al. 2020, Table 5: two layers, 2x128 then 128 units, ReLU).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcnConfig {
    /// Output width of each layer (DGI: `[512]`; Kipf and Welling: `[16, K]`).
    pub dims: Vec<usize>,
    /// `relu`, `prelu` (DGI: one learned slope per layer, 0.25 at first),
    /// `elu` or `none`.
    pub activation: String,
    /// Whether the last layer has the activation too (false for a
    /// classifier's logits).
    pub last_activation: bool,
    /// Dropout on each layer's input in training (Kipf and Welling: 0.5).
    pub dropout: f64,
    /// A bias per layer.
    pub bias: bool,
}

impl Default for GcnConfig {
    fn default() -> Self {
        GcnConfig {
            dims: vec![256, 128],
            activation: "relu".into(),
            last_activation: true,
            dropout: 0.0,
            bias: true,
        }
    }
}

enum Act {
    Relu,
    Prelu(Tensor),
    Elu,
    None,
}

struct Layer {
    weight: Tensor,
    bias: Option<Tensor>,
    act: Act,
}

/// A GCN encoder.
pub struct Gcn {
    layers: Vec<Layer>,
    dropout: f64,
}

/// Glorot-uniform initialisation of a `[fan_in, fan_out]` weight (as GCN,
/// DGI and GRACE initialise theirs).
pub fn glorot(vb: &VarBuilder, fan_in: usize, fan_out: usize, name: &str) -> Result<Tensor> {
    let b = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Ok(vb.get_with_hints((fan_in, fan_out), name, Init::Uniform { lo: -b, up: b })?)
}

/// `max(x, 0) + a min(x, 0)` with a learned slope `a` (shape `[1]`).
pub fn prelu(x: &Tensor, a: &Tensor) -> Result<Tensor> {
    let neg = x.neg()?.relu()?.broadcast_mul(a)?;
    Ok(x.relu()?.sub(&neg)?)
}

/// Inverted dropout of the stored entries of sparse features.
pub fn sparse_dropout(x: &Csr, p: f64, rng: &mut Rng) -> Csr {
    if p == 0.0 {
        return x.clone();
    }
    let keep: Vec<bool> = (0..x.nnz()).map(|_| rng.uniform() as f64 >= p).collect();
    let scale = (1.0 / (1.0 - p)) as f32;
    x.filter(|_, _, k| keep[k]).scaled(|_, _| scale)
}

impl Gcn {
    /// A GCN on `in_dim` features.
    pub fn new(cfg: &GcnConfig, in_dim: usize, vb: VarBuilder, params: &Params) -> Result<Gcn> {
        if cfg.dims.is_empty() || cfg.dims.contains(&0) {
            return Err(params.error("dims", "needs at least one layer, each at least 1 wide"));
        }
        if !(0.0..1.0).contains(&cfg.dropout) {
            return Err(params.error("dropout", format!("must be in [0, 1), got {}", cfg.dropout)));
        }
        let mut layers = Vec::new();
        let mut fan_in = in_dim;
        for (i, &d) in cfg.dims.iter().enumerate() {
            let vb = vb.pp(format!("layers.{i}"));
            let last = i + 1 == cfg.dims.len();
            let act = if last && !cfg.last_activation {
                Act::None
            } else {
                match cfg.activation.as_str() {
                    "relu" => Act::Relu,
                    "elu" => Act::Elu,
                    "none" => Act::None,
                    "prelu" => Act::Prelu(vb.get_with_hints(1, "prelu", Init::Const(0.25))?),
                    other => {
                        return Err(params.error(
                            "activation",
                            format!("`{other}` is not one of relu, prelu, elu, none"),
                        ))
                    }
                }
            };
            layers.push(Layer {
                weight: glorot(&vb, fan_in, d, "weight")?,
                bias: if cfg.bias {
                    Some(vb.get_with_hints(d, "bias", Init::Const(0.0))?)
                } else {
                    None
                },
                act,
            });
            fan_in = d;
        }
        Ok(Gcn {
            layers,
            dropout: cfg.dropout,
        })
    }
}

impl GraphEncoder for Gcn {
    fn forward(
        &self,
        features: &SparseMatrix,
        propagation: &SparseMatrix,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let mut h: Option<Tensor> = None;
        for layer in &self.layers {
            let xw = match &h {
                None => {
                    if ctx.train && self.dropout > 0.0 {
                        let x = sparse_dropout(features.csr(), self.dropout, &mut ctx.rng);
                        spmm(&SparseMatrix::new(x), &layer.weight)?
                    } else {
                        spmm(features, &layer.weight)?
                    }
                }
                Some(h) => {
                    let h = if ctx.train && self.dropout > 0.0 {
                        dropout(h, self.dropout, &mut ctx.rng)?
                    } else {
                        h.clone()
                    };
                    h.matmul(&layer.weight)?
                }
            };
            let mut y = spmm(propagation, &xw)?;
            if let Some(b) = &layer.bias {
                y = y.broadcast_add(b)?;
            }
            y = match &layer.act {
                Act::Relu => y.relu()?,
                Act::Elu => y.elu(1.0)?,
                Act::Prelu(a) => prelu(&y, a)?,
                Act::None => y,
            };
            h = Some(y);
        }
        h.ok_or_else(|| parallax_core::Error::Recipe("gcn: no layers".into()))
    }

    fn output_dim(&self) -> usize {
        self.layers
            .last()
            .map_or(0, |l| l.weight.dim(1).unwrap_or(0))
    }
}

fn build(p: &Params, in_dim: usize, vb: VarBuilder<'static>) -> Result<Box<dyn GraphEncoder>> {
    let cfg: GcnConfig = p.extract()?;
    Ok(Box::new(Gcn::new(&cfg, in_dim, vb, p)?))
}

parallax_core::register!(
    graph_encoder,
    "gcn",
    "graph convolutional network (Kipf and Welling 2017) on sparse features",
    build
);
