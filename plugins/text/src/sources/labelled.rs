//! `[data] name = "labelled_sentences"`: sentences with class labels, for
//! probes and supervised baselines. Reads fastText lines
//! (`__label__pos some text`, as gensim's `pang_lee_polarity.cor`),
//! tab-separated `label<TAB>text` lines, or JSON Lines with `text` and
//! `label` fields. Class ids follow the sorted label names. A seeded
//! `test_fraction` of the rows is the test split.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use parallax_core::batch::{Field, Sample};
use parallax_core::data::{BuildCtx, DataMeta, Split};
use parallax_core::error::{Error, Result};
use parallax_core::rng::Rng;
use serde::Deserialize;

use crate::sources::{is_jsonl, json_str, jsonl_objects, read_text, TokenizedSource};
use crate::tokenizer::TextTokenizer;

/// Labelled sentences: `(text, label name)` in file order.
pub fn read_labelled(path: &Path) -> Result<Vec<(String, String)>> {
    let text = read_text(path)?;
    let origin = path.display().to_string();
    if is_jsonl(path) {
        return jsonl_objects(&text, &origin)?
            .iter()
            .map(|(line, o)| {
                let label = match o.get("label") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    _ => {
                        return Err(Error::Data(format!(
                            "{origin}:{line}: missing field `label` (a string or number)"
                        )))
                    }
                };
                Ok((json_str(o, "text", &origin, *line)?.to_string(), label))
            })
            .collect();
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let pair = if let Some(rest) = line.strip_prefix("__label__") {
            rest.split_once(char::is_whitespace)
                .map(|(l, t)| (t.trim().to_string(), l.to_string()))
        } else {
            line.split_once('\t')
                .map(|(l, t)| (t.trim().to_string(), l.trim().to_string()))
        };
        match pair {
            Some((t, l)) if !t.is_empty() && !l.is_empty() => out.push((t, l)),
            _ => {
                return Err(Error::Data(format!(
                    "{origin}:{}: expected `__label__NAME text` or `label<TAB>text`",
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}

/// The sorted label names and each row's class id.
pub fn class_ids(rows: &[(String, String)]) -> (Vec<String>, Vec<i64>) {
    let names: Vec<String> = rows
        .iter()
        .map(|(_, l)| l.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ids = rows
        .iter()
        .map(|(_, l)| names.iter().position(|n| n == l).unwrap_or(0) as i64)
        .collect();
    (names, ids)
}

/// Options of the `labelled_sentences` source.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelledConfig {
    /// The file (fastText, TSV or JSON Lines).
    path: String,
    /// Tokens per sentence.
    #[serde(default = "default_max_length")]
    max_length: usize,
    /// The tokenizer; none: the pretrained encoder's, else the embedded one.
    #[serde(default)]
    tokenizer: Option<String>,
    /// The share of rows (seeded) in the test split.
    #[serde(default = "default_test_fraction")]
    test_fraction: f64,
}

fn default_max_length() -> usize {
    64
}

fn default_test_fraction() -> f64 {
    0.2
}

parallax_core::register!(
    data_source,
    "labelled_sentences",
    "sentences with class labels (fastText `__label__`, TSV or JSON Lines), seeded train/test split",
    |p, ctx: &BuildCtx| {
        let c: LabelledConfig = p.extract()?;
        if !(0.0..1.0).contains(&c.test_fraction) {
            return Err(p.error("test_fraction", "must be in [0, 1)"));
        }
        let file = ctx.resolve(&c.path);
        let rows = read_labelled(&file)?;
        if rows.is_empty() {
            return Err(Error::Data(format!("{}: no labelled sentences", file.display())));
        }
        let tok = TextTokenizer::resolve(c.tokenizer.as_deref(), ctx, c.max_length)?;
        let (names, ids) = class_ids(&rows);
        let order = Rng::derive(ctx.seed, "labelled_sentences/split", &[]).permutation(rows.len());
        let n_test = (rows.len() as f64 * c.test_fraction).round() as usize;
        let mut chosen: Vec<usize> = match ctx.split {
            Split::Test => order[..n_test].to_vec(),
            Split::Train => order[n_test..].to_vec(),
        };
        chosen.sort_unstable();
        let samples = chosen
            .iter()
            .map(|&i| {
                let mut s = Sample::default();
                tok.encode_into(&rows[i].0, "", &mut s)?;
                s.insert("label", Field::label(ids[i]));
                Ok(s)
            })
            .collect::<Result<Vec<_>>>()?;
        let description = format!(
            "labelled sentences ({}, {} split, {} of {} rows, classes {})",
            file.display(),
            ctx.split.as_str(),
            samples.len(),
            rows.len(),
            names.join("/")
        );
        let meta = DataMeta {
            image_shape: None,
            num_classes: Some(names.len()),
            class_names: names,
            vocab_size: Some(tok.vocab_size()),
        };
        Ok(Arc::new(TokenizedSource::new(samples, description, meta)))
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fasttext_tsv_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let ft = dir.path().join("p.cor");
        std::fs::write(&ft, "__label__neg bad film .\n__label__pos good film .\n").unwrap();
        let rows = read_labelled(&ft).unwrap();
        assert_eq!(rows[1], ("good film .".to_string(), "pos".to_string()));
        assert_eq!(
            class_ids(&rows),
            (vec!["neg".into(), "pos".into()], vec![0, 1])
        );
        let tsv = dir.path().join("p.tsv");
        std::fs::write(&tsv, "b\tsecond\na\tfirst\n").unwrap();
        assert_eq!(class_ids(&read_labelled(&tsv).unwrap()).1, vec![1, 0]);
        let js = dir.path().join("p.jsonl");
        std::fs::write(&js, "{\"text\":\"x\",\"label\":3}\n").unwrap();
        assert_eq!(read_labelled(&js).unwrap()[0].1, "3");
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, "no label here\n").unwrap();
        let e = read_labelled(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.txt:1"), "{e}");
    }
}
