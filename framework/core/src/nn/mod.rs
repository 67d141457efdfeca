//! Neural-network building blocks shared by plugins: the encoder and head
//! traits, heads described as data, the seeded variable store.

pub mod batch_norm;
pub mod cast;
pub mod conv_bn;
pub mod dino_head;
pub mod encoder;
pub mod heads;
pub mod init;
pub mod mlp;
pub mod residual;
