//! CLIP end to end: a dual encoder trained on captioned Fashion-MNIST learns
//! zero-shot classification and retrieval; the MoCo-style variant keeps
//! momentum towers and queues in its checkpoints and resumes exactly; the
//! logit scale is clipped; misconfigurations are named.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use parallax_tests::{fails, ok, parallax};

const BASE: &str = r#"
seed = 5
device = "cpu"

[data]
name = "captioned"
max_length = 16

[data.images]
name = "fashion_mnist"
train_limit = 2048
test_limit = 500

[views]
name = "image"
views = 1
transforms = [{ name = "horizontal_flip", p = 0.5 }]

[optimizer]
name = "adamw"
lr = 3e-3
weight_decay = 0.1

[train]
epochs = 3
batch_size = 64
checkpoint_every = 3
log_every = 4
histogram_every = 0
workers = 1
prefetch = 2
"#;

/// The dual encoder: a small CNN and a one-layer CLIP text transformer.
const DUAL: &str = r#"
[encoder]
name = "clip"
embed_dim = 32

[encoder.image]
name = "small_cnn"
channels = [16, 32]

[encoder.text]
name = "clip_text"
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 1
num_attention_heads = 2
max_position_embeddings = 16

"#;

fn recipe(dir: &Path, name: &str, tail: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, format!("name = \"{name}\"\n{BASE}\n{tail}")).unwrap();
    p
}

fn train(recipe: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&parallax(&args))
}

fn results(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap()
}

fn checkpoint(run: &Path) -> parallax_core::checkpoint::Checkpoint {
    parallax_core::checkpoint::load(&run.join("checkpoint.safetensors"), &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn clip_learns_zero_shot_classification_and_retrieval() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "clip",
        &format!(
            "{DUAL}{}",
            r#"
[method]
name = "clip"

[[eval]]
name = "zero_shot"

[[eval]]
name = "retrieval"
limit = 200
"#
        ),
    );
    let run = dir.path().join("run");
    let out = train(&r, &run, &[]);
    let v = results(&run);
    let get = |k: &str, which: &str| {
        v[which][k]
            .as_f64()
            .unwrap_or_else(|| panic!("no {which} {k} in {v}"))
    };
    let (before, after) = (
        get("zero_shot/top1", "init"),
        get("zero_shot/top1", "final"),
    );
    // 10 classes: chance is 0.1; 96 steps of CLIP reach far above it
    assert!(before < 0.3, "zero-shot before training: {before}");
    assert!(
        after > 0.5,
        "zero-shot after training: {after} (before {before})\n{out}"
    );
    // retrieval: class-level recall is high; the exact caption is among
    // near-duplicates, so it is low but above chance (1 in 200)
    let r1c = get("retrieval/i2t_r1_class", "final");
    assert!(r1c > 0.5, "i2t R@1 (class): {r1c}");
    for k in ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"] {
        let x = get(&format!("retrieval/{k}"), "final");
        assert!((0.0..=1.0).contains(&x), "{k} = {x}");
    }
    assert!(get("retrieval/i2t_r10", "final") >= get("retrieval/i2t_r1", "final"));
    // the logged logit scale and in-batch accuracy
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(log.contains("train/logit_scale"), "{log}");
    assert!(log.contains("train/i2t_batch_accuracy"));
    // printed at the end
    assert!(out.contains("zero_shot/top1"), "{out}");
}

const MOCO: &str = r#"
[method]
name = "clip"
variant = "moco"
momentum = 0.9
queue_size = 100
"#;

