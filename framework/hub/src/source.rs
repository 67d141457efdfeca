//! Where a recipe's `pretrained` model comes from: a local folder or the Hub.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::HubConfig;
use crate::error::HubError;
use crate::pull::{check_repo_id, pull, Pulled};

/// A model's origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A folder on this machine in Hugging Face's layout.
    Local(PathBuf),
    /// A Hub repository (`owner/name`) at a revision (default `main`).
    Hub {
        repo_id: String,
        revision: Option<String>,
    },
}

impl Source {
    /// Reads `spec`: a folder that exists and holds `config.json` is local;
    /// so is an existing folder whose name cannot be a Hub id (`./m`,
    /// `/models/m`), so that its missing files are reported as such; an
    /// `owner/name` is a Hub id; anything else is an error.
    pub fn parse(spec: &str, revision: Option<&str>) -> Result<Source, HubError> {
        let dir = Path::new(spec);
        let is_id = check_repo_id(spec).is_ok();
        if dir.is_dir() && (dir.join("config.json").is_file() || !is_id) {
            return Ok(Source::Local(dir.to_path_buf()));
        }
        if !is_id {
            return Err(HubError::BadRepoId(spec.to_string()));
        }
        Ok(Source::Hub {
            repo_id: spec.to_string(),
            revision: revision.map(str::to_string),
        })
    }
}

/// A model's files: from the folder when `spec` is a local model folder
/// (no network, `revision` unused), else [`pull`]ed from the Hub (or, with
/// `cfg.offline`, found in its cache).
pub fn resolve_model(
    cfg: &HubConfig,
    spec: &str,
    revision: Option<&str>,
    required: &[&str],
    optional: &[&str],
) -> Result<Pulled, HubError> {
    match Source::parse(spec, revision)? {
        Source::Local(dir) => local_files(&dir, required, optional),
        Source::Hub { repo_id, revision } => {
            pull(cfg, &repo_id, revision.as_deref(), required, optional)
        }
    }
}

/// The files of a model folder; a missing required file is an error naming it.
pub fn local_files(dir: &Path, required: &[&str], optional: &[&str]) -> Result<Pulled, HubError> {
    let mut files = BTreeMap::new();
    let wanted = required
        .iter()
        .map(|f| (*f, true))
        .chain(optional.iter().map(|f| (*f, false)));
    for (name, needed) in wanted {
        let p = dir.join(name);
        if p.is_file() {
            files.insert(name.to_string(), p);
        } else if needed {
            return Err(HubError::MissingLocalFile {
                dir: dir.to_path_buf(),
                file: name.to_string(),
            });
        }
    }
    Ok(Pulled {
        repo_id: dir.display().to_string(),
        revision: "local".to_string(),
        commit: None,
        dir: dir.to_path_buf(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_folders_or_hub_ids() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().display().to_string();
        // an existing folder that cannot be a hub id is local, config.json or not
        assert_eq!(
            Source::parse(&spec, None).unwrap(),
            Source::Local(dir.path().to_path_buf())
        );
        assert_eq!(
            Source::parse("owner/name", Some("v1")).unwrap(),
            Source::Hub {
                repo_id: "owner/name".into(),
                revision: Some("v1".into())
            }
        );
        let missing = dir.path().join("nope").display().to_string();
        let e = Source::parse(&missing, None).unwrap_err().to_string();
        assert!(e.contains(&missing) && e.contains("model folder"), "{e}");
    }

    #[test]
    fn local_folders_need_their_required_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let cfg = HubConfig {
            endpoint: Some("http://127.0.0.1:9".into()),
            ..HubConfig::default()
        };
        let spec = dir.path().display().to_string();
        let p = resolve_model(&cfg, &spec, None, &["config.json"], &["vocab.txt"]).unwrap();
        assert_eq!(p.files.len(), 1);
        assert_eq!(p.dir, dir.path());
        assert_eq!(p.commit, None);
        let e = resolve_model(&cfg, &spec, None, &["model.safetensors"], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.safetensors") && e.contains(&spec), "{e}");
    }
}
