//! What can go wrong when pulling from the Hub; every message names the
//! repository and file.

use std::path::PathBuf;

/// A Hub error.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Not `owner/name`.
    #[error("`{0}` is not a Hugging Face Hub id (`owner/name`) nor an existing model folder")]
    BadRepoId(String),
    /// The repository does not exist, or is private or gated.
    #[error("hub repository `{repo}` not found at {endpoint} (if it is private or gated, set HF_TOKEN to a token with access)")]
    RepoNotFound { repo: String, endpoint: String },
    /// The file (or the revision) does not exist in the repository.
    #[error("hub repository `{repo}` has no file `{file}` at revision `{revision}` (or the revision does not exist)")]
    FileNotFound {
        repo: String,
        file: String,
        revision: String,
    },
    /// Offline and not in the cache.
    #[error("`{file}` of `{repo}` (revision `{revision}`) is not in the hub cache {} and HF_HUB_OFFLINE is set: run `parallax hub pull {repo}` (or scripts/fetch-models.sh) with network access first", cache.display())]
    NotCached {
        repo: String,
        file: String,
        revision: String,
        cache: PathBuf,
    },
    /// The token was refused.
    #[error("hub refused access to `{repo}` ({status}): check HF_TOKEN")]
    Denied { repo: String, status: String },
    /// Anything else (network, server, cache).
    #[error("cannot download `{file}` of `{repo}` (revision `{revision}`): {message}")]
    Other {
        repo: String,
        file: String,
        revision: String,
        message: String,
    },
}
