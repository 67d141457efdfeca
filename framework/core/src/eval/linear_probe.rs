//! The linear probe: a multinomial logistic regression trained on frozen,
//! standardised features.
//!
//! The protocol of Chen et al. (SimCLR, ICML 2020, appendix B.5) and Kolesnikov
//! et al. ("Revisiting Self-Supervised Visual Representation Learning", CVPR
//! 2019): the encoder is frozen, every feature is standardised with the
//! training set's mean and standard deviation, and a linear classifier is
//! trained with a cross-entropy loss and L2 weight decay. Here it is trained
//! full-batch (or in mini-batches for large sets) with AdamW and a cosine
//! learning-rate decay, from zero weights, so the result is deterministic.

use candle_core::{DType, Device, Tensor, Var};
use serde::Deserialize;

use crate::data::subset::per_class_indices;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::eval::features::{extract, source, subset};
use crate::eval::{EvalCtx, Evaluator};
use crate::optim::adamw::AdamW;
use crate::optim::{AdamWOptions, Optimizer, ParamGroup};

/// How the probe is trained.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Passes over the training features.
    pub epochs: usize,
    /// Peak learning rate of AdamW.
    pub lr: f64,
    /// L2 weight decay on the weights (not the bias).
    pub weight_decay: f64,
    /// Examples per update (0: the whole training set at once).
    pub batch_size: usize,
    /// Standardise every feature (true), or train on the features as they
    /// are (DGI's protocol, Velickovic et al. 2019).
    pub standardize: bool,
    /// How the learning rate moves over the probe's training.
    pub schedule: ProbeSchedule,
}

/// The probe's learning-rate schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeSchedule {
    /// From `lr` down to zero along a half cosine.
    #[default]
    Cosine,
    /// `lr` throughout (DGI's probe: Adam at 0.01 for 100 epochs).
    Constant,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            epochs: 100,
            lr: 0.01,
            weight_decay: 1e-4,
            batch_size: 1024,
            standardize: true,
            schedule: ProbeSchedule::Cosine,
        }
    }
}

/// Per-feature mean and standard deviation of `x [N, D]` (floored at 1e-6).
pub fn standardizer(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let mean = x.mean_keepdim(0)?;
    let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
    Ok((mean, var.sqrt()?.clamp(1e-6, f64::MAX)?))
}

/// A trained linear classifier with its standardisation.
pub struct LinearProbe {
    mean: Tensor,
    std: Tensor,
    weight: Tensor,
    bias: Tensor,
}

impl LinearProbe {
    /// Trains on features `x [N, D]` with labels in `0..num_classes`,
    /// standardised with their own mean and standard deviation (unless
    /// `cfg.standardize` is false).
    pub fn fit(x: &Tensor, labels: &[i64], num_classes: usize, cfg: &ProbeConfig) -> Result<Self> {
        Self::fit_standardized_by(x, labels, num_classes, cfg, None)
    }

