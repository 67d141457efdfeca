//! Optimizers, learning-rate schedules and gradient utilities.
//!
//! Candle's own optimizers lack momentum and weight decay (SGD) or parameter
//! groups and saveable state (AdamW), so Parallax has its own:
//!
//! * [`sgd::Sgd`]: SGD with momentum, dampening, Nesterov momentum and L2
//!   weight decay, exactly as PyTorch's `torch.optim.SGD`;
//! * [`adamw::AdamW`]: Adam with decoupled weight decay (Loshchilov & Hutter
//!   2019), exactly as PyTorch's `torch.optim.AdamW` (without `amsgrad`);
//! * [`lars::Lars`]: layer-wise adaptive rate scaling (You et al. 2017) as
//!   used by SimCLR and BYOL.
//!
//! The `[optimizer]` section of a recipe is read by [`parse`] into an
//! [`OptimizerSpec`]; [`param_groups`] splits the trainable variables into
//! a weight-decay group and a no-decay group (biases and normalisation
//! parameters), and [`build`] makes the optimizer. The learning rate of each
//! step comes from a [`schedule::Schedule`].
//!
//! Every optimizer's [`Optimizer::state`] holds one entry per variable and
//! state tensor (zeros and a step count of 0 for variables that have not yet
//! received a gradient), so that [`Optimizer::load_state`] can insist on
//! every entry and resume with exactly the updates of an uninterrupted run.

use std::collections::{BTreeMap, HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::recipe::Params;

pub mod adamw;
pub mod clip;
pub mod lars;
pub mod precision;
pub mod schedule;
pub mod sgd;

pub use schedule::{Schedule, ScheduleConfig, ScheduleKind, Warmup};

/// Variables that share hyper-parameters.
#[derive(Clone)]
pub struct ParamGroup {
    /// The variables, with their names (used for the state entries).
    pub vars: Vec<(String, Var)>,
    /// Weight decay of this group (0: none).
    pub weight_decay: f64,
    /// Whether LARS scales this group's updates by the trust ratio (ignored
    /// by the other optimizers).
    pub lars_adapt: bool,
}

impl std::fmt::Debug for ParamGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamGroup")
            .field(
                "vars",
                &self
                    .vars
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("weight_decay", &self.weight_decay)
            .field("lars_adapt", &self.lars_adapt)
            .finish()
    }
}

/// An optimizer over fixed parameter groups.
pub trait Optimizer: Send {
    /// One update with learning rate `lr` from `grads` (vars without a
    /// gradient are skipped).
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()>;
    /// Optimizer state as named tensors (e.g. `momentum/encoder.conv1.weight`,
    /// `adam.m/...`, `adam.t/...`), for checkpoints.
    fn state(&self) -> Result<BTreeMap<String, Tensor>>;
    /// Restores [`Optimizer::state`]; an error names a missing, mis-shaped or
    /// unexpected entry.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
}

/// SGD settings (see [`parse`] for the recipe keys).
#[derive(Clone, Debug, PartialEq)]
pub struct SgdOptions {
    /// Momentum factor mu (0: plain SGD).
    pub momentum: f64,
    /// Dampening of the gradient added to the momentum buffer.
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// AdamW settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamWOptions {
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator for numerical stability.
    pub eps: f64,
}

/// LARS settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LarsOptions {
    /// Momentum factor.
    pub momentum: f64,
    /// Trust coefficient eta of the trust ratio.
    pub trust_coefficient: f64,
    /// Added to the update norm in the trust ratio's denominator.
    pub eps: f64,
}

/// Which optimizer, with its own settings.
#[derive(Clone, Debug, PartialEq)]
pub enum OptimizerKind {
    /// `sgd`.
    Sgd(SgdOptions),
    /// `adamw`.
    AdamW(AdamWOptions),
    /// `lars`.
    Lars(LarsOptions),
}

