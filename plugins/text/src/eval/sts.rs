//! `[[eval]] name = "sts"`: semantic textual similarity from a file of
//! scored sentence pairs. Reads `sentence1<TAB>sentence2<TAB>score` lines,
//! or the STS-benchmark layout (`genre filename year id score sentence1
//! sentence2`, tab-separated, with or without its header). Reports the
//! Spearman correlation between the embeddings' cosine similarity and the
//! gold scores (the SentEval / SimCSE metric, Gao et al. 2021, section 7)
//! and the Pearson correlation.

use std::path::Path;

use parallax_core::data::BuildCtx;
use parallax_core::error::{Error, Result};
use parallax_core::eval::{EvalCtx, Evaluator};
use serde::Deserialize;

use crate::eval::correlation::{pearson, spearman};
use crate::eval::embed::{cosine, embed_texts};
use crate::sources::read_text;
use crate::tokenizer::TextTokenizer;

/// Scored pairs `(sentence1, sentence2, score)` of an STS file.
pub fn read_sts(path: &Path) -> Result<Vec<(String, String, f64)>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let (a, b, score) = match cols.len() {
            3 => (cols[0], cols[1], cols[2]),
            n if n >= 7 => (cols[5], cols[6], cols[4]),
            n => {
                return Err(Error::Data(format!(
                    "{}:{}: expected 3 tab-separated columns (sentence1, sentence2, score) or the STS-B layout (7+), got {n}",
                    path.display(),
                    i + 1
                )))
            }
        };
        match score.trim().parse::<f64>() {
            Ok(s) => out.push((a.trim().to_string(), b.trim().to_string(), s)),
            // a header line
            Err(_) if i == 0 => continue,
            Err(_) => {
                return Err(Error::Data(format!(
                    "{}:{}: score `{score}` is not a number",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Data(format!("{}: no scored pairs", path.display())));
    }
    Ok(out)
}

/// Options of the `sts` evaluator.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StsConfig {
    /// The file of scored pairs.
    path: String,
    /// Tokens per sentence.
    #[serde(default = "default_max_length")]
    max_length: usize,
    /// Sentences per forward pass.
    #[serde(default = "default_batch_size")]
    batch_size: usize,
    /// Run every this many epochs (0: at the start and the end).
    #[serde(default)]
    every_epochs: usize,
    /// The tokenizer; none: the pretrained encoder's, else the embedded one.
    #[serde(default)]
    tokenizer: Option<String>,
}

fn default_max_length() -> usize {
    64
}

fn default_batch_size() -> usize {
    64
}

struct Sts {
    pairs: Vec<(String, String, f64)>,
    tok: TextTokenizer,
    cfg: StsConfig,
}

impl Evaluator for Sts {
    fn every_epochs(&self) -> usize {
        self.cfg.every_epochs
    }

    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Vec<(String, f64)>> {
        let texts: Vec<String> = self
            .pairs
            .iter()
            .flat_map(|(a, b, _)| [a.clone(), b.clone()])
            .collect();
        let e = embed_texts(
            ctx.encoder,
            &self.tok,
            &texts,
            self.cfg.batch_size,
            ctx.device,
        )?;
        let rows = e.to_vec2::<f32>()?;
        let model: Vec<f64> = (0..self.pairs.len())
            .map(|k| cosine(&rows[2 * k], &rows[2 * k + 1]))
            .collect();
        let gold: Vec<f64> = self.pairs.iter().map(|p| p.2).collect();
        Ok(vec![
            ("sts/spearman".into(), spearman(&model, &gold)),
            ("sts/pearson".into(), pearson(&model, &gold)),
        ])
    }
}

parallax_core::register!(
    evaluator,
    "sts",
    "semantic textual similarity (STS-B layout or sentence1/sentence2/score TSV): Spearman of cosine",
    |p, ctx: &BuildCtx| {
        let cfg: StsConfig = p.extract()?;
        let pairs = read_sts(&ctx.resolve(&cfg.path))?;
        let tok = TextTokenizer::resolve(cfg.tokenizer.as_deref(), ctx, cfg.max_length)?;
        Ok(Box::new(Sts { pairs, tok, cfg }))
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let simple = dir.path().join("pairs.tsv");
        std::fs::write(&simple, "a cat\ta dog\t3.5\nsun\tmoon\t1\n").unwrap();
        assert_eq!(
            read_sts(&simple).unwrap()[0],
            ("a cat".into(), "a dog".into(), 3.5)
        );
        let stsb = dir.path().join("sts-dev.tsv");
        std::fs::write(
            &stsb,
            "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\nmain-captions\tMSRvid\t2012test\t0001\t5.000\tA man.\tA man!\n",
        )
        .unwrap();
        assert_eq!(
            read_sts(&stsb).unwrap(),
            vec![("A man.".into(), "A man!".into(), 5.0)]
        );
        std::fs::write(&simple, "a\tb\tc\td\n").unwrap();
        assert!(read_sts(&simple)
            .unwrap_err()
            .to_string()
            .contains("pairs.tsv:1"));
    }
}
