//! The `clip` dual encoder: a tiny Hugging Face CLIP (written by
//! transformers, see scripts/make_tiny_clip.py) loads from a folder and
//! through a mock Hub and reproduces transformers' projected embeddings and
//! logits; from scratch, towers come from the registry under Hugging Face's
//! names; misconfigurations are errors naming the key or the tensor.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use parallax_core::batch::Batch;
use parallax_core::data::DataMeta;
use parallax_core::nn::encoder::{Encoder, ForwardCtx};
use parallax_core::nn::init::VarStore;
use parallax_core::recipe::Params;
use parallax_multimodal::dual::{DualEncoder, LOGIT_SCALE_INIT};

#[allow(dead_code)]
#[path = "../../../tests/src/mock_hub.rs"]
mod mock_hub;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-clip")
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap())
        .unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(floats).collect(),
        x => vec![x.as_f64().unwrap() as f32],
    }
}

fn ints(v: &serde_json::Value) -> Vec<i64> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(ints).collect(),
        x => vec![x.as_i64().unwrap()],
    }
}

fn params(toml_text: &str) -> Params {
    Params::from_toml("encoder", toml::from_str(toml_text).unwrap()).unwrap()
}

fn build(p: &Params, meta: &DataMeta) -> parallax_core::Result<(VarStore, DualEncoder)> {
    let store = VarStore::new(7);
    let vb = store.var_builder(DType::F32, &Device::Cpu).pp("encoder");
    let enc = DualEncoder::build(p, meta, vb)?;
    Ok((store, enc))
}

/// The reference batch: two 16 px RGB images and two token sequences.
fn batch(r: &serde_json::Value) -> Batch {
    let mut b = Batch::default();
    let img = Tensor::from_vec(floats(&r["images"]), (2, 3, 16, 16), &Device::Cpu).unwrap();
    let ids = ints(&r["input_ids"]);
    let t = ids.len() / 2;
    b.tensors.insert("image".into(), img);
    b.tensors.insert(
        "input_ids".into(),
        Tensor::from_vec(ids, (2, t), &Device::Cpu).unwrap(),
    );
    b.tensors.insert(
        "attention_mask".into(),
        Tensor::from_vec(ints(&r["attention_mask"]), (2, t), &Device::Cpu).unwrap(),
    );
    b
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Checks `enc` against transformers' outputs.
fn matches_transformers(enc: &DualEncoder) {
    let r = reference();
    let b = batch(&r);
    let it = enc.image_text().expect("a dual encoder");
    let mut ctx = ForwardCtx::eval();
    let img = it.embed_image(&b, &mut ctx).unwrap();
    let txt = it.embed_text(&b, &mut ctx).unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let d = max_abs_diff(&flat(&img), &floats(&r["image_embeds"]));
    assert!(d < 1e-4, "image embeddings differ by {d}");
    let d = max_abs_diff(&flat(&txt), &floats(&r["text_embeds"]));
    assert!(d < 1e-4, "text embeddings differ by {d}");
    let s = flat(it.logit_scale());
    assert!((s[0] as f64 - r["logit_scale"].as_f64().unwrap()).abs() < 1e-6);
    let norm = |t: &Tensor| parallax_core::losses::l2_normalize(t).unwrap();
    let logits =
        (norm(&img).matmul(&norm(&txt).t().unwrap()).unwrap() * (s[0] as f64).exp()).unwrap();
    let d = max_abs_diff(&flat(&logits), &floats(&r["logits_per_image"]));
    assert!(d < 1e-3, "logits differ by {d}");
    // forward gives the image tower's features before the projection
    let f = enc.forward(&b, &mut ctx).unwrap();
    let d = max_abs_diff(&flat(&f), &floats(&r["vision_pooler_output"]));
    assert!(d < 1e-4, "image features differ by {d}");
    assert_eq!(it.embed_dim(), 24);
}

#[test]
fn hugging_face_clip_loads_from_a_folder_and_the_hub() {
    let meta = DataMeta::default();
    let p = params(&format!(
        "pretrained = {:?}",
        fixture().display().to_string()
    ));
    let (store, enc) = build(&p, &meta).unwrap();
    matches_transformers(&enc);
    let names: Vec<String> = store.named_vars().into_iter().map(|(n, _)| n).collect();
    for n in [
        "encoder.logit_scale",
        "encoder.visual_projection.weight",
        "encoder.text_projection.weight",
        "encoder.vision_model.embeddings.class_embedding",
        "encoder.text_model.final_layer_norm.weight",
    ] {
        assert!(names.iter().any(|x| x == n), "no {n}");
    }

    // the same model from a (mock) Hub repository
    let mut files = BTreeMap::new();
    for f in ["config.json", "model.safetensors"] {
        files.insert(f.to_string(), std::fs::read(fixture().join(f)).unwrap());
    }
    let hub = mock_hub::MockHub::start("acme/tiny-clip", files);
    let home = tempfile::tempdir().unwrap();
    // only this test uses the Hub variables
    std::env::set_var("HF_ENDPOINT", hub.url());
    std::env::set_var("HF_HOME", home.path());
    for v in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
    ] {
        std::env::remove_var(v);
    }
    let (_, enc) = build(&params("pretrained = \"acme/tiny-clip\""), &meta).unwrap();
    matches_transformers(&enc);
    assert!(
        hub.gets().iter().any(|g| g.ends_with("model.safetensors")),
        "{:?}",
        hub.gets()
    );
    let e = build(&params("pretrained = \"acme/no-such-clip\""), &meta)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("acme/no-such-clip"), "{e}");
}

