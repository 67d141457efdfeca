//! A slice of the real Fashion-MNIST dataset (Xiao, Rasul and Vollgraf,
//! 2017; MIT licence, Copyright (c) 2017 Zalando SE), compiled into the
//! crate so that recipes run without downloading anything: the first
//! 10,000 training and the first 2,000 test images, 28x28 grayscale, with
//! roughly 1,000 and 200 images per class. `data/README.md` says how the
//! slice was made; `scripts/fetch-data.sh` fetches the full dataset.

use crate::idx::{parse_idx, IdxError, ImageSet};

/// Fashion-MNIST's class names, indexed by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const TRAIN_IMAGES: &[u8] = include_bytes!("../data/fashion-mnist-train-10k-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../data/fashion-mnist-train-10k-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../data/fashion-mnist-test-2k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../data/fashion-mnist-test-2k-labels-idx1-ubyte.gz");

/// The first 10,000 Fashion-MNIST training images with their labels.
///
/// The data is decompressed on each call (a few tens of milliseconds); an
/// error means the embedded files are damaged, which is a build problem.
pub fn fashion_mnist_train() -> Result<ImageSet, IdxError> {
    decode(
        TRAIN_IMAGES,
        TRAIN_LABELS,
        "embedded fashion-mnist-train-10k",
    )
}

/// The first 2,000 Fashion-MNIST test images with their labels; see
/// [`fashion_mnist_train`].
pub fn fashion_mnist_test() -> Result<ImageSet, IdxError> {
    decode(TEST_IMAGES, TEST_LABELS, "embedded fashion-mnist-test-2k")
}

fn decode(images: &[u8], labels: &[u8], name: &str) -> Result<ImageSet, IdxError> {
    let images_name = format!("{name}-images-idx3-ubyte.gz");
    let labels_name = format!("{name}-labels-idx1-ubyte.gz");
    ImageSet::from_arrays(
        parse_idx(images, &images_name)?,
        parse_idx(labels, &labels_name)?,
        &images_name,
        &labels_name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_counts(set: &ImageSet) -> [usize; 10] {
        let mut counts = [0; 10];
        for &l in &set.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    fn check(set: &ImageSet, n: usize) {
        assert_eq!((set.n, set.height, set.width), (n, 28, 28));
        assert_eq!(set.images.len(), n * 28 * 28);
        assert_eq!(set.labels.len(), n);
        assert!(set.labels.iter().all(|&l| l < 10));
        // Every class is within 10% of a uniform share.
        let share = n / 10;
        for (class, count) in class_counts(set).iter().enumerate() {
            assert!(
                count * 10 >= share * 9 && count * 10 <= share * 11,
                "{} has {count} of {n} images",
                FASHION_MNIST_CLASSES[class]
            );
        }
        // Real images: not blank, using the full byte range.
        assert_eq!(set.images.iter().max(), Some(&255));
        assert_eq!(set.images.iter().min(), Some(&0));
    }

    #[test]
    fn train_slice() {
        let set = fashion_mnist_train().expect("embedded training slice");
        check(&set, 10_000);
        // The first training images of Fashion-MNIST are an ankle boot and
        // a T-shirt.
        assert_eq!(&set.labels[..2], &[9, 0]);
    }

    #[test]
    fn test_slice() {
        let set = fashion_mnist_test().expect("embedded test slice");
        check(&set, 2_000);
        assert_eq!(&set.labels[..2], &[9, 2]);
    }
}
