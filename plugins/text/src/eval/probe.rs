//! `[[eval]] name = "text_probe"`: a linear probe on frozen sentence
//! embeddings of a labelled file (e.g. gensim's `pang_lee_polarity.cor`,
//! 200 movie-review sentences labelled positive or negative), scored by
//! seeded k-fold cross-validation, as SentEval does for its small
//! classification sets (Conneau & Kiela 2018).

use parallax_core::data::BuildCtx;
use parallax_core::error::{Error, Result};
use parallax_core::eval::linear_probe::{select_rows, LinearProbe, ProbeConfig};
use parallax_core::eval::{EvalCtx, Evaluator};
use parallax_core::rng::Rng;
use serde::Deserialize;

use crate::eval::embed::embed_texts;
use crate::sources::labelled::{class_ids, read_labelled};
use crate::tokenizer::TextTokenizer;

/// Options of the `text_probe` evaluator.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TextProbeConfig {
    /// The labelled file (fastText `__label__`, TSV or JSON Lines).
    path: String,
    /// Cross-validation folds.
    folds: usize,
    /// Tokens per sentence.
    max_length: usize,
    /// Sentences per forward pass.
    batch_size: usize,
    /// Run every this many epochs (0: at the start and the end).
    every_epochs: usize,
    /// The tokenizer; none: the pretrained encoder's, else the embedded one.
    tokenizer: Option<String>,
    /// When the file is missing: warn and report nothing.
    optional: bool,
    /// Passes of each fold's probe over its features.
    epochs: usize,
    /// The probe's peak learning rate (AdamW, cosine decay).
    lr: f64,
    /// The probe's L2 weight decay.
    weight_decay: f64,
}

impl Default for TextProbeConfig {
    fn default() -> Self {
        TextProbeConfig {
            path: "data/text/lee/pang_lee_polarity.cor".into(),
            folds: 5,
            max_length: 64,
            batch_size: 64,
            every_epochs: 0,
            tokenizer: None,
            optional: false,
            epochs: 200,
            lr: ProbeConfig::default().lr,
            weight_decay: ProbeConfig::default().weight_decay,
        }
    }
}

struct TextProbe {
    texts: Vec<String>,
    labels: Vec<i64>,
    classes: usize,
    tok: TextTokenizer,
    seed: u64,
    cfg: TextProbeConfig,
}

impl Evaluator for TextProbe {
    fn every_epochs(&self) -> usize {
        self.cfg.every_epochs
    }

    fn evaluate(&mut self, ctx: &EvalCtx) -> Result<Vec<(String, f64)>> {
        if self.texts.is_empty() {
            return Ok(vec![]);
        }
        let x = embed_texts(
            ctx.encoder,
            &self.tok,
            &self.texts,
            self.cfg.batch_size,
            ctx.device,
        )?;
        let n = self.texts.len();
        let order = Rng::derive(self.seed, "text_probe/folds", &[]).permutation(n);
        let k = self.cfg.folds;
        let mut correct = 0.0;
        for f in 0..k {
            let test: Vec<usize> = order.iter().copied().skip(f).step_by(k).collect();
            let train: Vec<usize> = order
                .iter()
                .enumerate()
                .filter(|(i, _)| i % k != f)
                .map(|(_, &j)| j)
                .collect();
            let (tx, ty) = select_rows(&x, &self.labels, &train)?;
            let (qx, qy) = select_rows(&x, &self.labels, &test)?;
            let probe = LinearProbe::fit(
                &tx,
                &ty,
                self.classes,
                &ProbeConfig {
                    epochs: self.cfg.epochs,
                    lr: self.cfg.lr,
                    weight_decay: self.cfg.weight_decay,
                    batch_size: 0,
                    ..ProbeConfig::default()
                },
            )?;
            correct += probe.accuracy(&qx, &qy)? * test.len() as f64;
        }
        Ok(vec![("text_probe/accuracy".into(), correct / n as f64)])
    }
}

parallax_core::register!(
    evaluator,
    "text_probe",
    "linear probe on sentence embeddings of a labelled file, k-fold cross-validated accuracy",
    |p, ctx: &BuildCtx| {
        let cfg: TextProbeConfig = p.extract()?;
        if cfg.folds < 2 {
            return Err(p.error("folds", "must be at least 2"));
        }
        let file = ctx.resolve(&cfg.path);
        let rows = match read_labelled(&file) {
            Ok(r) => r,
            Err(e) if cfg.optional => {
                eprintln!(
                    "warning: text_probe evaluator skipped: {e} (run scripts/fetch-data.sh text)"
                );
                vec![]
            }
            Err(e @ Error::Io { .. }) => {
                return Err(Error::Data(format!(
                    "{e} (run scripts/fetch-data.sh text, or set optional = true)"
                )))
            }
            Err(e) => return Err(e),
        };
        if !rows.is_empty() && rows.len() < cfg.folds {
            return Err(Error::Data(format!(
                "{}: {} rows are too few for {} folds",
                file.display(),
                rows.len(),
                cfg.folds
            )));
        }
        let (names, labels) = class_ids(&rows);
        let tok = TextTokenizer::resolve(cfg.tokenizer.as_deref(), ctx, cfg.max_length)?;
        Ok(Box::new(TextProbe {
            texts: rows.into_iter().map(|r| r.0).collect(),
            labels,
            classes: names.len(),
            tok,
            seed: ctx.seed,
            cfg,
        }))
    }
);
