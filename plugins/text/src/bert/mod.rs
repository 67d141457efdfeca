//! A trainable BERT in Hugging Face's layout.

pub mod config;
pub mod model;
