//! The README's plugin example, compiled and registered: a loss defined
//! outside the core is found by name, validates its parameters and computes.

use parallax_core::error::Result;
use parallax_core::losses::{l2_normalize, Loss, LossInputs};
use parallax_core::recipe::Params;
use serde::Deserialize;

/// `[loss] name = "align"`: mean ||f(x) - f(x+)||^alpha over positive pairs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AlignConfig {
    /// The exponent; 2 in Wang & Isola (2020).
    alpha: f64,
}

impl Default for AlignConfig {
    fn default() -> Self {
        AlignConfig { alpha: 2.0 }
    }
}

struct Align(f64);

impl Loss for Align {
    fn forward(&self, inputs: &LossInputs) -> Result<candle_core::Tensor> {
        let z0 = l2_normalize(inputs.get("align", "z0")?)?;
        let z1 = l2_normalize(inputs.get("align", "z1")?)?;
        let d = (z0 - z1)?.sqr()?.sum(1)?.sqrt()?;
        Ok(d.powf(self.0)?.mean_all()?)
    }
}

parallax_core::register!(
    loss,
    "align",
    "alignment of positive pairs (Wang & Isola 2020)",
    |params| {
        let cfg: AlignConfig = params.extract()?; // unknown keys are errors naming the key and file
        if cfg.alpha <= 0.0 {
            return Err(params.error("alpha", "must be > 0"));
        }
        Ok(Box::new(Align(cfg.alpha)))
    }
);

#[test]
fn the_readme_plugin_registers_validates_and_computes() {
    let entry = parallax_core::registry::loss("align").expect("registered");
    let bad = Params::from_toml("loss", toml::from_str("alpha = -1.0").unwrap()).unwrap();
    let err = (entry.build)(&bad)
        .err()
        .expect("alpha < 0 rejected")
        .to_string();
    assert!(err.contains("loss.alpha"), "{err}");
    let loss = (entry.build)(&Params::empty("loss")).unwrap();
    let z = candle_core::Tensor::new(&[[1f32, 0.], [0., 1.]], &candle_core::Device::Cpu).unwrap();
    let w = candle_core::Tensor::new(&[[0f32, 1.], [0., 1.]], &candle_core::Device::Cpu).unwrap();
    let v = loss
        .forward(&LossInputs::new().with("z0", z).with("z1", w))
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // pair 0 is orthogonal (squared distance 2), pair 1 identical (0)
    assert!((v - 1.0).abs() < 1e-6, "{v}");
}
