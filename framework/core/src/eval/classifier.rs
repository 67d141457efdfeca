//! The test accuracy of a method's own classifier (the supervised baseline:
//! `[[eval]] name = "classifier"`).

use serde::Deserialize;

use crate::data::Split;
use crate::error::{Error, Result};
use crate::eval::features::{accuracy, source, subset};
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
        let mut fctx = ForwardCtx::eval();
        let top1 = accuracy(test.as_ref(), &idx, ctx.device, |batch| {
            method.logits(batch, &mut fctx).ok_or_else(|| {
                Error::Recipe(
                    "the classifier evaluator needs a method with a classifier (e.g. `supervised`)"
                        .into(),
                )
            })?
        })?;
        Ok(vec![("classifier/top1".into(), top1)])
    }
}

crate::register!(
    evaluator,
    "classifier",
    "test accuracy of the method's own classifier (the supervised baseline)",
    |p, _ctx| Ok(Box::new(Classifier(p.extract()?)))
);
