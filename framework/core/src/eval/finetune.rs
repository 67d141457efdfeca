//! Few-label fine-tuning: a copy of the trained encoder and a linear
//! classifier trained end to end on `per_class` labelled examples per class,
//! measured on the test split.
//!
//! The semi-supervised protocol of SimCLR (Chen et al. 2020, section 7 and
//! appendix B.5: fine-tune on 1% / 10% of the labels) scaled to a handful of
//! labels: the whole network is trained with AdamW and a cosine decay, the
//! encoder at `encoder_lr_scale` times the head's learning rate, on views
//! from `[eval.views]` (by default the plain images). The trained run's
//! variables are left untouched: the evaluator builds its own encoder from
//! the recipe and copies the weights into it.

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::batch::Batch;
use crate::data::subset::{label_of, per_class_indices};
use crate::data::{BuildCtx, Split};
use crate::error::{Error, Result};
use crate::eval::features::{accuracy, source, subset};
use crate::eval::{EvalCtx, Evaluator};
use crate::nn::encoder::{EncoderCtx, ForwardCtx};
use crate::nn::init::VarStore;
use crate::ops::softmax::log_softmax_last_dim;
use crate::optim::adamw::AdamW;
use crate::optim::{AdamWOptions, Optimizer, ParamGroup};
use crate::recipe::Component;
use crate::registry;
use crate::rng::Rng;
use crate::views::ViewGenerator;

/// `[[eval]] name = "finetune"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FinetuneConfig {
    /// Run every this many epochs (0: only at the start and the end).
    every_epochs: usize,
    /// Labelled training examples per class: 10.
    per_class: usize,
    /// The seed that picks them (as `[train] label_seed`): 0.
    label_seed: u64,
    /// Passes over the labelled examples: 100.
    epochs: usize,
    /// Examples per step: 64.
    batch_size: usize,
    /// The head's peak learning rate (AdamW, cosine decay, on standardised
    /// features): 1e-2.
    lr: f64,
    /// The encoder's learning rate relative to the head's: 0.1.
    encoder_lr_scale: f64,
    /// Weight decay: 1e-4.
    weight_decay: f64,
    /// Test on at most this many test examples.
    test_limit: Option<usize>,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            every_epochs: 0,
            per_class: 10,
            label_seed: 0,
            epochs: 100,
            batch_size: 64,
            lr: 1e-2,
            encoder_lr_scale: 0.1,
            weight_decay: 1e-4,
            test_limit: None,
        }
    }
}

struct Finetune {
    cfg: FinetuneConfig,
    views: Option<Component>,
}