    /// As [`LinearProbe::fit`], with the standardisation statistics taken
    /// from `unlabeled [M, D]` when given (e.g. many unlabeled training
    /// examples when only a few are labelled: the statistics need no labels).
    /// With `cfg.standardize` false, `unlabeled` is not used and the
    /// features are taken as they are.
    pub fn fit_standardized_by(
        x: &Tensor,
        labels: &[i64],
        num_classes: usize,
        cfg: &ProbeConfig,
        unlabeled: Option<&Tensor>,
    ) -> Result<Self> {
        let (n, d) = x.dims2()?;
        if n != labels.len() || n == 0 {
            return Err(Error::Shape(format!(
                "linear probe: {n} feature rows but {} labels",
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l < 0 || l as usize >= num_classes) {
            return Err(Error::Data(format!(
                "linear probe: label {bad} is outside 0..{num_classes}"
            )));
        }
        let x = x.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let (mean, std) = match unlabeled {
            _ if !cfg.standardize => (
                Tensor::zeros((1, d), DType::F32, &Device::Cpu)?,
                Tensor::ones((1, d), DType::F32, &Device::Cpu)?,
            ),
            Some(u) => standardizer(&u.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)?,
            None => standardizer(&x)?,
        };
        let xs = x.broadcast_sub(&mean)?.broadcast_div(&std)?;
        let y = Tensor::from_vec(
            labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
            n,
            &Device::Cpu,
        )?;
        let w = Var::zeros((d, num_classes), DType::F32, &Device::Cpu)?;
        let b = Var::zeros(num_classes, DType::F32, &Device::Cpu)?;
        let groups = vec![
            ParamGroup {
                vars: vec![("probe.weight".into(), w.clone())],
                weight_decay: cfg.weight_decay,
                lars_adapt: false,
            },
            ParamGroup {
                vars: vec![("probe.bias".into(), b.clone())],
                weight_decay: 0.0,
                lars_adapt: false,
            },
        ];
        let mut opt = AdamW::new(
            groups,
            AdamWOptions {
                betas: (0.9, 0.999),
                eps: 1e-8,
            },
        )?;
        let bs = if cfg.batch_size == 0 {
            n
        } else {
            cfg.batch_size.min(n)
        };
        let per_epoch = n.div_ceil(bs);
        let total = (cfg.epochs * per_epoch).max(1);
        let mut step = 0;
        for _ in 0..cfg.epochs {
            for start in (0..n).step_by(bs) {
                let len = bs.min(n - start);
                let xb = xs.narrow(0, start, len)?;
                let yb = y.narrow(0, start, len)?;
                let logits = xb.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
                let loss = candle_nn::loss::cross_entropy(&logits, &yb)?;
                let grads = loss.backward()?;
                let lr = match cfg.schedule {
                    ProbeSchedule::Cosine => {
                        cfg.lr
                            * 0.5
                            * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos())
                    }
                    ProbeSchedule::Constant => cfg.lr,
                };
                opt.step(&grads, lr)?;
                step += 1;
            }
        }
        Ok(LinearProbe {
            mean,
            std,
            weight: w.as_tensor().detach(),
            bias: b.as_tensor().detach(),
        })
    }

    /// The weight decay of `grid` with the best `folds`-fold cross-validated
    /// accuracy on the labelled examples themselves (folds stratified by
    /// class: a class's i-th example goes to fold i mod `folds`), with that
    /// accuracy. Ties go to the larger weight decay. No test example is
    /// seen, so the choice is part of the probe, as in Kolesnikov et al.
    /// (2019), who pick the regularisation on held-out training data.
    pub fn select_weight_decay(
        x: &Tensor,
        labels: &[i64],
        num_classes: usize,
        cfg: &ProbeConfig,
        grid: &[f64],
        folds: usize,
        unlabeled: Option<&Tensor>,
    ) -> Result<(f64, f64)> {
        let n = labels.len();
        if folds < 2 || folds > n {
            return Err(Error::Data(format!(
                "linear probe: {folds} cross-validation folds for {n} labelled examples"
            )));
        }
        let mut seen = vec![0usize; num_classes];
        let fold: Vec<usize> = labels
            .iter()
            .map(|&l| {
                let c = (l.max(0) as usize).min(num_classes.saturating_sub(1));
                seen[c] += 1;
                (seen[c] - 1) % folds
            })
            .collect();
        // the folds' training and held-out rows, shared by every candidate
        let mut splits = Vec::with_capacity(folds);
        for f in 0..folds {
            let (train, held): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| fold[i] != f);
            if !train.is_empty() && !held.is_empty() {
                splits.push((
                    select_rows(x, labels, &train)?,
                    select_rows(x, labels, &held)?,
                ));
            }
        }
        let mut best: Option<(f64, f64)> = None;
        for &wd in grid {
            let cfg = ProbeConfig {
                weight_decay: wd,
                ..cfg.clone()
            };
            let mut hits = 0.0;
            for ((tx, ty), (hx, hy)) in &splits {
                let probe = LinearProbe::fit_standardized_by(tx, ty, num_classes, &cfg, unlabeled)?;
                hits += probe.accuracy(hx, hy)? * hy.len() as f64;
            }
            let acc = hits / n as f64;
            let better = match best {
                None => true,
                Some((bw, ba)) => acc > ba + 1e-12 || ((acc - ba).abs() <= 1e-12 && wd > bw),
            };
            if better {
                best = Some((wd, acc));
            }
        }
        best.ok_or_else(|| Error::Data("linear probe: an empty weight_decay_grid".into()))
    }

    /// Predicted classes of `x [N, D]`.
    pub fn predict(&self, x: &Tensor) -> Result<Vec<i64>> {
        let x = x.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let xs = x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?;
        let logits = xs.matmul(&self.weight)?.broadcast_add(&self.bias)?;
        Ok(logits
            .argmax(1)?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|c| c as i64)
            .collect())
    }

