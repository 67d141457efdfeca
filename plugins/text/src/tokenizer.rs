//! Tokenization with the `tokenizers` crate: a `tokenizer.json` in, fixed
//! length `input_ids` and `attention_mask` out.
//!
//! Where the tokenizer comes from (first that applies):
//! 1. the component's own `tokenizer` key: `bert-base-uncased` (the
//!    WordPiece vocabulary embedded in this crate, the one BERT and
//!    all-MiniLM-L6-v2 use), a path to a `tokenizer.json`, a model folder,
//!    or a Hugging Face Hub id;
//! 2. the recipe's `[encoder] pretrained` (and `revision`): the tokenizer
//!    that ships with the pretrained model;
//! 3. the embedded `bert-base-uncased`.
//!
//! Sequences are truncated to `max_length` (keeping the final `[SEP]`) and
//! padded with the tokenizer's padding id; encoders trim a batch to its
//! longest sequence, so the padding costs nothing in compute.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parallax_core::batch::{Field, Sample};
use parallax_core::data::BuildCtx;
use parallax_core::error::{Error, Result};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::hub::resolve_model_files;

/// The embedded tokenizer's name.
pub const EMBEDDED: &str = "bert-base-uncased";

/// The embedded tokenizer's vocabulary size (BERT's WordPiece).
pub const EMBEDDED_VOCAB_SIZE: usize = 30522;

/// all-MiniLM-L6-v2's `tokenizer.json` (the bert-base-uncased WordPiece
/// vocabulary, Apache-2.0), gzipped.
static EMBEDDED_JSON_GZ: &[u8] = include_bytes!("../data/bert-base-uncased-tokenizer.json.gz");

/// A tokenizer with a fixed output length.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Arc<Tokenizer>,
    max_length: usize,
    pad_id: u32,
    /// Where it came from (for messages).
    origin: String,
    /// The `tokenizer.json` file, when it came from one (for export).
    file: Option<PathBuf>,
}

