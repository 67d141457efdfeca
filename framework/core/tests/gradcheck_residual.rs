//! The fused residual block (`ops::residual::residual_train`, one autograd
//! node) against central finite differences in f64 and against the same
//! block built from separate ops (`residual_train_composite`): outputs,
//! batch statistics and every gradient.

mod common;

use candle_core::{DType, Result, Tensor};
use common::*;
use parallax_core::ops::conv2d::Conv2dConfig;
use parallax_core::ops::residual::{
    residual_train, residual_train_composite, ConvBnParams, ResidualOut,
};
use parallax_core::rng::Rng;

/// A block: `(c_in, c_out, kernel, stride)` per layer, and the projection's
/// stride when it has one.
struct Block {
    x: Vec<usize>,
    layers: Vec<(usize, usize, usize, usize)>,
    projection: Option<usize>,
}

impl Block {
    /// Every convolution: the layers, then the projection (1x1).
    fn convs(&self) -> Vec<(usize, usize, usize, usize)> {
        let mut convs = self.layers.clone();
        if let Some(stride) = self.projection {
            let (c_in, c_out) = (self.x[1], self.layers.last().unwrap().1);
            convs.push((c_in, c_out, 1, stride));
        }
        convs
    }

    /// `[x, then (kernel, scale, shift) per convolution]`.
    fn inputs(&self, seed: u64, dtype: DType) -> Vec<Tensor> {
        let mut rng = Rng::new(seed);
        let mut inputs = vec![normal(&mut rng, &self.x, 0.5, 1.0, dtype)];
        for (c_in, c_out, k, _) in self.convs() {
            let std = (1.0 / (c_in * k * k) as f64).sqrt();
            inputs.push(normal(&mut rng, &[c_out, c_in, k, k], 0.0, std, dtype));
            inputs.push(normal(&mut rng, &[c_out], 1.0, 0.3, dtype));
            inputs.push(normal(&mut rng, &[c_out], 0.2, 0.3, dtype));
        }
        inputs
    }

    /// The block on `inputs` (laid out as [`Block::inputs`]).
    fn run(&self, inputs: &[Tensor], fused: bool) -> Result<ResidualOut> {
        let params: Vec<ConvBnParams> = self
            .convs()
            .iter()
            .enumerate()
            .map(|(i, &(_, _, k, stride))| ConvBnParams {
                conv: &inputs[1 + 3 * i],
                cfg: Conv2dConfig::square(stride, k / 2),
                bn_weight: &inputs[2 + 3 * i],
                bn_bias: &inputs[3 + 3 * i],
                eps: 1e-5,
            })
            .collect();
        let n = self.layers.len();
        let projection = params.get(n);
        if fused {
            residual_train(&inputs[0], &params[..n], projection)
        } else {
            residual_train_composite(&inputs[0], &params[..n], projection)
        }
    }
}

fn basic_identity() -> Block {
    Block {
        x: vec![2, 3, 5, 5],
        layers: vec![(3, 3, 3, 1), (3, 3, 3, 1)],
        projection: None,
    }
}

fn basic_projection() -> Block {
    // stride 2 on a non-square input
    Block {
        x: vec![2, 3, 6, 5],
        layers: vec![(3, 4, 3, 2), (4, 4, 3, 1)],
        projection: Some(2),
    }
}

fn bottleneck_identity() -> Block {
    Block {
        x: vec![2, 4, 4, 4],
        layers: vec![(4, 2, 1, 1), (2, 2, 3, 1), (2, 4, 1, 1)],
        projection: None,
    }
}

fn bottleneck_projection() -> Block {
    Block {
        x: vec![3, 4, 4, 3],
        layers: vec![(4, 2, 1, 1), (2, 2, 3, 2), (2, 6, 1, 1)],
        projection: Some(2),
    }
}

fn cases() -> Vec<(&'static str, Block)> {
    vec![
        ("basic, identity", basic_identity()),
        ("basic, projection, stride 2", basic_projection()),
        ("bottleneck, identity", bottleneck_identity()),
        ("bottleneck, projection, stride 2", bottleneck_projection()),
    ]
}

#[test]
fn fused_block_gradients_match_finite_differences() {
    for (seed, (label, block)) in cases().into_iter().enumerate() {
        let inputs = block.inputs(seed as u64, DType::F64);
        let mut rng = Rng::new(100 + seed as u64);
        let out = block.run(&inputs, true).unwrap().y;
        let r = normal(&mut rng, out.dims(), 0.0, 1.0, DType::F64);
        let loss = |ts: &[Tensor]| weighted_sum(&block.run(ts, true)?.y, &r);
        gradcheck(label, &inputs, &loss, 1e-3);
    }
}

#[test]
fn fused_block_equals_the_separate_ops() {
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
        for (seed, (label, block)) in cases().into_iter().enumerate() {
            let inputs = block.inputs(10 + seed as u64, dtype);
            let fused = block.run(&inputs, true).unwrap();
            let composite = block.run(&inputs, false).unwrap();
            let err = rel_err(&values(&fused.y), &values(&composite.y), 1.0);
            assert!(err < tol, "{label} {dtype:?}: outputs differ by {err:e}");
            assert_eq!(fused.stats.len(), composite.stats.len(), "{label}");
            for (i, (f, c)) in fused.stats.iter().zip(&composite.stats).enumerate() {
                assert_eq!(f.count, c.count, "{label}: batch norm {i}");
                for (what, a, b) in [("mean", &f.mean, &c.mean), ("var", &f.var, &c.var)] {
                    let err = rel_err(&values(a), &values(b), 1.0);
                    assert!(
                        err < tol,
                        "{label} {dtype:?}: {what} {i} differs by {err:e}"
                    );
                }
            }
            let mut rng = Rng::new(200 + seed as u64);
            let r = normal(&mut rng, fused.y.dims(), 0.0, 1.0, dtype);
            let grads = |fused: bool| {
                analytic(&inputs, &|ts: &[Tensor]| {
                    weighted_sum(&block.run(ts, fused)?.y, &r)?.to_dtype(DType::F64)
                })
            };
            for (i, (f, c)) in grads(true).iter().zip(&grads(false)).enumerate() {
                let err = rel_err(f, c, 1e-3);
                assert!(
                    err < tol,
                    "{label} {dtype:?}: gradient of input {i} differs by {err:e}"
                );
            }
        }
    }
}

#[test]
fn a_block_without_layers_or_with_mismatched_shapes_is_an_error() {
    let x = Tensor::zeros((1, 2, 4, 4), DType::F32, &candle_core::Device::Cpu).unwrap();
    let err = residual_train(&x, &[], None).err().expect("no layers");
    assert!(err.to_string().contains("at least one layer"), "{err}");
    // a branch of 3 channels cannot be added to an identity shortcut of 2
    let block = Block {
        x: vec![1, 2, 4, 4],
        layers: vec![(2, 3, 3, 1)],
        projection: None,
    };
    let inputs = block.inputs(0, DType::F32);
    let err = block.run(&inputs, true).err().expect("shape mismatch");
    assert!(err.to_string().contains("shortcut"), "{err}");
}
