//! `parallax list` and `parallax recipe show`: the registry and recipe layers.

use parallax_tests::{fails, ok, parallax, parallax_env, tiny_recipe};

#[test]
fn list_shows_every_kind_and_filters() {
    let out = ok(&parallax(&["list"]));
    for needle in [
        "data sources:",
        "fashion_mnist",
        "encoders:",
        "small_cnn",
        "losses:",
        "nt_xent",
        "methods:",
        "simclr",
        "evaluators:",
        "knn",
        "loggers:",
        "tensorboard",
        "heads:",
        "view generators:",
    ] {
        assert!(out.contains(needle), "`{needle}` missing from:\n{out}");
    }
    let losses = ok(&parallax(&["list", "losses"]));
    assert!(
        losses.contains("nt_xent") && !losses.contains("small_cnn"),
        "{losses}"
    );
    let err = fails(&parallax(&["list", "widgets"]));
    assert!(err.contains("widgets") && err.contains("losses"), "{err}");
}

#[test]
fn recipe_show_layers_file_env_and_set() {
    let r = tiny_recipe();
    let out = ok(&parallax_env(
        &["recipe", "show", &r, "--set", "train.batch_size=48"],
        &[
            ("PARALLAX_RECIPE__TRAIN__EPOCHS", "9"),
            ("PARALLAX_RECIPE__TRAIN__BATCH_SIZE", "12"),
        ],
    ));
    assert!(out.contains("epochs = 9"), "{out}");
    // --set beats the environment
    assert!(out.contains("batch_size = 48"), "{out}");
    // defaults fill what the file leaves out
    assert!(out.contains("accumulate = 1"), "{out}");
}

#[test]
fn recipe_errors_name_the_key_and_the_source() {
    let r = tiny_recipe();
    let err = fails(&parallax(&[
        "recipe",
        "show",
        &r,
        "--set",
        "train.epohcs=3",
    ]));
    assert!(
        err.contains("train.epohcs") && err.contains("--set"),
        "{err}"
    );
    let err = fails(&parallax_env(
        &["recipe", "show", &r],
        &[("PARALLAX_RECIPE__TRAIN__LR", "0.1")],
    ));
    assert!(
        err.contains("train.lr") && err.contains("PARALLAX_RECIPE__TRAIN__LR"),
        "{err}"
    );
    let err = fails(&parallax(&[
        "recipe",
        "show",
        "recipes/no-such-recipe.toml",
    ]));
    assert!(
        err.contains("no-such-recipe.toml") && err.contains("does not exist"),
        "{err}"
    );
    // a component key is checked by the component, still naming key and file
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&r)
        .unwrap()
        .replace("channels = [8, 16]", "channels = [8, 16]\nwidht = 3");
    std::fs::write(&bad, text).unwrap();
    let out = dir.path().join("run");
    let err = fails(&parallax(&[
        "train",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(
        err.contains("encoder.widht") && err.contains("bad.toml"),
        "{err}"
    );
    // an unknown component name lists the available ones
    let err = fails(&parallax(&[
        "train",
        &r,
        "--set",
        "encoder.name=resnet9000",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(
        err.contains("resnet9000") && err.contains("small_cnn"),
        "{err}"
    );
}

/// Variables of the project's tools (or anyone's) that happen to start with
/// `PARALLAX_` never stop a run; the old `PARALLAX_SECTION__KEY` form is
/// not read, with a warning naming the form that is.
#[test]
fn unrelated_parallax_variables_leave_training_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (stdout, stderr) = parallax_tests::text(&parallax_env(
        &[
            "train",
            &tiny_recipe(),
            "--out",
            out.to_str().unwrap(),
            "--max-steps",
            "2",
        ],
        &[
            ("PARALLAX_FOO", "1"),
            ("PARALLAX_CUDA_DIR", "/nonexistent/cuda"),
            ("PARALLAX_SKIP_TENSORBOARD_READER", "1"),
            ("PARALLAX_TRAIN__EPOCHS", "9"),
        ],
    ));
    assert!(
        out.join("checkpoint.safetensors").is_file(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("warning: environment variable PARALLAX_TRAIN__EPOCHS is not read")
            && stderr.contains("PARALLAX_RECIPE__TRAIN__EPOCHS"),
        "{stderr}"
    );
    let resolved = std::fs::read_to_string(out.join("recipe.toml")).unwrap();
    assert!(!resolved.contains("epochs = 9"), "{resolved}");
}

#[test]
fn bench_train_step_prints_one_json_line() {
    // the built-in workload, shrunk: ResNet-18 at width 4 on 8x8 images
    let out = ok(&parallax(&[
        "bench",
        "train-step",
        "--batch",
        "4",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--set",
        "encoder.width=4",
        "--set",
        "data.shape=[3, 8, 8]",
    ]));
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(line["impl"], "parallax");
    assert_eq!(line["batch"], 4);
    let ips = line["images_per_s"].as_f64().unwrap();
    let step = line["step_s"].as_f64().unwrap();
    assert!(ips > 0.0 && step > 0.0, "{line}");
    assert!(
        (ips * step - 4.0).abs() < 0.1,
        "images/s = batch / step_s: {line}"
    );
    assert!(line["peak_rss_mib"].as_f64().unwrap() > 1.0, "{line}");
    assert!(line["last_loss"].as_f64().unwrap().is_finite(), "{line}");
    // a batch too small for a contrastive step is refused
    let err = fails(&parallax(&["bench", "train-step", "--batch", "1"]));
    assert!(err.contains("--batch must be at least 2"), "{err}");
}

/// `cuda:N` on a binary built without the `cuda` feature (the default build)
/// is a clear error naming the feature and the build command, from the
/// recipe and from `--device` alike; nothing is written. A binary with CUDA
/// (`PARALLAX_TEST_BIN`) on a machine without a GPU says that instead.
#[test]
fn cuda_device_without_cuda_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    let recipe = tiny_recipe();
    for args in [
        vec!["train", &recipe, "--out", out, "--device", "cuda:0"],
        vec!["train", &recipe, "--out", out, "--set", "device=cuda:1"],
        vec!["bench", "train-step", "--batch", "2", "--device", "cuda"],
    ] {
        let err = fails(&parallax(&args));
        assert!(!err.contains("panicked"), "{err}");
        if err.contains("built without CUDA") {
            assert!(err.contains("`cuda` feature"), "{err}");
            assert!(
                err.contains("cargo build --release --features cuda"),
                "{err}"
            );
        } else {
            assert!(err.contains("no CUDA GPU found"), "{err}");
        }
    }
    assert!(!dir.path().join("run").exists());
    let err = fails(&parallax(&[
        "train", &recipe, "--out", out, "--device", "gpu",
    ]));
    assert!(err.contains("expected auto, cpu or cuda:N"), "{err}");
}
