//! Pretrained weights for the vision encoders (`pretrained` / `revision`
//! recipe keys).
//!
//! `pretrained` is one of
//!
//! - a `.safetensors` file,
//! - a folder holding `model.safetensors` (a Hugging Face / timm model folder),
//! - a Hugging Face Hub id `owner/name`, pulled through `parallax-hub` at
//!   `revision` (default `main`; `HF_ENDPOINT`, `HF_HOME` / `HF_HUB_CACHE`,
//!   `HF_TOKEN` and `HF_HUB_OFFLINE` apply) — its `model.safetensors`.
//!
//! An encoder builds its variables through a [`Recorder`], which notes every
//! variable's name and shape; [`Checkpoint::load_into`] then overwrites each
//! of them with the checkpoint's tensor of the same name
//! (`parallax_core::nn::init::load_value`). A missing tensor, a tensor of
//! another shape, and a checkpoint tensor that no variable uses (outside the
//! encoder's list of ignored classifier heads) are errors naming the file and
//! the tensor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use parallax_core::error::{Error, Result};
use parallax_core::nn::init::load_value;
use parallax_hub::HubConfig;

/// The file a model folder or Hub repository must hold.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// The tensors of a checkpoint, by name, and where they came from.
pub struct Checkpoint {
    /// The file read, for errors.
    pub origin: String,
    /// The tensors (on the CPU, in the file's dtype).
    pub tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Reads `spec` (a `.safetensors` file, a folder holding
    /// `model.safetensors`, or a Hub id) with the Hub settings of the
    /// environment; `who` names the encoder in errors.
    pub fn open(who: &str, spec: &str, revision: Option<&str>) -> Result<Self> {
        Self::open_with(who, spec, revision, &HubConfig::from_env())
    }

    /// [`Checkpoint::open`] with explicit Hub settings.
    pub fn open_with(
        who: &str,
        spec: &str,
        revision: Option<&str>,
        hub: &HubConfig,
    ) -> Result<Self> {
        let path = Path::new(spec);
        let file = if path.is_file() {
            path.to_path_buf()
        } else if path.is_dir() {
            let f = path.join(WEIGHTS_FILE);
            if !f.is_file() {
                return Err(Error::Data(format!(
                    "{who}: pretrained folder {} has no `{WEIGHTS_FILE}`",
                    path.display()
                )));
            }
            f
        } else if spec.ends_with(".safetensors")
            || spec.starts_with(['.', '/', '~'])
            || spec.matches('/').count() != 1
        {
            // a path, not a Hub id: do not go to the network for a typo
            return Err(Error::Data(format!(
                "{who}: pretrained `{spec}`: no such file or folder (and not a Hub id `owner/name`)"
            )));
        } else {
            let pulled = parallax_hub::resolve_model(hub, spec, revision, &[WEIGHTS_FILE], &[])
                .map_err(|e| Error::Data(format!("{who}: pretrained `{spec}`: {e}")))?;
            pulled.files.get(WEIGHTS_FILE).cloned().ok_or_else(|| {
                Error::Data(format!(
                    "{who}: pretrained `{spec}` has no `{WEIGHTS_FILE}`"
                ))
            })?
        };
        let tensors = candle_core::safetensors::load(&file, &Device::Cpu)
            .map_err(|e| Error::Data(format!("{who}: reading {}: {e}", file.display())))?;
        Ok(Checkpoint {
            origin: file.display().to_string(),
            tensors,
        })
    }

    /// A checkpoint made in memory (tests, conversions).
    pub fn from_tensors(origin: &str, tensors: HashMap<String, Tensor>) -> Self {
        Checkpoint {
            origin: origin.to_string(),
            tensors,
        }
    }

    /// The tensor `name` with the shape `expected`, or an error naming the
    /// file, the tensor and both shapes.
    pub fn get(&self, name: &str, expected: &[usize]) -> Result<&Tensor> {
        let t = self.tensors.get(name).ok_or_else(|| {
            Error::Data(format!(
                "{}: the checkpoint has no tensor `{name}` (the encoder needs shape {expected:?})",
                self.origin
            ))
        })?;
        if t.dims() != expected {
            return Err(Error::Data(format!(
                "{}: tensor `{name}` has shape {:?}, the encoder needs {expected:?}",
                self.origin,
                t.dims()
            )));
        }
        Ok(t)
    }

    /// Overwrites every variable of `vars` (names relative to `vb`) with the
    /// checkpoint's tensor of that name. Checkpoint tensors whose name
    /// starts with one of `ignored` (or ends with `num_batches_tracked`) may
    /// be left unused; any other unused tensor is an error.
    pub fn load_into(
        &self,
        vb: &VarBuilder,
        vars: &[(String, Vec<usize>)],
        ignored: &[&str],
    ) -> Result<()> {
        // every tensor first, so that nothing is overwritten on an error
        let mut values = Vec::with_capacity(vars.len());
        for (name, shape) in vars {
            values.push((name, self.get(name, shape)?));
        }
        let used: BTreeSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        let mut unused: Vec<&str> = self
            .tensors
            .keys()
            .map(String::as_str)
            .filter(|k| !used.contains(k))
            .filter(|k| !k.ends_with("num_batches_tracked"))
            .filter(|k| !ignored.iter().any(|p| k.starts_with(p)))
            .collect();
        if !unused.is_empty() {
            unused.sort();
            let n = unused.len();
            unused.truncate(6);
            return Err(Error::Data(format!(
                "{}: {n} tensor(s) of the checkpoint match no variable of the encoder: {}{} \
                 (does the configuration match the checkpoint? ignored: {})",
                self.origin,
                unused.join(", "),
                if n > 6 { ", ..." } else { "" },
                ignored.join(", ")
            )));
        }
        for (name, value) in values {
            load_value(vb, name, value)?;
        }
        Ok(())
    }
}

/// Wraps a `VarBuilder` and records the name (relative to it) and shape of
/// every variable requested through the wrapper.
#[derive(Clone, Default)]
pub struct Recorder {
    seen: Arc<Mutex<BTreeMap<String, Vec<usize>>>>,
    expected: Option<Arc<Expected>>,
}

/// The shape of every tensor of a checkpoint, and the file, for errors.
struct Expected {
    origin: String,
    shapes: HashMap<String, Vec<usize>>,
}

struct Recording<'a> {
    inner: VarBuilder<'a>,
    seen: Arc<Mutex<BTreeMap<String, Vec<usize>>>>,
    expected: Option<Arc<Expected>>,
}

