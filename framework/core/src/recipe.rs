//! Recipes: layered TOML configuration.
//!
//! Layers, lowest first: built-in defaults < the recipe file <
//! `PARALLAX_RECIPE__*` environment variables (`__` separates levels, e.g.
//! `PARALLAX_RECIPE__TRAIN__LR=0.1`) < `--set key=value` flags. Every error
//! names the key and where its value came from. Other `PARALLAX_*` variables
//! (the project's tool settings, such as `PARALLAX_CUDA_DIR`) are never read
//! as recipe keys.
//!
//! A component section (`[data]`, `[encoder]`, `[method]`, `[[eval]]`, ...)
//! is a [`Component`]: a registry `name` plus [`Params`] that the component's
//! constructor reads into its own `deny_unknown_fields` config struct.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// Where the values of a recipe came from, to name them in errors.
#[derive(Clone)]
pub struct Origins(Option<Arc<Figment>>);

impl Origins {
    /// Origins for values made in code (tests, programmatic recipes).
    pub fn none() -> Self {
        Origins(None)
    }

    /// Describes where `key` (dotted) came from, e.g. `recipes/simclr.toml`,
    /// `environment variable PARALLAX_RECIPE__TRAIN__LR` or `--set train.lr`.
    pub fn describe(&self, key: &str) -> Option<String> {
        let fig = self.0.as_ref()?;
        let md = fig.find_metadata(key)?;
        Some(describe_metadata(md, key))
    }
}

/// The prefix of recipe environment variables: `PARALLAX_RECIPE__TRAIN__LR`
/// sets `train.lr`.
pub const ENV_PREFIX: &str = "PARALLAX_RECIPE__";

/// The recipe's top-level keys, to recognise variables written for the
/// earlier `PARALLAX_SECTION__KEY` form (they are ignored, with a note).
const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "seed",
    "device",
    "data",
    "views",
    "encoder",
    "method",
    "loss",
    "optimizer",
    "train",
    "eval",
    "logger",
];

/// The most levels a `--set` or environment key may have: deeper keys are
/// no recipe's, and thousands of levels would overflow the stack in the
/// nested tables' conversion.
const MAX_KEY_LEVELS: usize = 32;

/// The name of the environment layer in error messages.
const ENV_LAYER: &str = "environment variables";

fn describe_metadata(md: &Metadata, key: &str) -> String {
    let keys: Vec<&str> = key.split('.').collect();
    if md.name == ENV_LAYER {
        let var: Vec<String> = keys.iter().map(|k| k.to_uppercase()).collect();
        return format!("environment variable {ENV_PREFIX}{}", var.join("__"));
    }
    match &md.source {
        Some(figment::Source::File(p)) => p.display().to_string(),
        Some(figment::Source::Custom(c)) => c.clone(),
        _ => md.name.to_string(),
    }
}

fn key_error(origins: &Origins, key: &str, message: impl std::fmt::Display) -> Error {
    match origins.describe(key) {
        Some(from) => Error::Recipe(format!("key `{key}` (from {from}): {message}")),
        None => Error::Recipe(format!("key `{key}`: {message}")),
    }
}

/// Converts a figment error into ours, naming the key and its origin.
fn from_figment(origins: &Origins, prefix: &str, err: figment::Error) -> Error {
    let mut path = err.path.clone();
    let message = match &err.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            if expected.is_empty() {
                "unknown key".to_string()
            } else {
                format!("unknown key; expected one of: {}", expected.join(", "))
            }
        }
        figment::error::Kind::MissingField(field) => {
            if path.last() != Some(&field.to_string()) {
                path.push(field.to_string());
            }
            "missing key".to_string()
        }
        kind => kind.to_string(),
    };
    let mut key = prefix.to_string();
    for p in path {
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(&p);
    }
    let origin = origins
        .describe(&key)
        .or_else(|| err.metadata.as_ref().map(|md| describe_metadata(md, &key)));
    match origin {
        Some(from) => Error::Recipe(format!("key `{key}` (from {from}): {message}")),
        None => Error::Recipe(format!("key `{key}`: {message}")),
    }
}

