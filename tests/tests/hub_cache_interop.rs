//! One Hub cache for Parallax and Python's `huggingface_hub`: what either
//! writes, the other reads offline.
//!
//! - `parallax hub pull` (from the mock Hub on 127.0.0.1) → Python's
//!   `try_to_load_from_cache` finds every file, `scan_cache_dir` has no
//!   warnings;
//! - Python's `hf_hub_download` (from the same mock Hub) → `parallax hub
//!   pull --offline` finds every file;
//! - `scripts/fetch-models.sh` writes `refs/main` as huggingface_hub does
//!   (no newline), repairs a ref an earlier version wrote, and the real
//!   model it installs is visible to Python offline.
//!
//! These need python3 with `huggingface_hub` (`pip install
//! huggingface_hub`); without it they say so and pass, unless CI=true or
//! REQUIRE_HF_HUB_PYTHON=1 (see `parallax_core::external`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use parallax_core::external::{self, HF_HUB_PYTHON, MINILM};
use parallax_tests::mock_hub::{MockHub, COMMIT};
use parallax_tests::{ok, parallax_env, root};

const REPO: &str = "acme/tiny-bert";

fn files() -> BTreeMap<String, Vec<u8>> {
    let mut f = BTreeMap::new();
    f.insert(
        "config.json".to_string(),
        b"{\"model_type\": \"bert\"}".to_vec(),
    );
    f.insert(
        "model.safetensors".to_string(),
        (0..3000u32).flat_map(|i| i.to_le_bytes()).collect(),
    );
    f.insert(
        "tokenizer.json".to_string(),
        b"{\"version\": \"1.0\"}".to_vec(),
    );
    f.insert(
        "1_Pooling/config.json".to_string(),
        b"{\"pooling_mode_mean_tokens\": true}".to_vec(),
    );
    f
}

fn have_python_hub(test: &str) -> bool {
    HF_HUB_PYTHON.check(test, || external::python_module("huggingface_hub"))
}

/// Environment for a client whose cache is `home/hub`; nothing of the
/// caller's own Hub set-up leaks in.
fn hub_env<'a>(endpoint: &'a str, home: &'a Path, offline: bool) -> Vec<(&'a str, &'a str)> {
    vec![
        ("HF_ENDPOINT", endpoint),
        ("HF_HOME", home.to_str().unwrap()),
        ("HF_HUB_CACHE", ""),
        ("HUGGINGFACE_HUB_CACHE", ""),
        ("HF_TOKEN", ""),
        ("HF_TOKEN_PATH", ""),
        ("HF_HUB_OFFLINE", if offline { "1" } else { "0" }),
        ("HF_HUB_DISABLE_TELEMETRY", "1"),
    ]
}

