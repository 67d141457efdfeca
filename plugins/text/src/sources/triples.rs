//! `[data] name = "sentence_triples"`: (sentence, entailment, contradiction)
//! triples for supervised SimCSE (Gao et al. 2021, section 4). Reads JSON
//! Lines with the fields `sentence`, `entailment`, `contradiction`, or a CSV
//! file with the header `sent0,sent1,hard_neg` (the layout of SimCSE's
//! `nli_for_simcse.csv`). By default a small hand-written embedded set (see
//! plugins/text/data/README.md) that exercises the supervised path; point
//! `path` at real NLI data for real training.
//!
//! Samples carry `input_ids`/`attention_mask` (the sentence), and the same
//! under `positive/` and `negative/`; the `triples` view generator turns
//! them into the three views the `simcse` method takes.

use std::sync::Arc;

use parallax_core::batch::Sample;
use parallax_core::data::{BuildCtx, DataMeta};
use parallax_core::error::{Error, Result};
use serde::Deserialize;

use crate::sources::{csv_fields, is_jsonl, json_str, jsonl_objects, read_text, TokenizedSource};
use crate::tokenizer::TextTokenizer;

/// The embedded triples.
pub static EMBEDDED_TRIPLES: &str = include_str!("../../data/nli_triples.jsonl");

/// Options of the `sentence_triples` source.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TriplesConfig {
    /// A JSON Lines or CSV file; none: the embedded set.
    path: Option<String>,
    /// Tokens per sentence: 32 (Gao et al. 2021, appendix A).
    max_length: usize,
    /// The tokenizer; none: the pretrained encoder's, else the embedded one.
    tokenizer: Option<String>,
    /// Use only the first `limit` triples.
    limit: Option<usize>,
}

impl Default for TriplesConfig {
    fn default() -> Self {
        TriplesConfig {
            path: None,
            max_length: 32,
            tokenizer: None,
            limit: None,
        }
    }
}

/// The triples of a JSON Lines text.
pub fn parse_jsonl(text: &str, origin: &str) -> Result<Vec<[String; 3]>> {
    jsonl_objects(text, origin)?
        .iter()
        .map(|(line, o)| {
            Ok([
                json_str(o, "sentence", origin, *line)?.to_string(),
                json_str(o, "entailment", origin, *line)?.to_string(),
                json_str(o, "contradiction", origin, *line)?.to_string(),
            ])
        })
        .collect()
}

/// The triples of a CSV text with the header `sent0,sent1,hard_neg`.
pub fn parse_csv(text: &str, origin: &str) -> Result<Vec<[String; 3]>> {
    let mut rows = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header = rows
        .next()
        .map(|(_, h)| csv_fields(h.trim_start_matches('\u{feff}')))
        .unwrap_or_default();
    let col = |name: &str| {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            Error::Data(format!(
                "{origin}: the CSV header needs columns sent0, sent1, hard_neg (found: {})",
                header.join(", ")
            ))
        })
    };
    let (a, b, c) = (col("sent0")?, col("sent1")?, col("hard_neg")?);
    rows.map(|(i, l)| {
        let f = csv_fields(l);
        let get = |j: usize| {
            f.get(j).cloned().ok_or_else(|| {
                Error::Data(format!(
                    "{origin}:{}: expected {} columns",
                    i + 1,
                    header.len()
                ))
            })
        };
        Ok([get(a)?, get(b)?, get(c)?])
    })
    .collect()
}

parallax_core::register!(
    data_source,
    "sentence_triples",
    "(sentence, entailment, contradiction) triples from JSON Lines or SimCSE's CSV, tokenized",
    |p, ctx: &BuildCtx| {
        let c: TriplesConfig = p.extract()?;
        let tok = TextTokenizer::resolve(c.tokenizer.as_deref(), ctx, c.max_length)?;
        let (mut triples, origin) = match &c.path {
            None => (
                parse_jsonl(EMBEDDED_TRIPLES, "embedded triples")?,
                "embedded triples".to_string(),
            ),
            Some(path) => {
                let file = ctx.resolve(path);
                let text = read_text(&file)?;
                let origin = file.display().to_string();
                let t = if is_jsonl(&file) {
                    parse_jsonl(&text, &origin)?
                } else {
                    parse_csv(&text, &origin)?
                };
                (t, origin)
            }
        };
        if let Some(l) = c.limit {
            triples.truncate(l);
        }
        if triples.is_empty() {
            return Err(Error::Data(format!("{origin}: no triples")));
        }
        let samples = triples
            .iter()
            .map(|[s, e, n]| {
                let mut sample = Sample::default();
                tok.encode_into(s, "", &mut sample)?;
                tok.encode_into(e, "positive/", &mut sample)?;
                tok.encode_into(n, "negative/", &mut sample)?;
                Ok(sample)
            })
            .collect::<Result<Vec<_>>>()?;
        let description = format!(
            "sentence triples ({origin}, {} triples, tokenizer {})",
            samples.len(),
            tok.origin()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_layouts_and_names_bad_lines() {
        let j = "{\"sentence\":\"a\",\"entailment\":\"b\",\"contradiction\":\"c\"}\n";
        assert_eq!(
            parse_jsonl(j, "t.jsonl").unwrap(),
            vec![["a".to_string(), "b".into(), "c".into()]]
        );
        let csv = "sent0,sent1,hard_neg\n\"x, y\",z,w\n";
        assert_eq!(parse_csv(csv, "t.csv").unwrap()[0][0], "x, y");
        assert!(parse_csv("a,b\n1,2\n", "t.csv")
            .unwrap_err()
            .to_string()
            .contains("sent0"));
        let bad = "{\"sentence\":\"a\",\"entailment\":\"b\"}\n";
        assert!(parse_jsonl(bad, "t.jsonl")
            .unwrap_err()
            .to_string()
            .contains("contradiction"));
        assert!(parse_jsonl(EMBEDDED_TRIPLES, "embedded").unwrap().len() >= 100);
    }
}
