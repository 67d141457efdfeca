//! Shared helpers of the gradient-check suites: central finite differences
//! in f64 against the analytic gradients of Candle's autograd.
#![allow(dead_code)] // each test binary uses a different subset

use candle_core::{DType, Device, Result, Tensor, Var};
use parallax_core::rng::Rng;

pub const FD_EPS: f64 = 1e-6;
/// Finite-difference tolerance in f64, relative to the gradient's scale.
pub const FD_RTOL: f64 = 1e-6;

pub fn normal(rng: &mut Rng, shape: &[usize], mean: f64, std: f64, dtype: DType) -> Tensor {
    rng.normal_tensor(shape, mean, std, dtype, &Device::Cpu)
        .unwrap()
}

pub fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// `max |a − b| / max(max |b|, floor)`.
pub fn rel_err(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(floor, f64::max);
    diff / scale
}

pub fn fmt(errs: &[f64]) -> String {
    errs.iter()
        .map(|e| format!("{e:.1e}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Analytic gradients of `loss(inputs)` with respect to every input.
pub fn analytic(inputs: &[Tensor], loss: &dyn Fn(&[Tensor]) -> Result<Tensor>) -> Vec<Vec<f64>> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = loss(&ts).unwrap().backward().unwrap();
    ts.iter()
        .map(|t| values(grads.get(t).expect("no gradient reached an input")))
        .collect()
}

/// Central finite differences of `loss(inputs)` with respect to every input.
pub fn numeric(inputs: &[Tensor], loss: &dyn Fn(&[Tensor]) -> Result<Tensor>) -> Vec<Vec<f64>> {
    let eval = |ts: &[Tensor]| -> f64 { loss(ts).unwrap().to_scalar::<f64>().unwrap() };
    (0..inputs.len())
        .map(|i| {
            let base = values(&inputs[i]);
            let shape = inputs[i].dims().to_vec();
            (0..base.len())
                .map(|j| {
                    let at = |delta: f64| {
                        let mut v = base.clone();
                        v[j] += delta;
                        let mut ts = inputs.to_vec();
                        ts[i] = Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap();
                        eval(&ts)
                    };
                    (at(FD_EPS) - at(-FD_EPS)) / (2.0 * FD_EPS)
                })
                .collect()
        })
        .collect()
}

/// Checks analytic against numeric gradients for every input, with the
/// error relative to `max(max |numeric|, floor)`; returns the analytic
/// gradients.
pub fn gradcheck(
    label: &str,
    inputs: &[Tensor],
    loss: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    floor: f64,
) -> Vec<Vec<f64>> {
    let a = analytic(inputs, loss);
    let n = numeric(inputs, loss);
    for (i, (ai, ni)) in a.iter().zip(&n).enumerate() {
        let err = rel_err(ai, ni, floor);
        println!("{label}: input {i}: rel err {err:.2e}");
        assert!(
            err < FD_RTOL,
            "{label}: gradient of input {i} off by {err:e}\nanalytic {ai:?}\nnumeric  {ni:?}"
        );
    }
    a
}

/// `sum(y · r)`: a loss with a non-trivial upstream gradient `r`.
pub fn weighted_sum(y: &Tensor, r: &Tensor) -> Result<Tensor> {
    y.mul(r)?.sum_all()
}
