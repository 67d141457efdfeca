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

/// The largest vocabulary a `tokenizer.json` may have (one more than its
/// largest token id): 2^24. Real vocabularies have at most a few hundred
/// thousand tokens; the encoder's embedding table has a row per id.
pub const MAX_VOCAB_SIZE: usize = 1 << 24;

/// A tokenizer with a fixed output length.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Arc<Tokenizer>,
    max_length: usize,
    pad_id: u32,
    /// One more than the largest token id.
    vocab_size: usize,
    /// Where it came from (for messages).
    origin: String,
    /// The `tokenizer.json` file, when it came from one (for export).
    file: Option<PathBuf>,
}

impl TextTokenizer {
    /// Parses a `tokenizer.json`'s bytes. The vocabulary (one more than
    /// the largest token id, added tokens included) must be at most
    /// [`MAX_VOCAB_SIZE`] and at most the file's length in bytes (every id
    /// is listed in the file, so a larger one means ids far apart from
    /// each other); the padding id must be inside it.
    pub fn from_bytes(bytes: &[u8], origin: &str, max_length: usize) -> Result<Self> {
        if max_length < 2 {
            return Err(Error::invalid(
                "tokenizer",
                format!(
                    "max_length must be at least 2 (room for [CLS] and [SEP]), got {max_length}"
                ),
            ));
        }
        // JSON syntax first: the tokenizers crate panics (an `expect`) on
        // some syntax errors that it meets inside a component
        let json: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Data(format!("{origin}: not a valid tokenizer.json: {e}")))?;
        check_post_processor(json.get("post_processor"), origin)?;
        let mut tok = guarded(origin, "reading it", || {
            serde_json::from_value::<Tokenizer>(json)
        })?
        .map_err(|e| Error::Data(format!("{origin}: not a valid tokenizer.json: {e}")))?;
        let pad_id = tok
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tok.token_to_id("[PAD]"))
            .or_else(|| tok.token_to_id("<pad>"))
            .unwrap_or(0);
        let vocab_size = vocab_size(&tok, bytes.len(), origin)?;
        if pad_id as usize >= vocab_size {
            return Err(Error::Data(format!(
                "{origin}: the padding id {pad_id} is outside the vocabulary of {vocab_size} ids"
            )));
        }
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
            vocab_size,
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

    /// The size of the vocabulary: one more than the largest token id
    /// (added tokens included), so that every id indexes an embedding row.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
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
        let enc = guarded(&self.origin, &format!("tokenizing {text:?}"), || {
            self.inner.encode(text, true)
        })?
        .map_err(|e| Error::Data(format!("{}: cannot tokenize {text:?}: {e}", self.origin)))?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        ids.truncate(self.max_length);
        // a post-processor (TemplateProcessing) may name ids of its own
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.vocab_size) {
            return Err(Error::Data(format!(
                "{}: tokenizing {text:?} gave the id {bad}, outside the vocabulary of {} ids (check the post_processor's special tokens)",
                self.origin, self.vocab_size
            )));
        }
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

/// Runs `f`, a call into the `tokenizers` crate, turning a panic inside it
/// into an error naming `origin`: the crate has `expect`s that some
/// malformed files reach (a `Precompiled` normalizer that does not parse,
/// for one). The panic's message is still printed by the panic hook.
fn guarded<T>(origin: &str, what: &str, f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Error::Data(format!(
            "{origin}: the tokenizers library failed {what} ({message}): the file is malformed"
        ))
    })
}

