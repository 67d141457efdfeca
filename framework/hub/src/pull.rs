//! Pulling model files into the Hub cache (or finding them there offline).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hf_hub::{HFClientBuilder, HFError};

use crate::config::HubConfig;
use crate::error::HubError;

/// What a BERT / sentence-transformers model needs.
pub const MODEL_REQUIRED: &[&str] = &["config.json", "model.safetensors", "tokenizer.json"];
/// Kept alongside when the repository has them.
pub const MODEL_OPTIONAL: &[&str] = &[
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
];

/// Files of one model revision on this machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Pulled {
    /// The Hub id, or the folder's path.
    pub repo_id: String,
    /// The revision asked for (`main` by default; `local` for a folder).
    pub revision: String,
    /// The commit the revision resolved to (`None` for a local folder, or
    /// when nothing of the repository is cached).
    pub commit: Option<String>,
    /// The folder holding the files: the cache snapshot
    /// (`…/models--OWNER--NAME/snapshots/COMMIT`), or the local folder.
    pub dir: PathBuf,
    /// Local paths by repository path.
    pub files: BTreeMap<String, PathBuf>,
}

/// Splits `owner/name`, or says why it is not a Hub id.
pub(crate) fn check_repo_id(repo_id: &str) -> Result<(&str, &str), HubError> {
    let bad = || HubError::BadRepoId(repo_id.to_string());
    let (owner, name) = repo_id.split_once('/').ok_or_else(bad)?;
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with(['.', '-'])
            && !s.contains("..")
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !ok(owner) || !ok(name) {
        return Err(bad());
    }
    Ok((owner, name))
}

/// A repository path must stay inside the snapshot folder: relative,
/// `/`-separated, without `.` or `..` parts.
fn check_file_name(repo_id: &str, file: &str) -> Result<(), HubError> {
    let ok = !file.is_empty()
        && !file.contains('\\')
        && file
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    if ok {
        Ok(())
    } else {
        Err(HubError::BadFileName {
            repo: repo_id.to_string(),
            file: file.to_string(),
        })
    }
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Downloads `required` and, when they exist, `optional` files of
/// `repo_id` at `revision` (default `main`) into the Hub cache, or, when
/// `cfg.offline`, finds them there without any request. A missing optional
/// file is skipped; a missing required file, repository or revision is an
/// error naming it.
pub fn pull(
    cfg: &HubConfig,
    repo_id: &str,
    revision: Option<&str>,
    required: &[&str],
    optional: &[&str],
) -> Result<Pulled, HubError> {
    let (owner, name) = check_repo_id(repo_id)?;
    for file in required.iter().chain(optional) {
        check_file_name(repo_id, file)?;
    }
    let revision = revision
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("main");
    let ctx = Ctx {
        cfg,
        repo: repo_id,
        revision,
    };
    let mut builder = HFClientBuilder::new()
        .endpoint(cfg.endpoint())
        .cache_dir(cfg.cache())
        .retry_max_attempts(3);
    if let Some(t) = &cfg.token {
        builder = builder.token(t.clone());
    }
    let client = builder.build_sync().map_err(|e| HubError::Client {
        endpoint: cfg.endpoint().to_string(),
        message: chain(&e),
    })?;
    let repo = client.model(owner, name);
    if !cfg.offline {
        eprintln!(
            "hub: pulling {repo_id} (revision {revision}) from {} into {}",
            cfg.endpoint(),
            cfg.cache().display()
        );
    }
    let mut files = BTreeMap::new();
    let mut revision_checked = false;
    let wanted = required
        .iter()
        .map(|f| (*f, true))
        .chain(optional.iter().map(|f| (*f, false)));
    for (file, needed) in wanted {
        let got = repo
            .download_file()
            .filename(file)
            .revision(revision.to_string())
            .local_files_only(cfg.offline)
            .send();
        let err = match got {
            Ok(path) => {
                files.insert(file.to_string(), path);
                continue;
            }
            Err(e) => ctx.map(e, file),
        };
        // hf-hub turns every 404 of a download into "entry not found",
        // whether the file, the revision or the repository is missing: the
        // repository's API page tells which, once per pull.
        if matches!(err, HubError::FileNotFound { .. }) && !cfg.offline && !revision_checked {
            revision_checked = true;
            if let Err(e) = repo.info().revision(revision.to_string()).send() {
                if let Some(e) = ctx.by_code(error_code(&e), file) {
                    return Err(e);
                }
            }
        }
        if needed || !err.is_missing_file() {
            return Err(err);
        }
    }
    let (commit, dir) = snapshot(&cfg.cache(), owner, name, revision, &files);
    Ok(Pulled {
        repo_id: repo_id.to_string(),
        revision: revision.to_string(),
        commit,
        dir,
        files,
    })
}

/// The commit and snapshot folder of a pull: from a file's path when one
/// was found, else from the cache's `refs/REVISION`.
fn snapshot(
    cache: &Path,
    owner: &str,
    name: &str,
    revision: &str,
    files: &BTreeMap<String, PathBuf>,
) -> (Option<String>, PathBuf) {
    let folder = cache.join(format!("models--{owner}--{name}"));
    let from_file = files.iter().next().and_then(|(name, path)| {
        let mut dir = path.as_path();
        for _ in Path::new(name).components() {
            dir = dir.parent()?;
        }
        Some(dir.to_path_buf())
    });
    let commit = match &from_file {
        Some(dir) => dir.file_name().map(|c| c.to_string_lossy().to_string()),
        None if is_commit_hash(revision) => Some(revision.to_string()),
        None => std::fs::read_to_string(folder.join("refs").join(revision))
            .ok()
            .map(|c| c.trim().to_string())
            .filter(|c| is_commit_hash(c)),
    };
    let dir = match (from_file, &commit) {
        (Some(dir), _) => dir,
        (None, Some(c)) => folder.join("snapshots").join(c),
        (None, None) => folder,
    };
    (commit, dir)
}

/// What one pull is about, for error messages.
struct Ctx<'a> {
    cfg: &'a HubConfig,
    repo: &'a str,
    revision: &'a str,
}

