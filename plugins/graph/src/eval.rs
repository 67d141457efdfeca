//! Node-classification evaluators of graph methods:
//!
//! - `node_probe`: a logistic-regression probe (the core's
//!   [`LinearProbe`]) on the frozen node embeddings, either on the public
//!   split (DGI's protocol: train on its training nodes, test on its test
//!   nodes) or on random 10% / 10% / 80% train / validation / test splits
//!   of the labelled nodes (GRACE's protocol), mean and standard deviation
//!   over the splits. The probe's weight decay is picked on the validation
//!   nodes; its inputs are standardised with the mean and deviation of
//!   every node's embedding (no labels are needed for them), or, with
//!   `standardize = false`, taken as they are. DGI's recipes use the DGI
//!   code's probe: raw embeddings, no weight decay, 100 Adam epochs at a
//!   constant 0.01.
//! - `node_classifier`: the test accuracy of a method that trains a
//!   classifier (the supervised GCN).

use candle_core::{Device, Tensor};
use parallax_core::eval::linear_probe::{select_rows, LinearProbe, ProbeConfig, ProbeSchedule};
use parallax_core::graph::{Graph, GraphEvalCtx, GraphEvaluator};
use parallax_core::losses::l2_normalize;
use parallax_core::recipe::Params;
use parallax_core::rng::Rng;
use parallax_core::trainer::spread;
use parallax_core::{Error, Result};
use serde::Deserialize;

/// `[[eval]] name = "node_probe"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeProbeConfig {
    /// `public` (the data set's split) or `random` (random splits).
    pub protocol: String,
    /// Number of random splits (GRACE: 20).
    pub splits: usize,
    /// Share of the labelled nodes that train the probe (random splits).
    pub train_ratio: f64,
    /// Share that picks the weight decay (random splits).
    pub val_ratio: f64,
    /// Seed of the random splits (the same splits for every run).
    pub split_seed: u64,
    /// `l2` (GRACE normalises the embeddings) or `none`.
    pub normalize: String,
    /// Standardise each embedding dimension with every node's mean and
    /// standard deviation (true), or train on the embeddings as they are
    /// (false: DGI's protocol).
    pub standardize: bool,
    /// Full-batch AdamW passes of the probe.
    pub epochs: usize,
    /// The probe's learning rate.
    pub lr: f64,
    /// `cosine` (decay to zero) or `constant` (DGI's probe).
    pub schedule: ProbeSchedule,
    /// Candidate weight decays, picked by validation accuracy.
    pub weight_decay_grid: Vec<f64>,
    /// Run every this many training steps (0: only at the end).
    pub every_epochs: usize,
}

impl Default for NodeProbeConfig {
    fn default() -> Self {
        NodeProbeConfig {
            protocol: "public".into(),
            splits: 20,
            train_ratio: 0.1,
            val_ratio: 0.1,
            split_seed: 0,
            normalize: "l2".into(),
            standardize: true,
            epochs: 300,
            lr: 0.01,
            schedule: ProbeSchedule::Cosine,
            weight_decay_grid: vec![0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
            every_epochs: 0,
        }
    }
}

/// The probe evaluator.
pub struct NodeProbe {
    cfg: NodeProbeConfig,
    name: &'static str,
}

/// Train, validation and test nodes.
type Split3 = (Vec<usize>, Vec<usize>, Vec<usize>);

/// The random splits of the labelled nodes of `g`.
pub fn random_splits(g: &Graph, cfg: &NodeProbeConfig) -> Vec<Split3> {
    let nodes = g.labelled();
    let n = nodes.len();
    let n_train = ((n as f64 * cfg.train_ratio).round() as usize).max(1);
    let n_val = ((n as f64 * cfg.val_ratio).round() as usize).max(1);
    (0..cfg.splits)
        .map(|s| {
            let perm = Rng::derive(cfg.split_seed, "node-split", &[s as u64]).permutation(n);
            let pick = |r: std::ops::Range<usize>| perm[r].iter().map(|&i| nodes[i]).collect();
            (
                pick(0..n_train),
                pick(n_train..n_train + n_val),
                pick(n_train + n_val..n),
            )
        })
        .collect()
}

impl NodeProbe {
    /// Test and validation accuracy of the best weight decay on one split.
    fn one(&self, x: &Tensor, g: &Graph, split: &Split3) -> Result<(f64, f64)> {
        let (tx, ty) = select_rows(x, &g.labels, &split.0)?;
        let (vx, vy) = select_rows(x, &g.labels, &split.1)?;
        let (sx, sy) = select_rows(x, &g.labels, &split.2)?;
        let mut best: Option<(f64, LinearProbe)> = None;
        for &wd in &self.cfg.weight_decay_grid {
            // the standardisation statistics come from every node's
            // embedding (they need no labels, and the graph is one sample)
            let probe = LinearProbe::fit_standardized_by(
                &tx,
                &ty,
                g.num_classes,
                &ProbeConfig {
                    epochs: self.cfg.epochs,
                    lr: self.cfg.lr,
                    weight_decay: wd,
                    batch_size: 0,
                    standardize: self.cfg.standardize,
                    schedule: self.cfg.schedule,
                },
                Some(x),
            )?;
            let acc = probe.accuracy(&vx, &vy)?;
            if best.as_ref().is_none_or(|(b, _)| acc > *b) {
                best = Some((acc, probe));
            }
        }
        let (val, probe) =
            best.ok_or_else(|| Error::Recipe("node_probe: an empty weight_decay_grid".into()))?;
        Ok((probe.accuracy(&sx, &sy)?, val))
    }
}

impl GraphEvaluator for NodeProbe {
    fn every_epochs(&self) -> usize {
        self.cfg.every_epochs
    }