impl Evaluator for Finetune {
    fn every_epochs(&self) -> usize {
        self.cfg.every_epochs
    }

    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Vec<(String, f64)>> {
        let c = &self.cfg;
        let classes = ctx.meta.num_classes.filter(|&k| k > 1).ok_or_else(|| {
            Error::Data("finetune needs a data source with labels (num_classes)".into())
        })?;
        let trained = ctx.store.ok_or_else(|| {
            Error::Recipe(
                "finetune needs the trained variables (run it from `train` or `eval`)".into(),
            )
        })?;
        let train = source(ctx, Split::Train)?;
        let test = source(ctx, Split::Test)?;
        let ti = per_class_indices(train.as_ref(), c.per_class, c.label_seed)?;
        let views: Option<std::sync::Arc<dyn ViewGenerator>> = match &self.views {
            Some(v) => {
                let mut b = BuildCtx::new(ctx.seed, Split::Train);
                b.meta = ctx.meta.clone();
                b.base_dir = ctx.base_dir.clone();
                Some((registry::views(&v.name)?.build)(&v.params, &b)?)
            }
            None => None,
        };

        // a fresh copy of the encoder, a linear head
        let store = VarStore::new(ctx.seed);
        let vb = store.var_builder(DType::F32, ctx.device);
        let spec = ctx.encoder_spec;
        let encoder = (registry::encoder(&spec.name)?.build)(
            &spec.params,
            &EncoderCtx {
                meta: ctx.meta.clone(),
            },
            vb.pp("encoder"),
        )?;
        for (name, var) in store.named_vars() {
            let src = trained.get_var(&name).ok_or_else(|| {
                Error::Recipe(format!(
                    "finetune: the trained run has no variable `{name}`"
                ))
            })?;
            var.set(&src.as_tensor().to_dtype(var.dtype())?)?;
        }
        // the head sees features standardised with the statistics of the
        // starting encoder on the labelled examples (as the linear probe
        // does), so one learning rate suits any encoder's feature scale
        let (fx, _) =
            crate::eval::features::extract(encoder.as_ref(), train.as_ref(), &ti, ctx.device, 512)?;
        let (mean, std) = crate::eval::linear_probe::standardizer(&fx)?;
        let (mean, std) = (mean.to_device(ctx.device)?, std.to_device(ctx.device)?);
        let standardize =
            |h: &Tensor| -> Result<Tensor> { Ok(h.broadcast_sub(&mean)?.broadcast_div(&std)?) };
        let head = candle_nn::linear(encoder.output_dim(), classes, vb.pp("finetune_head"))?;
        let (mut enc_vars, mut head_vars) = (Vec::new(), Vec::new());
        for (name, var) in store.named_vars() {
            if name.ends_with("running_mean") || name.ends_with("running_var") {
                continue;
            }
            if name.starts_with("finetune_head") {
                head_vars.push((name, var));
            } else {
                enc_vars.push((name, var));
            }
        }
        let scale = c.encoder_lr_scale;
        let adam = |vars: Vec<(String, candle_core::Var)>| {
            AdamW::new(
                vec![ParamGroup {
                    vars,
                    weight_decay: c.weight_decay,
                    lars_adapt: false,
                }],
                AdamWOptions {
                    betas: (0.9, 0.999),
                    eps: 1e-8,
                },
            )
        };
        let mut head_opt = adam(head_vars)?;
        let mut enc_opt = adam(enc_vars)?;
        let n = ti.len();
        let bs = c.batch_size.clamp(1, n);
        let total = (c.epochs * n.div_ceil(bs)).max(1);
        let mut step = 0usize;
        let mut rng = Rng::derive(ctx.seed, "finetune", &[]);
        for epoch in 0..c.epochs {
            let order = rng.permutation(n);
            for chunk in order.chunks(bs) {
                let mut samples = Vec::with_capacity(chunk.len());
                for (j, &o) in chunk.iter().enumerate() {
                    let s = train.get(ti[o])?;
                    let s = match &views {
                        Some(v) => {
                            let mut r = Rng::derive(
                                ctx.seed,
                                "finetune/views",
                                &[epoch as u64, j as u64, o as u64],
                            );
                            v.generate(&s, &mut r)?.swap_remove(0)
                        }
                        None => s,
                    };
                    samples.push(s);
                }
                let labels: Vec<u32> = samples
                    .iter()
                    .map(|s| label_of(s).map(|l| l as u32))
                    .collect::<Option<_>>()
                    .ok_or_else(|| Error::Data("finetune: a sample has no label".into()))?;
                let batch = Batch::collate(&samples, &Device::Cpu)?.to_device(ctx.device)?;
                let mut fctx =
                    ForwardCtx::train(Rng::derive(ctx.seed, "finetune/step", &[step as u64]));
                let h = encoder.forward(&batch, &mut fctx)?;
                let logits = candle_nn::Module::forward(&head, &standardize(&h)?)?;
                let y = Tensor::new(labels.as_slice(), ctx.device)?;
                let logp = log_softmax_last_dim(&logits)?;
                let loss = logp.gather(&y.unsqueeze(1)?, 1)?.mean_all()?.neg()?;
                let grads = loss.backward()?;
                let lr =
                    c.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
                head_opt.step(&grads, lr)?;
                enc_opt.step(&grads, lr * scale)?;
                step += 1;
            }
        }

        // test accuracy
        let qi = subset(test.len(), c.test_limit, ctx.seed, "finetune/test");
        let mut ectx = ForwardCtx::eval();
        let top1 = accuracy(test.as_ref(), &qi, ctx.device, |batch| {
            let h = encoder.forward(batch, &mut ectx)?;
            Ok(candle_nn::Module::forward(&head, &standardize(&h)?)?)
        })?;
        Ok(vec![("finetune/top1".into(), top1)])
    }
}

crate::register!(
    evaluator,
    "finetune",
    "few-label fine-tuning: a copy of the encoder + linear head trained on k labels per class",
    |p, _ctx| {
        let mut p = p.clone();
        let views = p.take_component("views")?;
        let c: FinetuneConfig = p.extract()?;
        if c.per_class == 0 || c.epochs == 0 || c.lr.is_nan() || c.lr <= 0.0 {
            return Err(p.error("per_class", "per_class, epochs and lr must be positive"));
        }
        Ok(Box::new(Finetune { cfg: c, views }))
    }
);
