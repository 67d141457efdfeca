//! Our BERT on the real all-MiniLM-L6-v2 against sentence-transformers'
//! embeddings (tests/fixtures/text/minilm_reference.json, made by
//! scripts/make_text_fixture.py): identical token ids, cosine > 0.999.
//!
//! The model comes from the Hub cache (`scripts/fetch-models.sh` installs
//! it there with no network). Without it the test says so and passes,
//! unless CI=true or REQUIRE_MINILM=1 (see `parallax_core::external`).

use candle_core::{DType, Device, Tensor};
use parallax_core::batch::{Batch, Sample};
use parallax_core::data::{BuildCtx, Split};
use parallax_core::nn::encoder::{Encoder, ForwardCtx};
use parallax_core::nn::init::VarStore;
use parallax_hub::{pull, HubConfig};
use parallax_text::encoder::{BertEncoder, BertEncoderConfig, Pooling};
use parallax_text::tokenizer::TextTokenizer;

const REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";

#[derive(serde::Deserialize)]
struct Fixture {
    sentences: Vec<String>,
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    embeddings: Vec<Vec<f32>>,
    mean_pooled: Vec<Vec<f32>>,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_sentence_transformers() {
    let mut cfg = HubConfig::from_env();
    cfg.offline = true;
    let model = match pull(
        &cfg,
        REPO,
        None,
        &["config.json", "model.safetensors", "tokenizer.json"],
        &[],
    ) {
        Ok(m) => m,
        Err(e) => {
            let e = e.to_string();
            parallax_core::external::MINILM
                .check("minilm_matches_sentence_transformers", || Err(e));
            return;
        }
    };
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/text/minilm_reference.json"),
    )
    .unwrap();
    let fx: Fixture = serde_json::from_str(&text).unwrap();

    // tokenization: the same ids as the model's own (Python) tokenizer
    let tok = TextTokenizer::from_file(&model.files["tokenizer.json"], 256).unwrap();
    let mut samples = Vec::new();
    for (i, s) in fx.sentences.iter().enumerate() {
        let (ids, mask) = tok.encode(s).unwrap();
        let t = fx.input_ids[i].len();
        assert_eq!(&ids[..t], &fx.input_ids[i][..], "ids of {s:?}");
        assert_eq!(&mask[..t], &fx.attention_mask[i][..], "mask of {s:?}");
        assert!(mask[t..].iter().all(|&m| m == 0));
        let mut sample = Sample::default();
        tok.encode_into(s, "", &mut sample).unwrap();
        samples.push(sample);
    }

    // embeddings: mean pooling over the real weights
    let store = VarStore::new(0);
    let enc = BertEncoder::build(
        &BertEncoderConfig {
            pretrained: Some(model.dir.display().to_string()),
            pooling: Pooling::Mean,
            ..Default::default()
        },
        store.var_builder(DType::F32, &Device::Cpu).pp("encoder"),
        &BuildCtx::new(0, Split::Train),
    )
    .unwrap();
    let batch = Batch::collate(&samples, &Device::Cpu).unwrap();
    let out: Tensor = enc.forward(&batch, &mut ForwardCtx::eval()).unwrap();
    let rows = out.to_vec2::<f32>().unwrap();
    for (i, s) in fx.sentences.iter().enumerate() {
        let c = cosine(&rows[i], &fx.embeddings[i]);
        assert!(c > 0.999, "{s:?}: cosine {c}");
        let c = cosine(&rows[i], &fx.mean_pooled[i]);
        assert!(c > 0.999, "{s:?}: cosine to the pooled vector {c}");
        // before normalisation the vectors agree in length too
        let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let (a, b) = (n(&rows[i]), n(&fx.mean_pooled[i]));
        assert!((a - b).abs() < 1e-3 * b, "{s:?}: norm {a} vs {b}");
    }
}
