//! Gradient checks of the method heads that are more than a stack of
//! Candle's layers: DINO's head (GELU MLP, L2 normalisation of the
//! bottleneck, weight-normalised prototypes), in f64 against central finite
//! differences, through the head's own code.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{gradcheck, normal, weighted_sum};
use parallax_core::nn::dino_head::{DinoHead, DinoHeadConfig};
use parallax_core::nn::encoder::{ForwardCtx, Head};
use parallax_core::rng::Rng;

#[test]
fn dino_head_gradcheck_f64() {
    let cfg = DinoHeadConfig {
        hidden_dim: 6,
        bottleneck_dim: 4,
        out_dim: 5,
        num_layers: 2,
        batch_norm: false,
    };
    let names = [
        "mlp.0.linear.weight",
        "mlp.0.linear.bias",
        "mlp.1.linear.weight",
        "mlp.1.linear.bias",
        "prototypes.weight",
    ];
    let shapes: [&[usize]; 5] = [&[6, 3], &[6], &[4, 6], &[4], &[5, 4]];
    let mut rng = Rng::new(11);
    let mut inputs = vec![normal(&mut rng, &[7, 3], 0.0, 1.0, DType::F64)];
    for s in shapes {
        inputs.push(normal(&mut rng, s, 0.0, 0.7, DType::F64));
    }
    let r = normal(&mut rng, &[7, 5], 0.0, 1.0, DType::F64);
    let grads = gradcheck(
        "dino head",
        &inputs,
        &|ts| {
            let map: HashMap<String, Tensor> = names
                .iter()
                .zip(&ts[1..])
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect();
            let vb = VarBuilder::from_tensors(map, DType::F64, &Device::Cpu);
            let head = DinoHead::new(&cfg, 3, vb).unwrap();
            let y = head.forward(&ts[0], &mut ForwardCtx::eval()).unwrap();
            weighted_sum(&y, &r)
        },
        1.0,
    );
    // the prototypes' norm is fixed: scaling a row leaves the output unchanged,
    // so the gradient of each row is orthogonal to the row
    let w = common::values(&inputs[5]);
    let g = &grads[5];
    for row in 0..5 {
        let dot: f64 = (0..4).map(|j| w[row * 4 + j] * g[row * 4 + j]).sum();
        assert!(dot.abs() < 1e-9, "row {row}: w . dw = {dot}");
    }
}
