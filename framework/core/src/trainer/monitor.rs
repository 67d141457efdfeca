//! What the trainer watches in a step's embeddings: their spread (the
//! collapse monitor) and the alignment, uniformity and RankMe of the two
//! views' embeddings.

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::methods::StepOutput;

/// Collapse monitor: the mean per-dimension standard deviation of
/// L2-normalised embeddings times sqrt(D); about 1 for well-spread
/// embeddings, near 0 when they collapse to a point (Chen & He 2021, Sec. 4.1).
pub fn spread(embeddings: &Tensor) -> Result<f64> {
    let d = embeddings.dim(1)? as f64;
    let z = embeddings.to_dtype(DType::F32)?;
    let mean = z.mean_keepdim(0)?;
    let std = z
        .broadcast_sub(&mean)?
        .sqr()?
        .mean(0)?
        .sqrt()?
        .mean_all()?
        .to_scalar::<f32>()? as f64;
    Ok(std * d.sqrt())
}

/// Alignment, uniformity and RankMe of a step's paired embeddings (on at
/// most 512 rows), see [`crate::eval::representation`].
pub fn pair_metrics(a: &Tensor, b: &Tensor) -> Result<Vec<(String, f64)>> {
    use crate::eval::representation::{alignment, rankme, uniformity};
    let n = a.dim(0)?.min(512);
    let (a, b) = (
        a.narrow(0, 0, n)?.to_dtype(DType::F32)?,
        b.narrow(0, 0, n)?.to_dtype(DType::F32)?,
    );
    if n < 2 {
        return Ok(Vec::new());
    }
    Ok(vec![
        ("train/alignment".to_string(), alignment(&a, &b)?),
        ("train/uniformity".to_string(), uniformity(&a)?),
        ("train/rankme".to_string(), rankme(&a)?),
    ])
}

/// Named scalars, as the loggers take them.
pub type Scalars = Vec<(String, f64)>;

/// The scalars every loop logs from a step's output: the gradient norm
/// (when it was measured), the embeddings' spread, the two views'
/// alignment, uniformity and RankMe, and the method's own scalars. The
/// spread is returned too, for the collapse warning.
pub fn step_scalars(out: &StepOutput, grad_norm: f64) -> Result<(Scalars, Option<f64>)> {
    let mut s = Vec::new();
    if grad_norm.is_finite() {
        s.push(("train/grad_norm".to_string(), grad_norm));
    }
    let sp = match &out.embeddings {
        Some(e) => {
            let sp = spread(e)?;
            s.push(("train/embedding_spread".to_string(), sp));
            Some(sp)
        }
        None => None,
    };
    if let Some((a, b)) = &out.pair {
        s.extend(pair_metrics(a, b)?);
    }
    s.extend(out.scalars.iter().cloned());
    Ok((s, sp))
}
