//! Data sources and the parallel loader.

pub mod loader;
pub mod subset;
pub mod synthetic;

use std::path::PathBuf;

use crate::batch::Sample;
use crate::error::Result;
use crate::recipe::Component;

pub use loader::{Loader, LoaderConfig};

/// Which part of a dataset a source reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training split (pretraining; kNN memory bank; probe training).
    Train,
    /// The held-out split (evaluation queries).
    Test,
}

impl Split {
    /// `train` or `test`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// What a component needs to know when it is built.
#[derive(Clone, Debug)]
pub struct BuildCtx {
    /// The run's seed.
    pub seed: u64,
    /// Relative paths in the recipe resolve against this folder.
    pub base_dir: PathBuf,
    /// The split a data source should read.
    pub split: Split,
    /// The training data's description (filled in once the source is built,
    /// for view generators and evaluators).
    pub meta: DataMeta,
    /// The recipe's `[encoder]`, when there is one: text sources and
    /// evaluators take the tokenizer of a pretrained encoder from it.
    pub encoder: Option<Component>,
}

impl BuildCtx {
    /// A context for `split` with paths relative to the current directory.
    pub fn new(seed: u64, split: Split) -> Self {
        BuildCtx {
            seed,
            base_dir: PathBuf::from("."),
            split,
            meta: DataMeta::default(),
            encoder: None,
        }
    }

    /// Resolves a path from the recipe.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Describes the samples of a source.
#[derive(Clone, Debug, Default)]
pub struct DataMeta {
    /// Image shape `[C, H, W]`, for image sources.
    pub image_shape: Option<[usize; 3]>,
    /// Number of classes, when samples carry a `label`.
    pub num_classes: Option<usize>,
    /// Class names, when known.
    pub class_names: Vec<String>,
    /// The tokenizer's vocabulary size, for sources of token ids: text
    /// encoders built from scratch default their vocabulary to it.
    pub vocab_size: Option<usize>,
}

/// A finite, indexable dataset. `get` must be cheap enough to call from
/// loader worker threads, and deterministic.
pub trait DataSource: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The sample at `index` (< `len()`).
    fn get(&self, index: usize) -> Result<Sample>;
    /// What the samples look like.
    fn meta(&self) -> DataMeta;
    /// A one-line description for logs (`fashion_mnist (embedded, 10000 images)`).
    fn describe(&self) -> String;
}
