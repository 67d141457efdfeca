//! Evaluators of dual image-text encoders.

pub mod retrieval;
pub mod zero_shot;
