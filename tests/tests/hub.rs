//! `parallax hub pull` and the `parallax-hub` library against a mock Hub on
//! 127.0.0.1: downloads into the cache, offline mode, tokens, clear errors.

use std::collections::BTreeMap;
use std::path::Path;

use parallax_hub::{pull, resolve_model, HubConfig, HubError, Source};
use parallax_tests::mock_hub::{MockHub, COMMIT};
use parallax_tests::{fails, ok, parallax_env};

const REPO: &str = "acme/tiny-bert";

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

/// The Hub variables for a run against `hub` with the cache under `home`;
/// nothing of the caller's own Hub set-up (token, cache) leaks in.
fn env<'a>(hub: &'a MockHub, home: &'a Path) -> Vec<(&'a str, &'a str)> {
    vec![
        ("HF_ENDPOINT", hub.url()),
        ("HF_HOME", home.to_str().unwrap()),
        ("HF_HUB_CACHE", ""),
        ("HUGGINGFACE_HUB_CACHE", ""),
        ("HF_TOKEN", ""),
        ("HF_TOKEN_PATH", ""),
        ("HF_HUB_OFFLINE", "0"),
    ]
}

/// The value of the `KEY<TAB>VALUE` line of `parallax hub pull`'s output.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}\t")))
        .unwrap_or_else(|| panic!("no `{key}` line in:\n{out}"))
}

