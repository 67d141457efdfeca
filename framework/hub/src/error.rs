//! What can go wrong when pulling from the Hub; every message names the
//! repository, and the file and revision where they matter.

use std::path::PathBuf;

/// A Hub error.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Neither `owner/name` nor an existing model folder.
    #[error("`{0}` is not a hugging face hub id (`owner/name`) nor an existing model folder")]
    BadRepoId(String),
    /// A file name that is not a path inside the repository.
    #[error("`{file}` is not a file path inside hub repository `{repo}` (relative, `/`-separated, no `.` or `..`)")]
    BadFileName { repo: String, file: String },
    /// The repository does not exist, or is private or gated and the token
    /// (if any) gives no access.
    #[error("hub repository `{repo}` not found at {endpoint} (if it is private or gated, set HF_TOKEN to a token with access)")]
    RepoNotFound { repo: String, endpoint: String },
    /// The repository exists but has no such branch, tag or commit.
    #[error("hub repository `{repo}` has no revision `{revision}` (a branch, tag or commit) at {endpoint}")]
    RevisionNotFound {
        repo: String,
        revision: String,
        endpoint: String,
    },
    /// The repository exists at that revision but lacks the file.
    #[error("hub repository `{repo}` has no file `{file}` at revision `{revision}`")]
    FileNotFound {
        repo: String,
        file: String,
        revision: String,
    },
    /// A local model folder lacks a required file.
    #[error("model folder {} has no `{file}`", dir.display())]
    MissingLocalFile { dir: PathBuf, file: String },
    /// Offline and not in the cache.
    #[error("`{file}` of `{repo}` (revision `{revision}`) is not in the hub cache {} and offline mode is on (HF_HUB_OFFLINE): run `{}` (or scripts/fetch-models.sh) with network access first", cache.display(), pull_command(repo, revision))]
    NotCached {
        repo: String,
        file: String,
        revision: String,
        cache: PathBuf,
    },
    /// The Hub refused the request (401 or 403) for another reason than a
    /// missing repository: a gated repository, a token without access.
    #[error("hub refused access to `{file}` of `{repo}` ({status}{}): set HF_TOKEN to a token with access (gated repositories also need their terms accepted on the hub)", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Denied {
        repo: String,
        file: String,
        status: u16,
        detail: Option<String>,
    },
    /// The client could not be set up (e.g. `HF_ENDPOINT` is not a URL).
    #[error("cannot set up the hub client for endpoint `{endpoint}` (HF_ENDPOINT): {message}")]
    Client { endpoint: String, message: String },
    /// Anything else (network, server, cache), with the underlying cause.
    #[error("cannot download `{file}` of `{repo}` (revision `{revision}`): {message}")]
    Other {
        repo: String,
        file: String,
        revision: String,
        message: String,
    },
}

/// The command that fills the cache for `repo` at `revision`.
fn pull_command(repo: &str, revision: &str) -> String {
    if revision == "main" {
        format!("parallax hub pull {repo}")
    } else {
        format!("parallax hub pull {repo} --revision {revision}")
    }
}

impl HubError {
    /// Whether this says that the file is absent (from the repository, or,
    /// offline, from the cache) while the repository and revision are fine
    /// as far as is known: what optional files may be.
    pub fn is_missing_file(&self) -> bool {
        matches!(
            self,
            HubError::FileNotFound { .. }
                | HubError::NotCached { .. }
                | HubError::MissingLocalFile { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_failed() {
        let e = HubError::NotCached {
            repo: "a/b".into(),
            file: "config.json".into(),
            revision: "v1".into(),
            cache: PathBuf::from("/c/hub"),
        }
        .to_string();
        assert!(
            e.contains("config.json")
                && e.contains("`a/b`")
                && e.contains("/c/hub")
                && e.contains("parallax hub pull a/b --revision v1")
                && e.contains("fetch-models.sh"),
            "{e}"
        );
        let e = HubError::Denied {
            repo: "a/b".into(),
            file: "x".into(),
            status: 403,
            detail: Some("gated".into()),
        }
        .to_string();
        assert!(e.contains("403: gated") && e.contains("HF_TOKEN"), "{e}");
        let e = HubError::RepoNotFound {
            repo: "a/b".into(),
            endpoint: "http://h".into(),
        }
        .to_string();
        assert!(e.starts_with("hub repository `a/b` not found") && e.contains("HF_TOKEN"));
    }
}
