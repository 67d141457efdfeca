//! Helpers for the end-to-end tests of the `parallax` binary.

pub mod fuzz;
pub mod mock_hub;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The `parallax` binary built by `cargo test` (the cli package's own
/// integration test makes cargo build it), or `PARALLAX_TEST_BIN`.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PARALLAX_TEST_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile directory");
    let p = dir.join(format!("parallax{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.is_file(),
        "{} not found: run `cargo test` from the workspace root (it builds the binary), or set PARALLAX_TEST_BIN",
        p.display()
    );
    p
}

/// Runs `parallax ARGS` in the workspace root with a clean `PARALLAX_*` environment.
pub fn parallax(args: &[&str]) -> Output {
    parallax_env(args, &[])
}

/// Runs `parallax ARGS` with extra environment variables.
pub fn parallax_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.current_dir(root()).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARALLAX_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run parallax")
}

/// Standard output and error of a finished command, for assertions.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// Asserts success and returns stdout.
pub fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(
        o.status.success(),
        "parallax failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// Asserts failure and returns stderr.
pub fn fails(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(
        !o.status.success(),
        "parallax should have failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    err
}

/// The tiny recipe used by the training tests.
pub fn tiny_recipe() -> String {
    root().join("tests/recipes/tiny.toml").display().to_string()
}

/// The recipes under `recipes/` and `recipes/label-efficiency/` that train
/// without downloads (text recipes that name a `pretrained` model have
/// their own tests), sorted.
pub fn offline_recipes() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for dir in ["recipes", "recipes/label-efficiency"] {
        paths.extend(
            std::fs::read_dir(root().join(dir))
                .expect("recipes folder")
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .filter(|p| {
                    let text = std::fs::read_to_string(p).unwrap_or_default();
                    // recipes on fetched data (`path = "data/..."`) run
                    // only where scripts/fetch-data.sh has put it
                    let fetched_missing = text.lines().any(|l| {
                        l.trim()
                            .strip_prefix("path = \"data/")
                            .and_then(|r| r.strip_suffix('"'))
                            .is_some_and(|r| !root().join("data").join(r).exists())
                    });
                    !text.contains("pretrained") && !fetched_missing
                }),
        );
    }
    paths.sort();
    paths
}

/// Trains every [`offline_recipes`] recipe into `dir` for `steps` steps with
/// batches of 16 and no evaluators, plus `extra` flags, asserting success;
/// returns `(recipe stem, run directory)` for each.
pub fn train_offline_recipes(dir: &Path, steps: u64, extra: &[&str]) -> Vec<(String, PathBuf)> {
    let steps = steps.to_string();
    offline_recipes()
        .into_iter()
        .enumerate()
        .map(|(n, p)| {
            let name = p
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .to_string();
            let out = dir.join(format!("{n}-{name}"));
            let mut args = vec![
                "train",
                p.to_str().expect("utf-8 path"),
                "--out",
                out.to_str().expect("utf-8 path"),
                "--max-steps",
                steps.as_str(),
                "--set",
                "eval=[]",
                "--set",
                "train.batch_size=16",
            ];
            args.extend_from_slice(extra);
            ok(&parallax(&args));
            (name, out)
        })
        .collect()
}