impl TextTokenizer {
    /// Parses a `tokenizer.json`'s bytes.
    pub fn from_bytes(bytes: &[u8], origin: &str, max_length: usize) -> Result<Self> {
        if max_length < 2 {
            return Err(Error::invalid(
                "tokenizer",
                format!(
                    "max_length must be at least 2 (room for [CLS] and [SEP]), got {max_length}"
                ),
            ));
        }
        let mut tok = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::Data(format!("{origin}: not a valid tokenizer.json: {e}")))?;
        let pad_id = tok
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tok.token_to_id("[PAD]"))
            .or_else(|| tok.token_to_id("<pad>"))
            .unwrap_or(0);
        tok.with_padding(None);
        tok.with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(|e| Error::Data(format!("{origin}: cannot set truncation: {e}")))?;
        Ok(TextTokenizer {
            inner: Arc::new(tok),
            max_length,
            pad_id,
            origin: origin.to_string(),
            file: None,
        })
    }

    /// Reads a `tokenizer.json` file.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut t = Self::from_bytes(&bytes, &path.display().to_string(), max_length)?;
        t.file = Some(path.to_path_buf());
        Ok(t)
    }

    /// The embedded bert-base-uncased tokenizer.
    pub fn embedded(max_length: usize) -> Result<Self> {
        Self::from_bytes(&embedded_json()?, EMBEDDED, max_length)
    }

    /// The tokenizer named by `spec` (see the module docs), or, when `spec`
    /// is `None`, that of the recipe's pretrained encoder, else the
    /// embedded one.
    pub fn resolve(spec: Option<&str>, ctx: &BuildCtx, max_length: usize) -> Result<Self> {
        match spec {
            Some(EMBEDDED) => Self::embedded(max_length),
            Some(s) => {
                let p = ctx.resolve(s);
                if p.is_file() {
                    Self::from_file(&p, max_length)
                } else {
                    let files = resolve_model_files(s, None, ctx, &["tokenizer.json"], &[])?;
                    Self::from_file(&files.file("tokenizer.json")?, max_length)
                }
            }
            None => match encoder_pretrained(ctx)? {
                Some((model, revision)) => {
                    let files = resolve_model_files(
                        &model,
                        revision.as_deref(),
                        ctx,
                        &["tokenizer.json"],
                        &[],
                    )?;
                    Self::from_file(&files.file("tokenizer.json")?, max_length)
                }
                None => Self::embedded(max_length),
            },
        }
    }

    /// The fixed sequence length.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The number of tokens in the vocabulary (with added tokens).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Where the tokenizer came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The `tokenizer.json` bytes, for saving with an exported model.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        match &self.file {
            Some(f) => std::fs::read(f).map_err(|e| Error::io(f, e)),
            None if self.origin == EMBEDDED => embedded_json(),
            None => Err(Error::Data(format!(
                "{}: the tokenizer has no file to save",
                self.origin
            ))),
        }
    }

    /// Token ids and attention mask of `text`, padded to `max_length`.
    pub fn encode(&self, text: &str) -> Result<(Vec<i64>, Vec<i64>)> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Data(format!("{}: cannot tokenize {text:?}: {e}", self.origin)))?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        ids.truncate(self.max_length);
        let mut mask = vec![1i64; ids.len()];
        ids.resize(self.max_length, self.pad_id as i64);
        mask.resize(self.max_length, 0);
        Ok((ids, mask))
    }

    /// `text` as sample fields `{prefix}input_ids` and
    /// `{prefix}attention_mask`, added to `sample`.
    pub fn encode_into(&self, text: &str, prefix: &str, sample: &mut Sample) -> Result<()> {
        let (ids, mask) = self.encode(text)?;
        let shape = vec![self.max_length];
        sample.insert(
            &format!("{prefix}input_ids"),
            Field::I64 {
                shape: shape.clone(),
                data: ids,
            },
        );
        sample.insert(
            &format!("{prefix}attention_mask"),
            Field::I64 { shape, data: mask },
        );
        Ok(())
    }
}

fn embedded_json() -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(EMBEDDED_JSON_GZ)
        .read_to_end(&mut out)
        .map_err(|e| Error::Data(format!("the embedded tokenizer is corrupt: {e}")))?;
    Ok(out)
}

/// The `pretrained` and `revision` keys of the recipe's `[encoder]`.
#[derive(Deserialize)]
struct PretrainedRef {
    pretrained: Option<String>,
    revision: Option<String>,
}

/// The recipe's `[encoder] pretrained` model and revision, if any.
pub fn encoder_pretrained(ctx: &BuildCtx) -> Result<Option<(String, Option<String>)>> {
    let Some(enc) = &ctx.encoder else {
        return Ok(None);
    };
    let r: PretrainedRef = enc.params.extract()?;
    Ok(r.pretrained.map(|p| (p, r.revision)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_tokenizer_pads_truncates_and_masks() {
        let t = TextTokenizer::embedded(8).unwrap();
        assert_eq!(t.vocab_size(), EMBEDDED_VOCAB_SIZE);
        let (ids, mask) = t.encode("Hello world").unwrap();
        // [CLS] hello world [SEP] + padding
        assert_eq!(&ids[..4], &[101, 7592, 2088, 102]);
        assert_eq!(&ids[4..], &[0, 0, 0, 0]);
        assert_eq!(mask, vec![1, 1, 1, 1, 0, 0, 0, 0]);
        let (ids, mask) = t
            .encode("one two three four five six seven eight nine ten")
            .unwrap();
        assert_eq!(ids.len(), 8);
        assert_eq!(ids[7], 102, "the final [SEP] is kept when truncating");
        assert!(mask.iter().all(|&m| m == 1));
        assert!(TextTokenizer::embedded(1).is_err());
        assert!(TextTokenizer::from_bytes(b"{not json", "x.json", 8)
            .err()
            .unwrap()
            .to_string()
            .contains("x.json"));
    }
}
