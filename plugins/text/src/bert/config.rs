//! BERT's architecture settings, in the names of Hugging Face's
//! `config.json` (`BertConfig`).

use serde::{Deserialize, Serialize};

use parallax_core::error::{Error, Result};

/// The architecture of a BERT-style encoder. Defaults are BERT-base
/// (Devlin et al. 2019, section 3: L=12, H=768, A=12, 4H feed-forward,
/// dropout 0.1, GELU, 512 positions, the 30,522-token uncased WordPiece
/// vocabulary, initialisation N(0, 0.02)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of every layer.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// `gelu` (erf), `gelu_new` / `gelu_pytorch_tanh` (tanh approximation) or `relu`.
    pub hidden_act: String,
    /// Dropout on embeddings and sub-layer outputs (SimCSE's views come from it).
    pub hidden_dropout_prob: f64,
    /// Dropout on the attention probabilities.
    pub attention_probs_dropout_prob: f64,
    /// Longest sequence the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Segment (token type) vocabulary.
    pub type_vocab_size: usize,
    /// Standard deviation of the initial weights.
    pub initializer_range: f64,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// The padding token id.
    pub pad_token_id: usize,
}

impl Default for BertConfig {
    fn default() -> Self {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
        }
    }
}

impl BertConfig {
    /// Checks that the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid("bert", m));
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || self.hidden_size % self.num_attention_heads != 0
        {
            return bad(format!(
                "hidden_size ({}) must be a positive multiple of num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.vocab_size == 0
            || self.num_hidden_layers == 0
            || self.intermediate_size == 0
            || self.max_position_embeddings == 0
            || self.type_vocab_size == 0
        {
            return bad("vocab_size, num_hidden_layers, intermediate_size, max_position_embeddings and type_vocab_size must be positive".into());
        }
        for (k, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{k} must be in [0, 1), got {p}"));
            }
        }
        if !matches!(
            self.hidden_act.as_str(),
            "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "relu"
        ) {
            return bad(format!(
                "hidden_act `{}` is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)",
                self.hidden_act
            ));
        }
        Ok(())
    }

    /// Reads a Hugging Face `config.json`; returns the parsed settings and
    /// the whole JSON object (kept so that an export writes back every key).
    pub fn from_json(text: &str, origin: &str) -> Result<(Self, serde_json::Value)> {
        let raw: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Data(format!("{origin}: not valid JSON: {e}")))?;
        if let Some(t) = raw.get("model_type").and_then(|v| v.as_str()) {
            if t != "bert" {
                return Err(Error::Data(format!(
                    "{origin}: model_type `{t}` is not a BERT model (the `bert` encoder reads BERT and MiniLM checkpoints)"
                )));
            }
        }
        let cfg: BertConfig = serde_json::from_value(raw.clone())
            .map_err(|e| Error::Data(format!("{origin}: {e}")))?;
        cfg.validate()
            .map_err(|e| Error::Data(format!("{origin}: {e}")))?;
        Ok((cfg, raw))
    }

    /// The `config.json` to write: `base` (the loaded file's keys, if any)
    /// with this configuration's values.
    pub fn to_json(&self, base: Option<&serde_json::Value>) -> Result<serde_json::Value> {
        let mut out = match base {
            Some(serde_json::Value::Object(m)) => m.clone(),
            _ => {
                let mut m = serde_json::Map::new();
                m.insert("architectures".into(), serde_json::json!(["BertModel"]));
                m.insert("model_type".into(), serde_json::json!("bert"));
                m
            }
        };
        let ours = serde_json::to_value(self).map_err(|e| Error::Data(e.to_string()))?;
        if let serde_json::Value::Object(m) = ours {
            out.extend(m);
        }
        Ok(serde_json::Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_minilm_config_and_keeps_unknown_keys() {
        let text = r#"{"architectures":["BertModel"],"model_type":"bert","hidden_size":384,
            "num_hidden_layers":6,"num_attention_heads":12,"intermediate_size":1536,
            "vocab_size":30522,"transformers_version":"4.8.2","gradient_checkpointing":false}"#;
        let (cfg, raw) = BertConfig::from_json(text, "config.json").unwrap();
        assert_eq!(cfg.hidden_size, 384);
        assert_eq!(cfg.num_hidden_layers, 6);
        assert_eq!(cfg.layer_norm_eps, 1e-12);
        let back = cfg.to_json(Some(&raw)).unwrap();
        assert_eq!(back["transformers_version"], "4.8.2");
        assert_eq!(back["hidden_size"], 384);
        let bad = r#"{"model_type":"gpt2","hidden_size":384}"#;
        assert!(BertConfig::from_json(bad, "c.json")
            .err()
            .unwrap()
            .to_string()
            .contains("gpt2"));
        let bad = r#"{"hidden_size":100,"num_attention_heads":12}"#;
        assert!(BertConfig::from_json(bad, "c.json").is_err());
    }
}
