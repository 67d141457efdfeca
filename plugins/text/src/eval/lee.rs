//! `[[eval]] name = "lee"`: the Lee document-similarity benchmark.
//!
//! Lee, Pincombe, Welsh. "An Empirical Evaluation of Models of Text
//! Document Similarity", CogSci 2005: 50 news documents (`lee.cor`, one per
//! line) and the mean human similarity of every pair (`similarities0-1.txt`,
//! a 50 x 50 matrix whose upper triangle holds the scores). The score is the
//! Spearman (and Pearson) correlation between the cosine similarity of the
//! documents' embeddings and the human scores over the 1,225 pairs.
//! `scripts/fetch-data.sh text` puts gensim's copies in `data/text/lee/`.

use std::path::PathBuf;

use parallax_core::data::BuildCtx;
use parallax_core::error::{Error, Result};
use parallax_core::eval::{EvalCtx, Evaluator};
use serde::Deserialize;

use crate::eval::correlation::{pearson, spearman};
use crate::eval::embed::{cosine, embed_texts};
use crate::sources::read_text;
use crate::tokenizer::TextTokenizer;

/// Options of the `lee` evaluator.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LeeConfig {
    /// The folder with `lee.cor` and `similarities0-1.txt`.
    path: String,
    /// Tokens per document (documents are ~100-300 words; all-MiniLM-L6-v2
    /// reads at most 256).
    max_length: usize,
    /// Documents per forward pass.
    batch_size: usize,
    /// Run every this many epochs (0: at the start and the end).
    every_epochs: usize,
    /// The tokenizer; none: the pretrained encoder's, else the embedded one.
    tokenizer: Option<String>,
    /// When the files are missing: warn and report nothing instead of failing.
    optional: bool,
    /// Embed each sentence of a document and average them, instead of
    /// encoding the whole document (for sentence encoders trained on short
    /// sequences).
    by_sentence: bool,
}

impl Default for LeeConfig {
    fn default() -> Self {
        LeeConfig {
            path: "data/text/lee".into(),
            max_length: 256,
            batch_size: 8,
            every_epochs: 0,
            tokenizer: None,
            optional: false,
            by_sentence: false,
        }
    }
}

/// The Lee benchmark's documents and human-scored pairs `(i, j, score)`.
#[derive(Debug)]
pub struct LeeData {
    /// The 50 documents.
    pub docs: Vec<String>,
    /// Every pair `i < j` with its human similarity.
    pub pairs: Vec<(usize, usize, f64)>,
}

impl LeeData {
    /// Reads `lee.cor` and `similarities0-1.txt` from `dir`.
    pub fn read(dir: &std::path::Path) -> Result<Self> {
        let docs: Vec<String> = read_text(&dir.join("lee.cor"))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let sim_path = dir.join("similarities0-1.txt");
        let sims = read_text(&sim_path)?;
        let rows: Vec<Vec<f64>> = sims
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                l.split_whitespace()
                    .map(|v| {
                        v.parse::<f64>().map_err(|_| {
                            Error::Data(format!(
                                "{}:{}: `{v}` is not a number",
                                sim_path.display(),
                                i + 1
                            ))
                        })
                    })
                    .collect()
            })
            .collect::<Result<_>>()?;
        let n = docs.len();
        if rows.len() != n || rows.iter().any(|r| r.len() != n) {
            return Err(Error::Data(format!(
                "{}: expected a {n} x {n} matrix (one row and column per document of lee.cor)",
                sim_path.display()
            )));
        }
        let mut pairs = Vec::with_capacity(n * (n - 1) / 2);
        for (i, row) in rows.iter().enumerate() {
            for (j, &s) in row.iter().enumerate().skip(i + 1) {
                pairs.push((i, j, s));
            }
        }
        Ok(LeeData { docs, pairs })
    }
}

/// The sentences of a document: split after `.`, `!` or `?` followed by
/// white space (the whole text when there is no such boundary).
pub fn split_sentences(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = doc.chars().peekable();
    while let Some(c) = chars.next() {
        cur.push(c);
        if matches!(c, '.' | '!' | '?') && chars.peek().is_some_and(|n| n.is_whitespace()) {
            let s = cur.trim();
            if !s.is_empty() {
                out.push(s.to_string());
            }
            cur.clear();
        }
    }
    let s = cur.trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
    out
}

struct Lee {
    data: Option<LeeData>,
    tok: TextTokenizer,
    cfg: LeeConfig,
}

impl Evaluator for Lee {
    fn every_epochs(&self) -> usize {
        self.cfg.every_epochs
    }

    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Vec<(String, f64)>> {
        let Some(data) = &self.data else {
            return Ok(vec![]);
        };
        let e = embed_texts(
            ctx.encoder,
            &self.tok,
            &data.docs,
            self.cfg.batch_size,
            ctx.device,
        )?;
        let rows = e.to_vec2::<f32>()?;
        let model: Vec<f64> = data
            .pairs
            .iter()
            .map(|&(i, j, _)| cosine(&rows[i], &rows[j]))
            .collect();
        let human: Vec<f64> = data.pairs.iter().map(|p| p.2).collect();
        Ok(vec![
            ("lee/spearman".into(), spearman(&model, &human)),
            ("lee/pearson".into(), pearson(&model, &human)),
        ])
    }
}

parallax_core::register!(
    evaluator,
    "lee",
    "Lee (2005) document similarity: Spearman/Pearson of embedding cosine vs human scores",
    |p, ctx: &BuildCtx| {
        let cfg: LeeConfig = p.extract()?;
        let dir: PathBuf = ctx.resolve(&cfg.path);
        let data = match LeeData::read(&dir) {
            Ok(d) => Some(d),
            Err(e) if cfg.optional => {
                eprintln!("warning: lee evaluator skipped: {e} (run scripts/fetch-data.sh text)");
                None
            }
            Err(e @ Error::Io { .. }) => {
                return Err(Error::Data(format!(
                    "{e} (the lee evaluator needs gensim's Lee files: run scripts/fetch-data.sh text, or set optional = true)"
                )))
            }
            Err(e) => return Err(e),
        };
        let tok = TextTokenizer::resolve(cfg.tokenizer.as_deref(), ctx, cfg.max_length)?;
        Ok(Box::new(Lee { data, tok, cfg }))
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_upper_triangle_and_checks_the_size() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lee.cor"), "a\nb\nc").unwrap();
        std::fs::write(
            dir.path().join("similarities0-1.txt"),
            "1\t0.5\t0.2\n0\t1\t0.9\n0\t0\t1\n",
        )
        .unwrap();
        let d = LeeData::read(dir.path()).unwrap();
        assert_eq!(d.docs.len(), 3);
        assert_eq!(d.pairs, vec![(0, 1, 0.5), (0, 2, 0.2), (1, 2, 0.9)]);
        std::fs::write(dir.path().join("similarities0-1.txt"), "1\t0.5\n0\t1\n").unwrap();
        assert!(LeeData::read(dir.path())
            .unwrap_err()
            .to_string()
            .contains("3 x 3"));
        let e = LeeData::read(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lee.cor"), "{e}");
    }
}
