//! Parallax multimodal plugin: CLIP (Radford et al. 2021).
//!
//! - Encoders: `clip` (a dual encoder: an image tower and a text tower, each
//!   with a linear projection into a shared space, and a learnable logit
//!   scale; loads the Hugging Face CLIP layout), and its two towers
//!   `clip_vision` and `clip_text` (Hugging Face CLIP names).
//! - Data: `captioned` (captions from class names and templates for any
//!   labelled image source, e.g. Fashion-MNIST) and `image_text` (pair
//!   manifests, JSONL or CSV, with an image folder).
//! - Evaluators: `zero_shot` (prompt-ensembled zero-shot classification) and
//!   `retrieval` (image-to-text and text-to-image Recall@K).
//!
//! The training objectives (`[method] name = "clip"`, with a MoCo-style
//! variant) are generic and live in parallax-core.

pub mod captioned;
pub mod clip_layers;
pub mod clip_text;
pub mod clip_vision;
pub mod dual;
pub mod eval;
pub mod hf_config;
pub mod pairs;
pub mod tokens;
