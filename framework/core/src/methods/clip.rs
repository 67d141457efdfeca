//! CLIP: contrastive image-text pre-training of a dual encoder.
//!
//! Radford et al. "Learning Transferable Visual Models From Natural Language
//! Supervision", ICML 2021: the image and text towers embed `N` matching
//! pairs into one space; the symmetric cross-entropy over the `N x N`
//! cosine similarities, scaled by a learnable `exp(logit_scale)`
//! (initialised to 1 / 0.07 and clipped at 100, section 2.5), pulls each
//! image towards its caption and away from the batch's other captions.
//!
//! `variant = "moco"` swaps the in-batch negatives for queues, as the
//! image-text contrastive loss of ALBEF (Li et al., "Align before Fuse",
//! NeurIPS 2021, section 3.2, without its momentum distillation): momentum
//! copies of both towers (m = 0.995) embed the batch's keys, and queues of
//! the last `queue_size` (65536) image and text keys serve as extra
//! negatives. Each image query is scored against the text keys of the batch
//! and the text queue, each text query against the image keys and the image
//! queue; the key of its own pair is the positive.
//!
//! The encoder must be a dual image-text encoder (`[encoder] name = "clip"`,
//! see [`crate::nn::encoder::ImageText`]); the batch is one view with the
//! fields `image`, `input_ids` and `attention_mask`. The loss is `[loss]`,
//! by default `clip` (the in-batch variant only).

use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::losses::clip::{Clip, ClipConfig};
use crate::losses::common::cross_entropy_diagonal;
use crate::losses::{l2_normalize, Loss, LossInputs};
use crate::methods::moco::{enqueue, restore_pointer, restore_queue};
use crate::methods::target::{self, MomentumSchedule, TargetNetwork};
use crate::methods::{Method, MethodCtx, StepInfo, StepOutput};
use crate::nn::encoder::{Encoder, ForwardCtx, ImageText};
use crate::rng::Rng;

/// Which negatives the contrastive loss uses.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Variant {
    /// The other pairs of the batch (CLIP).
    #[default]
    Clip,
    /// Momentum encoders and queues of image and text keys (ALBEF's ITC).
    Moco,
}

/// `[method] name = "clip"` options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ClipMethodConfig {
    /// `clip` or `moco`.
    variant: Variant,
    /// The largest `exp(logit_scale)`: 100 (CLIP, section 2.5).
    max_logit_scale: f64,
    /// Momentum of the key towers (`moco`): 0.995 (ALBEF).
    momentum: f64,
    /// `constant` (ALBEF) or `cosine` (towards 1).
    momentum_schedule: MomentumSchedule,
    /// Keys in each queue (`moco`): 65536 (ALBEF).
    queue_size: usize,
}

impl Default for ClipMethodConfig {
    fn default() -> Self {
        ClipMethodConfig {
            variant: Variant::Clip,
            max_logit_scale: 100.0,
            momentum: 0.995,
            momentum_schedule: MomentumSchedule::Constant,
            queue_size: 65536,
        }
    }
}

/// The momentum towers and key queues of the `moco` variant.
struct Queues {
    key_encoder: Box<dyn Encoder>,
    target: TargetNetwork,
    image: Tensor,
    text: Tensor,
    ptr: usize,
    /// This step's (image keys, text keys), queued after the optimizer step.
    pending: Option<(Tensor, Tensor)>,
}

/// The CLIP method.
pub struct ClipMethod {
    encoder: Box<dyn Encoder>,
    loss: Box<dyn Loss>,
    cfg: ClipMethodConfig,
    queues: Option<Queues>,
}

/// The dual image-text view of `encoder`, or an error naming `who`.
pub fn dual<'a>(encoder: &'a dyn Encoder, who: &str) -> Result<&'a dyn ImageText> {
    encoder.image_text().ok_or_else(|| {
        Error::Recipe(format!(
            "{who} needs a dual image-text encoder: set [encoder] name = \"clip\" with [encoder.image] and [encoder.text]"
        ))
    })
}

impl ClipMethod {
    fn build(mut ctx: MethodCtx) -> Result<Self> {
        let cfg: ClipMethodConfig = ctx.params.extract()?;
        let it = dual(ctx.encoder.as_ref(), "method `clip`")?;
        if !(cfg.max_logit_scale > 1.0 && cfg.max_logit_scale.is_finite()) {
            return Err(ctx.params.error(
                "max_logit_scale",
                format!("must be a finite number > 1, got {}", cfg.max_logit_scale),
            ));
        }
        let queues = match cfg.variant {
            Variant::Clip => None,
            Variant::Moco => {
                target::check_momentum(cfg.momentum)
                    .map_err(|m| ctx.params.error("momentum", m))?;
                if cfg.queue_size == 0 {
                    return Err(ctx.params.error("queue_size", "must be at least 1"));
                }
                if ctx.loss.is_some() {
                    return Err(ctx.params.error(
                        "variant",
                        "the moco variant computes its own queue loss: remove [loss]",
                    ));
                }
                let key_encoder = target::target_encoder(&ctx)?;
                dual(key_encoder.as_ref(), "method `clip`")?;
                let target = TargetNetwork::link(&ctx.store)?;
                let e = it.embed_dim();
                let device = ctx.vb.device().clone();
                let queue = |what: &str| -> Result<Tensor> {
                    l2_normalize(
                        &Rng::derive(ctx.seed, &format!("clip/{what}_queue"), &[]).normal_tensor(
                            (cfg.queue_size, e),
                            0.0,
                            1.0,
                            DType::F32,
                            &device,
                        )?,
                    )
                };
                Some(Queues {
                    key_encoder,
                    target,
                    image: queue("image")?,
                    text: queue("text")?,
                    ptr: 0,
                    pending: None,
                })
            }
        };
        let loss = match ctx.loss.take() {
            Some(l) => l,
            None => Box::new(Clip::new(ClipConfig::default())?),
        };
        Ok(ClipMethod {
            encoder: ctx.encoder,
            loss,
            cfg,
            queues,
        })
    }

