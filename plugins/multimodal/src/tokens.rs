//! The tokenizer of captions and prompts.
//!
//! Captions (data sources) and prompts (the zero-shot evaluator) must be
//! tokenized alike. The tokenizer is, first that applies:
//! 1. the component's own `tokenizer` key (see
//!    [`parallax_text::tokenizer::TextTokenizer::resolve`]);
//! 2. the `tokenizer.json` of the recipe's `[encoder] pretrained` model (a
//!    Hugging Face CLIP folder or Hub id);
//! 3. that of the text tower's `[encoder.text] pretrained` model (e.g. a
//!    BERT text tower from the Hub);
//! 4. the embedded `bert-base-uncased` WordPiece vocabulary.

use std::collections::HashMap;

use parallax_core::batch::{Field, Sample};
use parallax_core::data::BuildCtx;
use parallax_core::error::{Error, Result};
use parallax_text::tokenizer::{encoder_pretrained, TextTokenizer};
use serde::Deserialize;

/// CLIP's context length is 77 tokens; captions of class names and short
/// templates fit in 32, which keeps the text tower cheap on a CPU.
pub const DEFAULT_MAX_LENGTH: usize = 32;

/// The `pretrained` key of `[encoder.text]`.
#[derive(Deserialize)]
struct TowerRef {
    pretrained: Option<String>,
}

/// The `text` sub-table of `[encoder]`, if any.
#[derive(Deserialize)]
struct DualRef {
    text: Option<TowerRef>,
}

/// The tokenizer for captions and prompts (see the module docs).
pub fn caption_tokenizer(
    spec: Option<&str>,
    ctx: &BuildCtx,
    max_length: usize,
) -> Result<TextTokenizer> {
    if spec.is_some() || encoder_pretrained(ctx)?.is_some() {
        return TextTokenizer::resolve(spec, ctx, max_length);
    }
    let tower = match &ctx.encoder {
        Some(enc) => enc
            .params
            .extract::<DualRef>()
            .ok()
            .and_then(|d| d.text)
            .and_then(|t| t.pretrained),
        None => None,
    };
    TextTokenizer::resolve(tower.as_deref(), ctx, max_length)
}

/// Captions tokenized once each: token ids and attention mask by caption.
pub struct CaptionTokens {
    map: HashMap<String, (Vec<i64>, Vec<i64>)>,
    max_length: usize,
}

impl CaptionTokens {
    /// Tokenizes every distinct caption of `captions` with `tokenizer`.
    pub fn new(
        tokenizer: &TextTokenizer,
        captions: impl IntoIterator<Item = String>,
    ) -> Result<Self> {
        let mut map = HashMap::new();
        for caption in captions {
            if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(caption) {
                let encoded = tokenizer.encode(slot.key())?;
                slot.insert(encoded);
            }
        }
        Ok(CaptionTokens {
            map,
            max_length: tokenizer.max_length(),
        })
    }

    /// Adds `caption`'s `input_ids` and `attention_mask` to `sample`; `who`
    /// names the source in errors.
    pub fn insert_into(&self, caption: &str, sample: &mut Sample, who: &str) -> Result<()> {
        let (ids, mask) = self
            .map
            .get(caption)
            .ok_or_else(|| Error::Data(format!("{who}: caption {caption:?} was not tokenized")))?;
        let shape = vec![self.max_length];
        sample.insert(
            "input_ids",
            Field::I64 {
                shape: shape.clone(),
                data: ids.clone(),
            },
        );
        sample.insert(
            "attention_mask",
            Field::I64 {
                shape,
                data: mask.clone(),
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parallax_core::data::Split;
    use parallax_core::recipe::Component;

    #[test]
    fn defaults_to_the_embedded_vocabulary() {
        let mut ctx = BuildCtx::new(0, Split::Train);
        let t = caption_tokenizer(None, &ctx, 16).unwrap();
        assert_eq!(t.vocab_size(), 30522);
        assert_eq!(t.max_length(), 16);
        // a dual encoder from scratch: still the embedded one
        let mut table = toml::Table::new();
        let mut text = toml::Table::new();
        text.insert("name".into(), "clip_text".into());
        table.insert("text".into(), text.into());
        ctx.encoder = Some(Component::new("encoder", "clip", table).unwrap());
        assert_eq!(
            caption_tokenizer(None, &ctx, 8).unwrap().vocab_size(),
            30522
        );
        // a text tower with a pretrained folder that does not exist: an error naming it
        let mut table = toml::Table::new();
        let mut text = toml::Table::new();
        text.insert("name".into(), "bert".into());
        text.insert("pretrained".into(), "./no/such/model".into());
        table.insert("text".into(), text.into());
        ctx.encoder = Some(Component::new("encoder", "clip", table).unwrap());
        let e = caption_tokenizer(None, &ctx, 8).err().unwrap().to_string();
        assert!(e.contains("no/such/model"), "{e}");
    }
}
