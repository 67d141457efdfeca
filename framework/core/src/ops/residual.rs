//! A residual block's training step as one autograd node.
//!
//! He et al., "Deep Residual Learning for Image Recognition", CVPR 2016: a
//! block is convolution + batch norm layers (ReLU after all but the last),
//! a shortcut (the input, or a strided 1x1 convolution + batch norm), and
//! `relu(branch + shortcut)`.
//!
//! Built from separate ops, every intermediate of the block gets a gradient
//! through Candle's autograd, which starts each gradient as a fresh zero
//! tensor (filled on one thread) and adds into it (a second buffer), and
//! keeps both until the step ends: for a CIFAR ResNet-18 at batch 128 that
//! is about 40 activation-sized buffers zeroed and added per step. [`residual_train`] instead runs the layers on the same kernels
//! without autograd, keeps what their backward needs, and enters the graph
//! as a single op on `(x, parameters)`. Its backward runs the kernels'
//! backward passes in reverse and hands Candle two gradients: the input's
//! and the parameters' (packed into one vector, unpacked by Candle's `cat`).
//!
//! The result, its gradients and the batch statistics equal those of the
//! separate ops ([`residual_train_composite`]) up to rounding
//! (`tests/gradcheck_residual.rs`). Other devices and dtypes take the
//! composite path.

use super::add_relu::{add_no_grad, add_relu, relu, relu_mask, zip_map};
use super::batch_norm::{
    batch_norm_backward, batch_norm_relu_train, batch_norm_train, batch_norm_train_taped, BnTape,
};
use super::conv2d::{conv2d_backward, conv2d_with, Conv2dConfig};
use super::{contiguous_slice, kernel_supported, Real};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Storage, Tensor};

/// One convolution + batch norm layer of a block: the bias-free kernel
/// `[O, C, kh, kw]`, its configuration, and the batch norm's `[O]` scale and
/// shift.
#[derive(Clone, Copy, Debug)]
pub struct ConvBnParams<'a> {
    /// Convolution kernel.
    pub conv: &'a Tensor,
    /// Stride, padding, dilation, groups.
    pub cfg: Conv2dConfig,
    /// Batch norm scale (`[O]`).
    pub bn_weight: &'a Tensor,
    /// Batch norm shift (`[O]`).
    pub bn_bias: &'a Tensor,
    /// Batch norm epsilon.
    pub eps: f64,
}

/// The batch statistics of one batch norm (for the running averages; they
/// carry no gradient).
pub struct BatchStats {
    /// Per-channel mean, `[O]`.
    pub mean: Tensor,
    /// Per-channel biased variance, `[O]`.
    pub var: Tensor,
    /// Values per channel they were computed over.
    pub count: usize,
}

impl BatchStats {
    fn of(out: &Tensor, mean: Tensor, var: Tensor) -> Result<Self> {
        let count = out.elem_count() / out.dim(1)?;
        Ok(BatchStats { mean, var, count })
    }
}

/// The output of a block in training mode and the batch statistics of its
/// batch norms, layers first and the shortcut's last.
pub struct ResidualOut {
    /// `relu(branch(x) + shortcut(x))`.
    pub y: Tensor,
    /// One per batch norm.
    pub stats: Vec<BatchStats>,
}

/// A layer as the forward ran it: what its backward reads.
struct Taped {
    input: Tensor,
    weight: Tensor,
    cfg: Conv2dConfig,
    conv_out: Tensor,
    bn: BnTape,
}

impl Taped {
    /// Convolution then batch norm (+ ReLU) of `input`, without autograd.
    fn run(input: Tensor, p: &ConvBnParams, relu: bool) -> Result<(Self, Tensor, Tensor, Tensor)> {
        let weight = p.conv.detach();
        let conv_out = conv2d_with(&input, &weight, &p.cfg)?;
        let (out, mean, var, bn) = batch_norm_train_taped(
            &conv_out,
            &p.bn_weight.detach(),
            &p.bn_bias.detach(),
            p.eps,
            relu,
        )?;
        let taped = Taped {
            input,
            weight,
            cfg: p.cfg,
            conv_out,
            bn,
        };
        Ok((taped, out, mean, var))
    }

    /// `(d input, [d kernel, d scale, d shift])` for the output gradient `g`.
    fn backward(&self, g: &Tensor) -> Result<(Tensor, [Tensor; 3])> {
        let (dconv, dscale, dshift) = batch_norm_backward(&self.conv_out, g, &self.bn)?;
        let (dx, dw) = conv2d_backward(&self.input, &self.weight, &dconv, &self.cfg, (true, true))?;
        match (dx, dw) {
            (Some(dx), Some(dw)) => Ok((dx, [dw, dscale, dshift])),
            _ => bail!("residual: the convolution's backward returned no gradient"),
        }
    }
}

/// The fused op on `(x, packed parameters)`: its forward adds the taped
/// branch and shortcut outputs, its backward runs the taped layers'.
struct Residual {
    layers: Vec<Taped>,
    /// The last layer's output (batch norm, no ReLU).
    branch: Tensor,
    /// The projection shortcut and its output; `None`: the identity.
    projection: Option<(Taped, Tensor)>,
}

impl Residual {
    fn add<T: Real>(&self, x: (&CpuStorage, &Layout)) -> Result<(CpuStorage, Shape)> {
        let (branch, layout) = self.branch.storage_and_layout();
        let Storage::Cpu(branch) = &*branch else {
            bail!("residual: expected CPU tensors")
        };
        let a = contiguous_slice::<T>(branch, layout, self.name())?;
        let y = match &self.projection {
            Some((_, shortcut)) => {
                let (s, l) = shortcut.storage_and_layout();
                let Storage::Cpu(s) = &*s else {
                    bail!("residual: expected CPU tensors")
                };
                zip_map(a, contiguous_slice::<T>(s, l, self.name())?, |a, b| {
                    relu(a + b)
                })
            }
            None => zip_map(a, contiguous_slice::<T>(x.0, x.1, self.name())?, |a, b| {
                relu(a + b)
            }),
        };
        Ok((T::to_cpu_storage_owned(y), self.branch.shape().clone()))
    }
}

