//! Text evaluators: Lee document similarity, STS, a cross-validated linear
//! probe on labelled sentences.

pub mod correlation;
pub mod embed;
pub mod lee;
pub mod probe;
pub mod sts;
