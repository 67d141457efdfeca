//! The vision methods end to end: MoCo, BYOL, SimSiam, DINO, triplet and the
//! supervised baseline train a few steps on the embedded Fashion-MNIST, keep
//! their target networks and queues in checkpoints, resume exactly, and
//! every recipe in recipes/ builds and trains a step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use parallax_tests::{fails, ok, parallax, root, train_offline_recipes};

const BASE: &str = r#"
seed = 3
device = "cpu"

[data]
name = "fashion_mnist"
train_limit = 192
test_limit = 64

[encoder]
name = "small_cnn"
channels = [8, 16]

[optimizer]
name = "adamw"
lr = 1e-3

[train]
epochs = 2
batch_size = 32
checkpoint_every = 3
log_every = 1
histogram_every = 0
workers = 1
prefetch = 2
"#;

const VIEWS2: &str = r#"
[views]
name = "image"
views = 2
"#;

/// Writes a recipe named `name` (BASE + `tail`) into `dir`.
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

fn final_loss(run: &Path) -> f64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    v["final"]["train/loss"].as_f64().unwrap()
}

const MOCO: &str = r#"
[method]
name = "moco"
queue_size = 80
momentum = 0.9

[method.projector]
name = "moco"
hidden_dim = 32
out_dim = 16
"#;

#[test]
fn moco_keeps_a_momentum_encoder_and_a_queue_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "moco", &format!("{VIEWS2}{MOCO}"));
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let out = train(&r, &a, &["--max-steps", "4", "--set", "eval=[]"]);
    assert!(out.contains("steps: 4"), "{out}");
    assert!(final_loss(&a).is_finite());
    let ck = checkpoint(&a);
    // the target is in the checkpoint, close to but not equal to the online weights
    let w = &ck.model["encoder.stage0.0.conv.weight"];
    let t = &ck.model["target.encoder.stage0.0.conv.weight"];
    let d = max_diff(w, t);
    assert!(d > 0.0 && d < 0.05, "online vs target: {d}");
    // 4 steps x 32 keys written into a queue of 80: the pointer wrapped to 48
    let q = &ck.method["queue"];
    assert_eq!(q.dims(), &[80, 16]);
    assert_eq!(ck.method["queue_ptr"].to_vec1::<i64>().unwrap(), vec![48]);
    // the trainable-parameter count excludes the target
    assert!(out.contains("trainable tensors"), "{out}");
    // resume: 2 + 2 steps equal 4 straight (queue and target restored)
    train(&r, &b, &["--max-steps", "2", "--set", "eval=[]"]);
    train(
        &r,
        &b,
        &["--max-steps", "4", "--resume", "--set", "eval=[]"],
    );
    let (ca, cb) = (checkpoint(&a), checkpoint(&b));
    for (k, v) in &ca.model {
        assert!(max_diff(v, &cb.model[k]) < 1e-5, "{k} differs after resume");
    }
    assert!(max_diff(&ca.method["queue"], &cb.method["queue"]) < 1e-5);
}

#[test]
fn byol_target_follows_the_momentum() {
    let dir = tempfile::tempdir().unwrap();
    let tail = format!(
        "{VIEWS2}{}",
        r#"
[method]
name = "byol"
momentum = 1.0
momentum_schedule = "constant"

[method.projector]
name = "byol"
hidden_dim = 32
out_dim = 16

[method.predictor]
name = "byol"
hidden_dim = 32
"#
    );
    let r = recipe(dir.path(), "byol", &tail);
    let run = dir.path().join("run");
    let out = train(&r, &run, &["--max-steps", "3", "--set", "eval=[]"]);
    assert!(
        final_loss(&run).is_finite() && final_loss(&run) <= 4.0,
        "{out}"
    );
    let ck = checkpoint(&run);
    // momentum 1: the target never moves from its copy of the initial weights,
    // while the online network trains
    let init = dir.path().join("init");
    train(&r, &init, &["--max-steps", "0", "--set", "eval=[]"]);
    let c0 = checkpoint(&init);
    for name in ["encoder.stage0.0.conv.weight", "projector.0.linear.weight"] {
        let tname = format!("target.{name}");
        assert!(
            max_diff(&ck.model[&tname], &c0.model[name]) < 1e-7,
            "{tname} moved"
        );
        assert!(
            max_diff(&ck.model[name], &c0.model[name]) > 1e-5,
            "{name} did not train"
        );
    }
    assert!(!ck.model.contains_key("target.predictor.0.linear.weight"));
}

