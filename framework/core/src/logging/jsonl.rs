//! `metrics.jsonl`: one JSON object per logged step in the run directory.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::logging::{Logger, RunInfo};

/// Appends `{"step": N, "tag": value, ...}` lines to `metrics.jsonl`.
pub struct JsonlLogger {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlLogger {
    /// Opens (appends to) `run_dir/metrics.jsonl`.
    pub fn open(info: &RunInfo) -> Result<Self> {
        let path = info.run_dir.join("metrics.jsonl");
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(JsonlLogger {
            path,
            out: BufWriter::new(f),
        })
    }

    fn write(&mut self, step: u64, values: &[(String, f64)], kind: &str) -> Result<()> {
        let mut obj = serde_json::Map::new();
        obj.insert("step".into(), step.into());
        obj.insert("kind".into(), kind.into());
        for (k, v) in values {
            let v = serde_json::Number::from_f64(*v)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null);
            obj.insert(k.clone(), v);
        }
        let line = serde_json::Value::Object(obj).to_string();
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

impl Logger for JsonlLogger {
    fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        self.write(step, values, "scalars")
    }

    fn finish(&mut self, step: u64, metrics: &[(String, f64)]) -> Result<()> {
        self.write(step, metrics, "final")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

crate::register!(
    logger,
    "jsonl",
    "metrics.jsonl in the run directory, one JSON object per log step",
    |p, info| {
        let _: NoOptions = p.extract()?;
        Ok(Box::new(JsonlLogger::open(info)?))
    }
);
