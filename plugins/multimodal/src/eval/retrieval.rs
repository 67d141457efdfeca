//! `[[eval]] name = "retrieval"`: image-to-text and text-to-image retrieval
//! with a dual image-text encoder, as Recall@K (Radford et al. 2021, table
//! 13; Karpathy & Fei-Fei 2015).
//!
//! The test split's pairs (a seeded subset of `limit`, 1000 by default) are
//! embedded by both towers; for each image the captions are ranked by cosine
//! similarity, and `i2t_r{K}` is the share of images whose own caption is
//! among the first K (`t2i_r{K}` likewise for captions). Equal scores are
//! ranked by position in the subset, so a run's figures are deterministic.
//! When the pairs carry labels, `i2t_r{K}_class` and `t2i_r{K}_class` count
//! a hit when any of the first K has the query's class — the meaningful
//! figure for captions built from class names (`captioned` data), where
//! many images share the same caption text.
//!
//! ```toml
//! [[eval]]
//! name = "retrieval"
//! limit = 1000
//! ks = [1, 5, 10]
//! ```

use candle_core::{Device, Tensor};
use parallax_core::batch::Batch;
use parallax_core::data::{BuildCtx, Split};
use parallax_core::error::{Error, Result};
use parallax_core::eval::features::{source, subset};
use parallax_core::eval::{EvalCtx, Evaluator};
use parallax_core::losses::l2_normalize;
use parallax_core::methods::clip::dual;
use parallax_core::nn::encoder::ForwardCtx;
use parallax_core::recipe::Params;
use serde::Deserialize;

/// `[[eval]] name = "retrieval"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalConfig {
    /// Test pairs to rank among (a seeded subset; none: all). 1000 as in the
    /// 1k test splits of COCO and Flickr30k.
    pub limit: Option<usize>,
    /// The K of Recall@K.
    pub ks: Vec<usize>,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// Run every this many epochs (0: only at the start and the end).
    pub every_epochs: usize,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig {
            limit: Some(1000),
            ks: vec![1, 5, 10],
            batch_size: 256,
            every_epochs: 0,
        }
    }
}

/// The retrieval evaluator.
pub struct Retrieval {
    cfg: RetrievalConfig,
}

impl Retrieval {
    fn build(p: &Params, _ctx: &BuildCtx) -> Result<Self> {
        let cfg: RetrievalConfig = p.extract()?;
        if cfg.ks.is_empty() || cfg.ks.contains(&0) {
            return Err(p.error("ks", "needs one or more K of at least 1"));
        }
        if cfg.limit == Some(0) {
            return Err(p.error("limit", "must be at least 1"));
        }
        Ok(Retrieval { cfg })
    }
}

/// The order in which row `scores` ranks its candidates: by score, highest
/// first, equal scores by index.
fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx
}

/// Recall@K of each K for queries whose match is the candidate of the same
/// index (`exact`), and — with labels — whose any hit of the same label
/// counts (`class`). `sims[q][c]` is the similarity of query q and
/// candidate c.
pub fn recall_at(
    sims: &[Vec<f32>],
    ks: &[usize],
    labels: Option<&[i64]>,
) -> (Vec<f64>, Option<Vec<f64>>) {
    let n = sims.len().max(1) as f64;
    let mut exact = vec![0usize; ks.len()];
    let mut class = vec![0usize; ks.len()];
    for (q, row) in sims.iter().enumerate() {
        let order = ranking(row);
        let rank = order.iter().position(|&c| c == q).unwrap_or(usize::MAX);
        let first_class = labels.and_then(|l| order.iter().position(|&c| l[c] == l[q]));
        for (i, &k) in ks.iter().enumerate() {
            if rank < k {
                exact[i] += 1;
            }
            if first_class.is_some_and(|r| r < k) {
                class[i] += 1;
            }
        }
    }
    let share = |v: Vec<usize>| v.into_iter().map(|h| h as f64 / n).collect::<Vec<_>>();
    (share(exact), labels.map(|_| share(class)))
}

impl Evaluator for Retrieval {
    fn every_epochs(&self) -> usize {
        self.cfg.every_epochs
    }

    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Vec<(String, f64)>> {
        let it = dual(ctx.encoder, "evaluator `retrieval`")?;
        let test = source(ctx, Split::Test)?;
        let idx = subset(test.len(), self.cfg.limit, ctx.seed, "retrieval");
        let mut fctx = ForwardCtx::eval();
        let (mut imgs, mut txts, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in idx.chunks(self.cfg.batch_size.max(1)) {
            let samples = chunk
                .iter()
                .map(|&i| test.get(i))
                .collect::<Result<Vec<_>>>()?;
            labels.extend(samples.iter().map(parallax_core::data::subset::label_of));
            let batch = Batch::collate(&samples, &Device::Cpu)?.to_device(ctx.device)?;
            if batch.get("input_ids").is_err() {
                return Err(Error::Data(format!(
                    "retrieval: {} has no captions (`input_ids`); use an image-text source such as `captioned` or `image_text`",
                    test.describe()
                )));
            }
            imgs.push(l2_normalize(&it.embed_image(&batch, &mut fctx)?)?.to_device(&Device::Cpu)?);
            txts.push(l2_normalize(&it.embed_text(&batch, &mut fctx)?)?.to_device(&Device::Cpu)?);
        }
        if imgs.is_empty() {
            return Err(Error::Data(format!(
                "retrieval: {} has no pairs",
                test.describe()
            )));
        }
        let (imgs, txts) = (Tensor::cat(&imgs, 0)?, Tensor::cat(&txts, 0)?);
        let i2t = imgs.matmul(&txts.t()?)?;
        let t2i = i2t.t()?.contiguous()?;
        let labels: Option<Vec<i64>> = labels.into_iter().collect();
        let mut out = Vec::new();
        for (dir, sims) in [("i2t", i2t), ("t2i", t2i)] {
            let (exact, class) =
                recall_at(&sims.to_vec2::<f32>()?, &self.cfg.ks, labels.as_deref());
            for (k, r) in self.cfg.ks.iter().zip(&exact) {
                out.push((format!("retrieval/{dir}_r{k}"), *r));
            }
            if let Some(class) = class {
                for (k, r) in self.cfg.ks.iter().zip(&class) {
                    out.push((format!("retrieval/{dir}_r{k}_class"), *r));
                }
            }
        }
        Ok(out)
    }
}

parallax_core::register!(
    evaluator,
    "retrieval",
    "image-to-text and text-to-image Recall@K of a dual image-text encoder",
    |p, ctx| Ok(Box::new(Retrieval::build(p, ctx)?))
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_the_own_match_and_breaks_ties_by_index() {
        // query 0 ranks itself first; query 1 ranks itself third; query 2
        // ties with candidate 0 and loses the tie (lower index first): second
        let sims = vec![
            vec![0.9, 0.1, 0.2],
            vec![0.8, 0.1, 0.5],
            vec![0.7, 0.0, 0.7],
        ];
        let (exact, class) = recall_at(&sims, &[1, 2, 3], Some(&[0, 1, 0]));
        assert_eq!(exact, vec![1.0 / 3.0, 2.0 / 3.0, 1.0]);
        // class hits: q0 at rank 0; q1 (label 1) finds candidate 1 at rank 2;
        // q2 (label 0) finds candidate 0 at rank 0
        assert_eq!(class.unwrap(), vec![2.0 / 3.0, 2.0 / 3.0, 1.0]);
        let (_, none) = recall_at(&sims, &[1], None);
        assert!(none.is_none());
    }
}