impl OptimizerKind {
    /// The registry name (`sgd`, `adamw` or `lars`).
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd(_) => "sgd",
            OptimizerKind::AdamW(_) => "adamw",
            OptimizerKind::Lars(_) => "lars",
        }
    }
}

/// The names [`parse`] accepts.
pub const OPTIMIZERS: [&str; 3] = ["sgd", "adamw", "lars"];

/// Parsed `[optimizer]` section (`name` is already removed: it is passed
/// separately).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerSpec {
    /// The optimizer and its own settings.
    pub kind: OptimizerKind,
    /// Base (peak) learning rate.
    pub lr: f64,
    /// Weight decay of the decay group.
    pub weight_decay: f64,
    /// Give rank <= 1 tensors (biases, norm scales and shifts) no weight
    /// decay and no LARS adaptation.
    pub exclude_bias_and_norm: bool,
    /// The learning-rate schedule.
    pub schedule: ScheduleConfig,
}

/// Keys shared by every optimizer.
#[derive(Clone, Debug)]
struct Common {
    lr: f64,
    weight_decay: f64,
    exclude_bias_and_norm: bool,
    warmup_epochs: Option<f64>,
    warmup_steps: Option<u64>,
    schedule: String,
    min_lr: f64,
}

/// `sgd` keys. Defaults: MoCo (He et al. 2020, Sec. 3.3 / 4.1: lr 0.03 for
/// a batch of 256, momentum 0.9, weight decay 1e-4); dampening 0 and no
/// Nesterov as in PyTorch.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SgdParams {
    lr: f64,
    weight_decay: f64,
    exclude_bias_and_norm: bool,
    warmup_epochs: Option<f64>,
    warmup_steps: Option<u64>,
    schedule: String,
    min_lr: f64,
    momentum: f64,
    nesterov: bool,
    dampening: f64,
}

impl Default for SgdParams {
    fn default() -> Self {
        SgdParams {
            lr: 0.03,
            weight_decay: 1e-4,
            exclude_bias_and_norm: true,
            warmup_epochs: None,
            warmup_steps: None,
            schedule: "cosine".into(),
            min_lr: 0.0,
            momentum: 0.9,
            nesterov: false,
            dampening: 0.0,
        }
    }
}

/// `adamw` keys. Defaults: PyTorch's `AdamW` (lr 1e-3, betas (0.9, 0.999),
/// eps 1e-8, weight decay 0.01), after Kingma & Ba 2015 and Loshchilov &
/// Hutter 2019.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AdamWParams {
    lr: f64,
    weight_decay: f64,
    exclude_bias_and_norm: bool,
    warmup_epochs: Option<f64>,
    warmup_steps: Option<u64>,
    schedule: String,
    min_lr: f64,
    betas: [f64; 2],
    eps: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        AdamWParams {
            lr: 1e-3,
            weight_decay: 0.01,
            exclude_bias_and_norm: true,
            warmup_epochs: None,
            warmup_steps: None,
            schedule: "cosine".into(),
            min_lr: 0.0,
            betas: [0.9, 0.999],
            eps: 1e-8,
        }
    }
}

/// `lars` keys. Defaults: SimCLR (Chen et al. 2020, Sec. B.1: lr 0.3 x
/// batch/256, momentum 0.9, weight decay 1e-6, trust coefficient 0.001,
/// biases and batch-norm parameters excluded) after You et al. 2017.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LarsParams {
    lr: f64,
    weight_decay: f64,
    exclude_bias_and_norm: bool,
    warmup_epochs: Option<f64>,
    warmup_steps: Option<u64>,
    schedule: String,
    min_lr: f64,
    momentum: f64,
    trust_coefficient: f64,
    eps: f64,
}

impl Default for LarsParams {
    fn default() -> Self {
        LarsParams {
            lr: 0.3,
            weight_decay: 1e-6,
            exclude_bias_and_norm: true,
            warmup_epochs: None,
            warmup_steps: None,
            schedule: "cosine".into(),
            min_lr: 0.0,
            momentum: 0.9,
            trust_coefficient: 1e-3,
            eps: 0.0,
        }
    }
}