#[test]
fn simsiam_and_triplet_train_and_log_alignment_uniformity_rankme() {
    let dir = tempfile::tempdir().unwrap();
    for (name, method) in [
        (
            "simsiam",
            r#"
[method]
name = "simsiam"
[method.projector]
name = "simsiam_projector"
dim = 32
[method.predictor]
name = "simsiam_predictor"
hidden_dim = 8
"#,
        ),
        (
            "triplet",
            r#"
[method]
name = "triplet"
[method.projector]
name = "simclr"
hidden_dim = 32
out_dim = 16
"#,
        ),
    ] {
        let r = recipe(dir.path(), name, &format!("{VIEWS2}{method}"));
        let run = dir.path().join(name);
        train(&r, &run, &["--max-steps", "3", "--set", "eval=[]"]);
        assert!(final_loss(&run).is_finite(), "{name}");
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        for key in ["train/alignment", "train/uniformity", "train/rankme"] {
            assert!(metrics.contains(key), "{name}: {key} not logged");
        }
        let rank = metrics
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["train/rankme"].as_f64())
            .unwrap();
        assert!(rank > 1.0 && rank <= 32.0, "{name}: rankme {rank}");
    }
    // a triplet margin below zero is refused naming the key
    let r = recipe(
        dir.path(),
        "bad",
        &format!(
            "{VIEWS2}[method]\nname = \"triplet\"\n[loss]\nname = \"triplet_batch_hard\"\nmargin = -1.0\n"
        ),
    );
    let err = fails(&parallax(&[
        "train",
        r.to_str().unwrap(),
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]));
    assert!(err.contains("margin"), "{err}");
}