/// The parameters of one component: its table less `name`.
#[derive(Clone)]
pub struct Params {
    section: String,
    dict: Dict,
    origins: Origins,
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Params")
            .field("section", &self.section)
            .field("dict", &self.dict)
            .finish()
    }
}

impl Params {
    /// Parameters made in code from a TOML table (tests, fixtures).
    pub fn from_toml(section: &str, table: toml::Table) -> Result<Self> {
        let dict = Figment::from(figment::providers::Serialized::defaults(table))
            .extract::<Dict>()
            .map_err(|e| Error::Recipe(format!("[{section}]: {e}")))?;
        Ok(Params {
            section: section.to_string(),
            dict,
            origins: Origins::none(),
        })
    }

    /// Parameters made in code from a JSON object (fixture metadata).
    pub fn from_json(section: &str, json: &serde_json::Value) -> Result<Self> {
        let dict = Figment::from(figment::providers::Serialized::defaults(json))
            .extract::<Dict>()
            .map_err(|e| Error::Recipe(format!("[{section}]: {e}")))?;
        Ok(Params {
            section: section.to_string(),
            dict,
            origins: Origins::none(),
        })
    }

    /// Empty parameters for `section`.
    pub fn empty(section: &str) -> Self {
        Params {
            section: section.to_string(),
            dict: Dict::new(),
            origins: Origins::none(),
        }
    }

    /// The dotted recipe path of this component, e.g. `encoder`.
    pub fn section(&self) -> &str {
        &self.section
    }

    /// Reads the parameters into the component's config struct (which should
    /// be `deny_unknown_fields` with `#[serde(default)]` paper defaults).
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T> {
        Figment::from(figment::providers::Serialized::defaults(&self.dict))
            .extract::<T>()
            .map_err(|e| from_figment(&self.origins, &self.section, e))
    }

    /// Removes the sub-component `key` (a table with a `name`), if present.
    pub fn take_component(&mut self, key: &str) -> Result<Option<Component>> {
        let Some(value) = self.dict.remove(key) else {
            return Ok(None);
        };
        let section = format!("{}.{key}", self.section);
        let Value::Dict(_, dict) = value else {
            return Err(key_error(
                &self.origins,
                &section,
                "expected a table with a `name`",
            ));
        };
        Component::from_dict(section, dict, self.origins.clone()).map(Some)
    }

    /// Sets `key` to `value` unless the recipe gives it (a default that
    /// depends on another component, e.g. a predictor's output width).
    pub fn set_default(&mut self, key: &str, value: impl serde::Serialize) -> Result<()> {
        if !self.dict.contains_key(key) {
            let v = Value::serialize(value)
                .map_err(|e| Error::Recipe(format!("[{}] {key}: {e}", self.section)))?;
            self.dict.insert(key.to_string(), v);
        }
        Ok(())
    }

    /// An error about `key` of this component, naming where it came from.
    pub fn error(&self, key: &str, message: impl std::fmt::Display) -> Error {
        key_error(&self.origins, &format!("{}.{key}", self.section), message)
    }
}

/// One component of a recipe: a registry name and its parameters.
#[derive(Clone, Debug)]
pub struct Component {
    /// The registry name, e.g. `small_cnn`.
    pub name: String,
    /// Everything else in the table.
    pub params: Params,
}

impl Component {
    /// A component made in code.
    pub fn new(section: &str, name: &str, params: toml::Table) -> Result<Self> {
        Ok(Component {
            name: name.to_string(),
            params: Params::from_toml(section, params)?,
        })
    }

    fn from_dict(section: String, mut dict: Dict, origins: Origins) -> Result<Self> {
        let name = match dict.remove("name") {
            Some(Value::String(_, s)) => s,
            Some(_) => {
                return Err(key_error(
                    &origins,
                    &format!("{section}.name"),
                    "expected a string",
                ))
            }
            None => {
                return Err(key_error(
                    &origins,
                    &section,
                    "missing key `name` (the component's registry name)",
                ))
            }
        };
        Ok(Component {
            name,
            params: Params {
                section,
                dict,
                origins,
            },
        })
    }
}

