//! Label-free measures of a representation:
//!
//! - alignment and uniformity (Wang & Isola, "Understanding Contrastive
//!   Representation Learning through Alignment and Uniformity on the
//!   Hypersphere", ICML 2020): `E ||f(x) - f(x+)||^2` over positive pairs
//!   (lower is better) and `log E exp(-2 ||f(x) - f(y)||^2)` over all pairs
//!   (lower is more uniform), on L2-normalised embeddings;
//! - RankMe (Garrido, Balestriero, Najman, LeCun, "RankMe: Assessing the
//!   Downstream Performance of Pretrained Self-Supervised Representations
//!   by Their Rank", ICML 2023): `exp(-sum p_k log p_k)` with `p_k` the
//!   singular values of the embedding matrix normalised to sum to 1 (plus
//!   1e-7), a smooth effective rank between 1 and `min(N, D)`.
//!
//! The trainer logs all three on each logged step's embeddings
//! (`train/alignment`, `train/uniformity`, `train/rankme`); the
//! `representation` evaluator measures uniformity and RankMe of the frozen
//! encoder's features of the test split.

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::data::Split;
use crate::error::{Error, Result};
use crate::eval::features::{extract, source, subset};
use crate::eval::{EvalCtx, Evaluator};
use crate::losses::l2_normalize;

