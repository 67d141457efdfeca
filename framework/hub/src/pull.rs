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
#[derive(Clone, Debug)]
pub struct Pulled {
    /// The Hub id, or the folder's path.
    pub repo_id: String,
    /// The revision asked for (`main` by default; `local` for a folder).
    pub revision: String,
    /// The folder holding the files (the cache snapshot, or the folder).
    pub dir: PathBuf,
    /// Local paths by repository path.
    pub files: BTreeMap<String, PathBuf>,
}

fn check_repo_id(repo_id: &str) -> Result<(&str, &str), HubError> {
    let bad = || HubError::BadRepoId(repo_id.to_string());
    let (owner, name) = repo_id.split_once('/').ok_or_else(bad)?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !ok(owner) || !ok(name) || owner.starts_with('.') || name.starts_with('.') {
        return Err(bad());
    }
    Ok((owner, name))
}

/// Downloads `required` and, when they exist, `optional` files of
/// `repo_id` at `revision` (default `main`) into the Hub cache, or, when
/// `cfg.offline`, finds them there without any request.
pub fn pull(
    cfg: &HubConfig,
    repo_id: &str,
    revision: Option<&str>,
    required: &[&str],
    optional: &[&str],
) -> Result<Pulled, HubError> {
    let (owner, name) = check_repo_id(repo_id)?;
    let revision = revision.unwrap_or("main").to_string();
    let endpoint = cfg
        .endpoint
        .clone()
        .unwrap_or_else(|| "https://huggingface.co".to_string());
    let mut builder = HFClientBuilder::new()
        .endpoint(endpoint.clone())
        .cache_dir(cfg.cache())
        .retry_max_attempts(2);
    if let Some(t) = &cfg.token {
        builder = builder.token(t.clone());
    }
    let other = |file: &str, message: String| HubError::Other {
        repo: repo_id.to_string(),
        file: file.to_string(),
        revision: revision.clone(),
        message,
    };
    let client = builder.build_sync().map_err(|e| other("", e.to_string()))?;
    let repo = client.model(owner, name);
    let mut files = BTreeMap::new();
    let wanted = required
        .iter()
        .map(|f| (*f, true))
        .chain(optional.iter().map(|f| (*f, false)));
    for (file, needed) in wanted {
        if !cfg.offline {
            eprintln!("hub: {repo_id}@{revision}: {file}");
        }
        let got = repo
            .download_file()
            .filename(file)
            .revision(revision.clone())
            .local_files_only(cfg.offline)
            .send();
        match got {
            Ok(path) => {
                files.insert(file.to_string(), path);
            }
            Err(e) => {
                let err = map_error(e, cfg, repo_id, file, &revision, &endpoint);
                let missing = matches!(
                    err,
                    HubError::FileNotFound { .. } | HubError::NotCached { .. }
                );
                if needed || !missing {
                    return Err(err);
                }
            }
        }
    }
    let dir = files
        .values()
        .next()
        .and_then(|p| snapshot_dir(p, files.keys().next().map(String::as_str).unwrap_or("")))
        .unwrap_or_else(|| cfg.cache());
    Ok(Pulled {
        repo_id: repo_id.to_string(),
        revision,
        dir,
        files,
    })
}

/// The snapshot folder of a file at repository path `name`.
fn snapshot_dir(path: &Path, name: &str) -> Option<PathBuf> {
    let depth = Path::new(name).components().count();
    let mut dir = path.to_path_buf();
    for _ in 0..depth {
        dir = dir.parent()?.to_path_buf();
    }
    Some(dir)
}

fn map_error(
    e: HFError,
    cfg: &HubConfig,
    repo: &str,
    file: &str,
    revision: &str,
    endpoint: &str,
) -> HubError {
    let (repo_s, file_s, rev_s) = (repo.to_string(), file.to_string(), revision.to_string());
    match e {
        HFError::LocalEntryNotFound { .. } => HubError::NotCached {
            repo: repo_s,
            file: file_s,
            revision: rev_s,
            cache: cfg.cache(),
        },
        HFError::EntryNotFound { .. } | HFError::RevisionNotFound { .. } => {
            HubError::FileNotFound {
                repo: repo_s,
                file: file_s,
                revision: rev_s,
            }
        }
        HFError::RepoNotFound { .. } => HubError::RepoNotFound {
            repo: repo_s,
            endpoint: endpoint.to_string(),
        },
        HFError::AuthRequired { context } | HFError::Forbidden { context } => {
            match context.error_code.as_deref() {
                Some("RepoNotFound") => HubError::RepoNotFound {
                    repo: repo_s,
                    endpoint: endpoint.to_string(),
                },
                Some("EntryNotFound") | Some("RevisionNotFound") => HubError::FileNotFound {
                    repo: repo_s,
                    file: file_s,
                    revision: rev_s,
                },
                _ => HubError::Denied {
                    repo: repo_s,
                    status: context.status.to_string(),
                },
            }
        }
        other => HubError::Other {
            repo: repo_s,
            file: file_s,
            revision: rev_s,
            message: other.to_string(),
        },
    }
}

/// A model folder's files (when `spec` is an existing folder), else
/// [`pull`] from the Hub.
pub fn resolve_model(
    cfg: &HubConfig,
    spec: &str,
    revision: Option<&str>,
    required: &[&str],
    optional: &[&str],
) -> Result<Pulled, HubError> {
    let dir = Path::new(spec);
    if !dir.is_dir() {
        return pull(cfg, spec, revision, required, optional);
    }
    let mut files = BTreeMap::new();
    for (name, needed) in required
        .iter()
        .map(|f| (*f, true))
        .chain(optional.iter().map(|f| (*f, false)))
    {
        let p = dir.join(name);
        if p.is_file() {
            files.insert(name.to_string(), p);
        } else if needed {
            return Err(HubError::FileNotFound {
                repo: spec.to_string(),
                file: name.to_string(),
                revision: "local folder".to_string(),
            });
        }
    }
    Ok(Pulled {
        repo_id: spec.to_string(),
        revision: "local".to_string(),
        dir: dir.to_path_buf(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_checked() {
        assert!(check_repo_id("sentence-transformers/all-MiniLM-L6-v2").is_ok());
        for bad in ["gpt2", "a/b/c", "/x", "x/", "a b/c", "../etc"] {
            let e = check_repo_id(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn offline_with_an_empty_cache_names_file_repo_and_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = HubConfig {
            endpoint: Some("http://127.0.0.1:9".into()),
            cache_dir: Some(dir.path().to_path_buf()),
            token: None,
            offline: true,
        };
        let e = pull(&cfg, "owner/model", None, &["config.json"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config.json") && e.contains("owner/model") && e.contains("HF_HUB_OFFLINE"),
            "{e}"
        );
        // optional files that are not cached are skipped
        let p = pull(&cfg, "owner/model", None, &[], &["vocab.txt"]).unwrap();
        assert!(p.files.is_empty());
    }

    #[test]
    fn local_folders_need_their_required_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let cfg = HubConfig::default();
        let spec = dir.path().display().to_string();
        let p = resolve_model(&cfg, &spec, None, &["config.json"], &["vocab.txt"]).unwrap();
        assert_eq!(p.files.len(), 1);
        assert_eq!(p.dir, dir.path());
        let e = resolve_model(&cfg, &spec, None, &["model.safetensors"], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.safetensors"), "{e}");
    }
}
