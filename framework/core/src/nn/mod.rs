//! Neural-network building blocks shared by plugins: the encoder and head
//! traits, heads described as data, the seeded variable store.

pub mod batch_norm;
pub mod encoder;
pub mod init;
pub mod mlp;
