//! Sentence embeddings of a list of texts, in evaluation mode.

use candle_core::{Device, Tensor};
use parallax_core::batch::{Batch, Sample};
use parallax_core::error::{Error, Result};
use parallax_core::nn::encoder::{Encoder, ForwardCtx};

use crate::tokenizer::TextTokenizer;

/// The embeddings `[N, D]` (on the CPU) of `texts`, `batch_size` at a time.
pub fn embed_texts(
    encoder: &dyn Encoder,
    tok: &TextTokenizer,
    texts: &[String],
    batch_size: usize,
    device: &Device,
) -> Result<Tensor> {
    if texts.is_empty() {
        return Err(Error::Data("no texts to embed".into()));
    }
    let mut ctx = ForwardCtx::eval();
    let mut out = Vec::new();
    for chunk in texts.chunks(batch_size.max(1)) {
        let samples = chunk
            .iter()
            .map(|t| {
                let mut s = Sample::default();
                tok.encode_into(t, "", &mut s)?;
                Ok(s)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = Batch::collate(&samples, &Device::Cpu)?.to_device(device)?;
        let e = encoder.forward(&batch, &mut ctx)?;
        let e = if e.rank() == 3 { e.mean(1)? } else { e };
        out.push(e.detach().to_device(&Device::Cpu)?);
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// The cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-12)
}
