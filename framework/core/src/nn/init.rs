//! A variable store whose initialisation is seeded.
//!
//! Candle's `VarMap` draws initial values from the device RNG, which cannot
//! be seeded on the CPU. [`Params`] implements Candle's `SimpleBackend`: each
//! variable is drawn from a stream derived from the run seed and the
//! variable's *name*, so the same seed gives the same weights whatever the
//! order in which modules are built.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::rng::Rng;

/// The named variables of a model, created on first use with seeded values.
#[derive(Clone)]
pub struct VarStore {
    seed: u64,
    vars: Arc<Mutex<HashMap<String, Var>>>,
}

impl VarStore {
    /// An empty store whose initial values derive from `seed`.
    pub fn new(seed: u64) -> Self {
        VarStore {
            seed,
            vars: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A `VarBuilder` that creates variables in this store.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// All variables, sorted by name.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let map = self.vars.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(String, Var)> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The variable `name`, if it exists.
    pub fn get_var(&self, name: &str) -> Option<Var> {
        self.vars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The values of every variable, for saving.
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.named_vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect()
    }

    /// Overwrites variables with `values`; every variable must be present
    /// with its shape (an error names the first that is not).
    pub fn assign_all(&self, values: &HashMap<String, Tensor>) -> candle_core::Result<()> {
        for (name, var) in self.named_vars() {
            let t = values.get(&name).ok_or_else(|| {
                candle_core::Error::Msg(format!("no value for variable `{name}`"))
            })?;
            if t.dims() != var.dims() {
                candle_core::bail!(
                    "variable `{name}` has shape {:?}, saved value has {:?}",
                    var.dims(),
                    t.dims()
                );
            }
            var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        }
        Ok(())
    }

    fn draw(
        &self,
        shape: &Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        // the variable's name picks the stream
        let mut rng = Rng::derive(self.seed, &format!("init/{name}"), &[]);
        match init {
            Init::Const(c) => Tensor::ones(shape, dtype, dev)?.affine(c, 0.),
            Init::Randn { mean, stdev } => {
                rng.normal_tensor(shape.clone(), mean, stdev, dtype, dev)
            }
            Init::Uniform { lo, up } => rng.uniform_tensor(shape.clone(), lo, up, dtype, dev),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let b = 3f64.sqrt() * std;
                        rng.uniform_tensor(shape.clone(), -b, b, dtype, dev)
                    }
                    NormalOrUniform::Normal => {
                        rng.normal_tensor(shape.clone(), 0.0, std, dtype, dev)
                    }
                }
            }
        }
    }
}

impl SimpleBackend for VarStore {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(v) = self.get_var(name) {
            if v.shape() != &s {
                candle_core::bail!(
                    "variable `{name}` exists with shape {:?}, requested {:?}",
                    v.dims(),
                    s.dims()
                );
            }
            return Ok(v.as_tensor().clone());
        }
        let t = self.draw(&s, name, h, dtype, dev)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        self.vars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.get_var(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| candle_core::Error::Msg(format!("no variable `{name}`")))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.get_var(name).is_some()
    }
}

/// Creates the variable `name` through `vb` (if it does not exist yet) and
/// overwrites it with `value` (converted to the builder's dtype and
/// device), e.g. to load pretrained weights. Returns the variable's tensor.
pub fn load_value(vb: &VarBuilder, name: &str, value: &Tensor) -> candle_core::Result<Tensor> {
    let t = vb.get_with_hints(value.shape(), name, Init::Const(0.0))?;
    let v = value
        .to_dtype(t.dtype())?
        .to_device(t.device())?
        .contiguous()?;
    if v.rank() == 0 {
        candle_core::bail!("load_value: `{name}` is a scalar; only arrays can be loaded");
    }
    t.slice_set(&v, 0, 0)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_regardless_of_order() {
        let a = VarStore::new(5);
        let vb = a.var_builder(DType::F32, &Device::Cpu);
        let x = vb
            .get_with_hints((3, 4), "x", candle_nn::init::DEFAULT_KAIMING_NORMAL)
            .unwrap();
        let _y = vb
            .get_with_hints(
                7,
                "y",
                Init::Randn {
                    mean: 0.,
                    stdev: 1.,
                },
            )
            .unwrap();
        let b = VarStore::new(5);
        let vb = b.var_builder(DType::F32, &Device::Cpu);
        let _y = vb
            .get_with_hints(
                7,
                "y",
                Init::Randn {
                    mean: 0.,
                    stdev: 1.,
                },
            )
            .unwrap();
        let x2 = vb
            .get_with_hints((3, 4), "x", candle_nn::init::DEFAULT_KAIMING_NORMAL)
            .unwrap();
        assert_eq!(x.to_vec2::<f32>().unwrap(), x2.to_vec2::<f32>().unwrap());
        let c = VarStore::new(6);
        let x3 = c
            .var_builder(DType::F32, &Device::Cpu)
            .get_with_hints((3, 4), "x", candle_nn::init::DEFAULT_KAIMING_NORMAL)
            .unwrap();
        assert_ne!(x.to_vec2::<f32>().unwrap(), x3.to_vec2::<f32>().unwrap());
        assert_eq!(a.named_vars().len(), 2);
    }

    #[test]
    fn load_value_overwrites_the_variable_in_place() {
        let store = VarStore::new(1);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let value = Tensor::new(&[[1f64, 2.], [3., 4.]], &Device::Cpu).unwrap();
        let t = load_value(&vb.pp("m"), "w", &value).unwrap();
        assert_eq!(
            t.to_vec2::<f32>().unwrap(),
            vec![vec![1., 2.], vec![3., 4.]]
        );
        let var = store.get_var("m.w").unwrap();
        assert_eq!(
            var.as_tensor().to_vec2::<f32>().unwrap(),
            vec![vec![1., 2.], vec![3., 4.]]
        );
        // a later update of the variable is seen through the returned tensor
        var.set(&Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(t.sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        let wrong = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        assert!(load_value(&vb.pp("m"), "w", &wrong).is_err());
    }
}
