//! The supervised baseline: the same encoder, a linear classifier and the
//! cross-entropy on the data's labels, with optional MixUp and CutMix.
//!
//! MixUp: Zhang, Cisse, Dauphin, Lopez-Paz, "mixup: Beyond Empirical Risk
//! Minimization", ICLR 2018 (images and one-hot targets mixed with
//! `lambda ~ Beta(alpha, alpha)`). CutMix: Yun et al., "CutMix:
//! Regularization Strategy to Train Strong Classifiers with Localizable
//! Features", ICCV 2019 (a box of area `1 - lambda` pasted from another
//! image of the batch, targets mixed by the box's actual area, alpha = 1).
//! Both are off by default; with both on, each batch uses one of them
//! (probability `switch_prob` for CutMix, as timm does). Mixing pairs each
//! image with another of the batch (a seeded permutation) and needs an
//! `image` field `[B, C, H, W]`. Use one view (`[views] views = 1`) for the
//! classical set-up; with `views = n` (here and in `[views]`) every view
//! is a training example.

use candle_core::{DType, Tensor};
use rand::Rng as _;
use rand_distr::{Beta, Distribution};
use serde::Deserialize;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::losses::l2_normalize;
use crate::methods::simclr::concat_batches;
use crate::methods::{build_head_at, head_spec, Method, MethodCtx, StepOutput};
use crate::nn::encoder::{Encoder, ForwardCtx, Head};
use crate::ops::softmax::log_softmax_last_dim;
use crate::rng::Rng;

/// `[method] name = "supervised"` options (the classifier is
/// `[method.classifier]`, one linear layer to the number of classes by
/// default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SupervisedConfig {
    /// MixUp's Beta parameter (0: off; the paper uses 0.2-1).
    mixup_alpha: f64,
    /// CutMix's Beta parameter (0: off; the paper uses 1).
    cutmix_alpha: f64,
    /// Probability that a batch is mixed at all: 1.
    mix_prob: f64,
    /// With both on, the probability of CutMix rather than MixUp: 0.5.
    switch_prob: f64,
    /// Label smoothing of the targets (Szegedy et al. 2016): 0.
    label_smoothing: f64,
    /// Views per image (each is a training example): 1.
    views: usize,
}

impl Default for SupervisedConfig {
    fn default() -> Self {
        SupervisedConfig {
            mixup_alpha: 0.0,
            cutmix_alpha: 0.0,
            mix_prob: 1.0,
            switch_prob: 0.5,
            label_smoothing: 0.0,
            views: 1,
        }
    }
}

/// The supervised baseline.
pub struct Supervised {
    encoder: Box<dyn Encoder>,
    classifier: Box<dyn Head>,
    classes: usize,
    cfg: SupervisedConfig,
}

impl Supervised {
    fn build(mut ctx: MethodCtx) -> Result<Self> {
        let classifier = ctx.params.take_component("classifier")?;
        let cfg: SupervisedConfig = ctx.params.extract()?;
        for (k, v) in [
            ("mixup_alpha", cfg.mixup_alpha),
            ("cutmix_alpha", cfg.cutmix_alpha),
        ] {
            if v.is_nan() || v < 0.0 {
                return Err(ctx.params.error(k, format!("must be >= 0, got {v}")));
            }
        }
        for (k, v) in [
            ("mix_prob", cfg.mix_prob),
            ("switch_prob", cfg.switch_prob),
            ("label_smoothing", cfg.label_smoothing),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ctx.params.error(k, format!("must be in [0, 1], got {v}")));
            }
        }
        if cfg.views == 0 {
            return Err(ctx.params.error("views", "must be at least 1"));
        }
        if ctx.loss.is_some() {
            return Err(Error::Recipe(
                "supervised trains with the cross-entropy: remove the [loss] section".into(),
            ));
        }
        let classes = ctx.meta.num_classes.filter(|&c| c > 1).ok_or_else(|| {
            Error::Data("supervised needs a data source with labels (num_classes >= 2)".into())
        })?;
        let mut defaults = toml::Table::new();
        defaults.insert("dim".into(), (classes as i64).into());
        let spec = head_spec(&ctx, classifier, "classifier", "linear", defaults)?;
        let classifier = build_head_at(&spec, ctx.encoder.output_dim(), ctx.vb.pp("classifier"))?;
        if classifier.output_dim() != classes {
            return Err(ctx.params.error(
                "classifier",
                format!(
                    "must output one logit per class ({classes}), gives {}",
                    classifier.output_dim()
                ),
            ));
        }
        Ok(Supervised {
            encoder: ctx.encoder,
            classifier,
            classes,
            cfg,
        })
    }

    /// One-hot (smoothed) targets `[B, K]` of integer labels.
    fn targets(&self, labels: &[i64], device: &candle_core::Device) -> Result<Tensor> {
        let k = self.classes;
        let eps = self.cfg.label_smoothing;
        let mut t = vec![(eps / k as f64) as f32; labels.len() * k];
        for (i, &l) in labels.iter().enumerate() {
            if l < 0 || l as usize >= k {
                return Err(Error::Data(format!(
                    "supervised: label {l} is outside 0..{k}"
                )));
            }
            t[i * k + l as usize] += (1.0 - eps) as f32;
        }
        Ok(Tensor::from_vec(t, (labels.len(), k), device)?)
    }
}

