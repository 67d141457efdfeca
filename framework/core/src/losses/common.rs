//! Helpers shared by the losses: stable log-sum-exp, cross-entropy,
//! parameter and shape checks.

use candle_core::{DType, Tensor, D};

use crate::error::{Error, Result};

/// L2-normalises the rows of `x` (with a small floor on the norm).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    Ok(x.broadcast_div(&norm)?)
}

/// Row-wise log-sum-exp of `x [N, M]`, stable for large values.
pub fn log_sum_exp_rows(x: &Tensor) -> Result<Tensor> {
    Ok(log_sum_exp_keepdim(x)?.squeeze(D::Minus1)?)
}

/// Log-sum-exp over the last dimension of `x`, kept as a size-1 dimension.
/// The maximum is subtracted first (and treated as a constant: the gradient
/// of log-sum-exp does not depend on the shift).
pub fn log_sum_exp_keepdim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let s = x
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?;
    Ok((s + max)?)
}

/// Log-softmax over the last dimension of `x`, built from basic ops (so that
/// it has a backward pass).
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_sub(&log_sum_exp_keepdim(x)?)?)
}

/// Softmax over the last dimension of `x`, as `exp(log_softmax(x))`.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    Ok(log_softmax_last(x)?.exp()?)
}

/// Row-wise dot products of `a [N, D]` and `b [N, D]`: `[N]`.
pub fn row_dot(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a * b)?.sum(D::Minus1)?)
}

/// Mean cross-entropy of `logits [N, M]` (`M >= N`) where the target of
/// row `i` is column `i`.
pub fn cross_entropy_diagonal(logits: &Tensor) -> Result<Tensor> {
    let n = logits.dim(0)?;
    let idx = Tensor::arange(0u32, n as u32, logits.device())?.unsqueeze(1)?;
    let target = logits.gather(&idx, 1)?.squeeze(1)?;
    Ok((log_sum_exp_rows(logits)? - target)?.mean_all()?)
}

/// Checks that a temperature is a positive finite number.
pub fn check_temperature(loss: &str, name: &str, t: f64) -> Result<()> {
    if !(t > 0.0 && t.is_finite()) {
        return Err(Error::invalid(
            loss,
            format!("{name} must be a positive finite number, got {t}"),
        ));
    }
    Ok(())
}

/// Checks that a parameter is finite and `>= 0`.
pub fn check_non_negative(loss: &str, name: &str, v: f64) -> Result<()> {
    if !(v >= 0.0 && v.is_finite()) {
        return Err(Error::invalid(
            loss,
            format!("{name} must be finite and >= 0, got {v}"),
        ));
    }
    Ok(())
}

/// Checks that `t` is a matrix `[N, D]` and returns `(N, D)`.
pub fn matrix_dims(loss: &str, name: &str, t: &Tensor) -> Result<(usize, usize)> {
    match t.dims() {
        &[n, d] => Ok((n, d)),
        dims => Err(Error::Shape(format!(
            "{loss}: `{name}` must be a matrix [N, D], got shape {dims:?}"
        ))),
    }
}

/// Checks that `a` and `b` are matrices of the same shape `[N, D]`.
pub fn same_shape(
    loss: &str,
    (a_name, a): (&str, &Tensor),
    (b_name, b): (&str, &Tensor),
) -> Result<(usize, usize)> {
    let (n, d) = matrix_dims(loss, a_name, a)?;
    let (m, e) = matrix_dims(loss, b_name, b)?;
    if n != m {
        return Err(Error::Shape(format!(
            "{loss}: `{a_name}` and `{b_name}` must have the same batch size, got {n} and {m} \
             (shapes {:?} and {:?})",
            a.dims(),
            b.dims()
        )));
    }
    if d != e {
        return Err(Error::Shape(format!(
            "{loss}: `{a_name}` and `{b_name}` must have the same dimension, got {d} and {e} \
             (shapes {:?} and {:?})",
            a.dims(),
            b.dims()
        )));
    }
    Ok((n, d))
}

/// Checks that `b` has the same feature dimension as `a` (`[*, D]`).
pub fn same_dim(
    loss: &str,
    (a_name, a): (&str, &Tensor),
    (b_name, b): (&str, &Tensor),
) -> Result<()> {
    let (_, d) = matrix_dims(loss, a_name, a)?;
    let (_, e) = matrix_dims(loss, b_name, b)?;
    if d != e {
        return Err(Error::Shape(format!(
            "{loss}: `{a_name}` and `{b_name}` must have the same dimension, got {d} and {e} \
             (shapes {:?} and {:?})",
            a.dims(),
            b.dims()
        )));
    }
    Ok(())
}

/// The values of an integer tensor (labels, indices) as `i64`.
pub fn integer_values(loss: &str, name: &str, t: &Tensor) -> Result<Vec<i64>> {
    if t.dtype().is_float() {
        return Err(Error::Shape(format!(
            "{loss}: `{name}` must be an integer tensor, got {:?}",
            t.dtype()
        )));
    }
    Ok(t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?)
}

/// A large negative number that masks a logit (its `exp` is zero) while
/// staying finite, so that no `inf - inf` appears.
pub fn mask_value(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => -1e300,
        DType::F32 => -1e30,
        _ => -6e4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn log_sum_exp_is_stable_and_differentiable() {
        let x = Var::from_slice(&[1e4f32, 1e4, 0.0, -1e4], (2, 2), &Device::Cpu).unwrap();
        let l = log_sum_exp_rows(x.as_tensor()).unwrap();
        let v = l.to_vec1::<f32>().unwrap();
        assert!((v[0] - (1e4 + 2f32.ln())).abs() < 1e-2, "{v:?}");
        assert!((v[1] - 0.0).abs() < 1e-6, "{v:?}");
        let g = l.sum_all().unwrap().backward().unwrap();
        let g = g.get(x.as_tensor()).unwrap().flatten_all().unwrap();
        let g = g.to_vec1::<f32>().unwrap();
        assert_eq!(g, vec![0.5, 0.5, 1.0, 0.0]);
    }

    #[test]
    fn cross_entropy_diagonal_matches_the_definition() {
        let x = Tensor::new(&[[2.0f64, 0.0, 1.0], [0.5, -1.0, 0.0]], &Device::Cpu).unwrap();
        let got = cross_entropy_diagonal(&x)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let lse = |r: [f64; 3]| r.iter().map(|v| v.exp()).sum::<f64>().ln();
        let want = ((lse([2.0, 0.0, 1.0]) - 2.0) + (lse([0.5, -1.0, 0.0]) + 1.0)) / 2.0;
        assert!((got - want).abs() < 1e-12);
    }
}
