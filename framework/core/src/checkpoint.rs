//! Checkpoints: one safetensors file holding the model variables
//! (`model/…`), the optimizer state (`optim/…`), the method's state
//! (`method/…`, e.g. queues) and, in its metadata, the step, the epoch and
//! the seed. Every random stream of a run is derived from the seed and the
//! step (see [`crate::rng`]), so the step is the whole RNG state.
//!
//! Files are written atomically: to a temporary file in the same folder,
//! synced, then renamed over the old one. A crash mid-write leaves the
//! previous checkpoint intact. Each file records a CRC-32C of its content
//! (every tensor's name, dtype, shape and bytes) in its metadata, and
//! [`load`] refuses a file whose content does not match.
//!
//! A run directory keeps several ([`Rotation`]): the latest as
//! `checkpoint.safetensors`, the ones before it as
//! `checkpoint-STEP.safetensors` (the last `keep` in all), and optionally
//! the best by an evaluator's metric as `checkpoint-best.safetensors`.
//! [`load_newest`] resumes from the newest one that verifies, saying which
//! ones it passed over and why.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use safetensors::View;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::init::VarStore;

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

/// The metadata key of the content checksum.
const CHECKSUM_KEY: &str = "parallax_crc32c";

/// The metadata key of a best checkpoint's metric (`{"metric", "value"}`).
const BEST_KEY: &str = "parallax_best";

/// CRC-32C of tensors in name order: each name, dtype, shape and bytes.
fn content_checksum<'a>(
    items: impl Iterator<Item = (&'a str, String, Vec<usize>, std::borrow::Cow<'a, [u8]>)>,
) -> u32 {
    let mut items: Vec<_> = items.collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    let mut crc = 0u32;
    for (name, dtype, shape, data) in items {
        crc = crc32c::crc32c_append(crc, &(name.len() as u64).to_le_bytes());
        crc = crc32c::crc32c_append(crc, name.as_bytes());
        crc = crc32c::crc32c_append(crc, dtype.as_bytes());
        for d in shape {
            crc = crc32c::crc32c_append(crc, &(d as u64).to_le_bytes());
        }
        crc = crc32c::crc32c_append(crc, &data);
    }
    crc
}

/// Saves a checkpoint to `path` atomically.
pub fn save(
    path: &Path,
    meta: &CheckpointMeta,
    model: &BTreeMap<String, Tensor>,
    optim: &BTreeMap<String, Tensor>,
    method: &BTreeMap<String, Tensor>,
) -> Result<()> {
    save_with(path, meta, model, optim, method, None)
}

fn save_with(
    path: &Path,
    meta: &CheckpointMeta,
    model: &BTreeMap<String, Tensor>,
    optim: &BTreeMap<String, Tensor>,
    method: &BTreeMap<String, Tensor>,
    best: Option<(&str, f64)>,
) -> Result<()> {
    let mut all: Vec<(String, Tensor)> = Vec::new();
    for (prefix, map) in [("model", model), ("optim", optim), ("method", method)] {
        for (k, v) in map {
            all.push((format!("{prefix}/{k}"), v.to_device(&Device::Cpu)?));
        }
    }
    let crc = content_checksum(all.iter().map(|(k, t)| {
        (
            k.as_str(),
            format!("{:?}", View::dtype(t)),
            View::shape(t).to_vec(),
            View::data(t),
        )
    }));
    let mut info = HashMap::new();
    info.insert(
        "parallax".to_string(),
        serde_json::to_string(meta).map_err(|e| err(path, e))?,
    );
    info.insert(CHECKSUM_KEY.to_string(), format!("{crc:08x}"));
    if let Some((metric, value)) = best {
        info.insert(
            BEST_KEY.to_string(),
            serde_json::json!({ "metric": metric, "value": value }).to_string(),
        );
    }
    let bytes = safetensors::serialize(all, Some(info)).map_err(|e| err(path, e))?;
    write_atomic(path, &bytes)
}