impl CustomOp2 for Residual {
    fn name(&self) -> &'static str {
        "parallax-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => self.add::<f32>((s1, l1)),
            CpuStorage::F64(_) => self.add::<f64>((s1, l1)),
            other => bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        }
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _params: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // the gradient at the sum, shared by the branch and the shortcut
        let g = relu_mask(res, grad)?;
        let mut d = g.clone();
        let mut parts = Vec::with_capacity(3 * (self.layers.len() + 1));
        for layer in self.layers.iter().rev() {
            let (dx, dp) = layer.backward(&d)?;
            d = dx;
            parts.push(dp);
        }
        parts.reverse();
        let dx = match &self.projection {
            Some((layer, _)) => {
                let (ds, dp) = layer.backward(&g)?;
                parts.push(dp);
                add_no_grad(&d, &ds)?
            }
            None => add_no_grad(&d, &g)?,
        };
        let flat = parts
            .iter()
            .flatten()
            .map(|t| t.flatten_all())
            .collect::<Result<Vec<_>>>()?;
        Ok((Some(dx), Some(Tensor::cat(&flat, 0)?)))
    }
}

/// Whether the fused path runs: CPU f32/f64 tensors of one dtype.
fn fusable(x: &Tensor, layers: &[ConvBnParams], projection: Option<&ConvBnParams>) -> bool {
    kernel_supported(x)
        && layers.iter().chain(projection).all(|p| {
            [p.conv, p.bn_weight, p.bn_bias]
                .iter()
                .all(|t| t.dtype() == x.dtype() && t.device().is_cpu())
        })
}

fn check(layers: &[ConvBnParams]) -> Result<()> {
    if layers.is_empty() {
        bail!("residual: a block needs at least one layer")
    }
    Ok(())
}

/// A residual block in training mode (batch statistics): `layers` in order
/// (ReLU after each but the last), `projection` the shortcut's layer
/// (`None`: the identity), then `relu(branch + shortcut)`. One autograd
/// node on CPU f32/f64 (see the module docs); elsewhere
/// [`residual_train_composite`]. Differentiable in `x` and every parameter.
pub fn residual_train(
    x: &Tensor,
    layers: &[ConvBnParams],
    projection: Option<&ConvBnParams>,
) -> Result<ResidualOut> {
    check(layers)?;
    if !fusable(x, layers, projection) {
        return residual_train_composite(x, layers, projection);
    }
    let x = x.contiguous()?;
    let mut stats = Vec::with_capacity(layers.len() + 1);
    let mut taped = Vec::with_capacity(layers.len());
    let mut h = x.detach();
    for (i, p) in layers.iter().enumerate() {
        let (layer, out, mean, var) = Taped::run(h, p, i + 1 < layers.len())?;
        stats.push(BatchStats::of(&out, mean, var)?);
        taped.push(layer);
        h = out;
    }
    let shortcut = match projection {
        Some(p) => {
            let (layer, out, mean, var) = Taped::run(x.detach(), p, false)?;
            stats.push(BatchStats::of(&out, mean, var)?);
            Some((layer, out))
        }
        None => None,
    };
    // `add` relies on this: the sum zips the two element by element
    let shortcut_dims = shortcut.as_ref().map_or(x.dims(), |(_, s)| s.dims());
    if h.dims() != shortcut_dims {
        bail!(
            "residual: the branch gives {:?}, the shortcut {:?}",
            h.dims(),
            shortcut_dims
        )
    }
    // every parameter in the order the backward returns their gradients
    let flat = layers
        .iter()
        .chain(projection)
        .flat_map(|p| [p.conv, p.bn_weight, p.bn_bias])
        .map(|t| t.flatten_all())
        .collect::<Result<Vec<_>>>()?;
    let params = Tensor::cat(&flat, 0)?;
    let op = Residual {
        layers: taped,
        branch: h,
        projection: shortcut,
    };
    let y = x.apply_op2(&params, op)?;
    Ok(ResidualOut { y, stats })
}

/// [`residual_train`] from the separate ops (convolution, batch norm,
/// `add_relu`), each its own autograd node: the path for other devices and
/// dtypes, and the reference the fused op is checked against.
pub fn residual_train_composite(
    x: &Tensor,
    layers: &[ConvBnParams],
    projection: Option<&ConvBnParams>,
) -> Result<ResidualOut> {
    check(layers)?;
    let layer = |h: &Tensor, p: &ConvBnParams, relu: bool| {
        let y = conv2d_with(h, p.conv, &p.cfg)?;
        if relu {
            batch_norm_relu_train(&y, p.bn_weight, p.bn_bias, p.eps)
        } else {
            batch_norm_train(&y, p.bn_weight, p.bn_bias, p.eps)
        }
    };
    let mut stats = Vec::with_capacity(layers.len() + 1);
    let mut h = x.clone();
    for (i, p) in layers.iter().enumerate() {
        let (out, mean, var) = layer(&h, p, i + 1 < layers.len())?;
        stats.push(BatchStats::of(&out, mean, var)?);
        h = out;
    }
    let shortcut = match projection {
        Some(p) => {
            let (out, mean, var) = layer(x, p, false)?;
            stats.push(BatchStats::of(&out, mean, var)?);
            out
        }
        None => x.clone(),
    };
    Ok(ResidualOut {
        y: add_relu(&h, &shortcut)?,
        stats,
    })
}
