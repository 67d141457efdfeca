//! DINO: self-distillation with no labels. A student matches the centred,
//! sharpened output of an EMA teacher across crops.
//!
//! Caron et al. "Emerging Properties in Self-Supervised Vision
//! Transformers", ICCV 2021 (section 3.1, algorithm 1). Views come from a
//! multi-crop generator (`[views] name = "multi_crop"`): the first
//! `global_crops` (2) are global crops, the rest local. The student
//! (encoder + `dino` head) sees every crop, the teacher (EMA copy,
//! momentum 0.996 -> 1 along a cosine) only the global ones. The teacher's
//! outputs are centred (centre updated with momentum 0.9) and sharpened by a
//! temperature warmed up linearly from 0.04 to 0.07 over the first 30% of
//! training (30 of 100 epochs in the paper); the student's temperature is
//! 0.1. The loss is the `dino` cross-entropy over all pairs of different
//! views.

use std::collections::BTreeMap;

use candle_core::Tensor;
use serde::Deserialize;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::losses::dino::{Dino as DinoLoss, DinoConfig};
use crate::losses::{l2_normalize, Loss, LossInputs};
use crate::methods::simclr::concat_batches;
use crate::methods::target::{self, MomentumSchedule, TargetNetwork};
use crate::methods::{build_head_at, head_spec, Method, MethodCtx, StepInfo, StepOutput};
use crate::nn::encoder::{Encoder, ForwardCtx, Head};

/// `[method] name = "dino"` options (head: `[method.head]`, `dino` by
/// default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DinoMethodConfig {
    /// Global crops (seen by the teacher): 2.
    global_crops: usize,
    /// Local crops: 6 (the view generator must make global + local views).
    local_crops: usize,
    /// Base momentum of the teacher: 0.996.
    momentum: f64,
    /// `cosine` (the paper) or `constant`.
    momentum_schedule: MomentumSchedule,
    /// Momentum of the centre: 0.9.
    center_momentum: f64,
    /// Teacher temperature after the warm-up: 0.07.
    teacher_temp: f64,
    /// Teacher temperature at the start: 0.04.
    warmup_teacher_temp: f64,
    /// Share of training over which the teacher temperature warms up: 0.3.
    warmup_fraction: f64,
    /// Student temperature: 0.1.
    student_temp: f64,
}

impl Default for DinoMethodConfig {
    fn default() -> Self {
        DinoMethodConfig {
            global_crops: 2,
            local_crops: 6,
            momentum: 0.996,
            momentum_schedule: MomentumSchedule::Cosine,
            center_momentum: 0.9,
            teacher_temp: 0.07,
            warmup_teacher_temp: 0.04,
            warmup_fraction: 0.3,
            student_temp: 0.1,
        }
    }
}

impl DinoMethodConfig {
    /// The teacher temperature at `step` of `total`.
    fn teacher_temp_at(&self, step: u64, total: u64) -> f64 {
        let warm = self.warmup_fraction * total as f64;
        if warm <= 0.0 || step as f64 >= warm {
            self.teacher_temp
        } else {
            let t = step as f64 / warm;
            self.warmup_teacher_temp + t * (self.teacher_temp - self.warmup_teacher_temp)
        }
    }
}

/// The DINO method.
pub struct Dino {
    encoder: Box<dyn Encoder>,
    head: Box<dyn Head>,
    teacher_encoder: Box<dyn Encoder>,
    teacher_head: Box<dyn Head>,
    target: TargetNetwork,
    cfg: DinoMethodConfig,
    center: Tensor,
    pending: Vec<Tensor>,
    step: u64,
    total_steps: u64,
}

impl Dino {
    fn build(mut ctx: MethodCtx) -> Result<Self> {
        let head = ctx.params.take_component("head")?;
        let cfg: DinoMethodConfig = ctx.params.extract()?;
        if ctx.loss.is_some() {
            return Err(Error::Recipe(
                "dino computes its own loss (temperatures are [method] teacher_temp, \
                 warmup_teacher_temp and student_temp): remove the [loss] section"
                    .into(),
            ));
        }
        if cfg.global_crops == 0 {
            return Err(ctx.params.error("global_crops", "must be at least 1"));
        }
        if cfg.global_crops + cfg.local_crops < 2 {
            return Err(ctx
                .params
                .error("local_crops", "DINO needs at least 2 views in all"));
        }
        target::check_momentum(cfg.momentum).map_err(|m| ctx.params.error("momentum", m))?;
        target::check_momentum(cfg.center_momentum)
            .map_err(|m| ctx.params.error("center_momentum", m))?;
        for (k, v) in [
            ("teacher_temp", cfg.teacher_temp),
            ("warmup_teacher_temp", cfg.warmup_teacher_temp),
            ("student_temp", cfg.student_temp),
        ] {
            if v.is_nan() || v <= 0.0 {
                return Err(ctx.params.error(k, format!("must be positive, got {v}")));
            }
        }
        let spec = head_spec(&ctx, head, "head", "dino", Default::default())?;
        let d = ctx.encoder.output_dim();
        let head = build_head_at(&spec, d, ctx.vb.pp("head"))?;
        let teacher_encoder = target::target_encoder(&ctx)?;
        let teacher_head = build_head_at(&spec, d, ctx.vb.pp("target").pp("head"))?;
        let target = TargetNetwork::link(&ctx.store)?;
        let center = Tensor::zeros(
            (1, head.output_dim()),
            candle_core::DType::F32,
            ctx.vb.device(),
        )?;
        Ok(Dino {
            encoder: ctx.encoder,
            head,
            teacher_encoder,
            teacher_head,
            target,
            cfg,
            center,
            pending: Vec::new(),
            step: 0,
            total_steps: 0,
        })
    }
}

