//! `[data] name = "cifar10"` and `"cifar100"`: the binary versions of
//! CIFAR-10 and CIFAR-100 (Krizhevsky 2009,
//! <https://www.cs.toronto.edu/~kriz/cifar.html>).
//!
//! - CIFAR-10 (`cifar-10-binary.tar.gz`): `data_batch_1.bin` ..
//!   `data_batch_5.bin` (training) and `test_batch.bin`, records of 1 label
//!   byte and 3072 pixel bytes (1024 red, then green, then blue, rows top
//!   to bottom: CHW); class names from `batches.meta.txt`.
//! - CIFAR-100 (`cifar-100-binary.tar.gz`): `train.bin` and `test.bin`,
//!   records of a coarse label byte, a fine label byte and 3072 pixel
//!   bytes; class names from `fine_label_names.txt` /
//!   `coarse_label_names.txt`.
//!
//! `path` is the folder with the files, or the folder the archive was
//! unpacked into (holding `cifar-10-batches-bin/` or `cifar-100-binary/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parallax_core::data::{BuildCtx, DataSource, Split};
use parallax_core::error::{Error, Result};
use parallax_core::recipe::Params;
use serde::Deserialize;

use crate::image_folder::InMemoryImages;

/// Pixel bytes per image: 3 x 32 x 32.
pub const PIXELS: usize = 3 * 32 * 32;

/// CIFAR-10's classes, used when `batches.meta.txt` is missing.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Which CIFAR-100 label to use.
#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Cifar100Label {
    /// The 100 classes.
    #[default]
    Fine,
    /// The 20 superclasses.
    Coarse,
}

/// `[data] name = "cifar10"` options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cifar10Config {
    /// The folder with the `.bin` batches.
    path: String,
    /// Use only the first `train_limit` training images.
    #[serde(default)]
    train_limit: Option<usize>,
    /// Use only the first `test_limit` test images.
    #[serde(default)]
    test_limit: Option<usize>,
}

/// `[data] name = "cifar100"` options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cifar100Config {
    /// The folder with `train.bin` and `test.bin`.
    path: String,
    /// `"fine"` (100 classes, default) or `"coarse"` (20 superclasses).
    #[serde(default)]
    label: Cifar100Label,
    /// Use only the first `train_limit` training images.
    #[serde(default)]
    train_limit: Option<usize>,
    /// Use only the first `test_limit` test images.
    #[serde(default)]
    test_limit: Option<usize>,
}

/// `dir`, or its sub-folder `sub` when that exists (the unpacked archive).
fn data_dir(dir: &Path, sub: &str) -> PathBuf {
    let inner = dir.join(sub);
    if inner.is_dir() {
        inner
    } else {
        dir.to_path_buf()
    }
}

/// Reads the records of `file`: `label_bytes` label bytes then 3072 pixel
/// bytes each. Appends the pixels to `pixels` and label byte `which` of
/// every record (checked to be below `classes`) to `labels`.
pub fn read_records(
    file: &Path,
    label_bytes: usize,
    which: usize,
    classes: usize,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<i64>,
) -> Result<()> {
    let bytes = std::fs::read(file).map_err(|e| {
        Error::Data(format!(
            "{}: {e} (download the binary version from https://www.cs.toronto.edu/~kriz/cifar.html)",
            file.display()
        ))
    })?;
    let record = label_bytes + PIXELS;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(Error::Data(format!(
            "{}: {} bytes is not a whole number of {record}-byte records (truncated or not a CIFAR batch)",
            file.display(),
            bytes.len()
        )));
    }
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        let label = r[which];
        if usize::from(label) >= classes {
            return Err(Error::Data(format!(
                "{}: record {i} has label {label}, but there are {classes} classes",
                file.display()
            )));
        }
        labels.push(i64::from(label));
        pixels.extend_from_slice(&r[label_bytes..]);
    }
    Ok(())
}

/// Non-empty lines of `file`, if it exists.
fn names(file: &Path) -> Result<Option<Vec<String>>> {
    if !file.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::Data(format!("{}: {e}", file.display())))?;
    Ok(Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    ))
}

/// An in-memory source of 3 x 32 x 32 images.
fn source(
    pixels: Vec<u8>,
    labels: Vec<i64>,
    classes: usize,
    class_names: Vec<String>,
    limit: Option<usize>,
    description: String,
) -> Result<Arc<dyn DataSource>> {
    let mut src = InMemoryImages::new(
        [3, 32, 32],
        pixels,
        Some(labels),
        Some(classes),
        class_names,
        description,
    )?;
    if let Some(l) = limit {
        src.truncate(l);
    }
    Ok(Arc::new(src))
}

fn cifar10(p: &Params, ctx: &BuildCtx) -> Result<Arc<dyn DataSource>> {
    let c: Cifar10Config = p.extract()?;
    let dir = data_dir(&ctx.resolve(&c.path), "cifar-10-batches-bin");
    let (files, limit): (Vec<String>, _) = match ctx.split {
        Split::Train => (
            (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            c.train_limit,
        ),
        Split::Test => (vec!["test_batch.bin".into()], c.test_limit),
    };
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for f in &files {
        read_records(&dir.join(f), 1, 0, 10, &mut pixels, &mut labels)?;
    }
    let class_names = names(&dir.join("batches.meta.txt"))?
        .unwrap_or_else(|| CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
    if class_names.len() != 10 {
        return Err(Error::Data(format!(
            "{}: {} class names, expected 10",
            dir.join("batches.meta.txt").display(),
            class_names.len()
        )));
    }
    let desc = format!("cifar10 {} ({})", ctx.split.as_str(), dir.display());
    source(pixels, labels, 10, class_names, limit, desc)
}

fn cifar100(p: &Params, ctx: &BuildCtx) -> Result<Arc<dyn DataSource>> {
    let c: Cifar100Config = p.extract()?;
    let dir = data_dir(&ctx.resolve(&c.path), "cifar-100-binary");
    let (file, limit) = match ctx.split {
        Split::Train => ("train.bin", c.train_limit),
        Split::Test => ("test.bin", c.test_limit),
    };
    let (which, classes, names_file) = match c.label {
        Cifar100Label::Coarse => (0, 20, "coarse_label_names.txt"),
        Cifar100Label::Fine => (1, 100, "fine_label_names.txt"),
    };
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    read_records(&dir.join(file), 2, which, classes, &mut pixels, &mut labels)?;
    let class_names = names(&dir.join(names_file))?.unwrap_or_default();
    if !class_names.is_empty() && class_names.len() != classes {
        return Err(Error::Data(format!(
            "{}: {} class names, expected {classes}",
            dir.join(names_file).display(),
            class_names.len()
        )));
    }
    let label = match c.label {
        Cifar100Label::Fine => "fine",
        Cifar100Label::Coarse => "coarse",
    };
    let desc = format!(
        "cifar100 {} ({label} labels, {})",
        ctx.split.as_str(),
        dir.display()
    );
    source(pixels, labels, classes, class_names, limit, desc)
}

parallax_core::register!(
    data_source,
    "cifar10",
    "CIFAR-10 from its binary batches (data_batch_1..5.bin, test_batch.bin)",
    cifar10
);
parallax_core::register!(
    data_source,
    "cifar100",
    "CIFAR-100 from its binary files (train.bin, test.bin); label = fine | coarse",
    cifar100
);
