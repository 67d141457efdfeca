//! The `tensorboard` logger: scalars, weight histograms, the view grid, the
//! resolved recipe as text and the hyper-parameters, in an event file in
//! the run directory (`tensorboard --logdir runs`).

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::logging::tensorboard::{EventWriter, HParamValue, ImageU8};
use crate::logging::{Logger, RunInfo};

/// Writes a run's records as TensorBoard events.
pub struct TensorBoardLogger {
    writer: EventWriter,
}

fn tb_err(e: impl std::fmt::Display) -> Error {
    Error::Data(format!("tensorboard event file: {e}"))
}

impl TensorBoardLogger {
    /// Creates an event file in the run directory and writes the recipe
    /// (as text) and the hyper-parameters.
    pub fn open(info: &RunInfo) -> Result<Self> {
        let mut writer = EventWriter::create(&info.run_dir).map_err(tb_err)?;
        let text = format!("```toml\n{}\n```", info.recipe_toml);
        writer
            .add_text("recipe", &text, info.start_step)
            .map_err(tb_err)?;
        let hparams: Vec<(String, HParamValue)> = info
            .hparams
            .iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    toml::Value::Integer(i) => HParamValue::Number(*i as f64),
                    toml::Value::Float(f) => HParamValue::Number(*f),
                    toml::Value::Boolean(b) => HParamValue::Bool(*b),
                    toml::Value::String(s) => HParamValue::Text(s.clone()),
                    _ => return None,
                };
                Some((k.clone(), v))
            })
            .collect();
        let metrics = ["train/loss".to_string(), "knn/top1".to_string()];
        writer.add_hparams(&hparams, &metrics).map_err(tb_err)?;
        writer.flush().map_err(tb_err)?;
        Ok(TensorBoardLogger { writer })
    }
}

impl Logger for TensorBoardLogger {
    fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        for (k, v) in values {
            self.writer.add_scalar(k, *v, step).map_err(tb_err)?;
        }
        self.writer.flush().map_err(tb_err)
    }

    fn histogram(&mut self, step: u64, tag: &str, values: &[f32]) -> Result<()> {
        self.writer.add_histogram(tag, values, step).map_err(tb_err)
    }

    fn image(&mut self, step: u64, tag: &str, image: &ImageU8) -> Result<()> {
        self.writer.add_image(tag, image, step).map_err(tb_err)?;
        self.writer.flush().map_err(tb_err)
    }

    fn message(&mut self, step: u64, text: &str) -> Result<()> {
        self.writer.add_text("log", text, step).map_err(tb_err)
    }

    fn finish(&mut self, _step: u64, _metrics: &[(String, f64)]) -> Result<()> {
        self.writer.flush().map_err(tb_err)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

crate::register!(
    logger,
    "tensorboard",
    "TensorBoard event files: scalars, histograms, view grid, recipe, hparams",
    |p, info| {
        let _: NoOptions = p.extract()?;
        Ok(Box::new(TensorBoardLogger::open(info)?))
    }
);