/// The keys every optimizer's params struct shares, as a [`Common`].
macro_rules! common_keys {
    ($p:expr) => {
        Common {
            lr: $p.lr,
            weight_decay: $p.weight_decay,
            exclude_bias_and_norm: $p.exclude_bias_and_norm,
            warmup_epochs: $p.warmup_epochs,
            warmup_steps: $p.warmup_steps,
            schedule: $p.schedule,
            min_lr: $p.min_lr,
        }
    };
}

/// Parses the `[optimizer]` section of optimizer `name`.
///
/// Keys of every optimizer: `lr`, `weight_decay`, `exclude_bias_and_norm`
/// (true), `warmup_epochs` (0.0, may be fractional) or `warmup_steps`,
/// `schedule` (`cosine`, `constant` or `linear`), `min_lr` (0.0).
/// `sgd`: `momentum` (0.9), `nesterov` (false), `dampening` (0.0); defaults
/// lr 0.03, weight_decay 1e-4. `adamw`: `betas` ([0.9, 0.999]), `eps`
/// (1e-8); defaults lr 1e-3, weight_decay 0.01. `lars`: `momentum` (0.9),
/// `trust_coefficient` (0.001), `eps` (0.0); defaults lr 0.3,
/// weight_decay 1e-6.
pub fn parse(name: &str, params: &Params) -> Result<OptimizerSpec> {
    let (kind, common) = match name {
        "sgd" => {
            let p: SgdParams = params.extract()?;
            check_momentum(params, "momentum", p.momentum)?;
            if !(0.0..=1.0).contains(&p.dampening) {
                return Err(params.error(
                    "dampening",
                    format!("must be in [0, 1], got {}", p.dampening),
                ));
            }
            if p.nesterov && (p.momentum <= 0.0 || p.dampening != 0.0) {
                return Err(params.error(
                    "nesterov",
                    "nesterov momentum needs momentum > 0 and dampening = 0",
                ));
            }
            let common = common_keys!(p);
            let kind = OptimizerKind::Sgd(SgdOptions {
                momentum: p.momentum,
                dampening: p.dampening,
                nesterov: p.nesterov,
            });
            (kind, common)
        }
        "adamw" => {
            let p: AdamWParams = params.extract()?;
            for (i, b) in p.betas.iter().enumerate() {
                if !(0.0..1.0).contains(b) {
                    return Err(
                        params.error("betas", format!("beta{} must be in [0, 1), got {b}", i + 1))
                    );
                }
            }
            check_non_negative(params, "eps", p.eps)?;
            let common = common_keys!(p);
            let kind = OptimizerKind::AdamW(AdamWOptions {
                betas: (p.betas[0], p.betas[1]),
                eps: p.eps,
            });
            (kind, common)
        }
        "lars" => {
            let p: LarsParams = params.extract()?;
            check_momentum(params, "momentum", p.momentum)?;
            if !(p.trust_coefficient > 0.0 && p.trust_coefficient.is_finite()) {
                return Err(params.error(
                    "trust_coefficient",
                    format!("must be positive, got {}", p.trust_coefficient),
                ));
            }
            check_non_negative(params, "eps", p.eps)?;
            let common = common_keys!(p);
            let kind = OptimizerKind::Lars(LarsOptions {
                momentum: p.momentum,
                trust_coefficient: p.trust_coefficient,
                eps: p.eps,
            });
            (kind, common)
        }
        other => {
            return Err(Error::UnknownComponent {
                kind: "optimizer",
                name: other.to_string(),
                available: OPTIMIZERS.join(", "),
            })
        }
    };
    let Common {
        lr,
        weight_decay,
        exclude_bias_and_norm,
        warmup_epochs,
        warmup_steps,
        schedule,
        min_lr,
    } = common;
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(params.error("lr", format!("must be positive, got {lr}")));
    }
    check_non_negative(params, "weight_decay", weight_decay)?;
    check_non_negative(params, "min_lr", min_lr)?;
    if min_lr > lr {
        return Err(params.error("min_lr", format!("must not exceed lr ({lr}), got {min_lr}")));
    }
    let kind_s = match schedule.as_str() {
        "cosine" => ScheduleKind::Cosine,
        "constant" => ScheduleKind::Constant,
        "linear" => ScheduleKind::Linear,
        other => {
            return Err(params.error(
                "schedule",
                format!("unknown schedule `{other}`; expected cosine, constant or linear"),
            ))
        }
    };
    let warmup = match (warmup_epochs, warmup_steps) {
        (Some(_), Some(_)) => {
            return Err(params.error(
                "warmup_steps",
                "set either warmup_epochs or warmup_steps, not both",
            ))
        }
        (Some(e), None) => {
            check_non_negative(params, "warmup_epochs", e)?;
            Warmup::Epochs(e)
        }
        (None, Some(s)) => Warmup::Steps(s),
        (None, None) => Warmup::Epochs(0.0),
    };
    Ok(OptimizerSpec {
        kind,
        lr,
        weight_decay,
        exclude_bias_and_norm,
        schedule: ScheduleConfig {
            kind: kind_s,
            warmup,
            min_lr,
        },
    })
}

