//! Gradient utilities: the global norm, norm clipping (as PyTorch's
//! `clip_grad_norm_`), accumulation and scaling. Each acts on the gradients
//! of `vars` only; variables without a gradient are skipped, and a variable
//! listed twice counts once.

use std::collections::HashSet;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::error::{Error, Result};

/// `vars` without repeats.
fn unique(vars: &[Var]) -> impl Iterator<Item = &Var> {
    let mut seen = HashSet::new();
    vars.iter().filter(move |v| seen.insert(v.as_tensor().id()))
}

/// The global L2 norm of the gradients of `vars` (0 when none has one),
/// computed in f32 with a single host synchronisation.
pub fn grad_norm(grads: &GradStore, vars: &[Var]) -> Result<f64> {
    let mut sums = Vec::new();
    for v in unique(vars) {
        if let Some(g) = grads.get(v.as_tensor()) {
            sums.push(
                g.detach()
                    .to_dtype(DType::F32)?
                    .sqr()?
                    .sum_all()?
                    .reshape(1)?,
            );
        }
    }
    if sums.is_empty() {
        return Ok(0.0);
    }
    let total = Tensor::cat(&sums, 0)?.sum_all()?.to_scalar::<f32>()? as f64;
    Ok(total.sqrt())
}

/// Scales the gradients of `vars` in place so that their global norm is at
/// most `max_norm` (by `max_norm / (norm + 1e-6)` when the norm exceeds
/// it, as PyTorch); returns the norm before clipping. Gradients whose norm
/// is not finite are left as they are (the norm is returned all the same).
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return Err(Error::invalid(
            "gradient clipping",
            format!("the maximum norm must be positive, got {max_norm}"),
        ));
    }
    let norm = grad_norm(grads, vars)?;
    let coef = max_norm / (norm + 1e-6);
    if norm.is_finite() && coef < 1.0 {
        scale(grads, vars, coef)?;
    }
    Ok(norm)
}

/// Adds the gradients of `vars` in `from` to those in `into` (for gradient
/// accumulation); a gradient only in `from` is copied over.
pub fn accumulate(into: &mut GradStore, from: &GradStore, vars: &[Var]) -> Result<()> {
    for v in unique(vars) {
        let Some(g) = from.get(v.as_tensor()) else {
            continue;
        };
        let sum = match into.get(v.as_tensor()) {
            Some(acc) => (acc + g)?.detach(),
            None => g.detach(),
        };
        into.insert(v.as_tensor(), sum);
    }
    Ok(())
}

/// Multiplies the gradients of `vars` by `factor` in place.
pub fn scale(grads: &mut GradStore, vars: &[Var], factor: f64) -> Result<()> {
    for v in unique(vars) {
        let Some(g) = grads.get(v.as_tensor()) else {
            continue;
        };
        let scaled = g.detach().affine(factor, 0.0)?;
        grads.insert(v.as_tensor(), scaled);
    }
    Ok(())
}