#[test]
fn supervised_trains_on_k_labels_per_class_with_mixup_and_cutmix() {
    let dir = tempfile::tempdir().unwrap();
    let tail = r#"
[views]
name = "image"
views = 1

[method]
name = "supervised"
mixup_alpha = 0.4
cutmix_alpha = 1.0
"#;
    let r = recipe(dir.path(), "sup", tail);
    let run = dir.path().join("run");
    let out = train(
        &r,
        &run,
        &[
            "--set",
            "train.labels_per_class=4",
            "--set",
            "train.batch_size=8",
            "--set",
            "train.epochs=3",
            "--set",
            "eval=[{name=\"linear_probe\", per_class=4, epochs=5, label_draws=3, \
             weight_decay_grid=[0.0001, 1.0], cv_folds=2}]",
        ],
    );
    // 10 classes x 4 = 40 images, 5 steps of 8 per epoch
    assert!(out.contains("4 labelled examples per class"), "{out}");
    assert!(out.contains("steps: 15"), "{out}");
    assert!(out.contains("linear_probe/top1"), "{out}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("train/mix_lambda") && metrics.contains("train/accuracy"));
    // three draws of the 40 labelled images: their mean, spread and each draw
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let get = |k: &str| {
        results["final"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k}: {results}"))
    };
    let draws: Vec<f64> = (0..3)
        .map(|s| get(&format!("linear_probe/top1_seed{s}")))
        .collect();
    let mean = draws.iter().sum::<f64>() / 3.0;
    assert!((get("linear_probe/top1") - mean).abs() < 1e-9, "{results}");
    let sd = (draws.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    assert!((get("linear_probe/top1_sd") - sd).abs() < 1e-9, "{results}");
    assert!(
        draws.iter().any(|&a| a != draws[0]),
        "different labelled images give different probes: {draws:?}"
    );
    // the weight decay chosen for each draw by cross-validation (their
    // geometric mean) is within the grid
    let wd = get("linear_probe/weight_decay");
    assert!((1e-4 - 1e-12..=1.0 + 1e-12).contains(&wd), "{results}");
    let err = fails(&parallax(&[
        "train",
        r.to_str().unwrap(),
        "--out",
        dir.path().join("z").to_str().unwrap(),
        "--set",
        "eval=[{name=\"linear_probe\", per_class=4, weight_decay_grid=[0.1], cv_folds=5}]",
    ]));
    assert!(err.contains("cv_folds"), "{err}");
    let err = fails(&parallax(&[
        "train",
        r.to_str().unwrap(),
        "--out",
        dir.path().join("y").to_str().unwrap(),
        "--set",
        "eval=[{name=\"linear_probe\", label_draws=2}]",
    ]));
    assert!(
        err.contains("label_draws") && err.contains("per_class"),
        "{err}"
    );
    // asking for more labels than a class has names the problem
    let err = fails(&parallax(&[
        "train",
        r.to_str().unwrap(),
        "--out",
        dir.path().join("x").to_str().unwrap(),
        "--set",
        "train.labels_per_class=1000",
    ]));
    assert!(
        err.contains("labels_per_class") && err.contains("fewer than"),
        "{err}"
    );
}

#[test]
fn finetune_and_representation_evaluators_report() {
    let dir = tempfile::tempdir().unwrap();
    let tail = format!(
        "{VIEWS2}{}",
        r#"
[method]
name = "simclr"
[method.projector]
name = "simclr"
hidden_dim = 32
out_dim = 16

[[eval]]
name = "finetune"
per_class = 3
epochs = 4
[eval.views]
name = "image"
views = 1

[[eval]]
name = "representation"
limit = 64
"#
    );
    let r = recipe(dir.path(), "ft", &tail);
    let run = dir.path().join("run");
    let out = train(&r, &run, &["--max-steps", "2"]);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let ft = results["final"]["finetune/top1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ft), "{out}");
    let rank = results["final"]["representation/rankme"].as_f64().unwrap();
    assert!(rank > 1.0 && rank <= 64.0, "rankme {rank}");
    // fine-tuning works on a copy: the run's weights are unchanged by it
    let ck = checkpoint(&run);
    let again = dir.path().join("again");
    train(&r, &again, &["--max-steps", "2", "--set", "eval=[]"]);
    let ck2 = checkpoint(&again);
    let m: &HashMap<String, Tensor> = &ck.model;
    for (k, v) in m {
        assert!(
            max_diff(v, &ck2.model[k]) < 1e-6,
            "{k} changed by the evaluators"
        );
    }
    // with a bf16 encoder, fine-tuning starts an f32 copy from its weights
    let half = dir.path().join("bf16");
    train(
        &r,
        &half,
        &["--max-steps", "2", "--set", "train.precision=\"bf16\""],
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(half.join("results.json")).unwrap()).unwrap();
    let ft = results["final"]["finetune/top1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ft), "{results}");
}

#[test]
fn every_recipe_builds_and_trains_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let runs = train_offline_recipes(dir.path(), 1, &["--set", "train.log_every=1"]);
    assert!(runs.len() >= 15, "only {} recipes ran", runs.len());
}

#[test]
fn views_command_writes_a_png_grid() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("views.png");
    let text = ok(&parallax(&[
        "views",
        root().join("recipes/simclr.toml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--images",
        "5",
    ]));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{text}");
    // 2 views of 28 px + padding: 2 x 30 + 2 = 62 rows; 5 x 30 + 2 = 152 columns
    assert!(text.contains("152 x 62"), "{text}");
}

#[test]
fn simsiam_without_a_predictor_collapses_and_the_trainer_warns() {
    // Chen & He 2021, table 1: removing the predictor makes SimSiam collapse
    let dir = tempfile::tempdir().unwrap();
    let tail = format!(
        "{VIEWS2}{}",
        r#"
[method]
name = "simsiam"
[method.projector]
name = "mlp"
layers = [{ dim = 16, activation = "relu" }, { dim = 16 }]
[method.predictor]
name = "identity"
"#
    );
    let r = recipe(dir.path(), "collapse", &tail);
    let run = dir.path().join("run");
    let out = train(
        &r,
        &run,
        &[
            "--set",
            "eval=[]",
            "--set",
            "train.epochs=6",
            "--set",
            "optimizer.lr=0.01",
        ],
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(
        out.contains("embeddings are collapsing") || metrics.contains("embeddings are collapsing"),
        "no collapse warning:\n{out}"
    );
}

#[test]
fn dino_trains_on_multi_crops_and_keeps_its_centre() {
    let dir = tempfile::tempdir().unwrap();
    let tail = r#"
[views]
name = "multi_crop"
global_crops = 2
local_crops = 2
local_size = 12

[method]
name = "dino"
global_crops = 2
local_crops = 2

[method.head]
name = "dino"
hidden_dim = 16
bottleneck_dim = 8
out_dim = 32
"#;
    let r = recipe(dir.path(), "dino", tail);
    let run = dir.path().join("run");
    train(&r, &run, &["--max-steps", "3", "--set", "eval=[]"]);
    assert!(final_loss(&run).is_finite());
    let ck = checkpoint(&run);
    let c = &ck.method["center"];
    assert_eq!(c.dims(), &[1, 32]);
    let cv = c.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(cv.iter().any(|&v| v != 0.0), "the centre never moved");
    assert_eq!(ck.method["progress"].to_vec1::<i64>().unwrap()[0], 3);
    assert!(ck.model.contains_key("target.head.prototypes.weight"));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("train/teacher_entropy"));
    // the method and the view generator must agree on the number of views
    let bad = recipe(
        dir.path(),
        "dino_bad",
        &tail.replace(
            "local_crops = 2\n\n[method.head]",
            "local_crops = 5\n\n[method.head]",
        ),
    );
    let err = fails(&parallax(&[
        "train",
        bad.to_str().unwrap(),
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]));
    assert!(
        err.contains("needs 7 views") && err.contains("makes 4"),
        "{err}"
    );
}
