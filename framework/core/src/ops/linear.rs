//! Matrix products that are right for every input layout: [`matmul`],
//! [`linear`] and the [`Linear`] layer.
//!
//! Candle 0.11.1's CPU matmul folds the batches of `lhs` into the rows of a
//! single GEMM when `rhs` is the same matrix for every batch (batch stride
//! 0) and the batches of `lhs` lie `m·k` elements apart. That is only valid
//! for row-major `lhs` matrices: for a view whose last two dimensions are
//! transposed (e.g. `t.transpose(1, 2)` of a `[B, D, S]` tensor, the usual
//! `[B, C, L] → [B, L, C]` step) the values come out wrong, with no error.
//! `candle_nn::Linear::forward` takes exactly that path for non-contiguous
//! 3-D and 4-D inputs (see the `candle_defect_*` tests in
//! `tests/gradcheck_nn.rs`). Candle's backward of matmul is right, and so is
//! its forward in every other layout tried there.
//!
//! The fixes are small, so these are plain functions of Candle ops (no
//! custom kernel): [`matmul`] makes `lhs` contiguous in the one bad case, and
//! [`linear`] flattens the leading dimensions into rows (copying a
//! non-contiguous input once) and does a single 2-D product. Half-precision
//! CPU tensors are multiplied in f32 and rounded back (`ops::cpu_half`).

use candle_core::{bail, DType, Module, Result, Tensor, D};

use super::cpu_half;
use candle_nn::VarBuilder;

/// `a.matmul(b)` (same rank, matching batch dimensions), made contiguous
/// first where Candle's CPU matmul would fold a non-row-major `a` against a
/// broadcast `b` (see the module documentation). Differentiable.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if cpu_half(a) && a.dtype() == b.dtype() {
        let f = DType::F32;
        return matmul(&a.to_dtype(f)?, &b.to_dtype(f)?)?.to_dtype(a.dtype());
    }
    let rank = a.rank();
    let broadcast_rhs = rank > 2 && b.stride()[..b.rank().saturating_sub(2)].contains(&0);
    if broadcast_rhs && !a.is_contiguous() {
        a.contiguous()?.matmul(b)
    } else {
        a.matmul(b)
    }
}

/// `x · weightᵀ + bias` over the last dimension of `x` (`[.., in]` →
/// `[.., out]`), with `weight: [out, in]` and `bias: [out]`. Correct for any
/// rank (≥ 1) and layout of `x`; differentiable in all inputs.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (out_dim, in_dim) = weight.dims2()?;
    if x.rank() == 0 || x.dim(D::Minus1)? != in_dim {
        bail!(
            "linear: input {:?} does not end in the weight's input size {in_dim}",
            x.dims()
        )
    }
    if let Some(b) = bias {
        if b.dims() != [out_dim] {
            bail!("linear: bias must be [{out_dim}], got {:?}", b.dims())
        }
    }
    if cpu_half(x) && x.dtype() == weight.dtype() {
        let f = DType::F32;
        let b = bias.map(|b| b.to_dtype(f)).transpose()?;
        return linear(&x.to_dtype(f)?, &weight.to_dtype(f)?, b.as_ref())?.to_dtype(x.dtype());
    }
    let wt = weight.t()?;
    let y = match x.rank() {
        1 => x.unsqueeze(0)?.matmul(&wt)?.squeeze(0)?,
        2 => x.matmul(&wt)?,
        r => {
            // One 2-D GEMM over all rows; `reshape` copies a non-contiguous
            // input into row-major order first.
            let rows: usize = x.dims()[..r - 1].iter().product();
            let mut dims = x.dims().to_vec();
            dims[r - 1] = out_dim;
            x.reshape((rows, in_dim))?.matmul(&wt)?.reshape(dims)?
        }
    };
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// A linear layer `y = x · weightᵀ + bias` through [`linear`]: a drop-in for
/// `candle_nn::Linear` that is right for non-contiguous inputs.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// From existing parameters: `weight: [out, in]`, `bias: [out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// A layer `in_dim → out_dim` with variables `weight` (and `bias` if
    /// `bias`) under `vb`, initialised as `candle_nn::linear_b` does
    /// (Kaiming-normal weight, bias uniform in `±1/sqrt(in_dim)`), so that
    /// variable names and seeded initial values match Candle's layer.
    pub fn load(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(
            (out_dim, in_dim),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bias = if bias {
            let bound = 1. / (in_dim as f64).sqrt();
            let init = candle_nn::Init::Uniform {
                lo: -bound,
                up: bound,
            };
            Some(vb.get_with_hints(out_dim, "bias", init)?)
        } else {
            None
        };
        Ok(Self::new(weight, bias))
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(x, &self.weight, self.bias.as_ref())
    }
}
