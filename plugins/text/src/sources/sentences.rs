//! `[data] name = "sentences"`: one sentence per line, or JSON Lines with a
//! text field; by default a small embedded public-domain corpus (sentences
//! from Moby-Dick and the State of the Union addresses, see
//! plugins/text/data/README.md), so unsupervised SimCSE runs with no
//! download. Samples: `input_ids` and `attention_mask` of `max_length`.

use std::sync::Arc;

use parallax_core::batch::Sample;
use parallax_core::data::{BuildCtx, DataMeta};
use parallax_core::error::{Error, Result};
use serde::Deserialize;

use crate::sources::{is_jsonl, json_str, jsonl_objects, read_text, TokenizedSource};
use crate::tokenizer::TextTokenizer;

/// The embedded default corpus.
pub static EMBEDDED_CORPUS: &str = include_str!("../../data/corpus.txt");

/// Options of the `sentences` source.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SentencesConfig {
    /// A text file (one sentence per line) or JSON Lines file; none: the
    /// embedded corpus.
    path: Option<String>,
    /// The JSON Lines field holding the sentence.
    field: String,
    /// Tokens per sentence, with [CLS] and [SEP]: 32 (Gao et al. 2021,
    /// appendix A, unsupervised SimCSE).
    max_length: usize,
    /// The tokenizer (see the tokenizer docs); none: the pretrained
    /// encoder's, else the embedded bert-base-uncased.
    tokenizer: Option<String>,
    /// Use only the first `limit` sentences.
    limit: Option<usize>,
}

impl Default for SentencesConfig {
    fn default() -> Self {
        SentencesConfig {
            path: None,
            field: "text".into(),
            max_length: 32,
            tokenizer: None,
            limit: None,
        }
    }
}

/// The sentences of `text` (blank lines dropped).
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

parallax_core::register!(
    data_source,
    "sentences",
    "sentences, one per line or JSON Lines (default: an embedded public-domain corpus), tokenized",
    |p, ctx: &BuildCtx| {
        let c: SentencesConfig = p.extract()?;
        let tok = TextTokenizer::resolve(c.tokenizer.as_deref(), ctx, c.max_length)?;
        let (mut sentences, origin) = match &c.path {
            None => (lines(EMBEDDED_CORPUS), "embedded corpus".to_string()),
            Some(path) => {
                let file = ctx.resolve(path);
                let text = read_text(&file)?;
                let origin = file.display().to_string();
                if is_jsonl(&file) {
                    let v = jsonl_objects(&text, &origin)?
                        .iter()
                        .map(|(line, o)| json_str(o, &c.field, &origin, *line).map(str::to_string))
                        .collect::<Result<Vec<_>>>()?;
                    (v, origin)
                } else {
                    (lines(&text), origin)
                }
            }
        };
        if let Some(l) = c.limit {
            sentences.truncate(l);
        }
        if sentences.is_empty() {
            return Err(Error::Data(format!("{origin}: no sentences")));
        }
        let samples = sentences
            .iter()
            .map(|s| {
                let mut sample = Sample::default();
                tok.encode_into(s, "", &mut sample)?;
                Ok(sample)
            })
            .collect::<Result<Vec<_>>>()?;
        let description = format!(
            "sentences ({origin}, {} sentences, tokenizer {}, max_length {})",
            samples.len(),
            tok.origin(),
            c.max_length
        );
        Ok(Arc::new(TokenizedSource::new(
            samples,
            description,
            DataMeta {
                vocab_size: Some(tok.vocab_size()),
                ..DataMeta::default()
            },
        )))
    }
);