/// Mixes `images [B, C, H, W]` and `targets [B, K]` in place of a batch:
/// MixUp or CutMix with a partner from `perm`. Returns the mixed pair and
/// the weight of the original images.
pub fn mix(
    images: &Tensor,
    targets: &Tensor,
    perm: &[usize],
    cutmix: bool,
    lambda: f64,
    rng: &mut Rng,
) -> Result<(Tensor, Tensor, f64)> {
    let dev = images.device();
    let idx = Tensor::from_vec(
        perm.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        perm.len(),
        dev,
    )?;
    let other = images.index_select(&idx, 0)?;
    let other_t = targets.index_select(&idx, 0)?;
    let lam = if cutmix {
        let (_, _, h, w) = images.dims4()?;
        let cut = (1.0 - lambda).sqrt();
        let (ch, cw) = ((h as f64 * cut) as usize, (w as f64 * cut) as usize);
        let cy = (rng.uniform() as f64 * h as f64) as usize;
        let cx = (rng.uniform() as f64 * w as f64) as usize;
        let (y0, y1) = (cy.saturating_sub(ch / 2), (cy + ch / 2).min(h));
        let (x0, x1) = (cx.saturating_sub(cw / 2), (cx + cw / 2).min(w));
        let mut mask = vec![0f32; h * w];
        for y in y0..y1 {
            for x in x0..x1 {
                mask[y * w + x] = 1.0;
            }
        }
        let lam = 1.0 - ((y1 - y0) * (x1 - x0)) as f64 / (h * w) as f64;
        let mask = Tensor::from_vec(mask, (1, 1, h, w), dev)?.to_dtype(images.dtype())?;
        let keep = mask.affine(-1.0, 1.0)?;
        let mixed = (images.broadcast_mul(&keep)? + other.broadcast_mul(&mask)?)?;
        return Ok((mixed, ((targets * lam)? + (other_t * (1.0 - lam))?)?, lam));
    } else {
        lambda
    };
    Ok((
        ((images * lam)? + (other * (1.0 - lam))?)?,
        ((targets * lam)? + (other_t * (1.0 - lam))?)?,
        lam,
    ))
}

fn beta(alpha: f64, rng: &mut Rng) -> f64 {
    match Beta::new(alpha, alpha) {
        Ok(b) => b.sample(rng.core()),
        Err(_) => 1.0,
    }
}

