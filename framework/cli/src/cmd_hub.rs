//! `parallax hub pull REPO`: model files from the Hugging Face Hub into the
//! Hub cache, where recipes' `pretrained = "REPO"` (and offline runs) find
//! them.

use anyhow::{Context, Result};
use parallax_hub::{pull, HubConfig, MODEL_OPTIONAL, MODEL_REQUIRED};

/// Pulls `files` (default: a BERT / sentence-transformers model's files,
/// the optional ones when the repository has them) of `repo` at `revision`;
/// prints `NAME<TAB>PATH` for each file, then the snapshot folder, the
/// commit and the cache.
pub fn run(repo: &str, revision: Option<&str>, files: &[String], offline: bool) -> Result<()> {
    let mut cfg = HubConfig::from_env();
    cfg.offline |= offline;
    let (required, optional): (Vec<&str>, Vec<&str>) = if files.is_empty() {
        (MODEL_REQUIRED.to_vec(), MODEL_OPTIONAL.to_vec())
    } else {
        (files.iter().map(String::as_str).collect(), vec![])
    };
    let pulled = pull(&cfg, repo, revision, &required, &optional)
        .with_context(|| format!("cannot pull {repo}"))?;
    for (name, path) in &pulled.files {
        println!("{name}\t{}", path.display());
    }
    println!("snapshot\t{}", pulled.dir.display());
    println!(
        "commit\t{}",
        pulled.commit.as_deref().unwrap_or("(unknown)")
    );
    println!("cache\t{}", cfg.cache().display());
    Ok(())
}