#[test]
fn clip_moco_keeps_momentum_towers_and_queues_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "clip-moco", &format!("{DUAL}{MOCO}"));
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let args = ["--set", "eval=[]", "--set", "train.batch_size=32"];
    train(&r, &a, &[&["--max-steps", "4"][..], &args].concat());
    let ck = checkpoint(&a);
    // momentum copies of both towers and both projections
    for name in [
        "vision_model.stage0.0.conv.weight",
        "text_model.embeddings.token_embedding.weight",
        "text_projection.weight",
        "visual_projection.weight",
    ] {
        let (w, t) = (
            &ck.model[&format!("encoder.{name}")],
            &ck.model[&format!("target.encoder.{name}")],
        );
        let d = max_diff(w, t);
        assert!(d > 0.0 && d < 0.1, "{name}: online vs target {d}");
    }
    // 4 steps x 32 keys into queues of 100: the pointer wrapped to 28
    assert_eq!(ck.method["image_queue"].dims(), &[100, 32]);
    assert_eq!(ck.method["text_queue"].dims(), &[100, 32]);
    assert_eq!(ck.method["queue_ptr"].to_vec1::<i64>().unwrap(), vec![28]);
    // 2 + 2 steps with --resume equal 4 straight
    train(&r, &b, &[&["--max-steps", "2"][..], &args].concat());
    train(
        &r,
        &b,
        &[&["--max-steps", "4", "--resume"][..], &args].concat(),
    );
    let cb = checkpoint(&b);
    for (k, v) in &ck.model {
        assert!(max_diff(v, &cb.model[k]) < 1e-5, "{k} differs after resume");
    }
    for k in ["image_queue", "text_queue"] {
        assert!(max_diff(&ck.method[k], &cb.method[k]) < 1e-5, "{k}");
    }
}

#[test]
fn the_logit_scale_is_clipped_at_100() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "clip-clamp",
        &format!("{DUAL}[method]\nname = \"clip\"\n"),
    );
    let run = dir.path().join("run");
    // start above ln 100 = 4.605
    train(
        &r,
        &run,
        &[
            "--max-steps",
            "2",
            "--set",
            "eval=[]",
            "--set",
            "encoder.logit_scale_init=5.5",
        ],
    );
    let s = checkpoint(&run).model["encoder.logit_scale"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(s.len(), 1);
    // clipped after the first step; the second AdamW step (lr 3e-3) moves
    // it by a few thousandths at most, far less than the 0.9 above ln 100
    let max = 100f32.ln();
    assert!(
        s[0] <= max + 1e-6 && s[0] > max - 0.02,
        "logit scale {} (ln 100 = {max})",
        s[0]
    );
}

#[test]
fn misconfigured_clip_recipes_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    // the clip method on an image-only encoder
    let r = recipe(
        dir.path(),
        "bad1",
        "[method]\nname = \"clip\"\n[encoder]\nname = \"small_cnn\"\n",
    );
    let e = fails(&parallax(&[
        "train",
        r.to_str().unwrap(),
        "--out",
        dir.path().join("o1").to_str().unwrap(),
    ]));
    assert!(e.contains("dual image-text encoder"), "{e}");
    // the dual encoder without its text tower
    let no_text = &DUAL[..DUAL.find("[encoder.text]").unwrap()];
    let r = recipe(
        dir.path(),
        "bad2",
        &format!("{no_text}[method]\nname = \"clip\"\n"),
    );
    let e = fails(&parallax(&[
        "train",
        r.to_str().unwrap(),
        "--out",
        dir.path().join("o2").to_str().unwrap(),
    ]));
    assert!(e.contains("encoder.text"), "{e}");
    // a prompt template without its placeholder
    let r = recipe(
        dir.path(),
        "bad4",
        &format!(
            "{DUAL}[method]\nname = \"clip\"\n[[eval]]\nname = \"zero_shot\"\ntemplates = [\"a photo\"]\n"
        ),
    );
    let e = fails(&parallax(&[
        "train",
        r.to_str().unwrap(),
        "--out",
        dir.path().join("o4").to_str().unwrap(),
    ]));
    assert!(e.contains("templates") && e.contains("a photo"), "{e}");
    // a misspelt method key names the key and the file
    let r = recipe(
        dir.path(),
        "bad3",
        &format!("{DUAL}[method]\nname = \"clip\"\nqueue_sise = 10\n"),
    );
    let e = fails(&parallax(&[
        "train",
        r.to_str().unwrap(),
        "--out",
        dir.path().join("o3").to_str().unwrap(),
    ]));
    assert!(e.contains("queue_sise") && e.contains("bad3.toml"), "{e}");
}

