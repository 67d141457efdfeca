//! CLIP's two towers: against transformers' `CLIPModel` on a tiny seeded
//! checkpoint (tests/fixtures/tiny-clip, made by scripts/make_tiny_clip.py),
//! gradients of every parameter against finite differences in f64, masking
//! and causality, errors, the registry, and the Hugging Face config.

use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use parallax_core::batch::Batch;
use parallax_core::data::DataMeta;
use parallax_core::nn::encoder::{Encoder, EncoderCtx, ForwardCtx};
use parallax_core::nn::init::VarStore;
use parallax_core::rng::Rng;
use parallax_multimodal::clip_layers::{
    attention_bias, Activation, ClipEncoder, ClipEncoderConfig,
};
use parallax_multimodal::clip_text::{ClipText, ClipTextConfig};
use parallax_multimodal::clip_vision::{ClipVision, ClipVisionConfig, CLIP_MEAN, CLIP_STD};
use parallax_multimodal::hf_config::HfClipConfig;
use parallax_vision::pretrained::{Checkpoint, Recorder};
use serde_json::Value;

const TOL: f64 = 1e-4;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-clip")
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn json_f64(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(json_f64).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        _ => panic!("not a number array: {v}"),
    }
}

fn json_i64(v: &Value) -> Vec<i64> {
    json_f64(v).into_iter().map(|x| x as i64).collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: {g} vs reference {w} (tolerance {tol})"
        );
    }
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn text_batch(ids: Vec<i64>, mask: Vec<i64>, b: usize, t: usize) -> Batch {
    let mut batch = Batch::default();
    batch.tensors.insert(
        "input_ids".into(),
        Tensor::from_vec(ids, (b, t), &Device::Cpu).unwrap(),
    );
    batch.tensors.insert(
        "attention_mask".into(),
        Tensor::from_vec(mask, (b, t), &Device::Cpu).unwrap(),
    );
    batch
}

fn image_batch(x: Tensor) -> Batch {
    let mut batch = Batch::default();
    batch.tensors.insert("image".into(), x);
    batch
}

fn images(shape: (usize, usize, usize, usize), seed: u64, dtype: DType) -> Tensor {
    Rng::new(seed)
        .uniform_tensor(shape, 0.0, 1.0, dtype, &Device::Cpu)
        .unwrap()
}

#[test]
fn towers_match_transformers_on_the_tiny_checkpoint() {
    let dir = fixture_dir();
    let cpath = dir.join("config.json");
    let text = std::fs::read_to_string(&cpath).unwrap();
    let hf = HfClipConfig::from_json(&text, &cpath.display().to_string()).unwrap();
    assert_eq!(hf.text.vocab_size, Some(64));
    assert_eq!(hf.vision.image_size, Some(16));
    assert_eq!(hf.projection_dim, 24);
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();

    let store = VarStore::new(3);
    let recorder = Recorder::new();
    let vb = recorder.wrap(store.var_builder(DType::F32, &Device::Cpu));
    let meta = DataMeta::default();
    let text_tower = ClipText::new(&hf.text, &meta, vb.pp("text_model")).unwrap();
    let vision_tower = ClipVision::new(&hf.vision, &meta, vb.pp("vision_model")).unwrap();
    let mut ckpt = Checkpoint::open("clip", &dir.display().to_string(), None).unwrap();
    // the dual encoder's own tensors (and buffers) are not the towers'
    let text_projection = ckpt.tensors.remove("text_projection.weight").unwrap();
    let visual_projection = ckpt.tensors.remove("visual_projection.weight").unwrap();
    let logit_scale = ckpt.tensors.remove("logit_scale").unwrap();
    ckpt.tensors.retain(|k, _| !k.ends_with("position_ids"));
    assert_eq!(recorder.vars().len(), ckpt.tensors.len());
    ckpt.load_into(&vb, &recorder.vars(), &[]).unwrap();

    let ids = json_i64(&reference["input_ids"]);
    let mask = json_i64(&reference["attention_mask"]);
    let batch = text_batch(ids, mask, 2, 8);
    let t = text_tower.forward(&batch, &mut ForwardCtx::eval()).unwrap();
    assert_eq!(t.dims(), &[2, 32]);
    assert_close(
        &vals(&t),
        &json_f64(&reference["text_pooler_output"]),
        TOL,
        "text pooler_output",
    );

    let pixels = json_f64(&reference["images"]);
    let pixels: Vec<f32> = pixels.into_iter().map(|v| v as f32).collect();
    let x = Tensor::from_vec(pixels, (2, 3, 16, 16), &Device::Cpu).unwrap();
    let v = vision_tower
        .forward(&image_batch(x), &mut ForwardCtx::eval())
        .unwrap();
    assert_eq!(v.dims(), &[2, 32]);
    assert_close(
        &vals(&v),
        &json_f64(&reference["vision_pooler_output"]),
        TOL,
        "vision pooler_output",
    );

    // the projections and logits with the checkpoint's remaining tensors
    let te = t.matmul(&text_projection.t().unwrap()).unwrap();
    let ie = v.matmul(&visual_projection.t().unwrap()).unwrap();
    assert_close(
        &vals(&te),
        &json_f64(&reference["text_embeds"]),
        TOL,
        "text_embeds",
    );
    assert_close(
        &vals(&ie),
        &json_f64(&reference["image_embeds"]),
        TOL,
        "image_embeds",
    );
    let scale = logit_scale
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((scale - reference["logit_scale"].as_f64().unwrap()).abs() < 1e-6);
    let unit = |e: &Tensor| {
        e.broadcast_div(&e.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap())
            .unwrap()
    };
    let logits = (unit(&ie).matmul(&unit(&te).t().unwrap()).unwrap() * scale.exp()).unwrap();
    assert_close(
        &vals(&logits),
        &json_f64(&reference["logits_per_image"]),
        TOL,
        "logits_per_image",
    );
}