impl Ctx<'_> {
    /// The error the Hub's `X-Error-Code` names, if it names one.
    fn by_code(&self, code: Option<&str>, file: &str) -> Option<HubError> {
        Some(match code? {
            "RepoNotFound" => HubError::RepoNotFound {
                repo: self.repo.to_string(),
                endpoint: self.cfg.endpoint().to_string(),
            },
            "RevisionNotFound" => HubError::RevisionNotFound {
                repo: self.repo.to_string(),
                revision: self.revision.to_string(),
                endpoint: self.cfg.endpoint().to_string(),
            },
            "EntryNotFound" => self.file_not_found(file),
            _ => return None,
        })
    }

    fn file_not_found(&self, file: &str) -> HubError {
        HubError::FileNotFound {
            repo: self.repo.to_string(),
            file: file.to_string(),
            revision: self.revision.to_string(),
        }
    }

    /// hf-hub's error for `file` as ours.
    fn map(&self, e: HFError, file: &str) -> HubError {
        if let Some(mapped) = self.by_code(error_code(&e), file) {
            return mapped;
        }
        match &e {
            HFError::LocalEntryNotFound { .. } => HubError::NotCached {
                repo: self.repo.to_string(),
                file: file.to_string(),
                revision: self.revision.to_string(),
                cache: self.cfg.cache(),
            },
            HFError::EntryNotFound { .. } => self.file_not_found(file),
            HFError::RepoNotFound { .. } => HubError::RepoNotFound {
                repo: self.repo.to_string(),
                endpoint: self.cfg.endpoint().to_string(),
            },
            HFError::RevisionNotFound { .. } => HubError::RevisionNotFound {
                repo: self.repo.to_string(),
                revision: self.revision.to_string(),
                endpoint: self.cfg.endpoint().to_string(),
            },
            HFError::AuthRequired { context } | HFError::Forbidden { context } => {
                HubError::Denied {
                    repo: self.repo.to_string(),
                    file: file.to_string(),
                    status: context.status.as_u16(),
                    detail: context.server_message.clone(),
                }
            }
            _ => HubError::Other {
                repo: self.repo.to_string(),
                file: file.to_string(),
                revision: self.revision.to_string(),
                message: match &e {
                    // reqwest's own message repeats the URL: give it once, then the causes
                    HFError::Request {
                        source,
                        url: Some(url),
                    } => format!("request to {url} failed{}", causes(source)),
                    _ => chain(&e),
                },
            },
        }
    }
}

/// The Hub's `X-Error-Code` of a failed response, if any.
fn error_code(e: &HFError) -> Option<&str> {
    let context = match e {
        HFError::Http { context }
        | HFError::AuthRequired { context }
        | HFError::Forbidden { context }
        | HFError::Conflict { context }
        | HFError::RateLimited { context, .. } => context,
        HFError::RepoNotFound {
            context: Some(context),
            ..
        }
        | HFError::RevisionNotFound {
            context: Some(context),
            ..
        }
        | HFError::EntryNotFound {
            context: Some(context),
            ..
        } => context,
        _ => return None,
    };
    context.error_code.as_deref()
}

/// An error with its causes (`a: b: c`), each said once.
fn chain(e: &dyn std::error::Error) -> String {
    append_causes(e.to_string(), e.source())
}

