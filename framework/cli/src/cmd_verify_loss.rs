//! `parallax verify-loss`: checks registered losses against reference
//! fixtures (`tests/fixtures/losses/*.safetensors`).
//!
//! Each argument is a fixture file or a directory of them. One line is
//! printed per fixture (ending in PASS or FAIL), then a summary line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use parallax_core::losses::verify::{fixture_files, verify_file};

/// Expands directories into their `*.safetensors` files (sorted).
fn expand(files: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for f in files {
        if f.is_dir() {
            out.extend(fixture_files(f)?);
        } else if f.is_file() {
            out.push(f.clone());
        } else {
            bail!("{}: no such file or directory", f.display());
        }
    }
    Ok(out)
}

fn short(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| path.display().to_string())
}

/// Verifies every fixture, prints one line each and a summary; returns
/// whether all passed. A fixture that cannot be read or run counts as
/// failed (its error is printed on its line).
pub fn run(files: &[PathBuf]) -> Result<bool> {
    let files = expand(files)?;
    if files.is_empty() {
        bail!("verify-loss: no fixture files given");
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        match verify_file(file) {
            Ok(report) => {
                println!("{report}");
                if report.passed {
                    passed += 1;
                } else {
                    failed += 1;
                }
            }
            Err(e) => {
                println!("{:<40} error: {e}  FAIL", short(file));
                failed += 1;
            }
        }
    }
    println!("verify-loss: {passed} passed, {failed} failed");
    Ok(failed == 0)
}
