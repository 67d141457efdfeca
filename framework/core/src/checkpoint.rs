//! Checkpoints: one safetensors file holding the model variables
//! (`model/…`), the optimizer state (`optim/…`), the method's state
//! (`method/…`, e.g. queues) and, in its metadata, the step, the epoch and
//! the seed. Every random stream of a run is derived from the seed and the
//! step (see [`crate::rng`]), so the step is the whole RNG state.
//!
//! Files are written atomically: to a temporary file in the same folder,
//! synced, then renamed over the old one. A crash mid-write leaves the
//! previous checkpoint intact.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a checkpoint says about the run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    /// Optimizer steps done.
    pub step: u64,
    /// The run's seed.
    pub seed: u64,
    /// The run's name.
    pub name: String,
    /// Format version.
    pub format: u32,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    /// Step, seed, name.
    pub meta: CheckpointMeta,
    /// Model variables by name.
    pub model: HashMap<String, Tensor>,
    /// Optimizer state by name.
    pub optim: HashMap<String, Tensor>,
    /// Method state by name.
    pub method: HashMap<String, Tensor>,
}

fn err(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Writes `bytes` to `path` atomically (temporary file + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Saves a checkpoint to `path` atomically.
pub fn save(
    path: &Path,
    meta: &CheckpointMeta,
    model: &BTreeMap<String, Tensor>,
    optim: &BTreeMap<String, Tensor>,
    method: &BTreeMap<String, Tensor>,
) -> Result<()> {
    let mut all: Vec<(String, Tensor)> = Vec::new();
    for (prefix, map) in [("model", model), ("optim", optim), ("method", method)] {
        for (k, v) in map {
            all.push((format!("{prefix}/{k}"), v.to_device(&Device::Cpu)?));
        }
    }
    let mut info = HashMap::new();
    info.insert(
        "parallax".to_string(),
        serde_json::to_string(meta).map_err(|e| err(path, e))?,
    );
    let bytes = safetensors::serialize(all, Some(info)).map_err(|e| err(path, e))?;
    write_atomic(path, &bytes)
}

/// Loads a checkpoint written by [`save`].
pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| err(path, e))?;
    let meta_json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("parallax"))
        .ok_or_else(|| err(path, "not a parallax checkpoint (no `parallax` metadata)"))?;
    let meta: CheckpointMeta = serde_json::from_str(meta_json).map_err(|e| err(path, e))?;
    drop(st);
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| err(path, e))?;
    let mut ck = Checkpoint {
        meta,
        model: HashMap::new(),
        optim: HashMap::new(),
        method: HashMap::new(),
    };
    for (k, v) in tensors {
        match k.split_once('/') {
            Some(("model", rest)) => ck.model.insert(rest.to_string(), v),
            Some(("optim", rest)) => ck.optim.insert(rest.to_string(), v),
            Some(("method", rest)) => ck.method.insert(rest.to_string(), v),
            _ => return Err(err(path, format!("unexpected entry `{k}`"))),
        };
    }
    Ok(ck)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_atomic_replace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("checkpoint.safetensors");
        let meta = CheckpointMeta {
            step: 7,
            seed: 1,
            name: "r".into(),
            format: 1,
        };
        let t = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
        let mut model = BTreeMap::new();
        model.insert("encoder.w".to_string(), t.clone());
        let mut optim = BTreeMap::new();
        optim.insert("momentum/encoder.w".to_string(), (t.clone() * 2.0).unwrap());
        save(&p, &meta, &model, &optim, &BTreeMap::new()).unwrap();
        let ck = load(&p, &Device::Cpu).unwrap();
        assert_eq!(ck.meta, meta);
        assert_eq!(
            ck.model["encoder.w"].to_vec1::<f32>().unwrap(),
            vec![1., 2., 3.]
        );
        assert_eq!(
            ck.optim["momentum/encoder.w"].to_vec1::<f32>().unwrap(),
            vec![2., 4., 6.]
        );
        // no temporary file left behind
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        std::fs::write(&p, b"garbage").unwrap();
        let e = load(&p, &Device::Cpu).err().unwrap().to_string();
        assert!(e.contains("checkpoint.safetensors"), "{e}");
    }
}