/// The causes of an error (`: b: c`), each said once.
fn causes(e: &dyn std::error::Error) -> String {
    append_causes(String::new(), e.source())
}

fn append_causes(mut s: String, mut source: Option<&dyn std::error::Error>) -> String {
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline_cfg(cache: &Path) -> HubConfig {
        HubConfig {
            endpoint: Some("http://127.0.0.1:9".into()),
            cache_dir: Some(cache.to_path_buf()),
            token: None,
            offline: true,
        }
    }

    #[test]
    fn repo_ids_are_checked() {
        for good in ["sentence-transformers/all-MiniLM-L6-v2", "a/b.c", "A_1/x"] {
            assert!(check_repo_id(good).is_ok(), "{good}");
        }
        for bad in [
            "gpt2", "a/b/c", "/x", "x/", "a b/c", "../etc", "a/..", "a/-x", "",
        ] {
            let e = check_repo_id(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{bad}`")) && e.contains("owner/name"),
                "{e}"
            );
        }
    }

    #[test]
    fn file_names_stay_in_the_snapshot() {
        for good in ["config.json", "1_Pooling/config.json", "a b/.c"] {
            assert!(check_file_name("o/n", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "a/",
        ] {
            let e = check_file_name("o/n", bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{bad}`")) && e.contains("`o/n`"),
                "{e}"
            );
        }
    }

    #[test]
    fn offline_with_an_empty_cache_names_file_repo_and_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = offline_cfg(dir.path());
        let e = pull(&cfg, "owner/model", None, &["config.json"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config.json")
                && e.contains("owner/model")
                && e.contains("HF_HUB_OFFLINE")
                && e.contains("parallax hub pull owner/model")
                && e.contains(&dir.path().display().to_string()),
            "{e}"
        );
        // optional files that are not cached are skipped
        let p = pull(&cfg, "owner/model", None, &[], &["vocab.txt"]).unwrap();
        assert!(p.files.is_empty() && p.commit.is_none());
    }

    /// A cache laid out as hf-hub (and huggingface_hub) lay it out.
    fn fake_cache(root: &Path, commit: &str) {
        let repo = root.join("models--owner--model");
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), commit).unwrap();
        std::fs::write(repo.join("blobs/abc"), "{}").unwrap();
        let snap = repo.join("snapshots").join(commit).join("1_Pooling");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::write(snap.parent().unwrap().join("config.json"), "{}").unwrap();
        let no_exist = repo.join(".no_exist").join(commit);
        std::fs::create_dir_all(&no_exist).unwrap();
        std::fs::write(no_exist.join("vocab.txt"), "").unwrap();
    }

    #[test]
    fn offline_reads_the_cache_and_its_markers() {
        let dir = tempfile::tempdir().unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        fake_cache(dir.path(), commit);
        let cfg = offline_cfg(dir.path());
        let p = pull(
            &cfg,
            "owner/model",
            None,
            &["1_Pooling/config.json", "config.json"],
            &["vocab.txt", "modules.json"],
        )
        .unwrap();
        let snap = dir
            .path()
            .join("models--owner--model/snapshots")
            .join(commit);
        assert_eq!(p.commit.as_deref(), Some(commit));
        assert_eq!(p.dir, snap);
        assert_eq!(p.files.len(), 2);
        assert_eq!(
            p.files["1_Pooling/config.json"],
            snap.join("1_Pooling/config.json")
        );
        // a file the hub said it lacks (a `.no_exist` marker) is not-found, not not-cached
        let e = pull(&cfg, "owner/model", None, &["vocab.txt"], &[]).unwrap_err();
        assert!(matches!(e, HubError::FileNotFound { .. }), "{e}");
        // the commit is known even when no file is
        let p = pull(&cfg, "owner/model", None, &[], &["modules.json"]).unwrap();
        assert_eq!((p.commit.as_deref(), p.dir), (Some(commit), snap.clone()));
        // by commit, too
        let p = pull(&cfg, "owner/model", Some(commit), &["config.json"], &[]).unwrap();
        assert_eq!(p.dir, snap);
        let e = pull(&cfg, "owner/model", Some("v2"), &["config.json"], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--revision v2"), "{e}");
    }

    #[test]
    fn unreachable_hub_names_repo_file_and_cause() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = HubConfig {
            offline: false,
            ..offline_cfg(dir.path())
        };
        let e = pull(&cfg, "owner/model", None, &["config.json"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("owner/model") && e.contains("config.json") && e.contains("127.0.0.1:9"),
            "{e}"
        );
        let bad = HubConfig {
            endpoint: Some("not a url".into()),
            ..cfg
        };
        let e = pull(&bad, "owner/model", None, &["config.json"], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a url"), "{e}");
    }
}
