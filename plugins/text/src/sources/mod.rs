//! Text data sources: sentences (unsupervised SimCSE), sentence triples
//! (supervised SimCSE) and labelled sentences (probes). Each tokenizes its
//! file once when it is built and serves fixed-length samples.

pub mod labelled;
pub mod sentences;
pub mod triples;

use std::path::Path;

use parallax_core::batch::Sample;
use parallax_core::data::{DataMeta, DataSource};
use parallax_core::error::{Error, Result};

/// Tokenized samples held in memory.
pub struct TokenizedSource {
    samples: Vec<Sample>,
    description: String,
    meta: DataMeta,
}

impl TokenizedSource {
    /// A source over `samples`.
    pub fn new(samples: Vec<Sample>, description: String, meta: DataMeta) -> Self {
        TokenizedSource {
            samples,
            description,
            meta,
        }
    }
}

impl DataSource for TokenizedSource {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        self.samples
            .get(index)
            .cloned()
            .ok_or_else(|| Error::Data(format!("{}: index {index} out of range", self.description)))
    }

    fn meta(&self) -> DataMeta {
        self.meta.clone()
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// Reads a text file, naming it on failure. A file that is not UTF-8 is
/// read as Latin-1 (gensim's `lee.cor` and `pang_lee_polarity.cor` are
/// Latin-1 / Windows-1252), with a warning.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(String::from_utf8(bytes).unwrap_or_else(|e| {
        eprintln!(
            "warning: {} is not UTF-8 ({e}); reading it as Latin-1",
            path.display()
        );
        e.into_bytes().iter().map(|&b| b as char).collect()
    }))
}

/// Whether `path` is JSON Lines (by extension).
pub fn is_jsonl(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl") | Some("json") | Some("ndjson")
    )
}

/// The JSON objects of a JSON Lines text, with their line numbers; an
/// invalid line is an error naming `origin` and the line.
pub fn jsonl_objects(
    text: &str,
    origin: &str,
) -> Result<Vec<(usize, serde_json::Map<String, serde_json::Value>)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(m)) => out.push((i + 1, m)),
            Ok(_) => {
                return Err(Error::Data(format!(
                    "{origin}:{}: expected a JSON object",
                    i + 1
                )))
            }
            Err(e) => return Err(Error::Data(format!("{origin}:{}: {e}", i + 1))),
        }
    }
    Ok(out)
}

/// The string field `key` of a JSON Lines object.
pub fn json_str<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
    origin: &str,
    line: usize,
) -> Result<&'a str> {
    obj.get(key).and_then(|v| v.as_str()).ok_or_else(|| {
        Error::Data(format!(
            "{origin}:{line}: missing string field `{key}` (fields: {})",
            obj.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Splits one CSV record (RFC 4180 quoting; no embedded newlines).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_jsonl_parsing() {
        assert_eq!(
            csv_fields(r#"a,"b, c","say ""hi""",d"#),
            vec!["a", "b, c", "say \"hi\"", "d"]
        );
        let objs = jsonl_objects("{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n", "f.jsonl").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].0, 3);
        assert_eq!(json_str(&objs[1].1, "text", "f", 3).unwrap(), "b");
        let e = json_str(&objs[1].1, "label", "f.jsonl", 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.jsonl:3") && e.contains("label"), "{e}");
        let e = jsonl_objects("{\"text\": 1}\nnope\n", "g.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("g.jsonl:2"), "{e}");
    }
}
