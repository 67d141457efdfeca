//! The `image_folder`, `cifar10` and `cifar100` data sources on files
//! written here: class sub-folders, PNG and JPEG, resizing and channel
//! conversion, corrupt files (error or skip), CIFAR records read back in
//! CHW order, and truncated files.

use std::path::Path;
use std::sync::Arc;

use parallax_core::batch::{Field, Sample};
use parallax_core::data::{BuildCtx, DataSource, Split};
use parallax_core::recipe::Params;

// Links the plugin so that its sources are registered.
use parallax_vision as _;

fn build(
    name: &str,
    options: &str,
    split: Split,
) -> parallax_core::error::Result<Arc<dyn DataSource>> {
    let table: toml::Table = toml::from_str(options).expect("valid TOML");
    let params = Params::from_toml("data", table)?;
    let entry = parallax_core::registry::data_source(name)?;
    (entry.build)(&params, &BuildCtx::new(0, split))
}

fn error(name: &str, options: &str, split: Split) -> String {
    match build(name, options, split) {
        Ok(s) => panic!("expected an error, got {}", s.describe()),
        Err(e) => e.to_string(),
    }
}

fn image(s: &Sample) -> (Vec<usize>, Vec<f32>) {
    match s.get("image") {
        Some(Field::F32 { shape, data }) => (shape.clone(), data.clone()),
        other => panic!("no image: {other:?}"),
    }
}

fn label(s: &Sample) -> Option<i64> {
    match s.get("label") {
        Some(Field::I64 { data, .. }) => Some(data[0]),
        None => None,
        other => panic!("odd label {other:?}"),
    }
}

/// A `w` x `h` RGB image whose pixel (x, y) is (r, x, y).
fn rgb(w: u32, h: u32, r: u8) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([r, x as u8, y as u8]))
}

fn toml_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "/")
}

/// `root/{cat,dog}` with two PNGs and one JPEG of 6 x 4.
fn classes(root: &Path) {
    for (class, r) in [("dog", 200u8), ("cat", 10)] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        rgb(6, 4, r).save(dir.join("a.png")).unwrap();
        rgb(6, 4, r).save(dir.join("b.png")).unwrap();
    }
    rgb(6, 4, 10).save(root.join("cat/c.jpg")).unwrap();
    std::fs::write(root.join("cat/notes.txt"), "not an image").unwrap();
}

#[test]
fn image_folder_labels_from_sub_folders() {
    let dir = tempfile::tempdir().unwrap();
    classes(dir.path());
    let opts = format!("path = '{}'", toml_path(dir.path()));
    let src = build("image_folder", &opts, Split::Train).unwrap();
    assert_eq!(src.len(), 5);
    let meta = src.meta();
    assert_eq!(meta.image_shape, Some([3, 4, 6]));
    assert_eq!(meta.num_classes, Some(2));
    assert_eq!(meta.class_names, ["cat", "dog"]);
    let labels: Vec<_> = (0..5).map(|i| label(&src.get(i).unwrap())).collect();
    assert_eq!(labels, [Some(0), Some(0), Some(0), Some(1), Some(1)]);
    // PNG pixels come back exactly, channel-major: red plane, then green
    // (the x coordinate), then blue (y).
    let (shape, data) = image(&src.get(0).unwrap());
    assert_eq!(shape, [3, 4, 6]);
    let at = |c: usize, y: usize, x: usize| (data[(c * 4 + y) * 6 + x] * 255.0).round() as u8;
    assert_eq!((at(0, 2, 3), at(1, 2, 3), at(2, 2, 3)), (10, 3, 2));
    // The JPEG (lossy) is close.
    let (_, jpeg) = image(&src.get(2).unwrap());
    assert!((jpeg[0] * 255.0 - 10.0).abs() < 12.0, "{}", jpeg[0] * 255.0);
    assert!(src.describe().contains("5 images"), "{}", src.describe());
}