#[test]
fn pull_downloads_into_the_cache_then_works_offline() {
    let hub = MockHub::start(REPO, files());
    let home = tempfile::tempdir().unwrap();
    let out = ok(&parallax_env(
        &["hub", "pull", REPO],
        &env(&hub, home.path()),
    ));
    // every served file is listed and byte-identical
    let snapshot = home
        .path()
        .join("hub/models--acme--tiny-bert/snapshots")
        .join(COMMIT);
    for (name, bytes) in files() {
        let path = field(&out, &name);
        assert!(Path::new(path).starts_with(&snapshot), "{path}");
        assert_eq!(std::fs::read(path).unwrap(), bytes, "{name}");
    }
    assert_eq!(field(&out, "snapshot"), snapshot.to_str().unwrap());
    assert_eq!(field(&out, "commit"), COMMIT);
    assert_eq!(
        field(&out, "cache"),
        home.path().join("hub").to_str().unwrap()
    );
    assert!(!out.contains("vocab.txt"), "{out}");
    assert_eq!(
        std::fs::read_to_string(home.path().join("hub/models--acme--tiny-bert/refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    // each served file was fetched once; the optional files the repository
    // lacks were asked for and skipped
    let gets = hub.gets();
    for name in files().keys() {
        let url = format!("/{REPO}/resolve/main/{name}");
        assert_eq!(gets.iter().filter(|g| **g == url).count(), 1, "{gets:?}");
    }
    let heads = hub.requests().len() - gets.len();
    assert!(heads >= 10, "{heads} HEAD requests");

    // online again: files checked (HEAD), nothing downloaded again
    let downloads = |hub: &MockHub| {
        hub.gets()
            .iter()
            .filter(|g| g.contains("/resolve/"))
            .count()
    };
    let before = downloads(&hub);
    let again = ok(&parallax_env(
        &["hub", "pull", REPO],
        &env(&hub, home.path()),
    ));
    assert_eq!(again, out);
    assert_eq!(downloads(&hub), before, "{:?}", hub.gets());

    // offline: no request at all, the same files
    let n = hub.requests().len();
    let mut e = env(&hub, home.path());
    e.push(("HF_HUB_OFFLINE", "1"));
    let offline = ok(&parallax_env(&["hub", "pull", REPO], &e));
    assert_eq!(hub.requests().len(), n, "offline mode made requests");
    assert_eq!(offline, out);
    // --offline does the same
    let offline = ok(&parallax_env(
        &["hub", "pull", REPO, "--offline"],
        &env(&hub, home.path()),
    ));
    assert_eq!(hub.requests().len(), n, "--offline made requests");
    assert_eq!(offline, out);
}

#[test]
fn offline_with_an_empty_cache_names_the_file_repo_and_cache() {
    let hub = MockHub::start(REPO, files());
    let home = tempfile::tempdir().unwrap();
    let mut e = env(&hub, home.path());
    e.push(("HF_HUB_OFFLINE", "yes"));
    let err = fails(&parallax_env(
        &["hub", "pull", REPO, "--revision", "v1"],
        &e,
    ));
    assert!(
        err.contains("config.json")
            && err.contains(REPO)
            && err.contains(&format!("parallax hub pull {REPO} --revision v1"))
            && err.contains("fetch-models.sh")
            && err.contains(home.path().join("hub").to_str().unwrap()),
        "{err}"
    );
    assert!(hub.requests().is_empty());
}

#[test]
fn missing_repository_file_and_revision_are_named() {
    let hub = MockHub::start(REPO, files());
    let home = tempfile::tempdir().unwrap();
    let e = env(&hub, home.path());
    // anonymous: the hub says 401 RepoNotFound
    let err = fails(&parallax_env(&["hub", "pull", "acme/nope"], &e));
    assert!(
        err.contains("`acme/nope` not found") && err.contains("HF_TOKEN"),
        "{err}"
    );
    // with a token: 404 RepoNotFound, which hf-hub reports as a missing file
    let mut with_token = e.clone();
    with_token.push(("HF_TOKEN", "hf_abc"));
    let err = fails(&parallax_env(&["hub", "pull", "acme/nope"], &with_token));
    assert!(err.contains("`acme/nope` not found"), "{err}");
    // a required file
    let err = fails(&parallax_env(
        &["hub", "pull", REPO, "--file", "nope.bin"],
        &e,
    ));
    assert!(
        err.contains(&format!(
            "`{REPO}` has no file `nope.bin` at revision `main`"
        )),
        "{err}"
    );
    // a revision
    let err = fails(&parallax_env(
        &["hub", "pull", REPO, "--revision", "v9"],
        &e,
    ));
    assert!(
        err.contains(&format!("`{REPO}` has no revision `v9`")),
        "{err}"
    );
    // a file path that leaves the snapshot
    let err = fails(&parallax_env(
        &["hub", "pull", REPO, "--file", "../../escape.txt"],
        &e,
    ));
    assert!(
        err.contains("`../../escape.txt` is not a file path"),
        "{err}"
    );
    // not an id
    let err = fails(&parallax_env(&["hub", "pull", "not-a-repo-id"], &e));
    assert!(
        err.contains("not-a-repo-id") && err.contains("owner/name"),
        "{err}"
    );
    // an unreachable hub: the repository, the file and the cause
    let mut down = e.clone();
    down.push(("HF_ENDPOINT", "http://127.0.0.1:9"));
    let err = fails(&parallax_env(&["hub", "pull", REPO], &down));
    assert!(
        err.contains(REPO) && err.contains("config.json") && err.contains("127.0.0.1:9"),
        "{err}"
    );
}

#[test]
fn the_token_is_sent_as_a_bearer_header() {
    let hub = MockHub::start(REPO, files());
    let home = tempfile::tempdir().unwrap();
    let mut e = env(&hub, home.path());
    e.push(("HF_TOKEN", "hf_secret123"));
    ok(&parallax_env(
        &["hub", "pull", REPO, "--file", "config.json"],
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

/// The library, in process: no environment variable needed.
fn cfg(hub: &MockHub, cache: &Path) -> HubConfig {
    HubConfig {
        endpoint: Some(hub.url().to_string()),
        cache_dir: Some(cache.to_path_buf()),
        token: Some("hf_lib".to_string()),
        offline: false,
    }
}

#[test]
fn library_pull_resolves_revisions_and_skips_missing_optional_files() {
    let hub = MockHub::start(REPO, files());
    let cache = tempfile::tempdir().unwrap();
    let c = cfg(&hub, cache.path());
    let p = pull(
        &c,
        REPO,
        None,
        &["config.json", "1_Pooling/config.json"],
        &["vocab.txt", "modules.json"],
    )
    .unwrap();
    assert_eq!(p.revision, "main");
    assert_eq!(p.commit.as_deref(), Some(COMMIT));
    assert_eq!(
        p.dir,
        cache
            .path()
            .join("models--acme--tiny-bert/snapshots")
            .join(COMMIT)
    );
    assert_eq!(
        p.files.keys().collect::<Vec<_>>(),
        ["1_Pooling/config.json", "config.json"]
    );
    assert_eq!(
        std::fs::read(&p.files["1_Pooling/config.json"]).unwrap(),
        files()["1_Pooling/config.json"]
    );
    // hf-hub marked the absent files: offline knows them as absent, not uncached
    let offline = HubConfig {
        offline: true,
        ..c.clone()
    };
    let n = hub.requests().len();
    let e = pull(&offline, REPO, None, &["vocab.txt"], &[]).unwrap_err();
    assert!(matches!(e, HubError::FileNotFound { .. }), "{e}");
    let e = pull(&offline, REPO, None, &["tokenizer.json"], &[]).unwrap_err();
    assert!(matches!(e, HubError::NotCached { .. }), "{e}");
    assert_eq!(hub.requests().len(), n);
    // a pinned commit
    let p = pull(&c, REPO, Some(COMMIT), &["tokenizer.json"], &[]).unwrap();
    assert_eq!(p.commit.as_deref(), Some(COMMIT));
    assert!(hub
        .gets()
        .contains(&format!("/{REPO}/resolve/{COMMIT}/tokenizer.json")));
    // optional files of a missing revision are not silently skipped
    let e = pull(&c, REPO, Some("v9"), &[], &["vocab.txt"]).unwrap_err();
    assert!(matches!(e, HubError::RevisionNotFound { .. }), "{e}");
    let e = pull(&c, "acme/gone", None, &[], &["vocab.txt"]).unwrap_err();
    assert!(matches!(e, HubError::RepoNotFound { .. }), "{e}");
    for r in hub.requests() {
        assert_eq!(r.authorization.as_deref(), Some("Bearer hf_lib"), "{r:?}");
    }
}

#[test]
fn resolve_model_takes_folders_without_the_network() {
    let hub = MockHub::start(REPO, files());
    let cache = tempfile::tempdir().unwrap();
    let c = cfg(&hub, cache.path());
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("config.json"), "{}").unwrap();
    let spec = folder.path().to_str().unwrap();
    assert_eq!(
        Source::parse(spec, None).unwrap(),
        Source::Local(folder.path().to_path_buf())
    );
    let p = resolve_model(&c, spec, None, &["config.json"], &["tokenizer.json"]).unwrap();
    assert_eq!(p.dir, folder.path());
    assert_eq!(p.files.len(), 1);
    let e = resolve_model(&c, spec, None, &["model.safetensors"], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.safetensors") && e.contains(spec), "{e}");
    assert!(hub.requests().is_empty());
    // a hub id goes to the hub
    let p = resolve_model(&c, REPO, Some("main"), &["config.json"], &[]).unwrap();
    assert_eq!(p.repo_id, REPO);
    assert_eq!(hub.gets(), [format!("/{REPO}/resolve/main/config.json")]);
}