    /// The share of `x`'s rows whose predicted class is the label.
    pub fn accuracy(&self, x: &Tensor, labels: &[i64]) -> Result<f64> {
        let pred = self.predict(x)?;
        if pred.len() != labels.len() || pred.is_empty() {
            return Err(Error::Shape(format!(
                "linear probe: {} feature rows but {} labels",
                pred.len(),
                labels.len()
            )));
        }
        let hits = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
        Ok(hits as f64 / labels.len() as f64)
    }
}

/// `[[eval]] name = "linear_probe"` options: a probe trained on the
/// recipe's training split, measured on its test split.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearProbeEvalConfig {
    /// Run every this many epochs (0: only at the start and the end).
    pub every_epochs: usize,
    /// Train on at most this many training examples (a seeded subset).
    pub train_limit: Option<usize>,
    /// Train on this many labelled examples per class instead (chosen by
    /// `label_seed`, the same images as `[train] labels_per_class`).
    pub per_class: Option<usize>,
    /// The seed that picks the `per_class` examples: 0.
    pub label_seed: u64,
    /// With `per_class`: repeat the probe on this many draws of the
    /// labelled examples (seeds `label_seed`, `label_seed + 1`, ...) and
    /// report their mean as `linear_probe/top1`, with `top1_sd` (sample
    /// standard deviation) and each draw's `top1_seed{S}`. Which few
    /// images are labelled moves a 10-per-class probe by a point or more.
    /// Default 1.
    pub label_draws: usize,
    /// With `per_class`: standardise with the statistics of this many
    /// training examples, their labels unused (a seeded subset; 0: the
    /// labelled examples' own statistics). Default 10000.
    pub standardize_on: usize,
    /// L2-normalise the features before standardising them (the geometry
    /// the kNN monitor and the contrastive losses use).
    pub l2_normalize: bool,
    /// Test on at most this many test examples.
    pub test_limit: Option<usize>,
    /// Batch size for feature extraction.
    pub extract_batch_size: usize,
    /// Passes of the probe's training over the features.
    pub epochs: usize,
    /// The probe's peak learning rate (AdamW, cosine decay).
    pub lr: f64,
    /// The probe's L2 weight decay.
    pub weight_decay: f64,
    /// When not empty: candidate weight decays, one chosen for each probe
    /// by `cv_folds`-fold cross-validation on its labelled training
    /// examples (replaces `weight_decay`; reported as
    /// `linear_probe/weight_decay`). Empty by default.
    pub weight_decay_grid: Vec<f64>,
    /// Folds of that cross-validation: 5.
    pub cv_folds: usize,
    /// Examples per probe update (0: all at once).
    pub batch_size: usize,
}

impl LinearProbeEvalConfig {
    /// The probe's training settings.
    pub fn probe(&self) -> ProbeConfig {
        ProbeConfig {
            epochs: self.epochs,
            lr: self.lr,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            ..ProbeConfig::default()
        }
    }
}

impl Default for LinearProbeEvalConfig {
    fn default() -> Self {
        LinearProbeEvalConfig {
            every_epochs: 0,
            train_limit: None,
            per_class: None,
            label_seed: 0,
            label_draws: 1,
            standardize_on: 10000,
            l2_normalize: false,
            test_limit: None,
            extract_batch_size: 512,
            epochs: ProbeConfig::default().epochs,
            lr: ProbeConfig::default().lr,
            weight_decay: ProbeConfig::default().weight_decay,
            weight_decay_grid: Vec::new(),
            cv_folds: 5,
            batch_size: ProbeConfig::default().batch_size,
        }
    }
}

