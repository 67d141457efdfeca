//! `parallax hub pull` and the Hub client against a mock Hub on 127.0.0.1:
//! downloads into the cache, offline mode, tokens, and clear errors.

use std::collections::BTreeMap;
use std::path::Path;

use parallax_tests::mock_hub::{MockHub, COMMIT};
use parallax_tests::{fails, ok, parallax_env};

fn files() -> BTreeMap<String, Vec<u8>> {
    let mut f = BTreeMap::new();
    f.insert(
        "config.json".to_string(),
        b"{\"model_type\": \"bert\"}".to_vec(),
    );
    f.insert(
        "model.safetensors".to_string(),
        (0..5000u32).flat_map(|i| i.to_le_bytes()).collect(),
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

fn env<'a>(hub: &'a MockHub, home: &'a Path) -> Vec<(&'a str, &'a str)> {
    vec![
        ("HF_ENDPOINT", hub.url()),
        ("HF_HOME", home.to_str().unwrap()),
        ("HF_HUB_CACHE", ""),
        ("HF_TOKEN", ""),
        ("HF_HUB_OFFLINE", "0"),
    ]
}

#[test]
fn pull_downloads_into_the_cache_then_works_offline() {
    let hub = MockHub::start("acme/tiny-bert", files());
    let home = tempfile::tempdir().unwrap();
    let out = ok(&parallax_env(
        &["hub", "pull", "acme/tiny-bert"],
        &env(&hub, home.path()),
    ));
    // every served file is listed and byte-identical
    for (name, bytes) in files() {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{out}"));
        let path = line.split('\t').nth(1).unwrap();
        assert!(path.contains(COMMIT), "{path}");
        assert_eq!(std::fs::read(path).unwrap(), bytes, "{name}");
    }
    let snapshot = home
        .path()
        .join("hub/models--acme--tiny-bert/snapshots")
        .join(COMMIT);
    assert!(snapshot.join("1_Pooling/config.json").is_file());
    assert_eq!(
        std::fs::read_to_string(home.path().join("hub/models--acme--tiny-bert/refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    // the optional files the repository lacks were asked for and skipped
    let n = hub.requests().len();
    assert!(n >= 4, "{n} requests");
    // offline: no request at all, same files
    let mut e = env(&hub, home.path());
    e.push(("HF_HUB_OFFLINE", "1"));
    let again = ok(&parallax_env(&["hub", "pull", "acme/tiny-bert"], &e));
    assert_eq!(hub.requests().len(), n, "offline mode made requests");
    assert!(again.contains("model.safetensors"), "{again}");
}

#[test]
fn offline_with_an_empty_cache_names_the_file_and_repo() {
    let hub = MockHub::start("acme/tiny-bert", files());
    let home = tempfile::tempdir().unwrap();
    let err = fails(&parallax_env(
        &["hub", "pull", "acme/tiny-bert", "--offline"],
        &env(&hub, home.path()),
    ));
    assert!(
        err.contains("config.json") && err.contains("acme/tiny-bert") && err.contains("hub pull"),
        "{err}"
    );
    assert!(hub.requests().is_empty());
}

#[test]
fn missing_repository_file_and_revision_are_named() {
    let hub = MockHub::start("acme/tiny-bert", files());
    let home = tempfile::tempdir().unwrap();
    let e = env(&hub, home.path());
    let err = fails(&parallax_env(&["hub", "pull", "acme/nope"], &e));
    assert!(
        err.contains("acme/nope") && err.contains("not found"),
        "{err}"
    );
    let err = fails(&parallax_env(
        &["hub", "pull", "acme/tiny-bert", "--file", "weights.bin"],
        &e,
    ));
    assert!(
        err.contains("weights.bin") && err.contains("acme/tiny-bert"),
        "{err}"
    );
    let err = fails(&parallax_env(
        &["hub", "pull", "acme/tiny-bert", "--revision", "v9"],
        &e,
    ));
    assert!(err.contains("v9") && err.contains("config.json"), "{err}");
    let err = fails(&parallax_env(&["hub", "pull", "not-a-repo-id"], &e));
    assert!(
        err.contains("not-a-repo-id") && err.contains("owner/name"),
        "{err}"
    );
}

#[test]
fn the_token_is_sent_as_a_bearer_header() {
    let hub = MockHub::start("acme/tiny-bert", files());
    let home = tempfile::tempdir().unwrap();
    let mut e = env(&hub, home.path());
    e.push(("HF_TOKEN", "hf_secret123"));
    ok(&parallax_env(
        &["hub", "pull", "acme/tiny-bert", "--file", "config.json"],
        &e,
    ));
    let reqs = hub.requests();
    assert!(!reqs.is_empty());
    for r in reqs {
        assert_eq!(
            r.authorization.as_deref(),
            Some("Bearer hf_secret123"),
            "{r:?}"
        );
    }
}