    fn it(&self) -> Result<&dyn ImageText> {
        dual(self.encoder.as_ref(), "method `clip`")
    }
}

/// The queue loss of one direction: cross-entropy of `scale * q · [k; queue]ᵀ`
/// with the positive of row `i` at column `i`.
fn queue_loss(q: &Tensor, keys: &Tensor, queue: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let all = Tensor::cat(&[keys, queue], 0)?;
    let logits = q.matmul(&all.t()?)?.broadcast_mul(scale)?;
    cross_entropy_diagonal(&logits)
}

impl Method for ClipMethod {
    fn step(&mut self, views: &[Batch], ctx: &mut ForwardCtx) -> Result<StepOutput> {
        if views.len() != 1 {
            return Err(Error::Shape(format!(
                "clip trains on one view (images with their captions), got {}",
                views.len()
            )));
        }
        let it = self.it()?;
        let img = it.embed_image(&views[0], ctx)?;
        let txt = it.embed_text(&views[0], ctx)?;
        let s = it.logit_scale().flatten_all()?.reshape(())?;
        let (ni, nt) = (l2_normalize(&img)?, l2_normalize(&txt)?);
        let loss = match &mut self.queues {
            None => self.loss.forward(
                &LossInputs::new()
                    .with("image", img.clone())
                    .with("text", txt.clone())
                    .with("logit_scale", s.clone()),
            )?,
            Some(qs) => {
                let kit = dual(qs.key_encoder.as_ref(), "method `clip`")?;
                let ki = l2_normalize(&kit.embed_image(&views[0], ctx)?)?.detach();
                let kt = l2_normalize(&kit.embed_text(&views[0], ctx)?)?.detach();
                let scale = s.exp()?;
                let i2t = queue_loss(&ni, &kt, &qs.text, &scale)?;
                let t2i = queue_loss(&nt, &ki, &qs.image, &scale)?;
                qs.pending = Some((ki, kt));
                ((i2t + t2i)? * 0.5)?
            }
        };
        let (di, dt) = (ni.detach(), nt.detach());
        let sim = di.matmul(&dt.t()?)?;
        let n = sim.dim(0)?;
        let hits = sim
            .argmax(1)?
            .to_dtype(DType::I64)?
            .to_vec1::<i64>()?
            .iter()
            .enumerate()
            .filter(|(i, &j)| *i as i64 == j)
            .count();
        let pos = (&di * &dt)?.sum(1)?.mean_all()?.to_scalar::<f32>()? as f64;
        let scale = s.to_dtype(DType::F64)?.to_scalar::<f64>()?.exp();
        Ok(StepOutput {
            loss,
            scalars: vec![
                ("train/logit_scale".into(), scale),
                ("train/positive_cosine".into(), pos),
                ("train/i2t_batch_accuracy".into(), hits as f64 / n as f64),
            ],
            embeddings: Some(di.clone()),
            pair: Some((di, dt)),
        })
    }

    fn after_step(&mut self, info: &StepInfo) -> Result<()> {
        // CLIP clips the temperature so that the logits are scaled by at most 100
        let var = self.it()?.logit_scale().clone();
        let max = self.cfg.max_logit_scale.ln();
        let clamped = var.detach().clamp(f64::NEG_INFINITY, max)?;
        var.slice_set(&clamped, 0, 0)?;
        if let Some(qs) = &mut self.queues {
            let m = target::momentum_at(
                self.cfg.momentum,
                self.cfg.momentum_schedule,
                info.step,
                info.total_steps,
            );
            qs.target.update(m)?;
            if let Some((ki, kt)) = qs.pending.take() {
                let (image, p) = enqueue(&qs.image, qs.ptr, &ki)?;
                let (text, _) = enqueue(&qs.text, qs.ptr, &kt)?;
                (qs.image, qs.text, qs.ptr) = (image, text, p);
            }
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
        1
    }

    fn state(&self) -> Result<std::collections::BTreeMap<String, Tensor>> {
        let mut s = std::collections::BTreeMap::new();
        if let Some(qs) = &self.queues {
            s.insert("image_queue".into(), qs.image.clone());
            s.insert("text_queue".into(), qs.text.clone());
            s.insert(
                "queue_ptr".into(),
                Tensor::new(&[qs.ptr as i64], qs.image.device())?,
            );
        }
        Ok(s)
    }

    fn load_state(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        let size = self.cfg.queue_size;
        let Some(qs) = &mut self.queues else {
            return Ok(());
        };
        restore_queue(state, "image_queue", &mut qs.image, "clip")?;
        restore_queue(state, "text_queue", &mut qs.text, "clip")?;
        qs.ptr = restore_pointer(state, size)?;
        Ok(())
    }
}

crate::register!(
    method,
    "clip",
    "CLIP: image-text contrast of a dual encoder, in-batch (Radford et al. 2021) or with momentum queues (ALBEF)",
    |ctx| Ok(Box::new(ClipMethod::build(ctx)?))
);