impl SimpleBackend for Recording<'_> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(exp) = &self.expected {
            // before anything is allocated: a configuration read from a file
            // may ask for a model far larger than its weights
            match exp.shapes.get(name) {
                None => candle_core::bail!(
                    "{}: the checkpoint has no tensor `{name}` (the encoder needs shape {:?})",
                    exp.origin,
                    s.dims()
                ),
                Some(d) if d.as_slice() != s.dims() => candle_core::bail!(
                    "{}: tensor `{name}` has shape {d:?}, the encoder needs {:?}",
                    exp.origin,
                    s.dims()
                ),
                Some(_) => {}
            }
        }
        let t = self.inner.get_with_hints_dtype(s.clone(), name, h, dtype)?;
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), s.dims().to_vec());
        Ok(t)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.inner.get_unchecked_dtype(name, dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(name)
    }
}

impl Recorder {
    /// A new, empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A recorder that refuses, before creating it, a variable that `ckpt`
    /// lacks or holds with another shape: an encoder whose configuration
    /// comes from a file next to the weights then fails on the first
    /// mismatch instead of first allocating whatever the file claims.
    pub fn checked_against(ckpt: &Checkpoint) -> Self {
        Recorder {
            seen: Arc::default(),
            expected: Some(Arc::new(Expected {
                origin: ckpt.origin.clone(),
                shapes: ckpt
                    .tensors
                    .iter()
                    .map(|(k, v)| (k.clone(), v.dims().to_vec()))
                    .collect(),
            })),
        }
    }

    /// A builder that creates variables through `vb` and records them.
    pub fn wrap<'a>(&self, vb: VarBuilder<'a>) -> VarBuilder<'a> {
        let (dtype, device) = (vb.dtype(), vb.device().clone());
        let backend = Recording {
            inner: vb,
            seen: self.seen.clone(),
            expected: self.expected.clone(),
        };
        VarBuilder::from_backend(Box::new(backend), dtype, device)
    }

    /// The variables recorded so far (name, shape), sorted by name.
    pub fn vars(&self) -> Vec<(String, Vec<usize>)> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Opens `spec` when given (see [`Checkpoint::open`]).