/// Runs a Python snippet with `env` (empty values unset) and returns its
/// standard output; fails the test on a non-zero exit.
fn python(code: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(code).args(args);
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    let o = cmd.output().expect("run python3");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert!(
        o.status.success(),
        "python3 failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// Python's offline look-up of each file: a JSON object file -> local path
/// (or null), plus `"warnings"`: what `scan_cache_dir` complains about.
const LOOKUP: &str = r#"
import json, sys
from huggingface_hub import scan_cache_dir, try_to_load_from_cache
repo, files = sys.argv[1], sys.argv[2:]
found = {}
for f in files:
    p = try_to_load_from_cache(repo, f)
    found[f] = p if isinstance(p, str) else None
found["warnings"] = [str(w) for w in scan_cache_dir().warnings]
print(json.dumps(found))
"#;

fn python_lookup(
    repo: &str,
    files: &[&str],
    env: &[(&str, &str)],
) -> (BTreeMap<String, Option<String>>, Vec<String>) {
    let mut args = vec![repo];
    args.extend_from_slice(files);
    let out = python(LOOKUP, &args, env);
    let mut v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON from python");
    let warnings = v["warnings"]
        .as_array()
        .map(|a| a.iter().map(|w| w.to_string()).collect())
        .unwrap_or_default();
    v.as_object_mut().unwrap().remove("warnings");
    let found = serde_json::from_value(v).expect("file -> path");
    (found, warnings)
}

#[test]
fn python_reads_the_cache_parallax_hub_pull_wrote() {
    if !have_python_hub("python_reads_the_cache_parallax_hub_pull_wrote") {
        return;
    }
    let hub = MockHub::start(REPO, files());
    let home = tempfile::tempdir().unwrap();
    ok(&parallax_env(
        &["hub", "pull", REPO],
        &hub_env(hub.url(), home.path(), false),
    ));
    // the ref is the commit, byte for byte
    let refs = home.path().join("hub/models--acme--tiny-bert/refs/main");
    assert_eq!(std::fs::read(&refs).unwrap(), COMMIT.as_bytes());
    // offline, with the mock gone: Python finds every file with its bytes
    drop(hub);
    let served = files();
    let names: Vec<&str> = served.keys().map(|k| k.as_str()).collect();
    let (found, warnings) = python_lookup(
        REPO,
        &names,
        &hub_env("http://127.0.0.1:9", home.path(), true),
    );
    assert!(warnings.is_empty(), "scan_cache_dir: {warnings:?}");
    for (name, bytes) in files() {
        let path = found[&name]
            .as_ref()
            .unwrap_or_else(|| panic!("python does not find {name}: {found:?}"));
        assert!(path.contains(COMMIT), "{path}");
        assert_eq!(std::fs::read(path).unwrap(), bytes, "{name}");
    }
}

/// Downloads each file with Python's client: the cache as huggingface_hub
/// lays it out.
const DOWNLOAD: &str = r#"
import sys
from huggingface_hub import hf_hub_download
repo, files = sys.argv[1], sys.argv[2:]
for f in files:
    print(hf_hub_download(repo, f))
"#;

#[test]
fn parallax_reads_the_cache_python_wrote() {
    if !have_python_hub("parallax_reads_the_cache_python_wrote") {
        return;
    }
    let hub = MockHub::start(REPO, files());
    let home = tempfile::tempdir().unwrap();
    let served = files();
    let names: Vec<&str> = served.keys().map(|k| k.as_str()).collect();
    let mut args = vec![REPO];
    args.extend_from_slice(&names);
    python(DOWNLOAD, &args, &hub_env(hub.url(), home.path(), false));
    assert!(
        hub.gets().iter().any(|g| g.contains("/resolve/")),
        "python downloaded nothing from the mock: {:?}",
        hub.requests()
    );
    drop(hub);
    // offline, nothing listening: every file from Python's cache
    let mut pull = vec!["hub", "pull", REPO, "--offline"];
    for n in &names {
        pull.extend(["--file", n]);
    }
    let out = ok(&parallax_env(
        &pull,
        &hub_env("http://127.0.0.1:9", home.path(), true),
    ));
    for (name, bytes) in files() {
        let path = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{out}"));
        assert_eq!(std::fs::read(path).unwrap(), bytes, "{name}");
    }
    assert!(out.contains(&format!("commit\t{COMMIT}")), "{out}");
}

/// The script's ref handling, with no network: a complete snapshot whose
/// ref carries a newline (what earlier versions wrote) gets its ref
/// rewritten exactly; the files are not fetched again.
#[test]
fn fetch_models_writes_the_ref_as_huggingface_hub_does() {
    let script = std::fs::read_to_string(root().join("scripts/fetch-models.sh")).unwrap();
    // the commit the script computes: sha1 of the sorted "sum  path" lines
    let mut sums: Vec<(String, String)> = script
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix('[')?;
            let (path, sum) = l.split_once("]=")?;
            Some((path.to_string(), sum.to_string()))
        })
        .collect();
    assert_eq!(sums.len(), 10, "{sums:?}");
    sums.sort();
    let home = tempfile::tempdir().unwrap();
    let folder = home
        .path()
        .join("hub/models--sentence-transformers--all-MiniLM-L6-v2");
    let listing: String = sums.iter().map(|(p, s)| format!("{s}  {p}\n")).collect();
    let mut sha1 = Command::new("sha1sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha1sum");
    use std::io::Write;
    sha1.stdin
        .take()
        .unwrap()
        .write_all(listing.as_bytes())
        .unwrap();
    let commit = String::from_utf8(sha1.wait_with_output().unwrap().stdout).unwrap();
    let commit = commit.split_whitespace().next().unwrap().to_string();
    for (path, _) in &sums {
        let p = folder.join("snapshots").join(&commit).join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"x").unwrap();
    }
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs/main"), format!("{commit}\n")).unwrap();
    // a python3 that fails first on PATH: the script must not download
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("python3");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'no downloads in this test' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = || {
        Command::new("bash")
            .arg(root().join("scripts/fetch-models.sh"))
            .env("HF_HOME", home.path())
            .env_remove("HF_HUB_CACHE")
            .env_remove("XDG_CACHE_HOME")
            .env("PATH", &path)
            .output()
            .expect("run fetch-models.sh")
    };
    for _ in 0..2 {
        let o = run();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.trim().ends_with(&commit), "{stdout}");
        assert_eq!(
            std::fs::read(folder.join("refs/main")).unwrap(),
            commit.as_bytes()
        );
    }
}

/// After `scripts/fetch-models.sh` (which `.ci/run` runs), Python's client
/// finds every file of the real model offline in the default cache.
#[test]
fn python_reads_the_real_model_fetch_models_installed() {
    let test = "python_reads_the_real_model_fetch_models_installed";
    if !have_python_hub(test) {
        return;
    }
    let repo = "sentence-transformers/all-MiniLM-L6-v2";
    let mut cfg = parallax_hub::HubConfig::from_env();
    cfg.offline = true;
    let names = [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
    ];
    let pulled = match parallax_hub::pull(&cfg, repo, None, &names, &[]) {
        Ok(p) => p,
        Err(e) => {
            let e = e.to_string();
            MINILM.check(test, || Err(e));
            return;
        }
    };
    // the caller's own cache (HF_HOME etc. as set), offline
    let (found, warnings) = python_lookup(repo, &names, &[("HF_HUB_OFFLINE", "1")]);
    let ours: Vec<String> = warnings
        .into_iter()
        .filter(|w| w.contains("all-MiniLM-L6-v2"))
        .collect();
    assert!(ours.is_empty(), "scan_cache_dir: {ours:?}");
    for name in names {
        let path = found[name]
            .as_ref()
            .unwrap_or_else(|| panic!("python does not find {name}: {found:?}"));
        assert_eq!(
            std::fs::canonicalize(path).unwrap(),
            std::fs::canonicalize(&pulled.files[name]).unwrap(),
            "{name}"
        );
    }
}
