//! Image data sources: Fashion-MNIST (embedded slice or the full files) and
//! any dataset in the IDX format (MNIST, KMNIST, ...).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parallax_core::batch::{Field, Sample};
use parallax_core::data::{BuildCtx, DataMeta, DataSource, Split};
use parallax_core::error::{Error, Result};
use parallax_core::recipe::Params;
use serde::Deserialize;

use crate::embedded::{self, FASHION_MNIST_CLASSES};
use crate::idx::{read_images_labels, ImageSet};

/// Grayscale images with labels, held in memory.
pub struct ImageSetSource {
    set: Arc<ImageSet>,
    indices: Vec<usize>,
    description: String,
    class_names: Vec<String>,
}

impl ImageSetSource {
    /// A source over `set` (the first `limit` images when given).
    pub fn new(
        set: ImageSet,
        limit: Option<usize>,
        description: String,
        class_names: Vec<String>,
    ) -> Self {
        let n = limit.map_or(set.n, |l| l.min(set.n));
        ImageSetSource {
            set: Arc::new(set),
            indices: (0..n).collect(),
            description,
            class_names,
        }
    }
}

impl DataSource for ImageSetSource {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let i = *self.indices.get(index).ok_or_else(|| {
            Error::Data(format!("{}: index {index} out of range", self.description))
        })?;
        let (h, w) = (self.set.height, self.set.width);
        let pixels = &self.set.images[i * h * w..(i + 1) * h * w];
        let mut s = Sample::with(
            "image",
            Field::F32 {
                shape: vec![1, h, w],
                data: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            },
        );
        s.insert("label", Field::label(self.set.labels[i] as i64));
        Ok(s)
    }

    fn meta(&self) -> DataMeta {
        DataMeta {
            image_shape: Some([1, self.set.height, self.set.width]),
            num_classes: Some(
                self.class_names.len().max(
                    self.set
                        .labels
                        .iter()
                        .copied()
                        .max()
                        .map_or(0, |m| m as usize + 1),
                ),
            ),
            class_names: self.class_names.clone(),
            vocab_size: None,
        }
    }

    fn describe(&self) -> String {
        format!("{} ({} images)", self.description, self.len())
    }
}

/// `[data] name = "fashion_mnist"` options.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FashionMnistConfig {
    /// A folder with the full dataset's IDX files
    /// (`{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`, as
    /// `scripts/fetch-data.sh` writes them); none: the embedded slice of
    /// 10,000 training and 2,000 test images.
    path: Option<String>,
    /// Use only the first `train_limit` training images.
    train_limit: Option<usize>,
    /// Use only the first `test_limit` test images.
    test_limit: Option<usize>,
}

/// Finds `stem` or `stem.gz` in `dir`.
fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [stem.to_string(), format!("{stem}.gz")] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Data(format!(
        "{}: no {stem} or {stem}.gz (run scripts/fetch-data.sh, or point `path` at the IDX files)",
        dir.display()
    )))
}

fn idx_split(dir: &Path, split: Split) -> Result<ImageSet> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images = find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels = find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let set = read_images_labels(&images, &labels).map_err(|e| Error::Data(e.to_string()))?;
    if set.height == 0 || set.width == 0 {
        return Err(Error::Data(format!(
            "{}: images of {}x{} pixels (expected at least 1x1)",
            images.display(),
            set.width,
            set.height
        )));
    }
    Ok(set)
}

fn class_names() -> Vec<String> {
    FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn fashion_mnist(p: &Params, ctx: &BuildCtx) -> Result<Arc<dyn DataSource>> {
    let c: FashionMnistConfig = p.extract()?;
    let limit = match ctx.split {
        Split::Train => c.train_limit,
        Split::Test => c.test_limit,
    };
    let (set, desc) = match &c.path {
        None => {
            let set = match ctx.split {
                Split::Train => embedded::fashion_mnist_train(),
                Split::Test => embedded::fashion_mnist_test(),
            }
            .map_err(|e| Error::Data(e.to_string()))?;
            (
                set,
                format!("fashion_mnist {} (embedded slice)", ctx.split.as_str()),
            )
        }
        Some(path) => {
            let dir = ctx.resolve(path);
            (
                idx_split(&dir, ctx.split)?,
                format!("fashion_mnist {} ({})", ctx.split.as_str(), dir.display()),
            )
        }
    };
    Ok(Arc::new(ImageSetSource::new(
        set,
        limit,
        desc,
        class_names(),
    )))
}

/// `[data] name = "idx"` options: any labelled IDX image dataset.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdxConfig {
    /// A folder with `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`.
    path: String,
    /// Class names (optional).
    #[serde(default)]
    classes: Vec<String>,
    /// Use only the first `train_limit` training images.
    #[serde(default)]
    train_limit: Option<usize>,
    /// Use only the first `test_limit` test images.
    #[serde(default)]
    test_limit: Option<usize>,
}

fn idx(p: &Params, ctx: &BuildCtx) -> Result<Arc<dyn DataSource>> {
    let c: IdxConfig = p.extract()?;
    let dir = ctx.resolve(&c.path);
    let limit = match ctx.split {
        Split::Train => c.train_limit,
        Split::Test => c.test_limit,
    };
    let set = idx_split(&dir, ctx.split)?;
    let desc = format!("idx {} ({})", ctx.split.as_str(), dir.display());
    Ok(Arc::new(ImageSetSource::new(set, limit, desc, c.classes)))
}

parallax_core::register!(
    data_source,
    "fashion_mnist",
    "Fashion-MNIST: the embedded 10k/2k slice, or the full IDX files from `path`",
    fashion_mnist
);
parallax_core::register!(
    data_source,
    "idx",
    "a labelled image dataset in the IDX format (MNIST-style files in a folder)",
    idx
);