pub fn open_optional(
    who: &str,
    spec: Option<&str>,
    revision: Option<&str>,
) -> Result<Option<Checkpoint>> {
    spec.map(|s| Checkpoint::open(who, s, revision)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use parallax_core::nn::init::VarStore;

    #[test]
    fn recorder_sees_variables_and_loading_checks_shapes_and_leftovers() {
        let store = VarStore::new(0);
        let rec = Recorder::new();
        let vb = rec.wrap(store.var_builder(DType::F32, &Device::Cpu).pp("enc"));
        let a = vb
            .pp("m")
            .get_with_hints((2, 3), "w", Init::Const(0.0))
            .unwrap();
        assert_eq!(rec.vars(), vec![("m.w".to_string(), vec![2, 3])]);
        let mut t = HashMap::new();
        t.insert(
            "m.w".to_string(),
            Tensor::ones((2, 3), DType::F64, &Device::Cpu).unwrap(),
        );
        t.insert(
            "fc.weight".to_string(),
            Tensor::ones(1, DType::F32, &Device::Cpu).unwrap(),
        );
        let c = Checkpoint::from_tensors("x.safetensors", t.clone());
        c.load_into(&vb, &rec.vars(), &["fc."]).unwrap();
        assert_eq!(a.sum_all().unwrap().to_scalar::<f32>().unwrap(), 6.0);
        assert!(store.get_var("enc.m.w").is_some());
        let e = c.load_into(&vb, &rec.vars(), &[]).unwrap_err().to_string();
        assert!(
            e.contains("fc.weight") && e.contains("x.safetensors"),
            "{e}"
        );
        t.insert(
            "m.w".to_string(),
            Tensor::ones((3, 2), DType::F32, &Device::Cpu).unwrap(),
        );
        let c = Checkpoint::from_tensors("x.safetensors", t);
        let e = c
            .load_into(&vb, &rec.vars(), &["fc."])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`m.w`") && e.contains("[3, 2]") && e.contains("[2, 3]"),
            "{e}"
        );
    }

    #[test]
    fn a_checked_recorder_refuses_before_allocating() {
        let mut t = HashMap::new();
        t.insert(
            "m.w".to_string(),
            Tensor::ones((2, 3), DType::F32, &Device::Cpu).unwrap(),
        );
        let c = Checkpoint::from_tensors("w.safetensors", t);
        let store = VarStore::new(0);
        let rec = Recorder::checked_against(&c);
        let vb = rec.wrap(store.var_builder(DType::F32, &Device::Cpu));
        vb.get_with_hints((2, 3), "m.w", Init::Const(0.0)).unwrap();
        // 2^40 values would be 4 TiB: refused by name and shape first
        let e = vb
            .get_with_hints((1 << 20, 1 << 20), "m.w", Init::Const(0.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("w.safetensors") && e.contains("[2, 3]"), "{e}");
        let e = vb
            .get_with_hints((1 << 20, 1 << 20), "m.other", Init::Const(0.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no tensor `m.other`"), "{e}");
        assert_eq!(rec.vars(), vec![("m.w".to_string(), vec![2, 3])]);
    }

    #[test]
    fn safetensors_headers_claiming_huge_tensors_are_errors() {
        // safetensors itself checks that the header (at most 100 MB) and
        // every tensor's bytes lie inside the file, before anything is read
        let dir = tempfile::tempdir().unwrap();
        let header =
            br#"{"w":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4398046511104]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 16]);
        let f = dir.path().join("huge.safetensors");
        std::fs::write(&f, &bytes).unwrap();
        let e = Checkpoint::open("vit", &f.display().to_string(), None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("huge.safetensors"), "{e}");
        // a header length of 2^63
        let mut bytes = (1u64 << 63).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&f, &bytes).unwrap();
        assert!(Checkpoint::open("vit", &f.display().to_string(), None).is_err());
    }

    #[test]
    fn missing_paths_are_not_hub_ids() {
        let e = Checkpoint::open("vit", "weights/nope.safetensors", None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no such file"), "{e}");
    }
}
