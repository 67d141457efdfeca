//! The BERT encoder: gradients against finite differences (f64), dropout,
//! attention masks, and the Hugging Face layout round trip.

use candle_core::{DType, Device, Tensor};
use parallax_core::batch::{Batch, Sample};
use parallax_core::data::{BuildCtx, Split};
use parallax_core::nn::encoder::{Encoder, ForwardCtx};
use parallax_core::nn::init::VarStore;
use parallax_core::rng::Rng;
use parallax_text::encoder::{BertEncoder, BertEncoderConfig, Pooling};
use parallax_text::tokenizer::TextTokenizer;

fn tiny(pooling: Pooling) -> BertEncoderConfig {
    BertEncoderConfig {
        pooling,
        vocab_size: Some(40),
        hidden_size: Some(8),
        num_hidden_layers: Some(2),
        num_attention_heads: Some(2),
        intermediate_size: Some(12),
        max_position_embeddings: Some(16),
        ..Default::default()
    }
}

fn build(cfg: &BertEncoderConfig, seed: u64, dtype: DType) -> (VarStore, BertEncoder) {
    let store = VarStore::new(seed);
    let vb = store.var_builder(dtype, &Device::Cpu).pp("encoder");
    let enc = BertEncoder::build(cfg, vb, &BuildCtx::new(seed, Split::Train)).unwrap();
    (store, enc)
}

