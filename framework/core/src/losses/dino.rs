//! DINO's self-distillation cross-entropy.
//!
//! Caron et al. "Emerging Properties in Self-Supervised Vision
//! Transformers", ICCV 2021, eq. (2)-(3) and algorithm 1 (lightly's
//! `DINOLoss`).
//!
//! Inputs (each `[B, K]`, `K` the number of prototypes):
//! - `teacher.0`, `teacher.1`, ...: the teacher's outputs for the global
//!   crops, stop-gradient (no gradient flows into them);
//! - `student.0`, `student.1`, ...: the student's outputs for all crops,
//!   where student view `v` is the same crop as teacher view `v` for the
//!   global crops;
//! - `center [1, K]` or `[K]` (optional, zeros if absent): the running mean
//!   of the teacher outputs, kept by the method (stop-gradient).
//!
//! With `P_t = softmax((teacher_t - center) / teacher_temp)` and
//! `log Q_v = log_softmax(student_v / student_temp)`, the loss is the mean
//! over all pairs `v != t` of `mean_b(-sum_k P_t log Q_v)`. Output: a scalar.

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::common::{check_temperature, log_softmax_last, matrix_dims, softmax_last};
use crate::losses::{Loss, LossInputs};

/// Configuration of [`Dino`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinoConfig {
    /// Teacher temperature: 0.04 (Caron et al. 2021, section 3.1; the paper
    /// warms it up linearly to 0.07, a schedule the method applies).
    pub teacher_temp: f64,
    /// Student temperature: 0.1 (Caron et al. 2021, section 3.1).
    pub student_temp: f64,
}

impl Default for DinoConfig {
    fn default() -> Self {
        DinoConfig {
            teacher_temp: 0.04,
            student_temp: 0.1,
        }
    }
}

/// The DINO loss.
pub struct Dino {
    teacher_temp: f64,
    student_temp: f64,
}

impl Dino {
    /// Builds the loss; both temperatures must be positive.
    pub fn new(cfg: DinoConfig) -> Result<Self> {
        check_temperature("dino", "teacher_temp", cfg.teacher_temp)?;
        check_temperature("dino", "student_temp", cfg.student_temp)?;
        Ok(Dino {
            teacher_temp: cfg.teacher_temp,
            student_temp: cfg.student_temp,
        })
    }
}

/// The inputs `prefix.0`, `prefix.1`, ... up to the first missing one.
fn views<'a>(inputs: &'a LossInputs, prefix: &str) -> Vec<(String, &'a Tensor)> {
    (0..)
        .map(|i| format!("{prefix}.{i}"))
        .map_while(|name| inputs.opt(&name).map(|t| (name, t)))
        .collect()
}

impl Loss for Dino {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let teachers = views(inputs, "teacher");
        let students = views(inputs, "student");
        if teachers.is_empty() {
            inputs.get("dino", "teacher.0")?;
        }
        if students.is_empty() {
            inputs.get("dino", "student.0")?;
        }
        let (first_name, first) = &teachers[0];
        let (b, k) = matrix_dims("dino", first_name, first)?;
        for (name, t) in teachers.iter().chain(&students) {
            let dims = matrix_dims("dino", name, t)?;
            if dims != (b, k) {
                return Err(Error::Shape(format!(
                    "dino: `{name}` has shape {:?}, `{first_name}` {:?}; all views must be [B, K] \
                     with the same batch size and output dimension",
                    t.dims(),
                    first.dims()
                )));
            }
        }
        let center = match inputs.opt("center") {
            Some(c) => {
                if c.elem_count() != k {
                    return Err(Error::Shape(format!(
                        "dino: `center` must be [1, {k}] or [{k}], got {:?}",
                        c.dims()
                    )));
                }
                Some(c.detach().reshape((1, k))?)
            }
            None => None,
        };
        let teacher_probs = teachers
            .iter()
            .map(|(_, t)| {
                let t = t.detach();
                let t = match &center {
                    Some(c) => t.broadcast_sub(c)?,
                    None => t,
                };
                softmax_last(&(t / self.teacher_temp)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let student_logp = students
            .iter()
            .map(|(_, s)| log_softmax_last(&(*s / self.student_temp)?))
            .collect::<Result<Vec<_>>>()?;
        let mut total: Option<Tensor> = None;
        let mut terms = 0usize;
        for (ti, p) in teacher_probs.iter().enumerate() {
            for (vi, logq) in student_logp.iter().enumerate() {
                if ti == vi {
                    continue;
                }
                let ce = (p * logq)?.sum_all()?;
                total = Some(match total {
                    Some(acc) => (acc + ce)?,
                    None => ce,
                });
                terms += 1;
            }
        }
        let Some(total) = total else {
            return Err(Error::Shape(format!(
                "dino: no teacher/student pair of different views ({} teacher, {} student views)",
                teachers.len(),
                students.len()
            )));
        };
        Ok((total * (-1.0 / (terms * b) as f64))?)
    }
}

crate::register!(
    loss,
    "dino",
    "DINO's cross-entropy between centred, sharpened teacher and student outputs (Caron et al. 2021)",
    |p| Ok(Box::new(Dino::new(p.extract()?)?))
);