/// Runs `f` on groups of consecutive views of equal shape, concatenated,
/// and splits the result back per view.
fn per_view_grouped(
    views: &[Batch],
    mut f: impl FnMut(&Batch) -> Result<Tensor>,
) -> Result<Vec<Tensor>> {
    let mut out = Vec::with_capacity(views.len());
    let mut start = 0;
    while start < views.len() {
        let shape = |b: &Batch| -> Vec<Vec<usize>> {
            b.tensors.values().map(|t| t.dims().to_vec()).collect()
        };
        let first = shape(&views[start]);
        let mut end = start + 1;
        while end < views.len() && shape(&views[end]) == first {
            end += 1;
        }
        let n = views[start].len();
        let y = f(&concat_batches(&views[start..end])?)?;
        for i in 0..end - start {
            out.push(y.narrow(0, i * n, n)?);
        }
        start = end;
    }
    Ok(out)
}

impl Method for Dino {
    fn step(&mut self, views: &[Batch], ctx: &mut ForwardCtx) -> Result<StepOutput> {
        let g = self.cfg.global_crops;
        if views.len() != self.num_views() {
            return Err(Error::Shape(format!(
                "dino needs {} views ({} global + {} local), got {}",
                self.num_views(),
                g,
                self.cfg.local_crops,
                views.len()
            )));
        }
        let student = per_view_grouped(views, |b| {
            let h = self.encoder.forward(b, ctx)?;
            self.head.forward(&h, ctx)
        })?;
        let teacher = per_view_grouped(&views[..g], |b| {
            let h = self.teacher_encoder.forward(b, ctx)?;
            Ok(self.teacher_head.forward(&h, ctx)?.detach())
        })?;
        let loss_fn = DinoLoss::new(DinoConfig {
            teacher_temp: self.cfg.teacher_temp_at(self.step, self.total_steps),
            student_temp: self.cfg.student_temp,
        })?;
        let mut inputs = LossInputs::new().with("center", self.center.clone());
        for (i, t) in teacher.iter().enumerate() {
            inputs.insert(&format!("teacher.{i}"), t.clone());
        }
        for (i, s) in student.iter().enumerate() {
            inputs.insert(&format!("student.{i}"), s.clone());
        }
        let loss = loss_fn.forward(&inputs)?;
        let t_all = Tensor::cat(&teacher, 0)?;
        self.pending.push(t_all.mean_keepdim(0)?);
        // the teacher's probabilities: their entropy drops to 0 when the
        // outputs collapse to one prototype
        let temp = self.cfg.teacher_temp_at(self.step, self.total_steps);
        let probs =
            crate::ops::softmax::softmax_last_dim(&(t_all.broadcast_sub(&self.center)? / temp)?)?;
        let entropy = (probs.clamp(1e-12, 1.0)?.log()? * &probs)?
            .sum(1)?
            .mean_all()?
            .to_scalar::<f32>()? as f64;
        let n0 = l2_normalize(&student[0].detach())?;
        let n1 = l2_normalize(&student[1].detach())?;
        Ok(StepOutput {
            loss,
            scalars: vec![
                ("train/teacher_entropy".into(), -entropy),
                ("train/teacher_temp".into(), temp),
            ],
            embeddings: Some(n0.clone()),
            pair: Some((n0, n1)),
        })
    }

    fn after_step(&mut self, info: &StepInfo) -> Result<()> {
        self.step = info.step;
        self.total_steps = info.total_steps;
        self.target.update(target::momentum_at(
            self.cfg.momentum,
            self.cfg.momentum_schedule,
            info.step,
            info.total_steps,
        ))?;
        let m = self.cfg.center_momentum;
        for batch_center in std::mem::take(&mut self.pending) {
            self.center = ((&self.center * m)? + (batch_center * (1.0 - m))?)?;
        }
        Ok(())
    }

    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    fn is_trainable(&self, name: &str) -> bool {
        !target::is_target(name)
    }

    fn num_views(&self) -> usize {
        self.cfg.global_crops + self.cfg.local_crops
    }

    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let progress = Tensor::new(
            &[self.step as i64, self.total_steps as i64],
            self.center.device(),
        )?;
        Ok(BTreeMap::from([
            ("center".to_string(), self.center.clone()),
            ("progress".to_string(), progress),
        ]))
    }

    fn load_state(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        let c = state
            .get("center")
            .ok_or_else(|| Error::Recipe("dino: the checkpoint has no centre".into()))?;
        if c.dims() != self.center.dims() {
            return Err(Error::Shape(format!(
                "dino: the checkpoint's centre is {:?}, the recipe's {:?}",
                c.dims(),
                self.center.dims()
            )));
        }
        self.center = c.to_device(self.center.device())?;
        if let Some(p) = state.get("progress") {
            if let [step, total] = p.to_vec1::<i64>()?[..] {
                self.step = step.max(0) as u64;
                self.total_steps = total.max(0) as u64;
            }
        }
        Ok(())
    }
}

crate::register!(
    method,
    "dino",
    "DINO: student matches a centred, sharpened EMA teacher across multi-crops (Caron et al. 2021)",
    |ctx| Ok(Box::new(Dino::build(ctx)?))
);