#[test]
fn a_checkpoint_that_does_not_fit_is_an_error_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let mut t =
        candle_core::safetensors::load(fixture().join("model.safetensors"), &Device::Cpu).unwrap();
    t.insert(
        "text_model.extra.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, dir.path().join("model.safetensors")).unwrap();
    let p = params(&format!(
        "pretrained = {:?}",
        dir.path().display().to_string()
    ));
    let e = build(&p, &DataMeta::default()).err().unwrap().to_string();
    assert!(e.contains("text_model.extra.weight"), "{e}");
    // a projection of the wrong shape
    t.remove("text_model.extra.weight");
    t.insert(
        "text_projection.weight".into(),
        Tensor::zeros((5, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, dir.path().join("model.safetensors")).unwrap();
    let e = build(&p, &DataMeta::default()).err().unwrap().to_string();
    assert!(e.contains("text_projection.weight"), "{e}");
    // towers next to `pretrained`
    let p = params(&format!(
        "pretrained = {:?}\n[text]\nname = \"clip_text\"",
        fixture().display().to_string()
    ));
    let e = build(&p, &DataMeta::default()).err().unwrap().to_string();
    assert!(
        e.contains("encoder.text") && e.contains("pretrained"),
        "{e}"
    );
    // a folder without config.json
    let empty = tempfile::tempdir().unwrap();
    let p = params(&format!(
        "pretrained = {:?}",
        empty.path().display().to_string()
    ));
    let e = build(&p, &DataMeta::default()).err().unwrap().to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn a_vit_and_a_bert_make_a_dual_encoder_too() {
    let meta = DataMeta {
        image_shape: Some([1, 8, 8]),
        vocab_size: Some(100),
        ..DataMeta::default()
    };
    let p = params(
        r#"
embed_dim = 6
[image]
name = "vit"
variant = "custom"
dim = 8
depth = 1
heads = 2
patch_size = 4
[text]
name = "bert"
vocab_size = 100
hidden_size = 8
num_hidden_layers = 1
num_attention_heads = 2
intermediate_size = 16
max_position_embeddings = 8
"#,
    );
    let (store, enc) = build(&p, &meta).unwrap();
    let names: Vec<String> = store.named_vars().into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().any(|n| n == "encoder.vision_model.cls_token"));
    assert!(names
        .iter()
        .any(|n| n.starts_with("encoder.text_model.") && n.contains("embeddings")));
    let mut b = Batch::default();
    b.tensors.insert(
        "image".into(),
        Tensor::zeros((2, 1, 8, 8), DType::F32, &Device::Cpu).unwrap(),
    );
    b.tensors.insert(
        "input_ids".into(),
        Tensor::new(&[[1i64, 5, 2, 0], [1, 7, 9, 2]], &Device::Cpu).unwrap(),
    );
    b.tensors.insert(
        "attention_mask".into(),
        Tensor::new(&[[1i64, 1, 1, 0], [1, 1, 1, 1]], &Device::Cpu).unwrap(),
    );
    let it = enc.image_text().unwrap();
    let mut ctx = ForwardCtx::eval();
    assert_eq!(it.embed_image(&b, &mut ctx).unwrap().dims(), &[2, 6]);
    assert_eq!(it.embed_text(&b, &mut ctx).unwrap().dims(), &[2, 6]);
}

#[test]
fn from_scratch_the_towers_come_from_the_registry() {
    let meta = DataMeta {
        image_shape: Some([1, 28, 28]),
        num_classes: Some(10),
        vocab_size: Some(100),
        ..DataMeta::default()
    };
    let p = params(
        r#"
embed_dim = 16
[image]
name = "small_cnn"
channels = [4, 8]
[text]
name = "clip_text"
hidden_size = 8
intermediate_size = 16
num_hidden_layers = 1
num_attention_heads = 2
max_position_embeddings = 8
"#,
    );
    let (store, enc) = build(&p, &meta).unwrap();
    let vars: BTreeMap<String, Vec<usize>> = store
        .named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.dims().to_vec()))
        .collect();
    assert_eq!(vars["encoder.visual_projection.weight"], vec![16, 8]);
    assert_eq!(vars["encoder.text_projection.weight"], vec![16, 8]);
    assert_eq!(
        vars["encoder.text_model.embeddings.token_embedding.weight"],
        vec![100, 8]
    );
    assert_eq!(vars["encoder.logit_scale"], vec![1]);
    assert!(vars
        .keys()
        .any(|k| k.starts_with("encoder.vision_model.stage0")));
    let s = enc
        .image_text()
        .unwrap()
        .logit_scale()
        .to_vec1::<f32>()
        .unwrap();
    assert!((s[0] as f64 - (1.0f64 / 0.07).ln()).abs() < 1e-6);
    assert!((LOGIT_SCALE_INIT - (1.0f64 / 0.07).ln()).abs() < 1e-12);
    // shapes of the embeddings
    let mut b = Batch::default();
    b.tensors.insert(
        "image".into(),
        Tensor::zeros((3, 1, 28, 28), DType::F32, &Device::Cpu).unwrap(),
    );
    b.tensors.insert(
        "input_ids".into(),
        Tensor::new(&[[1i64, 5, 2, 0], [1, 7, 9, 2], [1, 2, 0, 0]], &Device::Cpu).unwrap(),
    );
    b.tensors.insert(
        "attention_mask".into(),
        Tensor::new(&[[1i64, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], &Device::Cpu).unwrap(),
    );
    let it = enc.image_text().unwrap();
    let mut ctx = ForwardCtx::eval();
    assert_eq!(it.embed_image(&b, &mut ctx).unwrap().dims(), &[3, 16]);
    assert_eq!(it.embed_text(&b, &mut ctx).unwrap().dims(), &[3, 16]);
    assert_eq!(enc.forward(&b, &mut ctx).unwrap().dims(), &[3, 8]);
    // a missing tower or a bad width names the key
    let e = build(
        &params("embed_dim = 16\n[image]\nname = \"small_cnn\""),
        &meta,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("encoder.text"), "{e}");
    let e = build(&params("embed_dim = 16\nembed_dims = 3"), &meta)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("embed_dims"), "{e}");
}