fn check_momentum(params: &Params, key: &str, v: f64) -> Result<()> {
    if !(0.0..1.0).contains(&v) {
        return Err(params.error(key, format!("must be in [0, 1), got {v}")));
    }
    Ok(())
}

fn check_non_negative(params: &Params, key: &str, v: f64) -> Result<()> {
    if !(v >= 0.0 && v.is_finite()) {
        return Err(params.error(key, format!("must be non-negative, got {v}")));
    }
    Ok(())
}

/// Splits `vars` into parameter groups. With `exclude_bias_and_norm` (the
/// default), tensors of rank <= 1 (biases, norm scales and shifts) go into a
/// group without weight decay or LARS adaptation, as in SimCLR and BYOL;
/// the others get `spec.weight_decay` and LARS adaptation. Empty groups are
/// left out; the decay group comes first.
pub fn param_groups(vars: Vec<(String, Var)>, spec: &OptimizerSpec) -> Vec<ParamGroup> {
    let (decay, no_decay): (Vec<_>, Vec<_>) = if spec.exclude_bias_and_norm {
        vars.into_iter().partition(|(_, v)| v.rank() >= 2)
    } else {
        (vars, Vec::new())
    };
    let mut groups = Vec::new();
    if !decay.is_empty() {
        groups.push(ParamGroup {
            vars: decay,
            weight_decay: spec.weight_decay,
            lars_adapt: true,
        });
    }
    if !no_decay.is_empty() {
        groups.push(ParamGroup {
            vars: no_decay,
            weight_decay: 0.0,
            lars_adapt: false,
        });
    }
    groups
}

/// Builds the optimizer of `spec` over `groups`.
pub fn build(spec: &OptimizerSpec, groups: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
    Ok(match &spec.kind {
        OptimizerKind::Sgd(o) => Box::new(sgd::Sgd::new(groups, o.clone())?),
        OptimizerKind::AdamW(o) => Box::new(adamw::AdamW::new(groups, o.clone())?),
        OptimizerKind::Lars(o) => Box::new(lars::Lars::new(groups, o.clone())?),
    })
}

// ---------------------------------------------------------------------------
// Shared helpers of the optimizers.

/// One variable with the settings of its group, and for a half-precision
/// variable its f32 master copy ([`precision`]): the update reads and
/// writes the master, the variable gets the master rounded to its dtype.
#[derive(Clone)]
pub(crate) struct Slot {
    pub name: String,
    pub var: Var,
    pub weight_decay: f64,
    pub lars_adapt: bool,
    pub master: Option<Var>,
}