    fn evaluate(&mut self, ctx: &GraphEvalCtx) -> Result<Vec<(String, f64)>> {
        let g = &ctx.input.graph;
        let mut x = ctx.method.embed(ctx.input)?.to_device(&Device::Cpu)?;
        if self.cfg.normalize == "l2" {
            x = l2_normalize(&x)?;
        }
        let splits = match self.cfg.protocol.as_str() {
            "public" => {
                let s = g.split.as_ref().ok_or_else(|| {
                    Error::Recipe(format!(
                        "[[eval]] node_probe protocol = \"public\": {} has no published split (use protocol = \"random\", or a `.public.npz` graph)",
                        g.describe
                    ))
                })?;
                vec![(s.train.clone(), s.val.clone(), s.test.clone())]
            }
            _ => random_splits(g, &self.cfg),
        };
        let mut tests = Vec::new();
        let mut vals = Vec::new();
        for s in &splits {
            let (t, v) = self.one(&x, g, s)?;
            tests.push(t);
            vals.push(v);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let m = mean(&tests);
        let std = (tests.iter().map(|t| (t - m).powi(2)).sum::<f64>() / tests.len() as f64).sqrt();
        let p = self.name;
        let mut out = vec![
            (format!("{p}/acc"), m),
            (format!("{p}/val_acc"), mean(&vals)),
        ];
        if splits.len() > 1 {
            out.push((format!("{p}/acc_std"), std));
        }
        out.push((format!("{p}/embedding_spread"), spread(&l2_normalize(&x)?)?));
        Ok(out)
    }
}

fn node_probe(p: &Params) -> Result<Box<dyn GraphEvaluator>> {
    let cfg: NodeProbeConfig = p.extract()?;
    let name = match cfg.protocol.as_str() {
        "public" => "probe_public",
        "random" => "probe_random",
        other => {
            return Err(p.error("protocol", format!("`{other}` is not public or random")));
        }
    };
    if !["l2", "none"].contains(&cfg.normalize.as_str()) {
        return Err(p.error(
            "normalize",
            format!("`{}` is not l2 or none", cfg.normalize),
        ));
    }
    if cfg.splits == 0 {
        return Err(p.error("splits", "must be at least 1"));
    }
    if !(cfg.train_ratio > 0.0 && cfg.val_ratio > 0.0 && cfg.train_ratio + cfg.val_ratio < 1.0) {
        return Err(p.error(
            "train_ratio",
            "train_ratio and val_ratio must be positive with a sum below 1",
        ));
    }
    if cfg.weight_decay_grid.is_empty() {
        return Err(p.error("weight_decay_grid", "needs at least one value"));
    }
    Ok(Box::new(NodeProbe { cfg, name }))
}

/// `[[eval]] name = "node_classifier"` options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeClassifierConfig {
    /// Run every this many training steps (0: only at the end).
    pub every_epochs: usize,
}

/// The accuracy of a classifier method on the public split.
pub struct NodeClassifier {
    cfg: NodeClassifierConfig,
}

impl GraphEvaluator for NodeClassifier {
    fn every_epochs(&self) -> usize {
        self.cfg.every_epochs
    }

    fn evaluate(&mut self, ctx: &GraphEvalCtx) -> Result<Vec<(String, f64)>> {
        let g = &ctx.input.graph;
        let logits = ctx.method.logits(ctx.input).ok_or_else(|| {
            Error::Recipe(
                "[[eval]] node_classifier needs a method that trains a classifier (supervised_gcn)"
                    .into(),
            )
        })??;
        let pred: Vec<u32> = logits.argmax(1)?.to_device(&Device::Cpu)?.to_vec1()?;
        let split = g.split.as_ref().ok_or_else(|| {
            Error::Recipe(format!(
                "[[eval]] node_classifier: {} has no published split",
                g.describe
            ))
        })?;
        let acc = |nodes: &[usize]| {
            nodes
                .iter()
                .filter(|&&i| pred[i] as i64 == g.labels[i])
                .count() as f64
                / nodes.len().max(1) as f64
        };
        Ok(vec![
            ("classifier/acc".into(), acc(&split.test)),
            ("classifier/val_acc".into(), acc(&split.val)),
        ])
    }
}

fn node_classifier(p: &Params) -> Result<Box<dyn GraphEvaluator>> {
    Ok(Box::new(NodeClassifier { cfg: p.extract()? }))
}

parallax_core::register!(
    graph_evaluator,
    "node_probe",
    "logistic-regression probe on frozen node embeddings (public split, or random 10/10/80 splits)",
    node_probe
);
parallax_core::register!(
    graph_evaluator,
    "node_classifier",
    "a classifier method's accuracy on the public split's test nodes",
    node_classifier
);