/// The flattened image and text embeddings of the reference batch.
fn embeddings(enc: &DualEncoder, b: &Batch) -> (Vec<f32>, Vec<f32>) {
    let it = enc.image_text().unwrap();
    let mut ctx = ForwardCtx::eval();
    let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (
        flat(it.embed_image(b, &mut ctx).unwrap()),
        flat(it.embed_text(b, &mut ctx).unwrap()),
    )
}

#[test]
fn export_writes_the_hugging_face_layout_back() {
    let meta = DataMeta::default();
    let r = reference();
    let b = batch(&r);
    // pretrained: change a weight, export, load the export
    let p = params(&format!(
        "pretrained = {:?}",
        fixture().display().to_string()
    ));
    let (store, enc) = build(&p, &meta).unwrap();
    let w = store.get_var("encoder.text_projection.weight").unwrap();
    w.set(&(w.as_tensor() * 1.5).unwrap()).unwrap();
    let want = embeddings(&enc, &b);
    let dir = tempfile::tempdir().unwrap();
    let files = enc.export(dir.path()).unwrap();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(dir.path().join(f).is_file(), "no {f}");
    }
    // the pretrained model's own config.json and tokenizer come back
    assert_eq!(
        std::fs::read(dir.path().join("tokenizer.json")).unwrap(),
        std::fs::read(fixture().join("tokenizer.json")).unwrap()
    );
    let saved =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(
        saved["logit_scale"].dims(),
        &[] as &[usize],
        "a scalar, as in Hugging Face"
    );
    let reference_names =
        candle_core::safetensors::load(fixture().join("model.safetensors"), &Device::Cpu).unwrap();
    let mut a: Vec<_> = saved.keys().cloned().collect();
    let mut e: Vec<_> = reference_names
        .keys()
        .filter(|k| !k.ends_with("position_ids"))
        .cloned()
        .collect();
    a.sort();
    e.sort();
    assert_eq!(a, e, "the same tensor names as transformers'");
    let p = params(&format!(
        "pretrained = {:?}",
        dir.path().display().to_string()
    ));
    let (_, back) = build(&p, &meta).unwrap();
    assert_eq!(embeddings(&back, &b), want);

    // from scratch with CLIP's towers on the embedded vocabulary
    let scratch = params(
        r#"
embed_dim = 12
[image]
name = "clip_vision"
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
patch_size = 8
[text]
name = "clip_text"
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
max_position_embeddings = 8
"#,
    );
    let meta = DataMeta {
        image_shape: Some([3, 16, 16]),
        vocab_size: Some(parallax_text::tokenizer::EMBEDDED_VOCAB_SIZE),
        ..DataMeta::default()
    };
    let (_, enc) = build(&scratch, &meta).unwrap();
    let dir = tempfile::tempdir().unwrap();
    enc.export(dir.path()).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["projection_dim"], 12);
    assert_eq!(config["text_config"]["vocab_size"], 30522);
    assert_eq!(
        config["text_config"]["eos_token_id"], 102,
        "BERT's [SEP] ends the captions"
    );
    assert_eq!(config["vision_config"]["image_size"], 16);
    assert!(dir.path().join("tokenizer.json").is_file());
    let p = params(&format!(
        "pretrained = {:?}",
        dir.path().display().to_string()
    ));
    let (_, back) = build(&p, &DataMeta::default()).unwrap();
    let b = batch(&r);
    assert_eq!(embeddings(&back, &b), embeddings(&enc, &b));

    // other towers have no Hugging Face CLIP layout
    let p = params("embed_dim = 4\n[image]\nname = \"small_cnn\"\nchannels = [4]\n[text]\nname = \"clip_text\"\nhidden_size = 8\nintermediate_size = 8\nnum_hidden_layers = 1\nnum_attention_heads = 2\nmax_position_embeddings = 8");
    let meta = DataMeta {
        image_shape: Some([1, 8, 8]),
        vocab_size: Some(64),
        ..DataMeta::default()
    };
    let (_, enc) = build(&p, &meta).unwrap();
    let e = enc.export(dir.path()).err().unwrap().to_string();
    assert!(e.contains("clip_vision"), "{e}");
}