/// A component table as read by serde, before its section path is known.
#[derive(Clone, Debug, Default)]
struct RawComponent(Dict);

impl<'de> Deserialize<'de> for RawComponent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Dict::deserialize(d).map(RawComponent)
    }
}

/// Training-loop settings (`[train]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The training loop (a registered `loop`): `epochs` (default) runs
    /// epochs of batches of a data set; `full_graph` trains a graph
    /// method on one whole graph per step.
    #[serde(rename = "loop")]
    pub train_loop: String,
    /// Passes over the training data (for `full_graph`: steps, each over
    /// the whole graph).
    pub epochs: usize,
    /// Images (or sequences, ...) per optimizer step, before accumulation.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before each optimizer step.
    pub accumulate: usize,
    /// Clip the global gradient norm to this value (none: no clipping).
    pub grad_clip: Option<f64>,
    /// Stop after this many optimizer steps (none: `epochs` decides).
    pub max_steps: Option<u64>,
    /// Write a checkpoint every this many steps (and always at the end).
    pub checkpoint_every: u64,
    /// Step checkpoints kept in the run directory, the latest included
    /// (`checkpoint.safetensors`, then `checkpoint-STEP.safetensors`):
    /// `--resume` falls back to the newest one that verifies. Default 2.
    pub keep_checkpoints: usize,
    /// Also keep the checkpoint with the best value of this evaluator metric
    /// (e.g. `knn/top1`) as `checkpoint-best.safetensors` (none: no best).
    pub best_metric: Option<String>,
    /// Whether `best_metric` is better when larger (`max`, default) or
    /// smaller (`min`).
    pub best_mode: BestMode,
    /// Log scalars every this many steps.
    pub log_every: u64,
    /// Log weight histograms every this many steps (0: never).
    pub histogram_every: u64,
    /// Log a grid of augmented views at the first step.
    pub log_views: bool,
    /// Data-loading worker threads.
    pub workers: usize,
    /// Batches prepared ahead of the training thread.
    pub prefetch: usize,
    /// Drop the last incomplete batch of an epoch.
    pub drop_last: bool,
    /// Train on only this many labelled examples per class (a few-label
    /// experiment; none: every example). The examples are chosen by
    /// `label_seed` alone, as the `linear_probe` and `finetune`
    /// evaluators' `per_class` choose theirs, so all pick the same images.
    pub labels_per_class: Option<usize>,
    /// The seed that picks the `labels_per_class` examples: 0.
    pub label_seed: u64,
    /// The dtype the encoder computes in: `f32` (default), `bf16` or `f16`
    /// (mixed precision with f32 master weights, f16 with dynamic loss
    /// scaling; Micikevicius et al. 2018). Heads and losses stay in f32.
    pub precision: crate::optim::precision::Precision,
}

/// Which way `train.best_metric` improves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BestMode {
    /// Larger is better (accuracies).
    #[default]
    Max,
    /// Smaller is better (losses, errors).
    Min,
}

