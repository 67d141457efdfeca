//! `synthetic`: random images for benchmarks and smoke tests.
//!
//! Each image is uniform noise in [0, 1] drawn from `(seed, "synthetic",
//! [split, index])`, so the same recipe always sees the same pixels, and
//! carries a label `index % num_classes` so that evaluators run on it.

use std::sync::Arc;

use serde::Deserialize;

use crate::batch::{Field, Sample};
use crate::data::{BuildCtx, DataMeta, DataSource, Split};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// `[data] name = "synthetic"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Image shape `[C, H, W]`.
    pub shape: [usize; 3],
    /// Number of images.
    pub len: usize,
    /// Number of (meaningless) classes for the labels.
    pub num_classes: usize,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        // CIFAR-shaped.
        SyntheticConfig {
            shape: [3, 32, 32],
            len: 1024,
            num_classes: 10,
        }
    }
}

/// Random images.
pub struct Synthetic {
    cfg: SyntheticConfig,
    seed: u64,
    split: Split,
}

impl Synthetic {
    /// Validates `cfg`.
    pub fn new(cfg: SyntheticConfig, seed: u64, split: Split) -> Result<Self> {
        if cfg.shape.contains(&0) {
            return Err(Error::invalid("synthetic", "shape must be positive"));
        }
        if cfg.num_classes == 0 {
            return Err(Error::invalid(
                "synthetic",
                "num_classes must be at least 1",
            ));
        }
        Ok(Synthetic { cfg, seed, split })
    }
}

impl DataSource for Synthetic {
    fn len(&self) -> usize {
        self.cfg.len
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let split = match self.split {
            Split::Train => 0,
            Split::Test => 1,
        };
        let mut rng = Rng::derive(self.seed, "synthetic", &[split, index as u64]);
        let n: usize = self.cfg.shape.iter().product();
        let data = (0..n).map(|_| rng.uniform()).collect();
        let mut s = Sample::with(
            "image",
            Field::F32 {
                shape: self.cfg.shape.to_vec(),
                data,
            },
        );
        s.insert("label", Field::label((index % self.cfg.num_classes) as i64));
        Ok(s)
    }

    fn meta(&self) -> DataMeta {
        DataMeta {
            image_shape: Some(self.cfg.shape),
            num_classes: Some(self.cfg.num_classes),
            class_names: (0..self.cfg.num_classes).map(|c| c.to_string()).collect(),
            vocab_size: None,
        }
    }

    fn describe(&self) -> String {
        let [c, h, w] = self.cfg.shape;
        format!("synthetic ({} random {c}x{h}x{w} images)", self.cfg.len)
    }
}

fn build(p: &crate::recipe::Params, ctx: &BuildCtx) -> Result<Arc<dyn DataSource>> {
    let cfg: SyntheticConfig = p.extract()?;
    Ok(Arc::new(Synthetic::new(cfg, ctx.seed, ctx.split)?))
}

crate::register!(
    data_source,
    "synthetic",
    "random images in [0, 1] (benchmarks, smoke tests): shape, len, num_classes",
    build
);

#[cfg(test)]
mod tests {
    use super::*;

    fn image(s: &Sample) -> Vec<f32> {
        match s.get("image") {
            Some(Field::F32 { data, .. }) => data.clone(),
            other => panic!("no image: {other:?}"),
        }
    }

    #[test]
    fn seeded_in_range_and_labelled() {
        let cfg = SyntheticConfig {
            shape: [1, 4, 5],
            len: 7,
            num_classes: 3,
        };
        let a = Synthetic::new(cfg.clone(), 0, Split::Train).unwrap();
        let b = Synthetic::new(cfg.clone(), 0, Split::Train).unwrap();
        let t = Synthetic::new(cfg.clone(), 0, Split::Test).unwrap();
        let x = image(&a.get(5).unwrap());
        assert_eq!(x.len(), 20);
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(x, image(&b.get(5).unwrap()));
        assert_ne!(x, image(&a.get(4).unwrap()));
        assert_ne!(x, image(&t.get(5).unwrap()));
        assert_eq!(a.get(5).unwrap().get("label"), Some(&Field::label(2)));
        assert_eq!(a.meta().image_shape, Some([1, 4, 5]));
        let bad = SyntheticConfig {
            num_classes: 0,
            ..cfg
        };
        assert!(Synthetic::new(bad, 0, Split::Train).is_err());
    }
}
