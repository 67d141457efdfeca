//! `relu(a + b)` as one op: the tail of a residual block.
//!
//! With Candle's ops this is an add and a ReLU: two passes and two
//! allocations forward, and backward a comparison, a cast and a product for
//! the ReLU plus one more gradient buffer to accumulate. Here the forward is
//! one pass, and the backward one pass that masks the upstream gradient with
//! the saved output (`y > 0`) and hands the same tensor to both inputs.

use super::{contiguous_slice, kernel_supported, par_init, simd, Real};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// Elements per parallel task.
const CHUNK: usize = 1 << 16;

#[inline(always)]
pub(crate) fn relu<T: Real>(v: T) -> T {
    if v > T::zero() {
        v
    } else {
        T::zero()
    }
}

/// `f(a[i], b[i])` into a new vector, in parallel chunks.
pub(crate) fn zip_map<T: Real>(
    a: &[T],
    b: &[T],
    f: impl Fn(T, T) -> T + Sync + Send + Copy,
) -> Vec<T> {
    par_init(a.len(), CHUNK, |i, out| {
        simd(
            #[inline(always)]
            || {
                let (a, b) = (&a[i * CHUNK..][..out.len()], &b[i * CHUNK..][..out.len()]);
                for (o, (&x, &y)) in out.iter_mut().zip(a.iter().zip(b)) {
                    o.write(f(x, y));
                }
            },
        )
    })
}

/// Applies `f` to two same-shape contiguous CPU storages of dtype f32/f64.
fn apply(
    name: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    f32_op: impl Fn(f32, f32) -> f32 + Sync + Send + Copy,
    f64_op: impl Fn(f64, f64) -> f64 + Sync + Send + Copy,
) -> Result<(CpuStorage, Shape)> {
    if l1.dims() != l2.dims() {
        bail!("{name}: shapes {:?} and {:?} differ", l1.dims(), l2.dims())
    }
    let out = match (s1, s2) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(zip_map(
            contiguous_slice(s1, l1, name)?,
            contiguous_slice(s2, l2, name)?,
            f32_op,
        )),
        (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(zip_map(
            contiguous_slice(s1, l1, name)?,
            contiguous_slice(s2, l2, name)?,
            f64_op,
        )),
        _ => bail!(
            "{name}: unsupported dtypes {:?}/{:?}",
            s1.dtype(),
            s2.dtype()
        ),
    };
    Ok((out, l1.shape().clone()))
}

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "parallax-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        apply(
            self.name(),
            (s1, l1),
            (s2, l2),
            |a, b| relu(a + b),
            |a, b| relu(a + b),
        )
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = relu_mask(res, grad)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `(y, g) -> g · [y > 0]`.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "parallax-relu-mask"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        // a multiplicative mask vectorises; a select of `g` does not
        apply(
            self.name(),
            (s1, l1),
            (s2, l2),
            |y, g| g * if y > 0.0 { 1.0 } else { 0.0 },
            |y, g| g * if y > 0.0 { 1.0 } else { 0.0 },
        )
    }
}

/// `relu(a + b)` for same-shape tensors; differentiable in both. On devices
/// or dtypes without a kernel it is Candle's `(a + b).relu()`.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() {
        bail!("add_relu: shapes {:?} and {:?} differ", a.dims(), b.dims())
    }
    if !kernel_supported(a) || a.dtype() != b.dtype() || !b.device().same_device(a.device()) {
        return (a + b)?.relu();
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
}

/// `g · [y > 0]`: the gradient through a ReLU whose output is `y` (CPU
/// f32/f64, no autograd).
pub(crate) fn relu_mask(y: &Tensor, g: &Tensor) -> Result<Tensor> {
    y.contiguous()?
        .apply_op2_no_bwd(&g.contiguous()?, &ReluMask)
}

/// `a + b` in parallel chunks (CPU f32/f64, no autograd).
pub(crate) fn add_no_grad(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &Add)
}

struct Add;

impl CustomOp2 for Add {
    fn name(&self) -> &'static str {
        "parallax-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        apply(self.name(), (s1, l1), (s2, l2), |a, b| a + b, |a, b| a + b)
    }
}
