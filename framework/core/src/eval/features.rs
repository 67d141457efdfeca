//! Frozen features of a labelled data source, for evaluators.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::batch::{Batch, Field};
use crate::data::{BuildCtx, DataSource, Split};
use crate::error::{Error, Result};
use crate::eval::EvalCtx;
use crate::nn::encoder::{Encoder, ForwardCtx};
use crate::registry;

/// Features `[N, D]` (on the CPU) and integer labels of `indices` of `source`.
pub fn extract(
    encoder: &dyn Encoder,
    source: &dyn DataSource,
    indices: &[usize],
    device: &Device,
    batch_size: usize,
) -> Result<(Tensor, Vec<i64>)> {
    let mut feats = Vec::new();
    let mut labels = Vec::with_capacity(indices.len());
    let mut ctx = ForwardCtx::eval();
    for chunk in indices.chunks(batch_size.max(1)) {
        let samples = chunk
            .iter()
            .map(|&i| source.get(i))
            .collect::<Result<Vec<_>>>()?;
        for s in &samples {
            match s.get("label") {
                Some(Field::I64 { data, .. }) if data.len() == 1 => labels.push(data[0]),
                _ => {
                    return Err(Error::Data(format!(
                        "{}: evaluation needs samples with an integer `label`",
                        source.describe()
                    )))
                }
            }
        }
        let batch = Batch::collate(&samples, &Device::Cpu)?.to_device(device)?;
        let f = encoder.forward(&batch, &mut ctx)?;
        let f = if f.rank() == 3 { f.mean(1)? } else { f };
        feats.push(f.to_device(&Device::Cpu)?.detach());
    }
    if feats.is_empty() {
        return Err(Error::Data(format!(
            "{}: no samples to evaluate",
            source.describe()
        )));
    }
    Ok((Tensor::cat(&feats, 0)?, labels))
}

/// Builds the `split` of the recipe's data source.
pub fn source(ctx: &EvalCtx, split: Split) -> Result<Arc<dyn DataSource>> {
    let b = BuildCtx {
        seed: ctx.seed,
        base_dir: ctx.base_dir.clone(),
        split,
        meta: ctx.meta.clone(),
        encoder: Some(ctx.encoder_spec.clone()),
    };
    (registry::data_source(&ctx.data.name)?.build)(&ctx.data.params, &b)
}

/// The first `limit` indices of `n` (all when `limit` is none), or a seeded
/// random subset when `limit < n`.
pub fn subset(n: usize, limit: Option<usize>, seed: u64, purpose: &str) -> Vec<usize> {
    match limit {
        Some(l) if l < n => {
            let mut idx = crate::rng::Rng::derive(seed, purpose, &[]).permutation(n);
            idx.truncate(l);
            idx.sort_unstable();
            idx
        }
        _ => (0..n).collect(),
    }
}

/// The share of `indices` of `source` whose arg-max of `logits(batch)` is
/// the sample's label (batches of 512).
pub fn accuracy(
    source: &dyn DataSource,
    indices: &[usize],
    device: &Device,
    mut logits: impl FnMut(&Batch) -> Result<Tensor>,
) -> Result<f64> {
    let mut hits = 0usize;
    for chunk in indices.chunks(512) {
        let samples = chunk
            .iter()
            .map(|&i| source.get(i))
            .collect::<Result<Vec<_>>>()?;
        let labels: Vec<i64> = samples
            .iter()
            .map(crate::data::subset::label_of)
            .collect::<Option<_>>()
            .ok_or_else(|| {
                Error::Data(format!("{}: a test sample has no label", source.describe()))
            })?;
        let batch = Batch::collate(&samples, &Device::Cpu)?.to_device(device)?;
        let pred = logits(&batch)?
            .argmax(1)?
            .to_dtype(candle_core::DType::I64)?
            .to_vec1::<i64>()?;
        hits += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    }
    Ok(hits as f64 / indices.len().max(1) as f64)
}