/// Checks that every special token a `TemplateProcessing` post-processor
/// (alone or in a `Sequence`) puts in its templates is defined in its
/// `special_tokens`, with as many ids as tokens: the tokenizers crate
/// does not check this when it reads the file, and panics on the first
/// text it tokenizes. The crate also reads a post-processor with a missing
/// or misspelt `type` by its fields, so any object with templates is
/// checked.
fn check_post_processor(pp: Option<&serde_json::Value>, origin: &str) -> Result<()> {
    use serde_json::Value;
    let Some(Value::Object(pp)) = pp else {
        return Ok(());
    };
    if let Some(Value::Array(list)) = pp.get("processors") {
        for p in list {
            check_post_processor(Some(p), origin)?;
        }
    }
    let bad = |m: String| Error::Data(format!("{origin}: post_processor: {m}"));
    let tokens = match pp.get("special_tokens") {
        Some(Value::Object(t)) => t.clone(),
        _ => serde_json::Map::new(),
    };
    for (name, t) in &tokens {
        let len = |k: &str| t.get(k).and_then(Value::as_array).map(Vec::len);
        if len("ids") != len("tokens") {
            return Err(bad(format!(
                "the special token `{name}` has {} ids but {} tokens",
                len("ids").unwrap_or(0),
                len("tokens").unwrap_or(0)
            )));
        }
    }
    for key in ["single", "pair"] {
        let Some(Value::Array(pieces)) = pp.get(key) else {
            continue;
        };
        for piece in pieces {
            let id = piece
                .get("SpecialToken")
                .and_then(|t| t.get("id"))
                .and_then(Value::as_str);
            if let Some(id) = id {
                if !tokens.contains_key(id) {
                    return Err(bad(format!(
                        "the `{key}` template uses the special token `{id}`, which `special_tokens` does not define"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// One more than the largest token id of `tok` (read from a file of
/// `file_len` bytes), checked against [`MAX_VOCAB_SIZE`] and `file_len`.
fn vocab_size(tok: &Tokenizer, file_len: usize, origin: &str) -> Result<usize> {
    let Some(max_id) = tok.get_vocab(true).into_values().max() else {
        return Err(Error::Data(format!("{origin}: the vocabulary is empty")));
    };
    let size = max_id as usize + 1;
    let limit = MAX_VOCAB_SIZE.min(file_len);
    if size > limit {
        return Err(Error::Data(format!(
            "{origin}: a vocabulary of {size} ids (largest id {max_id}) is implausible: at most {limit} (the file's {file_len} bytes, and {MAX_VOCAB_SIZE} in any case)"
        )));
    }
    Ok(size)
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

    /// A WordLevel tokenizer.json with `vocab` and the given post-processor.
    fn word_level(vocab: &str, post: &str) -> Vec<u8> {
        format!(
            r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}}, "post_processor": {post},
            "decoder": null, "model": {{"type": "WordLevel", "vocab": {vocab}, "unk_token": "[UNK]"}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn absurd_vocabularies_are_refused() {
        let ok = word_level(r#"{"[UNK]": 0, "[PAD]": 1, "cat": 2}"#, "null");
        let t = TextTokenizer::from_bytes(&ok, "ok.json", 6).unwrap();
        assert_eq!(t.vocab_size(), 3);
        assert_eq!(t.encode("cat dog").unwrap().0, vec![2, 0, 1, 1, 1, 1]);
        // a 300-byte file claiming four billion ids
        let huge = word_level(r#"{"[UNK]": 0, "cat": 4000000000}"#, "null");
        let e = TextTokenizer::from_bytes(&huge, "huge.json", 6)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("huge.json") && e.contains("4000000001 ids") && e.contains("implausible"),
            "{e}"
        );
        let e = TextTokenizer::from_bytes(&word_level("{}", "null"), "empty.json", 6)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("empty.json: the vocabulary is empty"), "{e}");
        // a post-processor that adds an id the vocabulary does not have
        let post = r#"{"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [70000], "tokens": ["<s>"]}}}"#;
        let t = TextTokenizer::from_bytes(
            &word_level(r#"{"[UNK]": 0, "cat": 1}"#, post),
            "post.json",
            6,
        )
        .unwrap();
        let e = t.encode("cat").unwrap_err().to_string();
        assert!(e.contains("post.json") && e.contains("70000"), "{e}");
    }

    #[test]
    fn malformed_files_that_panicked_the_tokenizers_crate_are_errors() {
        let vocab = r#"{"[UNK]": 0, "cat": 1}"#;
        // a template naming a special token it does not define
        let post = r#"{"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["cat"]}}}"#;
        let e = TextTokenizer::from_bytes(&word_level(vocab, post), "t.json", 6)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("t.json: post_processor") && e.contains("`<s>`"),
            "{e}"
        );
        let post = format!(r#"{{"type": "Sequence", "processors": [{post}]}}"#);
        assert!(TextTokenizer::from_bytes(&word_level(vocab, &post), "t.json", 6).is_err());
        // a syntax error inside the decoder (the crate's `expect("Helper")`)
        let mut bytes = word_level(vocab, "null");
        let text = String::from_utf8(bytes.clone()).unwrap();
        let at = text.find(r#""decoder": null"#).unwrap();
        bytes.splice(
            at..at + 15,
            br#""decoder": {"type": "Fuse", "x": "#.iter().copied(),
        );
        let e = TextTokenizer::from_bytes(&bytes, "d.json", 6)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("d.json: not a valid tokenizer.json"), "{e}");
    }
}