struct LinearProbeEval(LinearProbeEvalConfig);

impl Evaluator for LinearProbeEval {
    fn every_epochs(&self) -> usize {
        self.0.every_epochs
    }

    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Vec<(String, f64)>> {
        let c = &self.0;
        let classes = ctx.meta.num_classes.ok_or_else(|| {
            Error::Data("linear_probe needs a data source with labels (num_classes)".into())
        })?;
        let train = source(ctx, Split::Train)?;
        let test = source(ctx, Split::Test)?;
        let qi = subset(test.len(), c.test_limit, ctx.seed, "probe/test");
        let (qx, qy) = extract(
            ctx.encoder,
            test.as_ref(),
            &qi,
            ctx.device,
            c.extract_batch_size,
        )?;
        let l2 = |x: Tensor| -> Result<Tensor> {
            if c.l2_normalize {
                Ok(crate::losses::l2_normalize(&x)?)
            } else {
                Ok(x)
            }
        };
        let qx = l2(qx)?;
        let stats = match c.per_class {
            Some(_) if c.standardize_on > 0 => {
                let ui = subset(train.len(), Some(c.standardize_on), ctx.seed, "probe/stats");
                Some(l2(extract(
                    ctx.encoder,
                    train.as_ref(),
                    &ui,
                    ctx.device,
                    c.extract_batch_size,
                )?
                .0)?)
            }
            _ => None,
        };
        let draws: Vec<Option<u64>> = match c.per_class {
            Some(_) => (0..c.label_draws as u64)
                .map(|d| Some(c.label_seed + d))
                .collect(),
            None => vec![None],
        };
        let mut accs = Vec::with_capacity(draws.len());
        let mut decays = Vec::with_capacity(draws.len());
        for seed in &draws {
            let ti = match (c.per_class, seed) {
                (Some(k), Some(seed)) => per_class_indices(train.as_ref(), k, *seed)?,
                _ => subset(train.len(), c.train_limit, ctx.seed, "probe/train"),
            };
            let (tx, ty) = extract(
                ctx.encoder,
                train.as_ref(),
                &ti,
                ctx.device,
                c.extract_batch_size,
            )?;
            let tx = l2(tx)?;
            let mut cfg = c.probe();
            if !c.weight_decay_grid.is_empty() {
                cfg.weight_decay = LinearProbe::select_weight_decay(
                    &tx,
                    &ty,
                    classes,
                    &cfg,
                    &c.weight_decay_grid,
                    c.cv_folds,
                    stats.as_ref(),
                )?
                .0;
                decays.push(cfg.weight_decay);
            }
            let probe = LinearProbe::fit_standardized_by(&tx, &ty, classes, &cfg, stats.as_ref())?;
            accs.push(probe.accuracy(&qx, &qy)?);
        }
        let mut out = draw_metrics("linear_probe", &draws, &accs);
        if !decays.is_empty() {
            // the chosen weight decays' geometric mean (one value per draw)
            let log_mean =
                decays.iter().map(|w| w.max(1e-12).ln()).sum::<f64>() / decays.len() as f64;
            out.push(("linear_probe/weight_decay".into(), log_mean.exp()));
        }
        Ok(out)
    }
}

/// The rows `idx` of features `x [N, D]` and their labels (a fold of a
/// cross-validation).
pub fn select_rows(x: &Tensor, labels: &[i64], idx: &[usize]) -> Result<(Tensor, Vec<i64>)> {
    let ids = Tensor::from_vec(
        idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        idx.len(),
        x.device(),
    )?;
    Ok((
        x.index_select(&ids, 0)?,
        idx.iter().map(|&i| labels[i]).collect(),
    ))
}