fn tiny_text(act: Activation) -> ClipTextConfig {
    ClipTextConfig {
        vocab_size: Some(11),
        hidden_size: 8,
        intermediate_size: 12,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        max_position_embeddings: 6,
        hidden_act: act,
        ..Default::default()
    }
}

fn tiny_vision(act: Activation) -> ClipVisionConfig {
    ClipVisionConfig {
        hidden_size: 8,
        intermediate_size: 12,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        image_size: Some(8),
        patch_size: 4,
        num_channels: Some(3),
        hidden_act: act,
        ..Default::default()
    }
}

/// Gives every variable random values, away from the initialisation's
/// constants (layer norms 1 and 0, zero biases).
fn randomize(store: &VarStore, seed: u64) {
    let mut rng = Rng::new(seed);
    for (_, var) in store.named_vars() {
        let t = rng
            .normal_tensor(var.shape(), 0.0, 0.5, var.dtype(), &Device::Cpu)
            .unwrap();
        var.set(&t).unwrap();
    }
}

/// Central finite differences of `loss` against autograd for every variable
/// of `store` (every entry of small variables, 12 random ones of the others).
fn gradcheck(store: &VarStore, what: &str, loss: &dyn Fn() -> Tensor) -> usize {
    let grads = loss().backward().unwrap();
    let mut rng = Rng::new(11);
    let mut checked = 0;
    for (name, var) in store.named_vars() {
        let g = match grads.get(var.as_tensor()) {
            Some(g) => vals(g),
            None => panic!("{what}: no gradient reached `{name}`"),
        };
        let base = vals(var.as_tensor());
        let entries: Vec<usize> = if base.len() <= 48 {
            (0..base.len()).collect()
        } else {
            (0..12)
                .map(|_| (rng.uniform() as f64 * base.len() as f64) as usize % base.len())
                .collect()
        };
        let scale = g.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for k in entries {
            let eps = 1e-6;
            let set = |v: Vec<f64>| {
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                    .unwrap()
            };
            let mut plus = base.clone();
            plus[k] += eps;
            set(plus);
            let lp = loss().to_scalar::<f64>().unwrap();
            let mut minus = base.clone();
            minus[k] -= eps;
            set(minus);
            let lm = loss().to_scalar::<f64>().unwrap();
            set(base.clone());
            let fd = (lp - lm) / (2.0 * eps);
            assert!(
                (fd - g[k]).abs() <= 1e-5 * scale.max(fd.abs()),
                "{what}: {name}[{k}]: autograd {} vs finite differences {fd}",
                g[k]
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn text_gradients_of_every_parameter_match_finite_differences() {
    let store = VarStore::new(7);
    let vb = store.var_builder(DType::F64, &Device::Cpu);
    let net = ClipText::new(&tiny_text(Activation::QuickGelu), &DataMeta::default(), vb).unwrap();
    // 2 embeddings + 2 x 16 per layer + the final layer norm
    assert_eq!(store.named_vars().len(), 36);
    randomize(&store, 5);
    // row 1 is padded: the key-padding mask is on the path
    let batch = text_batch(
        vec![1, 4, 9, 2, 10, 3, 7, 10, 0, 5],
        vec![1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
        2,
        5,
    );
    let probe = Rng::new(4)
        .normal_tensor((2, 8), 0.0, 1.0, DType::F64, &Device::Cpu)
        .unwrap();
    let loss = || -> Tensor {
        let out = net.forward(&batch, &mut ForwardCtx::eval()).unwrap();
        (out * &probe).unwrap().sum_all().unwrap()
    };
    let checked = gradcheck(&store, "clip_text", &loss);
    assert!(checked >= 300, "checked {checked} entries");
}

#[test]
fn vision_gradients_of_every_parameter_match_finite_differences() {
    for act in [Activation::QuickGelu, Activation::Gelu] {
        let store = VarStore::new(8);
        let vb = store.var_builder(DType::F64, &Device::Cpu);
        let net = ClipVision::new(&tiny_vision(act), &DataMeta::default(), vb).unwrap();
        // 3 embeddings + 2 x 2 layer norms + 16 per layer
        assert_eq!(store.named_vars().len(), 23);
        randomize(&store, 6);
        let x = images((2, 3, 8, 8), 3, DType::F64);
        let probe = Rng::new(4)
            .normal_tensor((2, 8), 0.0, 1.0, DType::F64, &Device::Cpu)
            .unwrap();
        let loss = || -> Tensor {
            let out = net.features(&x, &mut ForwardCtx::eval()).unwrap();
            (out * &probe).unwrap().sum_all().unwrap()
        };
        let checked = gradcheck(&store, &format!("clip_vision ({act:?})"), &loss);
        assert!(checked >= 200, "checked {checked} entries");
    }
}

fn text_tower(seed: u64) -> (VarStore, ClipText) {
    let store = VarStore::new(seed);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let net = ClipText::new(&tiny_text(Activation::QuickGelu), &DataMeta::default(), vb).unwrap();
    randomize(&store, seed + 1);
    (store, net)
}

fn text_out(net: &ClipText, ids: &[i64], mask: &[i64], b: usize) -> Vec<f64> {
    let t = ids.len() / b;
    let batch = text_batch(ids.to_vec(), mask.to_vec(), b, t);
    vals(&net.forward(&batch, &mut ForwardCtx::eval()).unwrap())
}

#[test]
fn text_output_is_the_end_token_state_and_ignores_what_follows() {
    let (_, net) = text_tower(1);
    let mask = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
    let base = text_out(&net, &[1, 4, 9, 2, 10, 3, 7, 10, 0, 5], &mask, 2);
    // other tokens after row 1's last unmasked position: row 1 unchanged
    // (row 0 is full length, so nothing is trimmed: the mask does this)
    let other = text_out(&net, &[1, 4, 9, 2, 10, 3, 7, 10, 8, 1], &mask, 2);
    assert!(max_diff(&base[8..], &other[8..]) < 1e-6);
    assert_eq!(&base[..8], &other[..8]);
    // row 1 alone, without padding: the same state
    let alone = text_out(&net, &[3, 7, 10], &[1, 1, 1], 1);
    assert!(max_diff(&base[8..], &alone) < 1e-5, "{base:?} vs {alone:?}");
    // padding to a longer batch (trimmed to the longest sequence) changes nothing
    let padded = text_out(&net, &[3, 7, 10, 0, 0, 0], &[1, 1, 1, 0, 0, 0], 1);
    assert!(max_diff(&alone, &padded) < 1e-6);
    // a token before the end changes the output (of its row only)
    let changed = text_out(&net, &[1, 4, 9, 2, 10, 3, 8, 10, 0, 5], &mask, 2);
    assert!(max_diff(&base[8..], &changed[8..]) > 1e-3);
    assert_eq!(&base[..8], &changed[..8]);
    // so does the first token (the end token attends to every earlier one)
    let first = text_out(&net, &[1, 4, 9, 2, 10, 6, 7, 10, 0, 5], &mask, 2);
    assert!(max_diff(&base[8..], &first[8..]) > 1e-3);
    // the pooled position follows the mask, not the ids: pooling one
    // position earlier gives another vector
    let earlier = text_out(&net, &[3, 7, 10], &[1, 1, 0], 1);
    let prefix = text_out(&net, &[3, 7], &[1, 1], 1);
    assert!(max_diff(&earlier, &prefix) < 1e-5);
    assert!(max_diff(&earlier, &alone) > 1e-3);
    // a masked token inside the sequence is invisible; unmasked, it is not
    let holed = [1, 1, 0, 1, 1];
    let a = text_out(&net, &[3, 7, 2, 5, 10], &holed, 1);
    let b = text_out(&net, &[3, 7, 9, 5, 10], &holed, 1);
    assert!(max_diff(&a, &b) < 1e-6);
    let full = [1, 1, 1, 1, 1];
    let a = text_out(&net, &[3, 7, 2, 5, 10], &full, 1);
    let b = text_out(&net, &[3, 7, 9, 5, 10], &full, 1);
    assert!(max_diff(&a, &b) > 1e-3);
    // without a mask: the last position
    let mut batch = Batch::default();
    batch.tensors.insert(
        "input_ids".into(),
        Tensor::new(&[[3i64, 7, 10]], &Device::Cpu).unwrap(),
    );
    let nomask = vals(&net.forward(&batch, &mut ForwardCtx::eval()).unwrap());
    assert!(max_diff(&nomask, &alone) < 1e-6);
}

#[test]
fn causal_attention_hides_later_positions() {
    let cfg = ClipEncoderConfig {
        hidden_size: 8,
        intermediate_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        hidden_act: Activation::QuickGelu,
        layer_norm_eps: 1e-5,
        attention_dropout: 0.0,
        dropout: 0.0,
    };
    let store = VarStore::new(3);
    let enc = ClipEncoder::new(&cfg, store.var_builder(DType::F64, &Device::Cpu)).unwrap();
    assert_eq!(enc.layers().len(), 2);
    assert!(store.get_var("layers.1.self_attn.out_proj.bias").is_some());
    randomize(&store, 4);
    let dev = Device::Cpu;
    let mut rng = Rng::new(9);
    let x = rng
        .normal_tensor((1, 5, 8), 0.0, 1.0, DType::F64, &dev)
        .unwrap();
    // position 3 changed
    let noise = rng
        .normal_tensor((1, 1, 8), 0.0, 1.0, DType::F64, &dev)
        .unwrap();
    let x2 = Tensor::cat(
        &[
            x.i((.., ..3, ..)).unwrap(),
            noise,
            x.i((.., 4.., ..)).unwrap(),
        ],
        1,
    )
    .unwrap();
    for causal in [true, false] {
        let bias = attention_bias(5, causal, None, DType::F64, &dev).unwrap();
        let y = enc
            .forward(&x, bias.as_ref(), &mut ForwardCtx::eval())
            .unwrap();
        let y2 = enc
            .forward(&x2, bias.as_ref(), &mut ForwardCtx::eval())
            .unwrap();
        let before = max_diff(
            &vals(&y.i((.., ..3, ..)).unwrap()),
            &vals(&y2.i((.., ..3, ..)).unwrap()),
        );
        let after = max_diff(
            &vals(&y.i((.., 4.., ..)).unwrap()),
            &vals(&y2.i((.., 4.., ..)).unwrap()),
        );
        assert!(
            after > 1e-3,
            "causal = {causal}: a later position must see position 3"
        );
        if causal {
            assert!(before < 1e-12, "causal: positions 0..3 changed by {before}");
        } else {
            assert!(
                before > 1e-3,
                "not causal: positions 0..3 should see position 3"
            );
        }
    }
    // a padding key is invisible to every query
    let mask = Tensor::new(&[[1u32, 1, 1, 0, 1]], &dev).unwrap();
    let bias = attention_bias(5, false, Some(&mask), DType::F64, &dev).unwrap();
    let y = enc
        .forward(&x, bias.as_ref(), &mut ForwardCtx::eval())
        .unwrap();
    let y2 = enc
        .forward(&x2, bias.as_ref(), &mut ForwardCtx::eval())
        .unwrap();
    let others = |t: &Tensor| {
        let a = vals(&t.i((.., ..3, ..)).unwrap());
        let b = vals(&t.i((.., 4.., ..)).unwrap());
        [a, b].concat()
    };
    assert!(max_diff(&others(&y), &others(&y2)) < 1e-12);
}

#[test]
fn dropout_draws_from_the_context_in_training_only() {
    let cfg = ClipTextConfig {
        attention_dropout: 0.2,
        dropout: 0.2,
        ..tiny_text(Activation::QuickGelu)
    };
    let store = VarStore::new(2);
    let net = ClipText::new(
        &cfg,
        &DataMeta::default(),
        store.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    randomize(&store, 3);
    let batch = text_batch(vec![1, 4, 9, 2], vec![1, 1, 1, 1], 1, 4);
    let run = |ctx: &mut ForwardCtx| vals(&net.forward(&batch, ctx).unwrap());
    let e1 = run(&mut ForwardCtx::eval());
    assert_eq!(e1, run(&mut ForwardCtx::eval()));
    let t1 = run(&mut ForwardCtx::train(Rng::new(1)));
    assert_eq!(t1, run(&mut ForwardCtx::train(Rng::new(1))));
    assert_ne!(t1, run(&mut ForwardCtx::train(Rng::new(2))));
    assert_ne!(t1, e1);
}

#[test]
fn text_errors_name_what_is_wrong() {
    let (_, net) = text_tower(1);
    let run = |ids: Vec<i64>, mask: Vec<i64>, t: usize| {
        let batch = text_batch(ids, mask, 1, t);
        net.forward(&batch, &mut ForwardCtx::eval())
            .unwrap_err()
            .to_string()
    };
    let e = run(vec![1; 7], vec![1; 7], 7);
    assert!(
        e.contains("max_position_embeddings = 6") && e.contains('7'),
        "{e}"
    );
    // padding beyond the table is fine: only tokens count
    let padded = text_batch(vec![1, 3, 2, 0, 0, 0, 0], vec![1, 1, 1, 0, 0, 0, 0], 1, 7);
    assert!(net.forward(&padded, &mut ForwardCtx::eval()).is_ok());
    let e = run(vec![1, 11, 2], vec![1; 3], 3);
    assert!(
        e.contains("token id 11") && e.contains("vocab_size = 11"),
        "{e}"
    );
    let e = run(vec![1, -1, 2], vec![1; 3], 3);
    assert!(e.contains("token id -1"), "{e}");
    let e = run(vec![1, 2, 3], vec![0; 3], 3);
    assert!(
        e.contains("attention_mask") && e.contains("no token"),
        "{e}"
    );
    let mut batch = text_batch(vec![1, 2, 3], vec![1; 3], 1, 3);
    batch.tensors.insert(
        "attention_mask".into(),
        Tensor::new(&[[1i64, 1]], &Device::Cpu).unwrap(),
    );
    let e = net
        .forward(&batch, &mut ForwardCtx::eval())
        .unwrap_err()
        .to_string();
    assert!(e.contains("attention_mask") && e.contains("[1, 2]"), "{e}");
    let e = net
        .forward(
            &image_batch(images((1, 3, 8, 8), 0, DType::F32)),
            &mut ForwardCtx::eval(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("input_ids"), "{e}");
    // configuration errors
    let bad = ClipTextConfig {
        num_attention_heads: 3,
        ..tiny_text(Activation::Gelu)
    };
    let store = VarStore::new(0);
    let e = ClipText::new(
        &bad,
        &DataMeta::default(),
        store.var_builder(DType::F32, &Device::Cpu),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("num_attention_heads") && e.contains("hidden_size"),
        "{e}"
    );
}

#[test]
fn vision_input_handling_and_errors() {
    let store = VarStore::new(1);
    let net = ClipVision::new(
        &tiny_vision(Activation::QuickGelu),
        &DataMeta::default(),
        store.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    randomize(&store, 2);
    let eval = |x: &Tensor| vals(&net.features(x, &mut ForwardCtx::eval()).unwrap());
    // grey images are repeated over the channels
    let grey = images((2, 1, 8, 8), 1, DType::F32);
    let rgb = grey.repeat((1, 3, 1, 1)).unwrap();
    assert_eq!(eval(&grey), eval(&rgb));
    // each image's output depends on that image only
    let x = images((2, 3, 8, 8), 2, DType::F32);
    let both = eval(&x);
    assert_eq!(both.len(), 16);
    assert!(max_diff(&both[..8], &eval(&x.i(0..1).unwrap())) < 1e-6);
    assert!(max_diff(&both[..8], &both[8..]) > 1e-3);
    // the tower normalises: a constant shift of the input changes the output
    let shifted = (&x * 0.5).unwrap();
    assert!(max_diff(&both, &eval(&shifted)) > 1e-3);
    let err = |x: Tensor| {
        net.features(&x, &mut ForwardCtx::eval())
            .unwrap_err()
            .to_string()
    };
    let e = err(images((1, 3, 16, 16), 0, DType::F32));
    assert!(e.contains("16x16") && e.contains("8x8"), "{e}");
    let e = err(images((1, 2, 8, 8), 0, DType::F32));
    assert!(e.contains("2 channels") && e.contains("expects 3"), "{e}");
    let e = err(images((3, 8, 8, 1), 0, DType::F32).squeeze(3).unwrap());
    assert!(e.contains("[B, 3, 8, 8]"), "{e}");

    // sizes from the data; a 1-channel tower averages CLIP's statistics
    let meta = DataMeta {
        image_shape: Some([1, 12, 12]),
        ..Default::default()
    };
    let cfg = ClipVisionConfig {
        image_size: None,
        num_channels: None,
        ..tiny_vision(Activation::Gelu)
    };
    let store = VarStore::new(0);
    let grey_net =
        ClipVision::new(&cfg, &meta, store.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let c = grey_net.config();
    assert_eq!((c.image_size, c.num_channels), (Some(12), Some(1)));
    assert!((c.mean[0] - CLIP_MEAN.iter().sum::<f32>() / 3.0).abs() < 1e-7);
    assert!((c.std[0] - CLIP_STD.iter().sum::<f32>() / 3.0).abs() < 1e-7);
    assert_eq!(
        store
            .get_var("embeddings.patch_embedding.weight")
            .unwrap()
            .dims(),
        &[8, 1, 4, 4]
    );
    assert_eq!(
        store
            .get_var("embeddings.position_embedding.weight")
            .unwrap()
            .dims(),
        &[10, 8]
    );
    let y = grey_net
        .features(
            &images((2, 1, 12, 12), 0, DType::F32),
            &mut ForwardCtx::eval(),
        )
        .unwrap();
    assert_eq!(y.dims(), &[2, 8]);
    // configuration errors
    let store = VarStore::new(0);
    let bad = ClipVisionConfig {
        patch_size: 5,
        ..tiny_vision(Activation::Gelu)
    };
    let e = ClipVision::new(
        &bad,
        &DataMeta::default(),
        store.var_builder(DType::F32, &Device::Cpu),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("patch_size") && e.contains("image_size"), "{e}");
    let e = ClipVision::new(
        &ClipVisionConfig::default(),
        &DataMeta::default(),
        store.var_builder(DType::F32, &Device::Cpu),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("image_size"), "{e}");
}

#[test]
fn variables_have_hugging_face_names_and_initialisation() {
    let store = VarStore::new(5);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let meta = DataMeta {
        vocab_size: Some(30),
        ..Default::default()
    };
    let text_cfg = ClipTextConfig {
        vocab_size: None,
        ..tiny_text(Activation::QuickGelu)
    };
    let text = ClipText::new(&text_cfg, &meta, vb.pp("text_model")).unwrap();
    assert_eq!(text.config().vocab_size, Some(30));
    assert_eq!(text.output_dim(), 8);
    let vision = ClipVision::new(
        &tiny_vision(Activation::QuickGelu),
        &meta,
        vb.pp("vision_model"),
    )
    .unwrap();
    assert_eq!(vision.output_dim(), 8);
    let dims = |n: &str| {
        store
            .get_var(n)
            .unwrap_or_else(|| panic!("no variable `{n}`"))
            .dims()
            .to_vec()
    };
    assert_eq!(
        dims("text_model.embeddings.token_embedding.weight"),
        [30, 8]
    );
    assert_eq!(
        dims("text_model.embeddings.position_embedding.weight"),
        [6, 8]
    );
    for i in 0..2 {
        let p = format!("text_model.encoder.layers.{i}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            assert_eq!(dims(&format!("{p}.self_attn.{proj}.weight")), [8, 8]);
            assert_eq!(dims(&format!("{p}.self_attn.{proj}.bias")), [8]);
        }
        assert_eq!(dims(&format!("{p}.mlp.fc1.weight")), [12, 8]);
        assert_eq!(dims(&format!("{p}.mlp.fc2.weight")), [8, 12]);
        assert_eq!(dims(&format!("{p}.layer_norm1.bias")), [8]);
        assert_eq!(dims(&format!("{p}.layer_norm2.weight")), [8]);
    }
    assert_eq!(dims("text_model.final_layer_norm.weight"), [8]);
    assert_eq!(dims("vision_model.embeddings.class_embedding"), [8]);
    assert_eq!(
        dims("vision_model.embeddings.patch_embedding.weight"),
        [8, 3, 4, 4]
    );
    assert_eq!(
        dims("vision_model.embeddings.position_embedding.weight"),
        [5, 8]
    );
    assert_eq!(dims("vision_model.pre_layrnorm.weight"), [8]);
    assert_eq!(dims("vision_model.post_layernorm.bias"), [8]);
    assert_eq!(dims("vision_model.encoder.layers.0.mlp.fc1.bias"), [12]);
    assert_eq!(store.named_vars().len(), 36 + 23);
    // initialisation: layer norms 1 / 0, biases 0, embeddings ~ N(0, 0.02)
    let v = |n: &str| vals(store.get_var(n).unwrap().as_tensor());
    assert!(v("vision_model.pre_layrnorm.weight")
        .iter()
        .all(|&x| x == 1.0));
    assert!(v("text_model.final_layer_norm.bias")
        .iter()
        .all(|&x| x == 0.0));
    assert!(v("text_model.encoder.layers.1.mlp.fc2.bias")
        .iter()
        .all(|&x| x == 0.0));
    let tok = v("text_model.embeddings.token_embedding.weight");
    let std = (tok.iter().map(|x| x * x).sum::<f64>() / tok.len() as f64).sqrt();
    assert!((0.012..0.03).contains(&std), "token embedding std {std}");
    // seeded: the same seed gives the same weights
    let again = VarStore::new(5);
    ClipText::new(
        &text_cfg,
        &meta,
        again.var_builder(DType::F32, &Device::Cpu).pp("text_model"),
    )
    .unwrap();
    assert_eq!(
        vals(
            again
                .get_var("text_model.encoder.layers.0.self_attn.q_proj.weight")
                .unwrap()
                .as_tensor()
        ),
        v("text_model.encoder.layers.0.self_attn.q_proj.weight")
    );
}

#[test]
fn towers_are_registered_and_configured_from_recipe_tables() {
    let ctx = EncoderCtx {
        meta: DataMeta {
            image_shape: Some([3, 16, 16]),
            vocab_size: Some(20),
            ..Default::default()
        },
    };
    let params = |src: &str| {
        parallax_core::recipe::Params::from_toml("encoder", toml::from_str(src).unwrap()).unwrap()
    };
    let store = VarStore::new(0);
    let entry = parallax_core::registry::encoder("clip_text").unwrap();
    let enc = (entry.build)(
        &params("hidden_size = 16\nintermediate_size = 32\nnum_hidden_layers = 1\nnum_attention_heads = 2\nhidden_act = \"gelu\""),
        &ctx,
        store.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    assert_eq!(enc.output_dim(), 16);
    assert_eq!(
        store
            .get_var("embeddings.token_embedding.weight")
            .unwrap()
            .dims(),
        &[20, 16]
    );
    assert_eq!(
        store
            .get_var("embeddings.position_embedding.weight")
            .unwrap()
            .dims(),
        &[77, 16]
    );
    let batch = text_batch(vec![1, 2, 3, 4, 5, 0], vec![1, 1, 1, 1, 0, 0], 2, 3);
    assert_eq!(
        enc.forward(&batch, &mut ForwardCtx::eval()).unwrap().dims(),
        &[2, 16]
    );
    let e = (entry.build)(
        &params("width = 16"),
        &ctx,
        store.var_builder(DType::F32, &Device::Cpu),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("width"), "{e}");
    let e = (entry.build)(
        &params("hidden_act = \"relu\""),
        &ctx,
        store.var_builder(DType::F32, &Device::Cpu),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("relu"), "{e}");

    let store = VarStore::new(0);
    let entry = parallax_core::registry::encoder("clip_vision").unwrap();
    let enc = (entry.build)(
        &params("hidden_size = 16\nintermediate_size = 32\nnum_hidden_layers = 1\nnum_attention_heads = 2\npatch_size = 8"),
        &ctx,
        store.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    assert_eq!(enc.output_dim(), 16);
    assert_eq!(
        store
            .get_var("embeddings.position_embedding.weight")
            .unwrap()
            .dims(),
        &[5, 16]
    );
    let y = enc
        .forward(
            &image_batch(images((2, 3, 16, 16), 0, DType::F32)),
            &mut ForwardCtx::eval(),
        )
        .unwrap();
    assert_eq!(y.dims(), &[2, 16]);
    let e = (entry.build)(
        &params("patch_size = 8\nmean = [0.5, 0.5]"),
        &ctx,
        store.var_builder(DType::F32, &Device::Cpu),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("mean") && e.contains('2'), "{e}");
}

#[test]
fn hf_config_round_trips_and_fills_defaults() {
    let dir = fixture_dir();
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let cfg = HfClipConfig::from_json(&text, "config.json").unwrap();
    assert_eq!(cfg.text.num_hidden_layers, 2);
    assert_eq!(cfg.text.max_position_embeddings, 16);
    assert_eq!(cfg.vision.patch_size, 8);
    assert_eq!(cfg.vision.num_channels, Some(3));
    assert_eq!(cfg.vision.hidden_act, Activation::QuickGelu);
    assert!((cfg.logit_scale_init - 2.6592).abs() < 1e-12);
    let json = cfg.to_json();
    assert_eq!(json["model_type"], "clip");
    assert_eq!(json["architectures"][0], "CLIPModel");
    assert_eq!(json["text_config"]["model_type"], "clip_text_model");
    assert_eq!(json["vision_config"]["model_type"], "clip_vision_model");
    assert_eq!(json["text_config"]["hidden_act"], "quick_gelu");
    let back = HfClipConfig::from_json(&json.to_string(), "round trip").unwrap();
    assert_eq!(back, cfg);
    // another configuration round-trips too
    let other = HfClipConfig {
        text: ClipTextConfig {
            vocab_size: Some(1000),
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-6,
            attention_dropout: 0.1,
            ..Default::default()
        },
        vision: ClipVisionConfig {
            image_size: Some(32),
            num_channels: Some(1),
            patch_size: 4,
            dropout: 0.05,
            ..Default::default()
        },
        projection_dim: 64,
        logit_scale_init: 1.5,
    };
    let back = HfClipConfig::from_json(&other.to_json().to_string(), "other").unwrap();
    assert_eq!(back, other);

    // missing keys take transformers' defaults (ViT-B/32)
    let cfg = HfClipConfig::from_json("{\"text_config\": {\"hidden_size\": 64, \"num_attention_heads\": 4, \"eos_token_id\": 2}, \"model_type\": \"clip\"}", "min.json").unwrap();
    assert_eq!(cfg.text.hidden_size, 64);
    assert_eq!(cfg.text.vocab_size, Some(49408));
    assert_eq!(cfg.text.intermediate_size, 2048);
    assert_eq!(cfg.text.max_position_embeddings, 77);
    assert_eq!(cfg.text.num_hidden_layers, 12);
    assert_eq!(cfg.vision.hidden_size, 768);
    assert_eq!(cfg.vision.num_attention_heads, 12);
    assert_eq!(cfg.vision.image_size, Some(224));
    assert_eq!(cfg.vision.patch_size, 32);
    assert_eq!(cfg.vision.num_channels, Some(3));
    assert_eq!(cfg.vision.mean, CLIP_MEAN.to_vec());
    assert_eq!(cfg.projection_dim, 512);
    assert!((cfg.logit_scale_init - 2.6592).abs() < 1e-12);
    let empty = HfClipConfig::from_json("{}", "empty.json").unwrap();
    assert_eq!(
        empty.text,
        ClipTextConfig {
            vocab_size: Some(49408),
            ..Default::default()
        }
    );
    // image sizes as [n, n]; legacy `*_config_dict` objects win
    let cfg = HfClipConfig::from_json(
        "{\"vision_config\": {\"image_size\": [64, 64], \"patch_size\": 16},\
          \"text_config\": {\"hidden_size\": 64},\
          \"text_config_dict\": {\"hidden_size\": 128}}",
        "legacy.json",
    )
    .unwrap();
    assert_eq!(
        (cfg.vision.image_size, cfg.vision.patch_size),
        (Some(64), 16)
    );
    assert_eq!(cfg.text.hidden_size, 128);

    // errors name the origin and the problem
    let e = HfClipConfig::from_json("{\"text_config\": ", "broken/config.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken/config.json"), "{e}");
    let e = HfClipConfig::from_json(
        "{\"text_config\": {\"hidden_size\": \"big\"}}",
        "typed.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("typed.json") && e.contains("text_config"), "{e}");
    let e = HfClipConfig::from_json(
        "{\"vision_config\": {\"hidden_act\": \"relu\"}}",
        "act.json",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("act.json") && e.contains("vision_config.hidden_act") && e.contains("relu"),
        "{e}"
    );
    let e = HfClipConfig::from_json(
        "{\"vision_config\": {\"image_size\": [64, 32]}}",
        "rect.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("rect.json") && e.contains("image_size"), "{e}");
    let e = HfClipConfig::from_json("{\"text_config\": {\"hidden_size\": 30}}", "heads.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("heads.json") && e.contains("num_attention_heads"),
        "{e}"
    );
}
