//! Our TensorBoard event files, read back by TensorBoard's own reader
//! (`pip install tensorboard`; `.ci/run` installs it).

use parallax_tests::{ok, parallax, root, tiny_recipe};

#[test]
fn tensorboard_reads_a_training_run() {
    let tb = parallax_core::external::TENSORBOARD;
    if !tb.check("tensorboard_reads_a_training_run", || {
        parallax_core::external::python_module("tensorboard")
    }) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    ok(&parallax(&[
        "train",
        &tiny_recipe(),
        "--out",
        run.to_str().unwrap(),
        "--max-steps",
        "4",
    ]));
    let out = std::process::Command::new("python3")
        .arg(root().join("scripts/read_events.py"))
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loss = v["scalars"]["train/loss"]
        .as_array()
        .expect("train/loss scalars");
    assert_eq!(loss.len(), 4, "{v}");
    assert!(
        v["scalars"]["train/lr"].is_array() && v["scalars"]["train/examples_per_s"].is_array(),
        "{v}"
    );
    assert!(v["scalars"]["knn/top1"].is_array(), "{v}");
    assert!(
        v["histograms"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("weights/")),
        "{v}"
    );
    let views = v["images"]["views"][0].as_array().expect("views image");
    // two rows of 28x28 views with 2 px padding: wider than high
    assert!(
        views[0].as_u64().unwrap() > views[1].as_u64().unwrap(),
        "{v}"
    );
    let text = v["text"].to_string();
    assert!(text.contains("small_cnn"), "recipe text missing: {v}");
    assert!(
        v["hparams"]
            .as_object()
            .is_some_and(|h| h.contains_key("seed")),
        "{v}"
    );
}