/// The metadata of a checkpoint file, read from its header alone (the
/// content is not verified).
pub fn read_meta(path: &Path) -> Result<CheckpointMeta> {
    let md = read_header_metadata(path)?;
    let json = md
        .get("parallax")
        .ok_or_else(|| err(path, "not a parallax checkpoint (no `parallax` metadata)"))?;
    serde_json::from_str(json).map_err(|e| err(path, e))
}

/// The `__metadata__` of a safetensors file's header.
fn read_header_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
    let n = u64::from_le_bytes(len);
    let size = f.metadata().map_err(|e| Error::io(path, e))?.len();
    // the header is at most 100 MB (safetensors' own limit) and inside the file
    if n > 100_000_000 || n + 8 > size {
        return Err(err(
            path,
            format!("not a safetensors file: header of {n} bytes in a file of {size}"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    #[derive(Deserialize)]
    struct Head {
        #[serde(rename = "__metadata__", default)]
        metadata: HashMap<String, String>,
    }
    let head: Head = serde_json::from_slice(&header)
        .map_err(|e| err(path, format!("not a safetensors file: bad header: {e}")))?;
    Ok(head.metadata)
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
    // files of earlier versions carry no checksum: they load unverified
    if let Some(recorded) = header.metadata().as_ref().and_then(|m| m.get(CHECKSUM_KEY)) {
        let tensors = st.tensors();
        let crc = content_checksum(tensors.iter().map(|(k, v)| {
            (
                k.as_str(),
                format!("{:?}", v.dtype()),
                v.shape().to_vec(),
                std::borrow::Cow::Borrowed(v.data()),
            )
        }));
        if format!("{crc:08x}") != *recorded {
            return Err(err(
                path,
                format!("checksum mismatch: the content's CRC-32C is {crc:08x}, the file records {recorded}: the file is corrupt"),
            ));
        }
    }
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

/// The latest checkpoint's file name in a run directory.
pub const LATEST: &str = "checkpoint.safetensors";
/// The best checkpoint's file name in a run directory.
pub const BEST: &str = "checkpoint-best.safetensors";

/// The checkpoints of one run directory: the latest, the `keep - 1` before
/// it, and the best by a metric.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The run directory.
    pub dir: PathBuf,
    /// How many step checkpoints to keep, the latest included (at least 1).
    pub keep: usize,
}

/// The step of a rotated file name (`checkpoint-STEP.safetensors`).
fn rotated_step(name: &str) -> Option<u64> {
    name.strip_prefix("checkpoint-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

impl Rotation {
    /// The latest checkpoint's path.
    pub fn latest(&self) -> PathBuf {
        self.dir.join(LATEST)
    }

    /// The best checkpoint's path.
    pub fn best(&self) -> PathBuf {
        self.dir.join(BEST)
    }

    fn rotated(&self, step: u64) -> PathBuf {
        self.dir.join(format!("checkpoint-{step:08}.safetensors"))
    }

    /// The step checkpoints on disk, newest first: the latest, then the
    /// rotated ones by step.
    pub fn candidates(&self) -> Vec<PathBuf> {
        let mut rotated: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let step = rotated_step(&e.file_name().to_string_lossy())?;
                Some((step, e.path()))
            })
            .collect();
        rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
        let latest = self.latest();
        latest
            .is_file()
            .then_some(latest)
            .into_iter()
            .chain(rotated.into_iter().map(|(_, p)| p))
            .collect()
    }

    /// Whether the directory holds any step checkpoint.
    pub fn exists(&self) -> bool {
        !self.candidates().is_empty()
    }

    /// Writes the checkpoint of `meta.step` as the latest: the previous
    /// latest moves to `checkpoint-STEP.safetensors` (one that no longer
    /// reads is renamed `checkpoint.safetensors.corrupt`), and rotated files
    /// beyond `keep` are removed.
    pub fn save(
        &self,
        meta: &CheckpointMeta,
        model: &BTreeMap<String, Tensor>,
        optim: &BTreeMap<String, Tensor>,
        method: &BTreeMap<String, Tensor>,
    ) -> Result<()> {
        let latest = self.latest();
        if latest.is_file() {
            match read_meta(&latest) {
                Ok(old) if old.step == meta.step => {}
                Ok(old) => std::fs::rename(&latest, self.rotated(old.step))
                    .map_err(|e| Error::io(&latest, e))?,
                Err(_) => {
                    let corrupt = self.dir.join(format!("{LATEST}.corrupt"));
                    std::fs::rename(&latest, &corrupt).map_err(|e| Error::io(&latest, e))?;
                }
            }
        }
        save(&latest, meta, model, optim, method)?;
        // the latest counts towards `keep`
        for old in self.candidates().into_iter().skip(self.keep.max(1)) {
            std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
        }
        Ok(())
    }

    /// The best checkpoint's metric and value so far, if it has one that reads.
    pub fn best_value(&self) -> Option<(String, f64)> {
        let md = read_header_metadata(&self.best()).ok()?;
        let v: serde_json::Value = serde_json::from_str(md.get(BEST_KEY)?).ok()?;
        Some((v["metric"].as_str()?.to_string(), v["value"].as_f64()?))
    }

    /// Writes `checkpoint-best.safetensors` with its metric's value.
    pub fn save_best(
        &self,
        meta: &CheckpointMeta,
        model: &BTreeMap<String, Tensor>,
        optim: &BTreeMap<String, Tensor>,
        method: &BTreeMap<String, Tensor>,
        metric: &str,
        value: f64,
    ) -> Result<()> {
        save_with(
            &self.best(),
            meta,
            model,
            optim,
            method,
            Some((metric, value)),
        )
    }
}

/// A checkpoint found by [`load_newest`]: which file, and the ones passed
/// over (path and why).
pub struct Found {
    /// The loaded checkpoint.
    pub checkpoint: Checkpoint,
    /// Its file.
    pub path: PathBuf,
    /// Newer files that did not verify, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Found {
    /// Loads the checkpoint's model tensors into `store`; an error names
    /// the file.
    pub fn assign_to(&self, store: &VarStore) -> Result<()> {
        store
            .assign_all(&self.checkpoint.model)
            .map_err(|e| err(&self.path, e.to_string()))
    }
}

/// Loads the newest step checkpoint of `rotation` that verifies.
pub fn load_newest(rotation: &Rotation, device: &Device) -> Result<Found> {
    let mut skipped = Vec::new();
    for path in rotation.candidates() {
        match load(&path, device) {
            Ok(checkpoint) => {
                return Ok(Found {
                    checkpoint,
                    path,
                    skipped,
                })
            }
            Err(e) => skipped.push((path, e.to_string())),
        }
    }
    let why = if skipped.is_empty() {
        "there is none".to_string()
    } else {
        skipped
            .iter()
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    Err(err(
        &rotation.latest(),
        format!("no usable checkpoint in {}: {why}", rotation.dir.display()),
    ))
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

    fn meta(step: u64) -> CheckpointMeta {
        CheckpointMeta {
            step,
            seed: 1,
            name: "r".into(),
            format: 1,
        }
    }

    fn model(v: f32) -> BTreeMap<String, Tensor> {
        let mut m = BTreeMap::new();
        m.insert(
            "w".to_string(),
            Tensor::new(&[v, v + 1.0, v + 2.0], &Device::Cpu).unwrap(),
        );
        m
    }

    #[test]
    fn a_header_that_claims_terabytes_is_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.safetensors");
        // a tensor of 2^40 f32 values (4 TiB) in a file of a few bytes
        let header = br#"{"__metadata__":{"parallax":"{\"step\":1,\"seed\":1,\"name\":\"r\",\"format\":1}"},"model/w":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4398046511104]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 16]);
        std::fs::write(&p, &bytes).unwrap();
        let e = load(&p, &Device::Cpu).err().unwrap().to_string();
        assert!(e.contains("huge.safetensors"), "{e}");
        // a header length of 2^60 bytes
        let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&p, &bytes).unwrap();
        let e = read_meta(&p).err().unwrap().to_string();
        assert!(e.contains("header of 1152921504606846976 bytes"), "{e}");
        let e = load(&p, &Device::Cpu).err().unwrap().to_string();
        assert!(e.contains("huge.safetensors"), "{e}");
    }

    #[test]
    fn a_flipped_byte_in_the_content_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.safetensors");
        save(
            &p,
            &meta(3),
            &model(1.0),
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
        .unwrap();
        assert!(load(&p, &Device::Cpu).is_ok());
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        let e = load(&p, &Device::Cpu).err().unwrap().to_string();
        assert!(
            e.contains("checksum mismatch") && e.contains("c.safetensors"),
            "{e}"
        );
        // the header still reads: the step is known without the content
        assert_eq!(read_meta(&p).unwrap().step, 3);
    }

    #[test]
    fn rotation_keeps_the_last_n_and_falls_back_past_a_corrupt_latest() {
        let dir = tempfile::tempdir().unwrap();
        let rot = Rotation {
            dir: dir.path().to_path_buf(),
            keep: 2,
        };
        assert!(!rot.exists());
        for step in [10, 20, 30] {
            rot.save(
                &meta(step),
                &model(step as f32),
                &BTreeMap::new(),
                &BTreeMap::new(),
            )
            .unwrap();
        }
        let names: Vec<String> = rot
            .candidates()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            ["checkpoint.safetensors", "checkpoint-00000020.safetensors"]
        );
        // saving the same step again replaces the latest in place
        rot.save(&meta(30), &model(30.0), &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        assert_eq!(rot.candidates().len(), 2);
        let found = load_newest(&rot, &Device::Cpu).unwrap();
        assert_eq!(found.checkpoint.meta.step, 30);
        assert!(found.skipped.is_empty());
        // truncate the latest: the one before it is taken, and the reason given
        let bytes = std::fs::read(rot.latest()).unwrap();
        std::fs::write(rot.latest(), &bytes[..bytes.len() / 2]).unwrap();
        let found = load_newest(&rot, &Device::Cpu).unwrap();
        assert_eq!(found.checkpoint.meta.step, 20);
        assert_eq!(
            found.path.file_name().unwrap(),
            "checkpoint-00000020.safetensors"
        );
        assert_eq!(found.skipped.len(), 1);
        assert!(
            found.skipped[0].1.contains("checkpoint.safetensors"),
            "{:?}",
            found.skipped
        );
        assert_eq!(
            found.checkpoint.model["w"].to_vec1::<f32>().unwrap(),
            vec![20., 21., 22.]
        );
        // the next save moves the unreadable latest aside
        rot.save(&meta(40), &model(40.0), &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        assert!(dir.path().join("checkpoint.safetensors.corrupt").is_file());
        assert_eq!(
            load_newest(&rot, &Device::Cpu)
                .unwrap()
                .checkpoint
                .meta
                .step,
            40
        );
        // nothing usable: one error with every reason
        for p in rot.candidates() {
            std::fs::write(p, b"garbage").unwrap();
        }
        let e = load_newest(&rot, &Device::Cpu).err().unwrap().to_string();
        assert!(e.contains("no usable checkpoint"), "{e}");
    }

    #[test]
    fn the_best_checkpoint_records_its_metric() {
        let dir = tempfile::tempdir().unwrap();
        let rot = Rotation {
            dir: dir.path().to_path_buf(),
            keep: 1,
        };
        assert_eq!(rot.best_value(), None);
        rot.save_best(
            &meta(5),
            &model(5.0),
            &BTreeMap::new(),
            &BTreeMap::new(),
            "knn/top1",
            0.5,
        )
        .unwrap();
        assert_eq!(rot.best_value(), Some(("knn/top1".to_string(), 0.5)));
        assert_eq!(load(&rot.best(), &Device::Cpu).unwrap().meta.step, 5);
        // the best is not a step checkpoint: resuming never picks it
        assert!(rot.candidates().is_empty());
    }
}
