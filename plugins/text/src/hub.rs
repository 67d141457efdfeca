//! Model files from a local folder or the Hugging Face Hub, for recipes'
//! `pretrained` and `tokenizer` keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use parallax_core::data::BuildCtx;
use parallax_core::error::{Error, Result};
use parallax_hub::HubConfig;

/// The files of a model, by their path in the repository.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    /// The model: a folder or `owner/name` on the Hub.
    pub spec: String,
    /// The folder that holds them (a Hub cache snapshot or the local folder).
    pub dir: PathBuf,
    /// Local paths by repository path (`config.json`, ...).
    pub files: BTreeMap<String, PathBuf>,
}

impl ModelFiles {
    /// The local path of `name`, or an error naming it and the model.
    pub fn file(&self, name: &str) -> Result<PathBuf> {
        self.files
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Data(format!("{}: no file `{name}`", self.spec)))
    }
}

/// Resolves `spec` — a model folder (relative paths against the recipe's
/// folder) or a Hub id — to local files. Hub downloads honour `HF_ENDPOINT`,
/// `HF_HOME` / `HF_HUB_CACHE`, `HF_TOKEN` and `HF_HUB_OFFLINE`.
pub fn resolve_model_files(
    spec: &str,
    revision: Option<&str>,
    ctx: &BuildCtx,
    required: &[&str],
    optional: &[&str],
) -> Result<ModelFiles> {
    let local = ctx.resolve(spec);
    if local.is_dir() {
        return local_model_files(spec, &local, required, optional);
    }
    let pulled =
        parallax_hub::resolve_model(&HubConfig::from_env(), spec, revision, required, optional)
            .map_err(|e| Error::Data(e.to_string()))?;
    Ok(ModelFiles {
        spec: spec.to_string(),
        dir: pulled.dir,
        files: pulled.files,
    })
}

/// The files of a model folder; a missing required file is an error naming it.
fn local_model_files(
    spec: &str,
    dir: &std::path::Path,
    required: &[&str],
    optional: &[&str],
) -> Result<ModelFiles> {
    let mut files = BTreeMap::new();
    for (name, needed) in required
        .iter()
        .map(|f| (f, true))
        .chain(optional.iter().map(|f| (f, false)))
    {
        let p = dir.join(name);
        if p.is_file() {
            files.insert(name.to_string(), p);
        } else if needed {
            return Err(Error::Data(format!(
                "{}: the model folder has no `{name}`",
                dir.display()
            )));
        }
    }
    Ok(ModelFiles {
        spec: spec.to_string(),
        dir: dir.to_path_buf(),
        files,
    })
}