impl BestMode {
    /// Whether `new` improves on `old`.
    pub fn improves(self, new: f64, old: f64) -> bool {
        match self {
            BestMode::Max => new > old,
            BestMode::Min => new < old,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            train_loop: "epochs".to_string(),
            epochs: 10,
            batch_size: 256,
            accumulate: 1,
            grad_clip: None,
            max_steps: None,
            checkpoint_every: 500,
            keep_checkpoints: 2,
            best_metric: None,
            best_mode: BestMode::Max,
            log_every: 10,
            histogram_every: 200,
            log_views: true,
            workers: 2,
            prefetch: 4,
            drop_last: true,
            labels_per_class: None,
            label_seed: 0,
            precision: crate::optim::precision::Precision::F32,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: String,
    seed: u64,
    device: String,
    data: RawComponent,
    #[serde(default)]
    views: Option<RawComponent>,
    encoder: RawComponent,
    method: RawComponent,
    #[serde(default)]
    loss: Option<RawComponent>,
    optimizer: RawComponent,
    train: TrainConfig,
    #[serde(default)]
    eval: Vec<RawComponent>,
    #[serde(default)]
    logger: Vec<RawComponent>,
}

/// A resolved recipe.
#[derive(Clone)]
pub struct Recipe {
    /// The run's name (default: the recipe file's stem).
    pub name: String,
    /// Seeds initialisation, data order, augmentation, dropout and masking.
    pub seed: u64,
    /// `auto`, `cpu` or `cuda:N`.
    pub device: String,
    /// `[data]`: the data source.
    pub data: Component,
    /// `[views]`: the view generator (none: the method's default).
    pub views: Option<Component>,
    /// `[encoder]`.
    pub encoder: Component,
    /// `[method]`, with nested heads (`[method.projector]`, ...).
    pub method: Component,
    /// `[loss]` (none: the method's default loss).
    pub loss: Option<Component>,
    /// `[optimizer]`, with its schedule.
    pub optimizer: Component,
    /// `[train]`.
    pub train: TrainConfig,
    /// `[[eval]]`: evaluators.
    pub eval: Vec<Component>,
    /// `[[logger]]`: loggers.
    pub logger: Vec<Component>,
    /// The fully resolved configuration, as TOML.
    pub resolved: toml::Table,
    /// Where the recipe was read from.
    pub path: Option<PathBuf>,
    /// Warnings about the layers (e.g. an environment variable in the old
    /// `PARALLAX_SECTION__KEY` form, which is not read); the CLI prints them.
    pub notes: Vec<String>,
}

impl std::fmt::Debug for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipe").field("name", &self.name).finish()
    }
}

/// A provider with a fixed name (for the defaults and `--set` layers).
struct Named {
    name: &'static str,
    dict: Dict,
}