/// Alignment (alpha = 2) of paired rows of `x` and `y` (normalised here).
pub fn alignment(x: &Tensor, y: &Tensor) -> Result<f64> {
    let (x, y) = (l2_normalize(x)?, l2_normalize(y)?);
    Ok((x - y)?
        .sqr()?
        .sum(1)?
        .mean_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

/// Uniformity (t = 2) of the rows of `x` (normalised here), over the
/// pairs `i != j`.
pub fn uniformity(x: &Tensor) -> Result<f64> {
    let x = l2_normalize(&x.to_dtype(DType::F32)?)?;
    let n = x.dim(0)?;
    if n < 2 {
        return Err(Error::Shape(
            "uniformity needs at least 2 embeddings".into(),
        ));
    }
    // ||a - b||^2 = 2 - 2 a.b on the sphere
    let sim = x.matmul(&x.t()?)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let mut terms = Vec::with_capacity(n * (n - 1));
    for (i, row) in sim.iter().enumerate() {
        for (j, s) in row.iter().enumerate() {
            if i != j {
                terms.push(-2.0 * (2.0 - 2.0 * s));
            }
        }
    }
    let m = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mean = terms.iter().map(|t| (t - m).exp()).sum::<f64>() / terms.len() as f64;
    Ok(m + mean.ln())
}

/// RankMe of the rows of `x [N, D]` (not normalised).
pub fn rankme(x: &Tensor) -> Result<f64> {
    let (n, d) = x.dims2()?;
    let x = x.to_dtype(DType::F64)?.to_device(&Device::Cpu)?;
    // the squared singular values are the eigenvalues of the smaller Gram matrix
    let g = if n <= d {
        x.matmul(&x.t()?)?
    } else {
        x.t()?.matmul(&x)?
    };
    let m = g.dim(0)?;
    let mut a = g.flatten_all()?.to_vec1::<f64>()?;
    let eig = symmetric_eigenvalues(&mut a, m);
    let sv: Vec<f64> = eig.iter().map(|&e| e.max(0.0).sqrt()).collect();
    let total: f64 = sv.iter().sum();
    if total <= 0.0 {
        return Ok(1.0);
    }
    let entropy: f64 = sv
        .iter()
        .map(|s| {
            let p = s / total + 1e-7;
            -p * p.ln()
        })
        .sum();
    Ok(entropy.exp())
}

/// Eigenvalues of the symmetric `m x m` matrix `a` (row-major; destroyed)
/// by cyclic Jacobi rotations.
pub fn symmetric_eigenvalues(a: &mut [f64], m: usize) -> Vec<f64> {
    let scale: f64 = a.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
    for _sweep in 0..100 {
        let off: f64 = (0..m)
            .flat_map(|i| (0..m).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * m + j] * a[i * m + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-12 * scale {
            break;
        }
        for p in 0..m {
            for q in p + 1..m {
                let apq = a[p * m + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let (app, aqq) = (a[p * m + p], a[q * m + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..m {
                    let (akp, akq) = (a[k * m + p], a[k * m + q]);
                    a[k * m + p] = c * akp - s * akq;
                    a[k * m + q] = s * akp + c * akq;
                }
                for k in 0..m {
                    let (apk, aqk) = (a[p * m + k], a[q * m + k]);
                    a[p * m + k] = c * apk - s * aqk;
                    a[q * m + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..m).map(|i| a[i * m + i]).collect()
}

/// `[[eval]] name = "representation"` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RepresentationConfig {
    /// Run every this many epochs (0: only at the start and the end).
    every_epochs: usize,
    /// Test examples to embed (a seeded subset): 2048.
    limit: Option<usize>,
    /// Batch size for feature extraction.
    batch_size: usize,
}

impl Default for RepresentationConfig {
    fn default() -> Self {
        RepresentationConfig {
            every_epochs: 0,
            limit: Some(2048),
            batch_size: 512,
        }
    }
}

struct Representation(RepresentationConfig);

impl Evaluator for Representation {
    fn every_epochs(&self) -> usize {
        self.0.every_epochs
    }

    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Vec<(String, f64)>> {
        let test = source(ctx, Split::Test)?;
        let idx = subset(test.len(), self.0.limit, ctx.seed, "representation");
        let x = extract_unlabelled(ctx, test.as_ref(), &idx, self.0.batch_size)?;
        Ok(vec![
            ("representation/rankme".into(), rankme(&x)?),
            ("representation/uniformity".into(), uniformity(&x)?),
        ])
    }
}

/// Features of `indices`, whether or not the samples have labels.
fn extract_unlabelled(
    ctx: &EvalCtx,
    src: &dyn crate::data::DataSource,
    indices: &[usize],
    batch_size: usize,
) -> Result<Tensor> {
    match extract(ctx.encoder, src, indices, ctx.device, batch_size) {
        Ok((x, _)) => Ok(x),
        Err(Error::Data(m)) if m.contains("integer `label`") => {
            let mut feats = Vec::new();
            let mut fctx = crate::nn::encoder::ForwardCtx::eval();
            for chunk in indices.chunks(batch_size.max(1)) {
                let samples = chunk
                    .iter()
                    .map(|&i| src.get(i))
                    .collect::<Result<Vec<_>>>()?;
                let b =
                    crate::batch::Batch::collate(&samples, &Device::Cpu)?.to_device(ctx.device)?;
                let f = ctx.encoder.forward(&b, &mut fctx)?;
                let f = if f.rank() == 3 { f.mean(1)? } else { f };
                feats.push(f.to_device(&Device::Cpu)?.detach());
            }
            Ok(Tensor::cat(&feats, 0)?)
        }
        Err(e) => Err(e),
    }
}

crate::register!(
    evaluator,
    "representation",
    "label-free: RankMe (effective rank) and uniformity of the test split's frozen features",
    |p, _ctx| {
        let c: RepresentationConfig = p.extract()?;
        if c.limit == Some(0) || c.limit == Some(1) {
            return Err(p.error("limit", "needs at least 2 examples"));
        }
        Ok(Box::new(Representation(c)))
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigenvalues_of_a_known_matrix() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3
        let mut a = vec![2.0, 1.0, 1.0, 2.0];
        let mut e = symmetric_eigenvalues(&mut a, 2);
        e.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert!(
            (e[0] - 1.0).abs() < 1e-10 && (e[1] - 3.0).abs() < 1e-10,
            "{e:?}"
        );
    }

    #[test]
    fn rankme_counts_the_used_dimensions() {
        let mut rng = crate::rng::Rng::new(1);
        // 200 points spread over 4 of 16 dimensions, equal variances
        let mut v = vec![0f32; 200 * 16];
        for i in 0..200 {
            for j in 0..4 {
                v[i * 16 + j] = rng.normal();
            }
        }
        let x = Tensor::from_vec(v, (200, 16), &Device::Cpu).unwrap();
        let r = rankme(&x).unwrap();
        assert!((3.6..=4.05).contains(&r), "rankme {r}");
        // one direction only: rank 1
        let y = Tensor::ones((50, 8), DType::F32, &Device::Cpu).unwrap();
        let r = rankme(&y).unwrap();
        assert!((r - 1.0).abs() < 1e-3, "rankme {r}");
    }

    #[test]
    fn alignment_and_uniformity_of_extremes() {
        let mut rng = crate::rng::Rng::new(2);
        let x = rng
            .normal_tensor((256, 8), 0.0, 1.0, DType::F32, &Device::Cpu)
            .unwrap();
        assert!(alignment(&x, &x).unwrap().abs() < 1e-9);
        assert!((alignment(&x, &x.neg().unwrap()).unwrap() - 4.0).abs() < 1e-4);
        // collapsed embeddings: uniformity 0 (its maximum); spread out: well below
        let ones = Tensor::ones((64, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(uniformity(&ones).unwrap().abs() < 1e-6);
        assert!(uniformity(&x).unwrap() < -2.0);
    }
}
