//! Parallax vision plugin: image data sources (Fashion-MNIST embedded
//! slice, IDX files), seeded augmentations, the image view generator and
//! CNN encoders.

pub mod augment;
pub mod cifar;
pub mod embedded;
pub mod idx;
pub mod image;
pub mod image_folder;
pub mod input_norm;
pub mod multi_crop;
pub mod pixels;
pub mod pretrained;
pub mod resnet;
pub mod small_cnn;
pub mod sources;
pub mod views;
pub mod vit;