/// Writes a 16 px RGB PNG: mostly `rgb`, with seeded noise.
fn png(path: &Path, rgb: [u8; 3], seed: u32) {
    let mut img = image::RgbImage::new(16, 16);
    for (i, px) in img.pixels_mut().enumerate() {
        let n = ((i as u32)
            .wrapping_mul(2_654_435_761)
            .wrapping_add(seed * 97)
            >> 27) as u8;
        *px = image::Rgb([
            rgb[0].saturating_add(n),
            rgb[1].saturating_add(n),
            rgb[2].saturating_add(n),
        ]);
    }
    img.save(path).unwrap();
}

#[test]
fn a_pretrained_hugging_face_clip_trains_on_an_image_text_manifest_with_its_tokenizer() {
    let fixture = parallax_tests::root().join("plugins/multimodal/tests/fixtures/tiny-clip");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("img")).unwrap();
    let mut train_rows = String::new();
    let mut test = String::new();
    for i in 0..24u32 {
        for (name, rgb) in [("red", [200, 30, 30]), ("blue", [30, 30, 200])] {
            let file = format!("img/{name}{i}.png");
            png(&dir.path().join(&file), rgb, i);
            let line = format!(
                "{{\"image\": \"{file}\", \"caption\": \"a small photo of a {name} square .\", \"label\": \"{name}\"}}\n"
            );
            if i < 20 {
                train_rows.push_str(&line);
            } else {
                test.push_str(&line);
            }
        }
    }
    let d = |p: &str| dir.path().join(p).display().to_string();
    std::fs::write(d("train.jsonl"), train_rows).unwrap();
    std::fs::write(d("test.jsonl"), test).unwrap();
    let recipe = dir.path().join("tiny-clip.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"
name = "tiny-clip"
seed = 1
device = "cpu"

[data]
name = "image_text"
manifest = {train:?}
test_manifest = {test:?}
label_key = "label"
max_length = 12

[views]
name = "copies"
views = 1

[encoder]
name = "clip"
pretrained = {model:?}

[method]
name = "clip"

[optimizer]
name = "adamw"
lr = 3e-3

[train]
epochs = 8
batch_size = 8
log_every = 5
workers = 1

[[eval]]
name = "zero_shot"
templates = ["a photo of a {{}} square .", "a {{}} shape ."]

[[eval]]
name = "retrieval"
ks = [1, 5]
"#,
            train = d("train.jsonl"),
            test = d("test.jsonl"),
            model = fixture.display().to_string(),
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    // captions and prompts go through the model's own word-level tokenizer
    // (64 ids): the embedded BERT vocabulary would overflow its embeddings
    let out = train(&recipe, &run, &[]);
    let v = results(&run);
    for k in [
        "zero_shot/top1",
        "retrieval/i2t_r1",
        "retrieval/t2i_r5_class",
    ] {
        for which in ["init", "final"] {
            let x = v[which][k].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&x), "{which} {k} = {x}\n{out}");
        }
    }
    // the pretrained weights were the starting point and were trained
    let start =
        candle_core::safetensors::load(fixture.join("model.safetensors"), &Device::Cpu).unwrap();
    let ck = checkpoint(&run);
    let name = "text_model.final_layer_norm.weight";
    let moved = max_diff(&start[name], &ck.model[&format!("encoder.{name}")]);
    assert!(moved > 0.0 && moved < 0.1, "{name} moved by {moved}");
    // 40 training pairs in batches of 8 for 8 epochs
    assert_eq!(v["step"].as_u64(), Some(40), "{v}");
    // with a clear colour cue, 40 steps of CLIP separate the two classes
    let zs = v["final"]["zero_shot/top1"].as_f64().unwrap();
    assert!(zs >= 0.75, "zero-shot after training: {zs}\n{out}");
}
