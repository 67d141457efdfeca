//! The test accuracy of a method's own classifier (the supervised baseline:
//! `[[eval]] name = "classifier"`).

use candle_core::{DType, Device};
use serde::Deserialize;

use crate::batch::Batch;
use crate::data::subset::label_of;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::eval::features::{source, subset};
use crate::eval::{EvalCtx, Evaluator};
use crate::nn::encoder::ForwardCtx;

/// `[[eval]] name = "classifier"` options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ClassifierConfig {
    /// Run every this many epochs (0: only at the start and the end).
    every_epochs: usize,
    /// Test on at most this many test examples.
    test_limit: Option<usize>,
}

struct Classifier(ClassifierConfig);

impl Evaluator for Classifier {
    fn every_epochs(&self) -> usize {
        self.0.every_epochs
    }

    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Vec<(String, f64)>> {
        let method = ctx
            .method
            .ok_or_else(|| Error::Recipe("classifier: no method to evaluate".into()))?;
        let test = source(ctx, Split::Test)?;
        let idx = subset(test.len(), self.0.test_limit, ctx.seed, "classifier/test");
        let mut hits = 0usize;
        let mut fctx = ForwardCtx::eval();
        for chunk in idx.chunks(512) {
            let samples = chunk
                .iter()
                .map(|&i| test.get(i))
                .collect::<Result<Vec<_>>>()?;
            let labels: Vec<i64> = samples
                .iter()
                .map(label_of)
                .collect::<Option<_>>()
                .ok_or_else(|| Error::Data("classifier: a test sample has no label".into()))?;
            let batch = Batch::collate(&samples, &Device::Cpu)?.to_device(ctx.device)?;
            let logits = method.logits(&batch, &mut fctx).ok_or_else(|| {
                Error::Recipe(
                    "the classifier evaluator needs a method with a classifier (e.g. `supervised`)"
                        .into(),
                )
            })??;
            let pred = logits.argmax(1)?.to_dtype(DType::I64)?.to_vec1::<i64>()?;
            hits += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
        }
        Ok(vec![(
            "classifier/top1".into(),
            hits as f64 / idx.len().max(1) as f64,
        )])
    }
}

crate::register!(
    evaluator,
    "classifier",
    "test accuracy of the method's own classifier (the supervised baseline)",
    |p, _ctx| Ok(Box::new(Classifier(p.extract()?)))
);