impl Slot {
    /// The dtype the update is computed and the state kept in: f32 for
    /// half-precision variables, else the variable's own.
    pub fn dtype(&self) -> DType {
        match self.var.dtype() {
            DType::F16 | DType::BF16 => DType::F32,
            d => d,
        }
    }

    /// The variable's value (detached) in the compute dtype: the master
    /// copy of a half-precision variable.
    pub fn value(&self) -> Result<Tensor> {
        Ok(match &self.master {
            Some(m) => m.as_detached_tensor(),
            None => self.var.as_detached_tensor().to_dtype(self.dtype())?,
        })
    }

    /// The variable's gradient (detached) in the compute dtype, if any.
    pub fn grad(&self, grads: &GradStore) -> Result<Option<Tensor>> {
        match grads.get(self.var.as_tensor()) {
            None => Ok(None),
            Some(g) => {
                if g.dims() != self.var.dims() {
                    return Err(Error::Shape(format!(
                        "gradient of `{}` has shape {:?}, the variable {:?}",
                        self.name,
                        g.dims(),
                        self.var.dims()
                    )));
                }
                Ok(Some(g.detach().to_dtype(self.dtype())?))
            }
        }
    }

    /// Writes `value` (compute dtype) into the master copy, if any, and
    /// into the variable.
    pub fn set(&self, value: &Tensor) -> Result<()> {
        if let Some(m) = &self.master {
            m.set(value)?;
        }
        self.var.set(&value.to_dtype(self.var.dtype())?)?;
        Ok(())
    }

    /// Zeros in the variable's shape and the compute dtype.
    pub fn zeros(&self) -> Result<Tensor> {
        Ok(Tensor::zeros(
            self.var.shape(),
            self.dtype(),
            self.var.device(),
        )?)
    }
}

/// The master copies of `slots` as checkpoint entries `master/<name>`.
pub(crate) fn master_state(slots: &[Slot], out: &mut BTreeMap<String, Tensor>) {
    for s in slots {
        if let Some(m) = &s.master {
            out.insert(format!("master/{}", s.name), m.as_detached_tensor());
        }
    }
}

/// Restores the master copies of `slots` from `state` (and rounds them into
/// the variables), adding their keys to `expected`. Without a master entry
/// (a checkpoint written in f32) the master is taken from the variable,
/// which the caller has loaded.
pub(crate) fn load_master_state(
    slots: &[Slot],
    state: &HashMap<String, Tensor>,
    expected: &mut HashSet<String>,
) -> Result<()> {
    for s in slots.iter().filter(|s| s.master.is_some()) {
        let key = format!("master/{}", s.name);
        if state.contains_key(&key) {
            let t = load_tensor(state, &key, s)?;
            s.set(&t)?;
            expected.insert(key);
        } else if let Some(m) = &s.master {
            m.set(&s.var.as_detached_tensor().to_dtype(DType::F32)?)?;
        }
    }
    Ok(())
}