#[test]
fn image_folder_resizes_converts_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    classes(dir.path());
    rgb(9, 9, 10).save(dir.path().join("cat/big.png")).unwrap();
    let root = toml_path(dir.path());
    // Sizes differ: without `size` the error names the odd file.
    let e = error("image_folder", &format!("path = '{root}'"), Split::Train);
    assert!(e.contains("big.png") && e.contains("9x9"), "{e}");
    let src = build(
        "image_folder",
        &format!("path = '{root}'\nsize = 5\nchannels = 1\nlimit = 3"),
        Split::Train,
    )
    .unwrap();
    assert_eq!(src.len(), 3);
    assert_eq!(src.meta().image_shape, Some([1, 5, 5]));
    let (shape, data) = image(&src.get(0).unwrap());
    assert_eq!((shape, data.len()), (vec![1, 5, 5], 25));
    // The limit spreads over the classes.
    let labels: Vec<_> = (0..3).map(|i| label(&src.get(i).unwrap())).collect();
    assert!(labels.contains(&Some(1)), "{labels:?}");
    let e = error(
        "image_folder",
        &format!("path = '{root}'\nchannels = 2"),
        Split::Train,
    );
    assert!(e.contains("channels"), "{e}");
    let e = error(
        "image_folder",
        &format!("path = '{root}'\nsise = 2"),
        Split::Train,
    );
    assert!(e.contains("sise"), "{e}");
}

#[test]
fn image_folder_unlabelled_and_test_split() {
    let train = tempfile::tempdir().unwrap();
    let test = tempfile::tempdir().unwrap();
    for (i, dir) in [train.path(), test.path()].into_iter().enumerate() {
        for k in 0..3 + i {
            image::GrayImage::from_pixel(4, 4, image::Luma([k as u8 * 50]))
                .save(dir.join(format!("{k}.png")))
                .unwrap();
        }
    }
    let opts = format!(
        "path = '{}'\ntest_path = '{}'",
        toml_path(train.path()),
        toml_path(test.path())
    );
    let src = build("image_folder", &opts, Split::Train).unwrap();
    assert_eq!(src.len(), 3);
    assert_eq!(src.meta().image_shape, Some([1, 4, 4]));
    assert_eq!(src.meta().num_classes, None);
    let s = src.get(2).unwrap();
    assert_eq!(label(&s), None);
    assert!((image(&s).1[0] - 100.0 / 255.0).abs() < 1e-6);
    let test_src = build("image_folder", &opts, Split::Test).unwrap();
    assert_eq!(test_src.len(), 4);
    let e = error(
        "image_folder",
        &format!("path = '{}'", toml_path(train.path())),
        Split::Test,
    );
    assert!(e.contains("test_path"), "{e}");
}

#[test]
fn image_folder_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    classes(dir.path());
    std::fs::write(
        dir.path().join("dog/broken.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    let root = toml_path(dir.path());
    let e = error("image_folder", &format!("path = '{root}'"), Split::Train);
    assert!(e.contains("broken.png"), "{e}");
    let src = build(
        "image_folder",
        &format!("path = '{root}'\non_corrupt = 'skip'"),
        Split::Train,
    )
    .unwrap();
    assert_eq!(src.len(), 5);
    assert!(
        src.describe().contains("1 corrupt files skipped"),
        "{}",
        src.describe()
    );
    let e = error(
        "image_folder",
        &format!("path = '{root}'\non_corrupt = 'ignore'"),
        Split::Train,
    );
    assert!(e.contains("on_corrupt") || e.contains("ignore"), "{e}");
}

/// Record `i` of a CIFAR file: label bytes, then pixel (c, y, x) =
/// (i + 7c + 3y + x) mod 256.
fn record(labels: &[u8], i: usize) -> Vec<u8> {
    let mut r = labels.to_vec();
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                r.push(((i + 7 * c + 3 * y + x) % 256) as u8);
            }
        }
    }
    r
}

