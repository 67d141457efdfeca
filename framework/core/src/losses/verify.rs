//! Checks a registered loss against a reference fixture
//! (`tests/fixtures/losses/*.safetensors`, see the README there).
//!
//! A fixture holds the inputs, `expected.loss` and `expected.grad.NAME`
//! (float64), and in its metadata the loss's registry name (`loss`) and
//! hyper-parameters (`params`, JSON). [`verify_file`] builds the loss from the
//! registry, wraps the float inputs as [`Var`]s, runs forward and backward in
//! the inputs' dtype (float32, as a user would) and compares:
//!
//! - the loss value: relative error below [`LOSS_TOLERANCE`];
//! - each gradient: `‖g − g_ref‖ / ‖g_ref‖` below [`GRAD_TOLERANCE`]; where
//!   the reference is all zeros (a stop-gradient input) our gradient must be
//!   exactly zero or absent.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{Error, Result};
use crate::losses::LossInputs;
use crate::recipe::Params;
use crate::registry;

/// Largest relative error of the loss value that passes.
pub const LOSS_TOLERANCE: f64 = 1e-4;
/// Largest relative error `‖g − g_ref‖ / ‖g_ref‖` of a gradient that passes.
pub const GRAD_TOLERANCE: f64 = 1e-3;

const GRAD_PREFIX: &str = "expected.grad.";

/// The outcome of checking one fixture.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// The fixture file.
    pub file: PathBuf,
    /// The loss's registry name.
    pub loss: String,
    /// `|loss − loss_ref| / |loss_ref|` (the absolute error if the reference is 0).
    pub loss_rel_err: f64,
    /// For each `expected.grad.NAME`, in name order: the relative error of
    /// our gradient, or, where the reference is all zeros (stop-gradient), the
    /// norm of our gradient (0 when it is absent).
    pub grads: Vec<(String, f64)>,
    /// Whether every check passed.
    pub passed: bool,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| self.file.display().to_string());
        write!(
            f,
            "{name:<40} {:<24} loss {:.1e}",
            self.loss, self.loss_rel_err
        )?;
        if !self.grads.is_empty() {
            write!(f, "  grad")?;
            for (g, e) in &self.grads {
                write!(f, " {g} {e:.1e}")?;
            }
        }
        write!(f, "  {}", if self.passed { "PASS" } else { "FAIL" })
    }
}

fn data_err(path: &Path, msg: impl fmt::Display) -> Error {
    Error::Data(format!("{}: {msg}", path.display()))
}

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Reads the fixture at `path`, computes the loss it names and compares the
/// value and the gradients with the reference.
pub fn verify_file(path: &Path) -> Result<VerifyReport> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| data_err(path, e))?;
    let meta = header
        .metadata()
        .clone()
        .ok_or_else(|| data_err(path, "no metadata (expected `loss` and `params`)"))?;
    let loss_name = meta
        .get("loss")
        .ok_or_else(|| data_err(path, "metadata has no `loss`"))?
        .clone();
    let params_json: serde_json::Value = match meta.get("params") {
        Some(p) => serde_json::from_str(p).map_err(|e| data_err(path, format!("params: {e}")))?,
        None => serde_json::Value::Object(Default::default()),
    };
    let params = Params::from_json("loss", &params_json)?;
    let loss = (registry::loss(&loss_name)?.build)(&params)?;

    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    let expected_loss = tensors
        .get("expected.loss")
        .ok_or_else(|| data_err(path, "no `expected.loss`"))?;
    let expected_loss = to_f64(expected_loss)?;
    if expected_loss.len() != 1 {
        return Err(data_err(path, "`expected.loss` must hold one value"));
    }
    let expected_loss = expected_loss[0];

    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut inputs = LossInputs::new();
    let mut vars: HashMap<String, Var> = HashMap::new();
    for name in names {
        if name.starts_with("expected.") {
            continue;
        }
        let t = &tensors[name];
        if t.dtype().is_float() {
            let v = Var::from_tensor(t)?;
            inputs.insert(name, v.as_tensor().clone());
            vars.insert(name.clone(), v);
        } else {
            inputs.insert(name, t.clone());
        }
    }

    let value = loss.forward(&inputs)?;
    if value.elem_count() != 1 {
        return Err(Error::Shape(format!(
            "loss `{loss_name}` returned shape {:?}, expected a scalar",
            value.dims()
        )));
    }
    let got = to_f64(&value)?[0];
    let loss_rel_err = if expected_loss == 0.0 {
        (got - expected_loss).abs()
    } else {
        (got - expected_loss).abs() / expected_loss.abs()
    };
    let mut passed = loss_rel_err.is_finite() && loss_rel_err < LOSS_TOLERANCE;

    let store = value.backward()?;
    let mut grad_names: Vec<&String> = tensors
        .keys()
        .filter(|k| k.starts_with(GRAD_PREFIX))
        .collect();
    grad_names.sort();
    let mut grads = Vec::new();
    for key in grad_names {
        let name = &key[GRAD_PREFIX.len()..];
        let reference = &tensors[key];
        let var = vars
            .get(name)
            .ok_or_else(|| data_err(path, format!("`{key}` has no float input `{name}`")))?;
        let ours = store.get(var.as_tensor());
        if let Some(g) = ours {
            if g.dims() != reference.dims() {
                return Err(Error::Shape(format!(
                    "{}: gradient of `{name}` has shape {:?}, the reference {:?}",
                    path.display(),
                    g.dims(),
                    reference.dims()
                )));
            }
        }
        let reference = to_f64(reference)?;
        let ref_norm = norm(&reference);
        let ours = match ours {
            Some(g) => to_f64(g)?,
            None => vec![0.0; reference.len()],
        };
        let err = if ref_norm == 0.0 {
            let e = norm(&ours);
            passed &= e == 0.0;
            e
        } else {
            let diff: Vec<f64> = ours.iter().zip(&reference).map(|(a, b)| a - b).collect();
            let e = norm(&diff) / ref_norm;
            passed &= e.is_finite() && e < GRAD_TOLERANCE;
            e
        };
        grads.push((name.to_string(), err));
    }
    Ok(VerifyReport {
        file: path.to_path_buf(),
        loss: loss_name,
        loss_rel_err,
        grads,
        passed,
    })
}

/// The fixture files (`*.safetensors`) in `dir`, sorted by name.
pub fn fixture_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    Ok(files)
}