/// `{name}/top1` (the mean over the label draws) and, with more than one
/// draw, `{name}/top1_sd` and each draw's `{name}/top1_seed{S}`.
pub fn draw_metrics(name: &str, seeds: &[Option<u64>], accs: &[f64]) -> Vec<(String, f64)> {
    let n = accs.len().max(1) as f64;
    let mean = accs.iter().sum::<f64>() / n;
    let mut out = vec![(format!("{name}/top1"), mean)];
    if accs.len() > 1 {
        let var = accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0);
        out.push((format!("{name}/top1_sd"), var.sqrt()));
        for (seed, a) in seeds.iter().zip(accs) {
            if let Some(seed) = seed {
                out.push((format!("{name}/top1_seed{seed}"), *a));
            }
        }
    }
    out
}

crate::register!(
    evaluator,
    "linear_probe",
    "logistic regression on frozen, standardised features: train split -> test split accuracy",
    |p, _ctx| {
        let c: LinearProbeEvalConfig = p.extract()?;
        if c.epochs == 0 || c.lr.is_nan() || c.lr <= 0.0 {
            return Err(p.error("epochs", "epochs and lr must be positive"));
        }
        if c.per_class == Some(0) {
            return Err(p.error("per_class", "must be at least 1"));
        }
        if c.label_draws == 0 {
            return Err(p.error("label_draws", "must be at least 1"));
        }
        if c.label_draws > 1 && c.per_class.is_none() {
            return Err(p.error("label_draws", "needs per_class"));
        }
        if c.weight_decay_grid
            .iter()
            .any(|w| !w.is_finite() || *w < 0.0)
        {
            return Err(p.error("weight_decay_grid", "weight decays must be finite and >= 0"));
        }
        if !c.weight_decay_grid.is_empty()
            && (c.cv_folds < 2 || c.per_class.is_some_and(|k| c.cv_folds > k))
        {
            return Err(p.error(
                "cv_folds",
                "must be at least 2 and at most per_class (each fold holds every class)",
            ));
        }
        Ok(Box::new(LinearProbeEval(c)))
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// `n` standard-normal points in `d` dimensions (seed `seed`), point i
    /// of class `i % classes`, class c shifted by `shift` along axis c.
    fn shifted_blobs(
        seed: u64,
        n: usize,
        d: usize,
        classes: usize,
        shift: f32,
    ) -> (Tensor, Vec<i64>) {
        let mut rng = Rng::new(seed);
        let mut xs = Vec::with_capacity(n * d);
        let mut ys = Vec::with_capacity(n);
        for i in 0..n {
            let c = i % classes;
            for j in 0..d {
                xs.push(rng.normal() + if j == c { shift } else { 0.0 });
            }
            ys.push(c as i64);
        }
        (Tensor::from_vec(xs, (n, d), &Device::Cpu).unwrap(), ys)
    }

    #[test]
    fn separates_linearly_separable_classes_and_not_noise() {
        // three Gaussian blobs in 5-D, shifted along different axes
        let mut rng = Rng::new(3);
        let (n, d) = (150, 5);
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..n {
            let c = i % 3;
            for j in 0..d {
                let shift = if j == c { 3.0 } else { 0.0 };
                xs.push(rng.normal() + shift);
            }
            ys.push(c as i64);
        }
        let x = Tensor::from_vec(xs, (n, d), &Device::Cpu).unwrap();
        let probe = LinearProbe::fit(&x, &ys, 3, &ProbeConfig::default()).unwrap();
        let acc = probe.accuracy(&x, &ys).unwrap();
        assert!(acc > 0.9, "accuracy {acc}");
        // labels unrelated to the features: a probe evaluated on fresh noise is near chance
        let noise = Tensor::from_vec(
            (0..n * d).map(|_| rng.normal()).collect::<Vec<_>>(),
            (n, d),
            &Device::Cpu,
        )
        .unwrap();
        let acc = probe.accuracy(&noise, &ys).unwrap();
        assert!(acc < 0.6, "accuracy on noise {acc}");
        assert!(LinearProbe::fit(&x, &ys, 2, &ProbeConfig::default()).is_err());
    }

    #[test]
    fn draw_metrics_report_the_mean_spread_and_each_draw() {
        let one = draw_metrics("p", &[Some(0)], &[0.5]);
        assert_eq!(one, vec![("p/top1".to_string(), 0.5)]);
        let three = draw_metrics("p", &[Some(4), Some(5), Some(6)], &[0.6, 0.7, 0.8]);
        let get = |k: &str| three.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert!((get("p/top1").unwrap() - 0.7).abs() < 1e-12);
        assert!((get("p/top1_sd").unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(get("p/top1_seed5"), Some(0.7));
        assert_eq!(three.len(), 5);
    }

    #[test]
    fn cross_validation_picks_the_weight_decay_that_generalises() {
        // 4 classes x 10 examples: class c is shifted along axis c, the
        // other 8 axes are noise
        let (x, ys) = shifted_blobs(5, 40, 12, 4, 3.0);
        let cfg = ProbeConfig::default();
        let cv = |grid: &[f64]| {
            LinearProbe::select_weight_decay(&x, &ys, 4, &cfg, grid, 5, None).unwrap()
        };
        // each candidate's held-out accuracy; the grid keeps the best one
        let (a, b) = (cv(&[1e-4]).1, cv(&[50.0]).1);
        assert!(a > 0.6, "held-out accuracy {a}");
        assert!(a != b, "the two decays should differ here: {a} {b}");
        let want = if a > b { 1e-4 } else { 50.0 };
        assert_eq!(cv(&[1e-4, 50.0]), (want, a.max(b)));
        assert_eq!(cv(&[50.0, 1e-4]), (want, a.max(b)));
        // equal candidates tie: the larger one is kept
        let (wd, _) =
            LinearProbe::select_weight_decay(&x, &ys, 4, &cfg, &[0.5, 0.5 + 1e-9], 5, None)
                .unwrap();
        assert_eq!(wd, 0.5 + 1e-9);
        assert!(LinearProbe::select_weight_decay(&x, &ys, 4, &cfg, &[0.1], 1, None).is_err());
        assert!(LinearProbe::select_weight_decay(&x, &ys, 4, &cfg, &[], 5, None).is_err());
    }

    #[test]
    fn raw_features_and_a_constant_rate_are_options() {
        let (x, ys) = shifted_blobs(7, 60, 4, 3, 2.0);
        let x100 = x.affine(100.0, 0.0).unwrap();
        let weights = |x: &Tensor, cfg: &ProbeConfig| {
            let p = LinearProbe::fit(x, &ys, 3, cfg).unwrap();
            p.weight.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let gap = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        };
        let standard = ProbeConfig {
            epochs: 20,
            batch_size: 0,
            weight_decay: 0.0,
            ..ProbeConfig::default()
        };
        // standardised, the probe does not see the features' scale ...
        let (a, b) = (weights(&x, &standard), weights(&x100, &standard));
        assert!(gap(&a, &b) < 1e-4, "{a:?} {b:?}");
        // ... as they are, it does
        let raw = ProbeConfig {
            standardize: false,
            ..standard.clone()
        };
        let (a, b) = (weights(&x, &raw), weights(&x100, &raw));
        assert!(gap(&a, &b) > 1e-3, "{a:?} {b:?}");
        // on raw features, Adam's first step from zero moves every weight
        // by the learning rate
        let one = weights(
            &x,
            &ProbeConfig {
                epochs: 1,
                lr: 0.01,
                ..raw.clone()
            },
        );
        assert!(one.iter().all(|w| (w.abs() - 0.01).abs() < 1e-5), "{one:?}");
        // the cosine schedule's second of two steps is half the constant one's
        let two = |schedule| {
            let w = weights(
                &x,
                &ProbeConfig {
                    epochs: 2,
                    schedule,
                    ..raw.clone()
                },
            );
            w.iter().map(|v| v.abs()).sum::<f32>()
        };
        let (constant, cosine) = (two(ProbeSchedule::Constant), two(ProbeSchedule::Cosine));
        assert!(constant > cosine + 1e-3, "{constant} {cosine}");
    }
}
