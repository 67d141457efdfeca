//! Our event writer's files, read back by TensorBoard's own reader through
//! `scripts/read_events.py` (`pip install tensorboard`).

use std::path::PathBuf;
use std::process::Command;

use parallax_core::external;
use parallax_core::logging::tensorboard::{EventWriter, HParamValue, ImageU8};
use serde_json::{json, Value};

fn read_events_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/read_events.py")
}

/// Whether TensorBoard's reader can run (else the test says so and passes,
/// unless CI asks for it: see `parallax_core::external`).
fn have_tensorboard(test: &str) -> bool {
    external::TENSORBOARD.check(test, || external::python_module("tensorboard"))
}

#[test]
fn tensorboard_reads_our_event_file() {
    if !have_tensorboard("tensorboard_reads_our_event_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    {
        let mut w = EventWriter::create(&run).unwrap();
        w.add_hparams(
            &[
                ("lr".to_string(), HParamValue::Number(0.03)),
                ("encoder".to_string(), HParamValue::Text("small_cnn".into())),
                ("augment".to_string(), HParamValue::Bool(true)),
            ],
            &["train/loss".to_string()],
        )
        .unwrap();
        w.add_text("recipe", "```toml\nseed = 7\n```", 0).unwrap();
        for step in 1..=3u64 {
            w.add_scalar("train/loss", 1.0 / step as f64, step).unwrap();
        }
        w.add_scalar("knn/top1", 0.75, 3).unwrap();
        let values: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        w.add_histogram("weights/conv1", &values, 2).unwrap();
        w.add_histogram("weights/conv1", &values[..10], 3).unwrap();
        // 40 wide, 20 high, RGB: a horizontal gradient.
        let (width, height) = (40, 20);
        let mut data = Vec::with_capacity(width * height * 3);
        for _y in 0..height {
            for x in 0..width {
                data.extend_from_slice(&[(x * 6) as u8, 0, 255 - (x * 6) as u8]);
            }
        }
        let image = ImageU8 {
            height,
            width,
            channels: 3,
            data,
        };
        w.add_image("views", &image, 3).unwrap();
        w.flush().unwrap();
    }

    let script = read_events_script();
    let out = Command::new("python3")
        .arg(&script)
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();

    let loss = v["scalars"]["train/loss"]
        .as_array()
        .expect("train/loss scalars");
    let loss: Vec<(u64, f64)> = loss
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    assert_eq!(loss.len(), 3, "{v}");
    for (i, (step, value)) in loss.iter().enumerate() {
        let want = 1.0 / (i + 1) as f64;
        assert_eq!(*step, i as u64 + 1, "{v}");
        assert!(
            (value - want).abs() < 1e-6,
            "step {step}: {value} != {want}"
        );
    }
    assert_eq!(v["scalars"]["knn/top1"], json!([[3, 0.75]]), "{v}");
    assert_eq!(v["histograms"]["weights/conv1"], json!(2), "{v}");
    assert_eq!(
        v["images"]["views"],
        json!([[40, 20]]),
        "width 40, height 20: {v}"
    );
    assert_eq!(
        v["text"]["recipe"],
        json!(["```toml\nseed = 7\n```"]),
        "{v}"
    );
    assert_eq!(
        v["hparams"],
        json!({"lr": 0.03, "encoder": "small_cnn", "augment": true}),
        "{v}"
    );
}
