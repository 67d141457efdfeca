//! The supervised baseline of the citation benchmarks: a GCN classifier
//! (Kipf and Welling. "Semi-Supervised Classification with Graph
//! Convolutional Networks", ICLR 2017) trained with cross entropy on the
//! labelled training nodes of the public split, an L2 penalty on the first
//! layer's weights, and early stopping when the validation loss exceeds
//! the mean of the previous `window` steps.

use candle_core::{DType, Tensor};
use parallax_core::graph::{GraphEncoder, GraphInput, GraphMethod, GraphMethodCtx, NodeSplit};
use parallax_core::methods::{StepInfo, StepOutput};
use parallax_core::nn::encoder::ForwardCtx;
use parallax_core::{Error, Result};
use serde::Deserialize;

/// `[method] name = "supervised_gcn"` options (paper, Sec. 5.1: weight
/// decay 5e-4 on the first layer, a window of 10).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisedGcnConfig {
    /// `weight_decay / 2 * ||W1||²` is added to the loss.
    pub weight_decay: f64,
    /// Early-stopping window on the validation loss (0: never).
    pub window: usize,
}

impl Default for SupervisedGcnConfig {
    fn default() -> Self {
        SupervisedGcnConfig {
            weight_decay: 5e-4,
            window: 10,
        }
    }
}

/// The supervised GCN.
pub struct SupervisedGcn {
    encoder: Box<dyn GraphEncoder>,
    first: Tensor,
    cfg: SupervisedGcnConfig,
    split: NodeSplit,
    train_idx: Tensor,
    train_y: Tensor,
    val_idx: Tensor,
    val_y: Tensor,
    val_losses: Vec<f64>,
}

fn index_and_labels(
    nodes: &[usize],
    labels: &[i64],
    dev: &candle_core::Device,
) -> Result<(Tensor, Tensor)> {
    let idx: Vec<u32> = nodes.iter().map(|&i| i as u32).collect();
    let y: Vec<u32> = nodes.iter().map(|&i| labels[i] as u32).collect();
    Ok((Tensor::new(idx, dev)?, Tensor::new(y, dev)?))
}

impl GraphMethod for SupervisedGcn {
    fn step(&mut self, input: &GraphInput, ctx: &mut ForwardCtx) -> Result<StepOutput> {
        let logits = self
            .encoder
            .forward(&input.features, &input.propagation, ctx)?;
        let ce = candle_nn::loss::cross_entropy(
            &logits.index_select(&self.train_idx, 0)?,
            &self.train_y,
        )?;
        let l2 = self
            .first
            .sqr()?
            .sum_all()?
            .affine(self.cfg.weight_decay / 2.0, 0.0)?;
        Ok(StepOutput {
            loss: ce.add(&l2)?,
            scalars: vec![(
                "train/cross_entropy".into(),
                ce.to_dtype(DType::F64)?.to_scalar::<f64>()?,
            )],
            embeddings: None,
            pair: None,
        })
    }

    fn embed(&self, input: &GraphInput) -> Result<Tensor> {
        self.encoder.embed(input)
    }

    fn logits(&self, input: &GraphInput) -> Option<Result<Tensor>> {
        Some(self.embed(input))
    }

    fn after_step(&mut self, _info: &StepInfo, _loss: f64, input: &GraphInput) -> Result<()> {
        let logits = self.embed(input)?;
        let val =
            candle_nn::loss::cross_entropy(&logits.index_select(&self.val_idx, 0)?, &self.val_y)?;
        self.val_losses
            .push(val.to_dtype(DType::F64)?.to_scalar::<f64>()?);
        Ok(())
    }

    fn should_stop(&self) -> Option<String> {
        let w = self.cfg.window;
        let v = &self.val_losses;
        if w == 0 || v.len() <= w {
            return None;
        }
        let last = v[v.len() - 1];
        let mean = v[v.len() - 1 - w..v.len() - 1].iter().sum::<f64>() / w as f64;
        (last > mean).then(|| {
            format!(
                "the validation loss {last:.4} ({} nodes) is above the mean {mean:.4} of the previous {w} steps",
                self.split.val.len()
            )
        })
    }
}

fn build(ctx: GraphMethodCtx) -> Result<Box<dyn GraphMethod>> {
    let cfg: SupervisedGcnConfig = ctx.params.extract()?;
    let g = &ctx.graph;
    let split = g.split.clone().ok_or_else(|| {
        Error::Recipe(format!(
            "[method] supervised_gcn trains on a published split, and {} has none (use a `.public.npz` graph)",
            g.describe
        ))
    })?;
    if ctx.encoder.output_dim() != g.num_classes {
        return Err(ctx.params.error(
            "encoder",
            format!(
                "the encoder's last layer gives {} outputs, the graph has {} classes (set encoder.dims = [16, {}])",
                ctx.encoder.output_dim(),
                g.num_classes,
                g.num_classes
            ),
        ));
    }
    let first = ctx
        .store
        .get_var("encoder.layers.0.weight")
        .ok_or_else(|| Error::Recipe("[method] supervised_gcn needs the `gcn` encoder".into()))?
        .as_tensor()
        .clone();
    let dev = first.device().clone();
    let (train_idx, train_y) = index_and_labels(&split.train, &g.labels, &dev)?;
    let (val_idx, val_y) = index_and_labels(&split.val, &g.labels, &dev)?;
    Ok(Box::new(SupervisedGcn {
        encoder: ctx.encoder,
        first,
        cfg,
        split,
        train_idx,
        train_y,
        val_idx,
        val_y,
        val_losses: Vec::new(),
    }))
}

parallax_core::register!(
    graph_method,
    "supervised_gcn",
    "a GCN classifier on the public split's training nodes (Kipf and Welling 2017), the baseline",
    build
);