impl Provider for Named {
    fn metadata(&self) -> Metadata {
        Metadata::from(self.name, figment::Source::Custom(self.name.to_string()))
    }
    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn defaults_dict(name: &str) -> Dict {
    let mut d = Dict::new();
    d.insert("name".into(), Value::from(name.to_string()));
    d.insert("seed".into(), Value::from(0u64));
    d.insert("device".into(), Value::from("auto".to_string()));
    let logger = |n: &str| {
        let mut t = Dict::new();
        t.insert("name".into(), Value::from(n.to_string()));
        Value::from(t)
    };
    d.insert(
        "logger".into(),
        Value::from(vec![
            logger("tensorboard"),
            logger("jsonl"),
            logger("progress"),
        ]),
    );
    let train = Value::serialize(TrainConfig::default()).expect("train defaults serialise");
    d.insert("train".into(), train);
    d
}

/// Parses `key=value` (a `--set` flag): the value is read as a TOML value
/// (`3`, `1e-3`, `true`, `[1, 2]`, `{ name = "x" }`, `"text"`), or else as a
/// bare string.
pub fn parse_set(flag: &str) -> Result<(String, Value)> {
    let (k, v) = flag
        .split_once('=')
        .ok_or_else(|| Error::Recipe(format!("--set `{flag}`: expected key=value")))?;
    let k = k.trim();
    if k.is_empty() || k.split('.').any(|p| p.is_empty()) {
        return Err(Error::Recipe(format!("--set `{flag}`: empty key")));
    }
    let levels = k.split('.').count();
    if levels > MAX_KEY_LEVELS {
        return Err(Error::Recipe(format!(
            "--set: the key has {levels} levels, at most {MAX_KEY_LEVELS}"
        )));
    }
    Ok((k.to_string(), parse_value(v)))
}

/// The recipe layer read from environment variables `vars`: the
/// `PARALLAX_RECIPE__SECTION__KEY=value` ones as a nested table (keys
/// lower-cased, `__` separating levels, values as in `--set`), and notes on
/// variables that look meant for the recipe but are not read. A variable
/// that starts `PARALLAX_RECIPE` but not with the prefix, or has an empty
/// level, is an error naming it. Every other variable is left alone.
fn env_layer(vars: impl IntoIterator<Item = (String, String)>) -> Result<(Dict, Vec<String>)> {
    let mut d = Dict::new();
    let mut notes = Vec::new();
    for (k, v) in vars {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            if k.starts_with("PARALLAX_RECIPE") {
                return Err(Error::Recipe(format!(
                    "environment variable {k}: recipe variables start with {ENV_PREFIX} (two underscores), e.g. {ENV_PREFIX}TRAIN__EPOCHS"
                )));
            }
            if let Some(old) = k.strip_prefix("PARALLAX_") {
                let first = old.split("__").next().unwrap_or("").to_lowercase();
                if old.contains("__") && TOP_LEVEL_KEYS.contains(&first.as_str()) {
                    notes.push(format!(
                        "environment variable {k} is not read as a recipe key: recipe variables are {ENV_PREFIX}{old}"
                    ));
                }
            }
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(|p| p.to_lowercase()).collect();
        if parts.len() > MAX_KEY_LEVELS {
            return Err(Error::Recipe(format!(
                "environment variable {k}: the key has {} levels, at most {MAX_KEY_LEVELS}",
                parts.len()
            )));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(Error::Recipe(format!(
                "environment variable {k}: empty key level (levels are separated by `__`, e.g. {ENV_PREFIX}TRAIN__EPOCHS)"
            )));
        }
        insert_dotted(&mut d, &parts.join("."), parse_value(&v));
    }
    Ok((d, notes))
}

/// Reads a value given on the command line or in the environment.
fn parse_value(v: &str) -> Value {
    let v = v.trim();
    // TOML first (numbers like 1e-3, arrays, inline tables, quoted strings);
    // anything else is a bare string.
    let value = match toml::from_str::<toml::Table>(&format!("v = {v}")) {
        Ok(mut t) => t.remove("v").map(Value::serialize),
        Err(_) => None,
    };
    match value {
        Some(Ok(value)) => value,
        _ => Value::from(v.to_string()),
    }
}

fn insert_dotted(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_string())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, d) = entry {
                insert_dotted(d, rest, value);
            }
        }
    }
}

impl Recipe {
    /// Loads `path` with the environment and `--set` flags layered on top.
    pub fn load(path: &Path, sets: &[String]) -> Result<Recipe> {
        Self::load_with_env(path, sets, std::env::vars())
    }

