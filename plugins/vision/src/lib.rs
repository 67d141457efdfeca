//! Parallax vision plugin: image data sources (Fashion-MNIST embedded
//! slice, IDX files), seeded augmentations, the image view generator and
//! CNN encoders.

pub mod augment;
pub mod embedded;
pub mod idx;
pub mod image;
pub mod input_norm;
pub mod resnet;
pub mod small_cnn;
pub mod sources;
pub mod views;
