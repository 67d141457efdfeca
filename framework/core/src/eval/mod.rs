//! Evaluators: measure the encoder during and after training.

pub mod classifier;
pub mod features;
pub mod finetune;
pub mod knn;
pub mod linear_probe;
pub mod representation;

use candle_core::Device;

use crate::data::DataMeta;
use crate::error::Result;
use crate::nn::encoder::Encoder;
use crate::recipe::Component;

/// What an evaluator can use.
pub struct EvalCtx<'a> {
    /// The encoder to evaluate (in evaluation mode).
    pub encoder: &'a dyn Encoder,
    /// The recipe's `[data]` component: evaluators build its train and test splits.
    pub data: &'a Component,
    /// The recipe's `[encoder]` component (text sources take their tokenizer from it).
    pub encoder_spec: &'a Component,
    /// The training data's description.
    pub meta: &'a DataMeta,
    /// Where to compute.
    pub device: &'a Device,
    /// The run's seed.
    pub seed: u64,
    /// The base folder for relative paths.
    pub base_dir: std::path::PathBuf,
    /// The trained variables (`encoder.*`, ...), for evaluators that copy
    /// the encoder (fine-tuning).
    pub store: Option<&'a crate::nn::init::VarStore>,
    /// The method, for evaluators of its own outputs (a classifier's logits).
    pub method: Option<&'a dyn crate::methods::Method>,
}

/// An evaluator (kNN, linear probe, ...).
pub trait Evaluator: Send {
    /// Evaluate every this many epochs (0: only at the end).
    fn every_epochs(&self) -> usize;
    /// Runs the evaluation; returns named metrics (`knn/top1`, ...).
    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Vec<(String, f64)>>;
}