impl Method for Supervised {
    fn step(&mut self, views: &[Batch], ctx: &mut ForwardCtx) -> Result<StepOutput> {
        let batch = if views.len() == 1 {
            views[0].clone()
        } else {
            concat_batches(views)?
        };
        let labels: Vec<i64> = batch
            .get("label")
            .map_err(|_| Error::Data("supervised needs samples with a `label`".into()))?
            .flatten_all()?
            .to_dtype(DType::I64)?
            .to_vec1()?;
        let mut targets = self.targets(&labels, &ctx_device(&batch)?)?;
        let (mu, cm) = (self.cfg.mixup_alpha > 0.0, self.cfg.cutmix_alpha > 0.0);
        let mut batch = batch;
        let mut scalars = Vec::new();
        if (mu || cm) && ctx.rng.core().random::<f64>() < self.cfg.mix_prob {
            let use_cutmix = cm && (!mu || ctx.rng.core().random::<f64>() < self.cfg.switch_prob);
            let alpha = if use_cutmix {
                self.cfg.cutmix_alpha
            } else {
                self.cfg.mixup_alpha
            };
            let lambda = beta(alpha, &mut ctx.rng);
            let perm = ctx.rng.permutation(labels.len());
            let images = batch.get("image").map_err(|_| {
                Error::Data("mixup / cutmix need an `image` field [B, C, H, W]".into())
            })?;
            let (x, t, lam) = mix(images, &targets, &perm, use_cutmix, lambda, &mut ctx.rng)?;
            batch.tensors.insert("image".into(), x);
            targets = t;
            scalars.push(("train/mix_lambda".to_string(), lam));
        }
        let h = self.encoder.forward(&batch, ctx)?;
        let logits = self.classifier.forward(&h, ctx)?;
        let logp = log_softmax_last_dim(&logits)?;
        let loss = targets.mul(&logp)?.sum(1)?.mean_all()?.neg()?;
        let pred = logits
            .detach()
            .argmax(1)?
            .to_dtype(DType::I64)?
            .to_vec1::<i64>()?;
        let acc = pred.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64
            / labels.len().max(1) as f64;
        scalars.push(("train/accuracy".to_string(), acc));
        Ok(StepOutput {
            loss,
            scalars,
            embeddings: Some(l2_normalize(&h.detach())?),
            pair: None,
        })
    }

    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    fn num_views(&self) -> usize {
        self.cfg.views
    }

    fn logits(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Option<Result<Tensor>> {
        Some(
            self.encoder
                .forward(batch, ctx)
                .and_then(|h| self.classifier.forward(&h, ctx)),
        )
    }
}

fn ctx_device(b: &Batch) -> Result<candle_core::Device> {
    b.tensors
        .values()
        .next()
        .map(|t| t.device().clone())
        .ok_or_else(|| Error::Data("supervised: an empty batch".into()))
}

crate::register!(
    method,
    "supervised",
    "supervised baseline: linear classifier + cross-entropy, optional MixUp / CutMix",
    |ctx| Ok(Box::new(Supervised::build(ctx)?))
);

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn setup() -> (Tensor, Tensor) {
        // image i is the constant i; targets one-hot of i
        let imgs: Vec<f32> = (0..4).flat_map(|i| vec![i as f32; 2 * 8 * 8]).collect();
        let x = Tensor::from_vec(imgs, (4, 2, 8, 8), &Device::Cpu).unwrap();
        let mut t = vec![0f32; 16];
        for i in 0..4 {
            t[i * 4 + i] = 1.0;
        }
        (x, Tensor::from_vec(t, (4, 4), &Device::Cpu).unwrap())
    }

    #[test]
    fn mixup_mixes_images_and_targets_with_the_same_weight() {
        let (x, t) = setup();
        let perm = [1, 2, 3, 0];
        let (m, mt, lam) = mix(&x, &t, &perm, false, 0.3, &mut Rng::new(0)).unwrap();
        assert_eq!(lam, 0.3);
        let v = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // image 0 = 0.3 * 0 + 0.7 * 1
        assert!((v[0] - 0.7).abs() < 1e-6);
        let tv = mt.to_vec2::<f32>().unwrap();
        assert!((tv[0][0] - 0.3).abs() < 1e-6 && (tv[0][1] - 0.7).abs() < 1e-6);
        for row in &tv {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn cutmix_weights_targets_by_the_pasted_area() {
        let (x, t) = setup();
        let perm = [3, 0, 1, 2];
        for seed in 0..5 {
            let (m, mt, lam) = mix(&x, &t, &perm, true, 0.6, &mut Rng::new(seed)).unwrap();
            // image 1 holds 1s, pasted pixels come from image 0 (zeros)
            let img = m
                .get(1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let pasted = img.iter().filter(|&&p| p == 0.0).count() as f64 / img.len() as f64;
            assert!(
                (1.0 - pasted - lam).abs() < 1e-9,
                "lam {lam}, pasted {pasted}"
            );
            let tv = mt.to_vec2::<f32>().unwrap();
            assert!(
                (tv[1][1] as f64 - lam).abs() < 1e-6
                    && (tv[1][0] as f64 - (1.0 - lam)).abs() < 1e-6
            );
        }
    }
}