#[test]
fn cifar10_reads_records_in_chw_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = 0;
    for b in 1..=5 {
        let mut bytes = Vec::new();
        for _ in 0..2 {
            bytes.extend(record(&[(i % 10) as u8], i));
            i += 1;
        }
        std::fs::write(dir.path().join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    std::fs::write(dir.path().join("test_batch.bin"), record(&[9], 100)).unwrap();
    let opts = format!("path = '{}'", toml_path(dir.path()));
    let src = build("cifar10", &opts, Split::Train).unwrap();
    assert_eq!(src.len(), 10);
    let meta = src.meta();
    assert_eq!(meta.image_shape, Some([3, 32, 32]));
    assert_eq!(meta.num_classes, Some(10));
    assert_eq!(meta.class_names[0], "airplane");
    let s = src.get(7).unwrap();
    assert_eq!(label(&s), Some(7));
    let (shape, data) = image(&s);
    assert_eq!(shape, [3, 32, 32]);
    for (c, y, x) in [(0, 0, 0), (1, 5, 9), (2, 31, 30)] {
        let v = (data[(c * 32 + y) * 32 + x] * 255.0).round() as usize;
        assert_eq!(v, (7 + 7 * c + 3 * y + x) % 256, "({c}, {y}, {x})");
    }
    let test = build("cifar10", &opts, Split::Test).unwrap();
    assert_eq!((test.len(), label(&test.get(0).unwrap())), (1, Some(9)));
    // Class names from batches.meta.txt, limits.
    let names: Vec<String> = (0..10).map(|k| format!("class{k}")).collect();
    std::fs::write(
        dir.path().join("batches.meta.txt"),
        names.join("\n") + "\n\n",
    )
    .unwrap();
    let src = build("cifar10", &format!("{opts}\ntrain_limit = 3"), Split::Train).unwrap();
    assert_eq!(src.len(), 3);
    assert_eq!(src.meta().class_names, names);
    // A truncated batch, a missing batch.
    let third = dir.path().join("data_batch_3.bin");
    let mut bytes = std::fs::read(&third).unwrap();
    bytes.pop();
    std::fs::write(&third, bytes).unwrap();
    let e = error("cifar10", &opts, Split::Train);
    assert!(
        e.contains("data_batch_3.bin") && e.contains("3073-byte records"),
        "{e}"
    );
    std::fs::remove_file(&third).unwrap();
    let e = error("cifar10", &opts, Split::Train);
    assert!(e.contains("data_batch_3.bin"), "{e}");
}

#[test]
fn cifar100_fine_and_coarse_labels() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("cifar-100-binary");
    std::fs::create_dir(&bin).unwrap();
    let mut train = Vec::new();
    for i in 0..4 {
        train.extend(record(&[i as u8 + 1, 50 + i as u8], i));
    }
    std::fs::write(bin.join("train.bin"), &train).unwrap();
    std::fs::write(bin.join("test.bin"), record(&[19, 99], 3)).unwrap();
    let fine: Vec<String> = (0..100).map(|k| format!("fine{k}")).collect();
    std::fs::write(bin.join("fine_label_names.txt"), fine.join("\n")).unwrap();
    // `path` may be the folder the archive was unpacked into.
    let opts = format!("path = '{}'", toml_path(dir.path()));
    let src = build("cifar100", &opts, Split::Train).unwrap();
    assert_eq!(src.len(), 4);
    assert_eq!(src.meta().num_classes, Some(100));
    assert_eq!(src.meta().class_names[52], "fine52");
    let s = src.get(2).unwrap();
    assert_eq!(label(&s), Some(52));
    let (_, data) = image(&s);
    assert_eq!((data[32 * 32 + 1] * 255.0).round() as usize, 2 + 7 + 1);
    let coarse = build(
        "cifar100",
        &format!("{opts}\nlabel = 'coarse'"),
        Split::Train,
    )
    .unwrap();
    assert_eq!(coarse.meta().num_classes, Some(20));
    assert!(coarse.meta().class_names.is_empty());
    assert_eq!(label(&coarse.get(2).unwrap()), Some(3));
    let test = build(
        "cifar100",
        &format!("{opts}\nlabel = 'coarse'"),
        Split::Test,
    )
    .unwrap();
    assert_eq!(label(&test.get(0).unwrap()), Some(19));
    let e = error(
        "cifar100",
        &format!("{opts}\nlabel = 'medium'"),
        Split::Train,
    );
    assert!(e.contains("medium") || e.contains("label"), "{e}");
    // Truncated: one byte short of a whole record.
    std::fs::write(bin.join("test.bin"), &train[..3074 * 2 - 1]).unwrap();
    let e = error("cifar100", &opts, Split::Test);
    assert!(
        e.contains("test.bin") && e.contains("3074-byte records"),
        "{e}"
    );
    // A label out of range.
    std::fs::write(bin.join("test.bin"), record(&[25, 3], 0)).unwrap();
    let e = error(
        "cifar100",
        &format!("{opts}\nlabel = 'coarse'"),
        Split::Test,
    );
    assert!(e.contains("test.bin") && e.contains("label 25"), "{e}");
}