/// Flattens `groups` into slots; a variable in two groups (or twice in one)
/// is an error, as are groups with a negative or non-finite weight decay.
pub(crate) fn slots(groups: Vec<ParamGroup>, optimizer: &str) -> Result<Vec<Slot>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for g in groups {
        if !(g.weight_decay >= 0.0 && g.weight_decay.is_finite()) {
            return Err(Error::invalid(
                optimizer,
                format!("weight_decay must be non-negative, got {}", g.weight_decay),
            ));
        }
        for (name, var) in g.vars {
            if !var.dtype().is_float() {
                return Err(Error::invalid(
                    optimizer,
                    format!(
                        "variable `{name}` has dtype {:?}, not a float type",
                        var.dtype()
                    ),
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(Error::invalid(
                    optimizer,
                    format!("variable `{name}` is in more than one parameter group"),
                ));
            }
            let master = match var.dtype() {
                DType::F16 | DType::BF16 => Some(Var::from_tensor(
                    &var.as_detached_tensor().to_dtype(DType::F32)?,
                )?),
                _ => None,
            };
            out.push(Slot {
                name,
                var,
                weight_decay: g.weight_decay,
                lars_adapt: g.lars_adapt,
                master,
            });
        }
    }
    Ok(out)
}

const STATE: &str = "optimizer state";

/// A step count as a state tensor (one u32 on the CPU).
pub(crate) fn count_tensor(t: u64) -> Result<Tensor> {
    let t = u32::try_from(t)
        .map_err(|_| Error::invalid(STATE, format!("step count {t} exceeds u32")))?;
    Ok(Tensor::new(&[t], &Device::Cpu)?)
}

/// Reads the step count `key` from `state`.
pub(crate) fn load_count(state: &HashMap<String, Tensor>, key: &str) -> Result<u64> {
    let t = state
        .get(key)
        .ok_or_else(|| Error::invalid(STATE, format!("missing entry `{key}`")))?;
    if t.elem_count() != 1 {
        return Err(Error::invalid(
            STATE,
            format!(
                "entry `{key}` has shape {:?}, expected a scalar step count",
                t.dims()
            ),
        ));
    }
    let v = t
        .flatten_all()?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .get(0)?
        .to_scalar::<f64>()?;
    if !(v >= 0.0 && v.fract() == 0.0 && v.is_finite()) {
        return Err(Error::invalid(
            STATE,
            format!("entry `{key}` is {v}, not a step count"),
        ));
    }
    Ok(v as u64)
}

/// Reads the tensor `key` for `slot` from `state`, checking its shape, onto
/// the slot's device and compute dtype.
pub(crate) fn load_tensor(
    state: &HashMap<String, Tensor>,
    key: &str,
    slot: &Slot,
) -> Result<Tensor> {
    let t = state
        .get(key)
        .ok_or_else(|| Error::invalid(STATE, format!("missing entry `{key}`")))?;
    if t.dims() != slot.var.dims() {
        return Err(Error::invalid(
            STATE,
            format!(
                "entry `{key}` has shape {:?}, the variable `{}` {:?}",
                t.dims(),
                slot.name,
                slot.var.dims()
            ),
        ));
    }
    // a copy, so that the state never shares storage with the checkpoint
    let t = t.to_device(slot.var.device())?.to_dtype(slot.dtype())?;
    Ok(t.copy()?)
}

/// Fails on entries of `state` that are not in `expected` (another
/// optimizer's state or another model's variables).
pub(crate) fn check_no_unexpected(
    state: &HashMap<String, Tensor>,
    expected: &HashSet<String>,
) -> Result<()> {
    let mut extra: Vec<&String> = state.keys().filter(|k| !expected.contains(*k)).collect();
    extra.sort();
    if let Some(k) = extra.first() {
        return Err(Error::invalid(
            STATE,
            format!(
                "unexpected entry `{k}` ({} in all): no such variable in this optimizer, or state of another optimizer",
                extra.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: &str) -> Params {
        Params::from_toml("optimizer", toml::from_str(t).unwrap()).unwrap()
    }

    #[test]
    fn defaults_per_optimizer() {
        let s = parse("sgd", &params("")).unwrap();
        assert_eq!(s.lr, 0.03);
        assert_eq!(s.weight_decay, 1e-4);
        assert!(s.exclude_bias_and_norm);
        assert_eq!(
            s.kind,
            OptimizerKind::Sgd(SgdOptions {
                momentum: 0.9,
                dampening: 0.0,
                nesterov: false
            })
        );
        assert_eq!(s.schedule, ScheduleConfig::default());
        let a = parse("adamw", &params("")).unwrap();
        assert_eq!(a.weight_decay, 0.01);
        assert_eq!(
            a.kind,
            OptimizerKind::AdamW(AdamWOptions {
                betas: (0.9, 0.999),
                eps: 1e-8
            })
        );
        let l = parse("lars", &params("")).unwrap();
        assert_eq!(l.weight_decay, 1e-6);
        assert_eq!(
            l.kind,
            OptimizerKind::Lars(LarsOptions {
                momentum: 0.9,
                trust_coefficient: 1e-3,
                eps: 0.0
            })
        );
    }

    #[test]
    fn reads_keys() {
        let s = parse(
            "sgd",
            &params("lr = 1\nmomentum = 0.5\nnesterov = true\nwarmup_epochs = 2\nschedule = \"linear\"\nmin_lr = 0.1"),
        )
        .unwrap();
        assert_eq!(s.lr, 1.0);
        assert_eq!(s.schedule.kind, ScheduleKind::Linear);
        assert_eq!(s.schedule.warmup, Warmup::Epochs(2.0));
        assert_eq!(s.schedule.min_lr, 0.1);
        let a = parse("adamw", &params("betas = [0.8, 0.99]\nwarmup_steps = 7")).unwrap();
        assert_eq!(a.schedule.warmup, Warmup::Steps(7));
        assert!(matches!(
            a.kind,
            OptimizerKind::AdamW(AdamWOptions {
                betas: (0.8, 0.99),
                ..
            })
        ));
    }

    #[test]
    fn exponent_notation_from_flags() {
        // `--set` flags are read as TOML values, exponents included
        let r = crate::recipe::Recipe::from_toml_str(
            "[data]\nname = \"d\"\n[encoder]\nname = \"e\"\n[method]\nname = \"m\"\n[optimizer]\nname = \"adamw\"\n",
            &["optimizer.lr=3e-4".into(), "optimizer.eps=1e-6".into(), "optimizer.warmup_epochs=1e0".into()],
        )
        .unwrap();
        let s = parse(&r.optimizer.name, &r.optimizer.params).unwrap();
        assert_eq!(s.lr, 3e-4);
        assert_eq!(s.schedule.warmup, Warmup::Epochs(1.0));
        assert!(matches!(s.kind, OptimizerKind::AdamW(AdamWOptions { eps, .. }) if eps == 1e-6));
        let err = parse("sgd", &params("lr = \"fast\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("optimizer.lr") && err.contains("fast"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("sgd", "lr = 0.0", "optimizer.lr"),
            ("sgd", "lr = -1.0", "optimizer.lr"),
            ("sgd", "momentum = 1.0", "optimizer.momentum"),
            ("lars", "momentum = -0.1", "optimizer.momentum"),
            ("sgd", "weight_decay = -1e-4", "optimizer.weight_decay"),
            ("adamw", "betas = [0.9, 1.0]", "optimizer.betas"),
            ("adamw", "betas = [-0.1, 0.9]", "optimizer.betas"),
            ("sgd", "schedule = \"step\"", "optimizer.schedule"),
            ("sgd", "momentom = 0.9", "optimizer.momentom"),
            ("adamw", "momentum = 0.9", "optimizer.momentum"),
            (
                "sgd",
                "nesterov = true\nmomentum = 0.0",
                "optimizer.nesterov",
            ),
            (
                "sgd",
                "warmup_epochs = 1.0\nwarmup_steps = 3",
                "optimizer.warmup_steps",
            ),
            ("sgd", "warmup_epochs = -1.0", "optimizer.warmup_epochs"),
            ("sgd", "min_lr = 1.0", "optimizer.min_lr"),
            (
                "lars",
                "trust_coefficient = 0.0",
                "optimizer.trust_coefficient",
            ),
        ];
        for (name, t, key) in cases {
            let err = parse(name, &params(t)).unwrap_err().to_string();
            assert!(err.contains(key), "{name} {t}: {err}");
            // the message after the key (the origin of in-code params is a type name)
            let msg = err.rsplit("): ").next().unwrap_or(&err);
            assert_eq!(msg, msg.to_lowercase(), "{err}");
        }
        let err = parse("adam", &params("")).unwrap_err().to_string();
        assert!(err.contains("sgd, adamw, lars"), "{err}");
    }
}