/// A batch of token ids with a padding mask (`lens[i]` real tokens).
fn batch(ids: &[Vec<i64>], lens: &[usize]) -> Batch {
    let t = ids[0].len();
    let mut b = Batch::default();
    let flat: Vec<i64> = ids.iter().flatten().copied().collect();
    let mask: Vec<i64> = lens
        .iter()
        .flat_map(|&l| (0..t).map(move |j| (j < l) as i64))
        .collect();
    b.tensors.insert(
        "input_ids".into(),
        Tensor::from_vec(flat, (ids.len(), t), &Device::Cpu).unwrap(),
    );
    b.tensors.insert(
        "attention_mask".into(),
        Tensor::from_vec(mask, (ids.len(), t), &Device::Cpu).unwrap(),
    );
    b
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn gradients_of_every_parameter_match_finite_differences() {
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let mut cfg = tiny(pooling);
        cfg.hidden_act = Some("gelu".into());
        let (store, enc) = build(&cfg, 7, DType::F64);
        let b = batch(&[vec![1, 5, 9, 33, 2, 0], vec![1, 17, 2, 0, 0, 0]], &[5, 3]);
        let probe = Rng::new(3)
            .normal_tensor((2, 8), 0.0, 1.0, DType::F64, &Device::Cpu)
            .unwrap();
        let loss = |enc: &BertEncoder| -> Tensor {
            let out = enc.forward(&b, &mut ForwardCtx::eval()).unwrap();
            (out * &probe).unwrap().sum_all().unwrap()
        };
        let grads = loss(&enc).backward().unwrap();
        let mut rng = Rng::new(11);
        let mut checked = 0;
        for (name, var) in store.named_vars() {
            let g = match grads.get(var.as_tensor()) {
                Some(g) => vals(g),
                None => {
                    // only the unused rows of the embeddings and the CLS-pooled
                    // model's unused tail can lack gradients
                    panic!("no gradient reached `{name}` ({pooling:?})");
                }
            };
            let base = vals(var.as_tensor());
            // a few random entries of each variable
            for _ in 0..3 {
                let k = (rng.uniform() as f64 * base.len() as f64) as usize % base.len();
                let eps = 1e-6;
                let mut plus = base.clone();
                plus[k] += eps;
                var.set(&Tensor::from_vec(plus, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                let lp = loss(&enc).to_scalar::<f64>().unwrap();
                let mut minus = base.clone();
                minus[k] -= eps;
                var.set(&Tensor::from_vec(minus, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                let lm = loss(&enc).to_scalar::<f64>().unwrap();
                var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                let fd = (lp - lm) / (2.0 * eps);
                let scale = g.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
                assert!(
                    (fd - g[k]).abs() <= 1e-5 * scale.max(fd.abs()),
                    "{name}[{k}] ({pooling:?}): autograd {} vs finite differences {fd}",
                    g[k]
                );
                checked += 1;
            }
        }
        assert!(checked >= 3 * 30, "checked {checked} entries");
    }
}

#[test]
fn dropout_makes_views_differ_reproducibly_and_is_off_in_eval() {
    let (_, enc) = build(&tiny(Pooling::Mean), 1, DType::F32);
    let b = batch(&[vec![1, 5, 9, 2]], &[4]);
    let run = |seed: u64| {
        vals(
            &enc.forward(&b, &mut ForwardCtx::train(Rng::new(seed)))
                .unwrap(),
        )
    };
    assert_eq!(run(5), run(5), "the same seed gives the same dropout masks");
    assert_ne!(run(5), run(6), "different seeds give different views");
    let e1 = vals(&enc.forward(&b, &mut ForwardCtx::eval()).unwrap());
    let e2 = vals(&enc.forward(&b, &mut ForwardCtx::eval()).unwrap());
    assert_eq!(e1, e2);
    assert_ne!(e1, run(5));
}

#[test]
fn padding_and_batch_mates_do_not_change_an_embedding() {
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let (_, enc) = build(&tiny(pooling), 2, DType::F32);
        let alone = vals(
            &enc.forward(&batch(&[vec![1, 5, 9, 2]], &[4]), &mut ForwardCtx::eval())
                .unwrap(),
        );
        let padded = enc
            .forward(
                &batch(
                    &[vec![1, 5, 9, 2, 0, 0, 0, 0], vec![1, 7, 7, 7, 7, 7, 8, 2]],
                    &[4, 8],
                ),
                &mut ForwardCtx::eval(),
            )
            .unwrap();
        let first = vals(&padded.narrow(0, 0, 1).unwrap());
        for (a, b) in alone.iter().zip(&first) {
            assert!((a - b).abs() < 1e-5, "{pooling:?}: {a} vs {b}");
        }
    }
}

#[test]
fn export_writes_the_hugging_face_layout_and_loads_back() {
    let (_, enc) = build(&tiny(Pooling::Mean), 4, DType::F32);
    let dir = tempfile::tempdir().unwrap();
    let files = enc.export(dir.path()).unwrap();
    assert!(files.iter().any(|f| f.ends_with("model.safetensors")));
    let tensors =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    for name in [
        "embeddings.word_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "encoder.layer.1.attention.self.query.weight",
        "encoder.layer.0.attention.output.LayerNorm.bias",
        "encoder.layer.0.intermediate.dense.weight",
        "encoder.layer.1.output.dense.bias",
    ] {
        assert!(tensors.contains_key(name), "missing {name}");
    }
    assert_eq!(tensors.len(), 5 + 16 * 2);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["hidden_size"], 8);
    assert_eq!(config["model_type"], "bert");
    // loading it back (another seed) gives the same function
    let cfg = BertEncoderConfig {
        pretrained: Some(dir.path().display().to_string()),
        ..Default::default()
    };
    let (_, back) = build(&cfg, 99, DType::F32);
    let b = batch(&[vec![1, 5, 9, 2, 3]], &[5]);
    let a = vals(&enc.forward(&b, &mut ForwardCtx::eval()).unwrap());
    let c = vals(&back.forward(&b, &mut ForwardCtx::eval()).unwrap());
    assert_eq!(a, c);
    // architecture keys conflict with a pretrained model
    let bad = BertEncoderConfig {
        pretrained: Some(dir.path().display().to_string()),
        hidden_size: Some(8),
        ..Default::default()
    };
    let store = VarStore::new(0);
    let err = BertEncoder::build(
        &bad,
        store.var_builder(DType::F32, &Device::Cpu),
        &BuildCtx::new(0, Split::Train),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("hidden_size"), "{err}");
}

#[test]
fn token_ids_outside_the_vocabulary_are_a_clear_error() {
    let (_, enc) = build(&tiny(Pooling::Mean), 1, DType::F32);
    let err = enc
        .forward(&batch(&[vec![1, 500, 2]], &[3]), &mut ForwardCtx::eval())
        .unwrap_err()
        .to_string();
    assert!(err.contains("500") && err.contains("vocabulary"), "{err}");
}

#[test]
fn tokenizer_output_feeds_the_encoder() {
    let tok = TextTokenizer::embedded(12).unwrap();
    let mut s = Sample::default();
    tok.encode_into("A short sentence.", "", &mut s).unwrap();
    let b = Batch::collate(&[s.clone(), s], &Device::Cpu).unwrap();
    let cfg = BertEncoderConfig {
        hidden_size: Some(8),
        num_hidden_layers: Some(1),
        num_attention_heads: Some(2),
        ..Default::default()
    };
    let (_, enc) = build(&cfg, 0, DType::F32);
    let out = enc.forward(&b, &mut ForwardCtx::eval()).unwrap();
    assert_eq!(out.dims(), &[2, 8]);
}