    /// [`Recipe::load`] with the environment given as `vars` (tests).
    pub fn load_with_env(
        path: &Path,
        sets: &[String],
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Recipe> {
        if !path.is_file() {
            return Err(Error::Recipe(format!(
                "recipe file {} does not exist",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str::<toml::Table>(&text)
            .map_err(|e| Error::Recipe(format!("{}: {e}", path.display())))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "run".into());
        let mut set_dict = Dict::new();
        for flag in sets {
            let (k, v) = parse_set(flag)?;
            insert_dotted(&mut set_dict, &k, v);
        }
        let (env_dict, env_notes) = env_layer(vars)?;
        let fig = Figment::new()
            .merge(Named {
                name: "defaults",
                dict: defaults_dict(&stem),
            })
            .merge(Toml::file(path))
            .merge(Named {
                name: ENV_LAYER,
                dict: env_dict,
            })
            .merge(Named {
                name: "--set flags",
                dict: set_dict,
            });
        let mut recipe = Self::from_figment(fig)?;
        recipe.path = Some(path.to_path_buf());
        recipe.notes = env_notes;
        Ok(recipe)
    }

    /// Builds a recipe from a TOML string (tests, embedded recipes).
    pub fn from_toml_str(text: &str, sets: &[String]) -> Result<Recipe> {
        let mut set_dict = Dict::new();
        for flag in sets {
            let (k, v) = parse_set(flag)?;
            insert_dotted(&mut set_dict, &k, v);
        }
        let fig = Figment::new()
            .merge(Named {
                name: "defaults",
                dict: defaults_dict("run"),
            })
            .merge(Toml::string(text))
            .merge(Named {
                name: "--set flags",
                dict: set_dict,
            });
        Self::from_figment(fig)
    }

    fn from_figment(fig: Figment) -> Result<Recipe> {
        let fig = Arc::new(fig);
        let origins = Origins(Some(fig.clone()));
        let raw: RawRecipe = fig.extract().map_err(|e| from_figment(&origins, "", e))?;
        let resolved_value: Value = fig.extract().map_err(|e| from_figment(&origins, "", e))?;
        let resolved = toml::Table::try_from(&resolved_value)
            .map_err(|e| Error::Recipe(format!("cannot render resolved recipe: {e}")))?;
        let comp = |section: String, raw: RawComponent| {
            Component::from_dict(section, raw.0, origins.clone())
        };
        let list = |section: &str, raws: Vec<RawComponent>| -> Result<Vec<Component>> {
            raws.into_iter()
                .enumerate()
                .map(|(i, r)| comp(format!("{section}.{i}"), r))
                .collect()
        };
        let seed = raw.seed;
        if raw.train.batch_size == 0 {
            return Err(key_error(
                &origins,
                "train.batch_size",
                "must be at least 1",
            ));
        }
        if raw.train.accumulate == 0 {
            return Err(key_error(
                &origins,
                "train.accumulate",
                "must be at least 1",
            ));
        }
        if raw.train.keep_checkpoints == 0 {
            return Err(key_error(
                &origins,
                "train.keep_checkpoints",
                "must be at least 1",
            ));
        }
        if raw.train.checkpoint_every == 0 {
            return Err(key_error(
                &origins,
                "train.checkpoint_every",
                "must be at least 1",
            ));
        }
        Ok(Recipe {
            name: raw.name,
            seed,
            device: raw.device,
            data: comp("data".into(), raw.data)?,
            views: raw.views.map(|v| comp("views".into(), v)).transpose()?,
            encoder: comp("encoder".into(), raw.encoder)?,
            method: comp("method".into(), raw.method)?,
            loss: raw.loss.map(|v| comp("loss".into(), v)).transpose()?,
            optimizer: comp("optimizer".into(), raw.optimizer)?,
            train: raw.train,
            eval: list("eval", raw.eval)?,
            logger: list("logger", raw.logger)?,
            resolved,
            path: None,
            notes: Vec::new(),
        })
    }

    /// The resolved recipe as TOML text (what `parallax recipe show` prints
    /// and what is written into the run directory).
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(&self.resolved).unwrap_or_default()
    }

    /// A flat list of the resolved scalar settings, for the hparams log.
    pub fn flat_settings(&self) -> BTreeMap<String, toml::Value> {
        fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&key, v, out);
                    }
                }
                toml::Value::Array(a) => {
                    for (i, v) in a.iter().enumerate() {
                        walk(&format!("{prefix}.{i}"), v, out);
                    }
                }
                other => {
                    out.insert(prefix.to_string(), other.clone());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk("", &toml::Value::Table(self.resolved.clone()), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        seed = 3
        [data]
        name = "fashion_mnist"
        [encoder]
        name = "small_cnn"
        width = 16
        [method]
        name = "simclr"
        [optimizer]
        name = "sgd"
        lr = 0.1
        [train]
        epochs = 2
    "#;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Enc {
        width: usize,
    }

    #[test]
    fn loads_components_and_defaults() {
        let r = Recipe::from_toml_str(MINIMAL, &[]).unwrap();
        assert_eq!(r.seed, 3);
        assert_eq!(r.train.epochs, 2);
        assert_eq!(r.train.batch_size, 256);
        assert_eq!(r.encoder.name, "small_cnn");
        assert_eq!(r.encoder.params.extract::<Enc>().unwrap().width, 16);
        assert_eq!(r.logger.len(), 3);
    }

    #[test]
    fn set_flags_override_file() {
        let r = Recipe::from_toml_str(
            MINIMAL,
            &["train.epochs=7".into(), "encoder.width=32".into()],
        )
        .unwrap();
        assert_eq!(r.train.epochs, 7);
        assert_eq!(r.encoder.params.extract::<Enc>().unwrap().width, 32);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Recipe::from_toml_str(MINIMAL, &["train.epochz=7".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.epochz"), "{err}");
        assert!(err.contains("--set"), "{err}");
        let r = Recipe::from_toml_str(MINIMAL, &["encoder.widht=7".into()]).unwrap();
        let err = r.encoder.params.extract::<Enc>().unwrap_err().to_string();
        assert!(err.contains("encoder.widht"), "{err}");
        assert!(err.contains("--set"), "{err}");
    }

    #[test]
    fn missing_name_is_an_error() {
        let text = MINIMAL.replace("name = \"small_cnn\"", "");
        let err = Recipe::from_toml_str(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("encoder") && err.contains("name"), "{err}");
    }

    #[test]
    fn file_layer_is_named_and_missing_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, MINIMAL.replace("width = 16", "width = \"wide\"")).unwrap();
        let r = Recipe::load(&p, &[]).unwrap();
        assert_eq!(r.name, "r");
        let err = r.encoder.params.extract::<Enc>().unwrap_err().to_string();
        assert!(
            err.contains("encoder.width") && err.contains("r.toml"),
            "{err}"
        );
        let err = Recipe::load(&dir.path().join("nope.toml"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope.toml") && err.contains("does not exist"),
            "{err}"
        );
    }

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_recipe_variables_are_read_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, MINIMAL).unwrap();
        // the project's own tool variables and unrelated ones change nothing
        let r = Recipe::load_with_env(
            &p,
            &[],
            vars(&[
                ("PARALLAX_SKIP_TENSORBOARD_READER", "1"),
                ("PARALLAX_CUDA_DIR", "/opt/cuda"),
                ("PARALLAX_FOO", "1"),
                ("PARALLAX_TEST_BIN", "/bin/true"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(r.train.epochs, 2);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
        // the recipe prefix sets keys; --set still wins
        let r = Recipe::load_with_env(
            &p,
            &["train.batch_size=48".into()],
            vars(&[
                ("PARALLAX_RECIPE__TRAIN__EPOCHS", "9"),
                ("PARALLAX_RECIPE__TRAIN__BATCH_SIZE", "12"),
                ("PARALLAX_RECIPE__SEED", "11"),
            ]),
        )
        .unwrap();
        assert_eq!((r.train.epochs, r.train.batch_size, r.seed), (9, 48, 11));
        // the old form is not read, and says what to write instead
        let r = Recipe::load_with_env(&p, &[], vars(&[("PARALLAX_TRAIN__EPOCHS", "9")])).unwrap();
        assert_eq!(r.train.epochs, 2);
        assert_eq!(r.notes.len(), 1);
        assert!(
            r.notes[0].contains("PARALLAX_RECIPE__TRAIN__EPOCHS"),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn misspelled_recipe_variables_fail_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, MINIMAL).unwrap();
        let err = Recipe::load_with_env(&p, &[], vars(&[("PARALLAX_RECIPE__TRAIN__EPOHCS", "3")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.epohcs") && err.contains("PARALLAX_RECIPE__TRAIN__EPOHCS"),
            "{err}"
        );
        for bad in [
            "PARALLAX_RECIPE_TRAIN__EPOCHS",
            "PARALLAX_RECIPE__TRAIN____EPOCHS",
        ] {
            let err = Recipe::load_with_env(&p, &[], vars(&[(bad, "3")]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn absurdly_deep_keys_are_refused_not_a_stack_overflow() {
        let deep = vec!["a"; 5000].join(".");
        let err = parse_set(&format!("data.{deep}=1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("levels, at most 32"), "{err}");
        assert!(parse_set(&format!("{}=1", vec!["a"; 32].join("."))).is_ok());
        let var = format!("PARALLAX_RECIPE__{}", vec!["A"; 5000].join("__"));
        let err = env_layer(vec![(var, "1".to_string())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("levels, at most 32"), "{err}");
    }
}
