//! Mixed precision (`[train] precision`): bf16 and f16 encoders with f32
//! master weights, end to end on the CPU (where the products run in f32 on
//! half-precision storage).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use parallax_tests::{fails, ok, parallax, root, text, tiny_recipe, train_offline_recipes};

fn train(out: &Path, extra: &[&str]) -> String {
    let r = tiny_recipe();
    let mut args = vec![
        "train",
        r.as_str(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        "eval=[]",
    ];
    args.extend_from_slice(extra);
    ok(&parallax(&args))
}

/// `train/loss` of every logged step, in order.
fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v.get("train/loss")?.as_f64()
        })
        .collect()
}

fn checkpoint(run: &Path) -> parallax_core::checkpoint::Checkpoint {
    parallax_core::checkpoint::load(&run.join("checkpoint.safetensors"), &Device::Cpu).unwrap()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn masters(run: &Path) -> HashMap<String, Vec<f32>> {
    checkpoint(run)
        .optim
        .iter()
        .filter_map(|(k, t)| Some((k.strip_prefix("master/")?.to_string(), f32s(t))))
        .collect()
}

#[test]
fn bf16_tracks_f32_and_keeps_f32_master_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("f32"), dir.path().join("bf16"));
    train(&a, &["--max-steps", "6"]);
    let out = train(
        &b,
        &["--max-steps", "6", "--set", "train.precision=\"bf16\""],
    );
    assert!(out.contains("train/loss"), "{out}");
    let (la, lb) = (losses(&a), losses(&b));
    assert_eq!(la.len(), lb.len());
    for (x, y) in la.iter().zip(&lb) {
        assert!(
            (x - y).abs() < 0.01 * x.abs(),
            "bf16 losses {lb:?} drift from f32 {la:?}"
        );
    }
    let ck = checkpoint(&b);
    let enc: Vec<_> = ck
        .model
        .iter()
        .filter(|(k, _)| k.starts_with("encoder.") && k.ends_with("weight"))
        .collect();
    assert!(!enc.is_empty());
    let m = masters(&b);
    for (k, t) in &enc {
        assert_eq!(t.dtype(), DType::BF16, "{k} is stored in the compute dtype");
        let master = m.get(*k).unwrap_or_else(|| panic!("no f32 master for {k}"));
        let rounded = f32s(
            &Tensor::new(master.as_slice(), &Device::Cpu)
                .unwrap()
                .to_dtype(DType::BF16)
                .unwrap(),
        );
        assert_eq!(rounded, f32s(t), "{k} is its master rounded to bf16");
    }
    // heads stay f32 and have no master
    let proj: Vec<_> = ck
        .model
        .iter()
        .filter(|(k, _)| k.starts_with("projector."))
        .collect();
    assert!(!proj.is_empty());
    for (k, t) in proj {
        assert_eq!(t.dtype(), DType::F32, "{k}");
        assert!(!m.contains_key(k), "{k} has a master");
    }
}

#[test]
fn a_bf16_run_resumes_to_the_same_master_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let p = "train.precision=\"bf16\"";
    train(&a, &["--max-steps", "3", "--set", p]);
    train(&a, &["--max-steps", "6", "--resume", "--set", p]);
    train(&b, &["--max-steps", "6", "--set", p]);
    let (ma, mb) = (masters(&a), masters(&b));
    assert!(!ma.is_empty());
    assert_eq!(ma, mb, "resumed and straight bf16 runs differ");
}

#[test]
fn f16_scales_the_loss_and_checkpoints_the_scale() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("f16");
    // with accumulation and clipping, which act on the f32 gradients
    let f16 = [
        "--set",
        "train.precision=\"f16\"",
        "--set",
        "train.accumulate=2",
        "--set",
        "train.grad_clip=1.0",
    ];
    train(&run, &[&["--max-steps", "4"], &f16[..]].concat());
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(text.contains("train/loss_scale"), "{text}");
    let ck = checkpoint(&run);
    let scale = f32s(&ck.optim["loss_scale/scale"])[0];
    assert!(
        (1.0..=65536.0).contains(&scale) && scale.log2().fract() == 0.0,
        "loss scale {scale}"
    );
    let l = losses(&run);
    assert!(l.iter().all(|v| v.is_finite()), "{l:?}");
    // resuming reads the scaler's entries back
    train(
        &run,
        &[&["--max-steps", "5", "--resume"], &f16[..]].concat(),
    );
}

#[test]
fn an_unknown_precision_names_the_key() {
    let err = fails(&parallax(&[
        "train",
        &tiny_recipe(),
        "--out",
        root().join("target/never").to_str().unwrap(),
        "--set",
        "train.precision=\"fp8\"",
    ]));
    assert!(err.contains("precision") && err.contains("fp8"), "{err}");
}

#[test]
fn every_recipe_trains_two_steps_in_bf16() {
    // every method (with its target networks, queues, heads) and the CLIP
    // dual encoder, with the encoder in bf16
    let dir = tempfile::tempdir().unwrap();
    let runs = train_offline_recipes(dir.path(), 2, &["--set", "train.precision=\"bf16\""]);
    assert!(runs.len() >= 15, "only {} recipes ran", runs.len());
    for (name, out) in runs {
        let l = losses(&out);
        assert!(
            !l.is_empty() && l.iter().all(|v| v.is_finite()),
            "{name}: {l:?}"
        );
    }
}

#[test]
fn f16_overflows_skip_steps_and_end_the_run_at_scale_one() {
    // inputs scaled by 1e6 overflow f16 in the first convolution on every
    // step: the scaler halves the scale 16 times, skipping those steps,
    // then stops the run
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("f16");
    let o = parallax(&[
        "train",
        &tiny_recipe(),
        "--out",
        run.to_str().unwrap(),
        "--max-steps",
        "30",
        "--set",
        "train.epochs=4",
        "--set",
        "eval=[]",
        "--set",
        "train.precision=\"f16\"",
        "--set",
        "encoder.std=[1e-6]",
    ]);
    let err = fails(&o);
    let (out, _) = text(&o);
    assert!(err.contains("even at loss scale 1"), "{err}");
    assert!(
        out.contains("the step is skipped, the loss scale is now 32768"),
        "{out}"
    );
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v.get("train/skipped_steps").is_some())
        .unwrap();
    assert_eq!(last["train/skipped_steps"].as_f64(), Some(16.0), "{last}");
    assert_eq!(last["train/loss_scale"].as_f64(), Some(1.0), "{last}");
}
