//! A checkpoint holds everything a run needs to continue bit-identically:
//! for every method family (each top-level recipe that trains offline),
//! 4 steps in one go and 2 + `--resume` + 2 give the same model, optimizer
//! and method state (momentum encoders, queues, centres, loss scale), bit
//! for bit. And the rotation: a corrupt latest checkpoint makes `--resume`
//! fall back to the one before, saying so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use parallax_core::checkpoint::{self, Checkpoint};
use parallax_tests::{ok, parallax, text, tiny_recipe};

fn family_recipes() -> Vec<PathBuf> {
    // recipes/label-efficiency/ repeats these families with other settings
    parallax_tests::offline_recipes()
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("label-efficiency"))
        .collect()
}

fn train(recipe: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        "eval=[]",
        "--set",
        "train.batch_size=16",
        "--set",
        "train.log_every=1",
    ];
    args.extend_from_slice(extra);
    ok(&parallax(&args))
}

fn load(run: &Path) -> Checkpoint {
    checkpoint::load(&run.join("checkpoint.safetensors"), &Device::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u8> {
    let t = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => t
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect(),
        _ => t
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect(),
    }
}

fn assert_same(what: &str, a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) {
    let mut ka: Vec<_> = a.keys().collect();
    let mut kb: Vec<_> = b.keys().collect();
    ka.sort();
    kb.sort();
    assert_eq!(ka, kb, "{what}: different entries");
    for (k, v) in a {
        assert!(bits(v) == bits(&b[k]), "{what}: `{k}` differs after resume");
    }
}

#[test]
fn every_method_family_resumes_bit_for_bit() {
    let recipes = family_recipes();
    assert!(recipes.len() >= 10, "{recipes:?}");
    let dir = tempfile::tempdir().unwrap();
    for (n, r) in recipes.iter().enumerate() {
        let straight = dir.path().join(format!("{n}-straight"));
        let resumed = dir.path().join(format!("{n}-resumed"));
        train(r, &straight, &["--max-steps", "4"]);
        train(r, &resumed, &["--max-steps", "2"]);
        train(r, &resumed, &["--max-steps", "4", "--resume"]);
        let (a, b) = (load(&straight), load(&resumed));
        let name = r.file_stem().unwrap().to_string_lossy();
        assert_eq!(a.meta.step, 4, "{name}");
        assert_eq!(b.meta.step, 4, "{name}");
        assert_same(&format!("{name} model"), &a.model, &b.model);
        assert_same(&format!("{name} optimizer"), &a.optim, &b.optim);
        assert_same(&format!("{name} method state"), &a.method, &b.method);
    }
}

#[test]
fn resume_falls_back_past_a_corrupt_latest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = PathBuf::from(tiny_recipe());
    // checkpoints at 2 and 4 (the end); keep 2
    train(
        &r,
        &run,
        &["--max-steps", "4", "--set", "train.checkpoint_every=2"],
    );
    let older = run.join("checkpoint-00000002.safetensors");
    assert!(older.is_file(), "the previous checkpoint is kept");
    assert_eq!(load(&run).meta.step, 4);
    // the latest is cut short (a full disk, a crash of the file system)
    let latest = run.join("checkpoint.safetensors");
    let bytes = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &bytes[..bytes.len() - 100]).unwrap();
    let out = parallax(&[
        "train",
        r.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--max-steps",
        "6",
        "--resume",
        "--set",
        "train.checkpoint_every=2",
        "--set",
        "eval=[]",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("skipping") && all.contains("checkpoint.safetensors"),
        "{all}"
    );
    assert!(
        all.contains("continuing from") && all.contains("checkpoint-00000002.safetensors"),
        "{all}"
    );
    assert_eq!(load(&run).meta.step, 6);
    // the resumed run rewrote step 4 in place, then rotated as usual: the
    // last two remain, and both verify
    let kept = run.join("checkpoint-00000004.safetensors");
    assert_eq!(checkpoint::load(&kept, &Device::Cpu).unwrap().meta.step, 4);
    assert!(!older.exists(), "only the last 2 are kept");
}

#[test]
fn the_best_checkpoint_is_kept_by_its_metric() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = PathBuf::from(tiny_recipe());
    let out = ok(&parallax(&[
        "train",
        r.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--max-steps",
        "3",
        "--set",
        "train.best_metric=knn/top1",
    ]));
    let best = run.join("checkpoint-best.safetensors");
    assert!(best.is_file(), "{out}");
    let ck = checkpoint::load(&best, &Device::Cpu).unwrap();
    assert_eq!(ck.meta.step, 3);
}
