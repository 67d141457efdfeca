//! MoCo: a momentum encoder and a queue of its keys as negatives.
//!
//! He, Fan, Wu, Xie, Girshick. "Momentum Contrast for Unsupervised Visual
//! Representation Learning", CVPR 2020 (v1: linear head, temperature 0.07);
//! Chen, Fan, Girshick, He. "Improved Baselines with Momentum Contrastive
//! Learning", 2020 (v2: MLP head, temperature 0.2, blur in the views — the
//! view generator's business). The query is the online encoder + projector
//! on view 0, the key the momentum copy on view 1; the loss is InfoNCE of
//! the query against its key and the queue. After each step the momentum
//! copy moves towards the online weights (m = 0.999) and the step's keys
//! replace the oldest keys in the queue (65536 by default). `symmetric`
//! adds the loss with the views swapped (as in MoCo v3 and lightly's
//! examples).

use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::losses::info_nce::{InfoNce, InfoNceConfig};
use crate::losses::{l2_normalize, Loss, LossInputs};
use crate::methods::target::{self, MomentumSchedule, TargetNetwork};
use crate::methods::{build_head_at, head_spec, Method, MethodCtx, StepInfo, StepOutput};
use crate::nn::encoder::{Encoder, ForwardCtx, Head};
use crate::rng::Rng;

/// `[method] name = "moco"` options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MocoConfig {
    /// 1 or 2: picks the default head and temperature.
    version: u8,
    /// Momentum of the key encoder: 0.999.
    momentum: f64,
    /// `constant` (the paper) or `cosine` (towards 1).
    momentum_schedule: MomentumSchedule,
    /// Keys in the queue: 65536.
    queue_size: usize,
    /// Also the loss with the views swapped.
    symmetric: bool,
}

impl Default for MocoConfig {
    fn default() -> Self {
        MocoConfig {
            version: 2,
            momentum: 0.999,
            momentum_schedule: MomentumSchedule::Constant,
            queue_size: 65536,
            symmetric: false,
        }
    }
}

/// The MoCo method.
pub struct Moco {
    encoder: Box<dyn Encoder>,
    projector: Box<dyn Head>,
    key_encoder: Box<dyn Encoder>,
    key_projector: Box<dyn Head>,
    target: TargetNetwork,
    loss: Box<dyn Loss>,
    cfg: MocoConfig,
    queue: Tensor,
    ptr: usize,
    pending: Vec<Tensor>,
}

impl Moco {
    fn build(mut ctx: MethodCtx) -> Result<Self> {
        let projector = ctx.params.take_component("projector")?;
        let cfg: MocoConfig = ctx.params.extract()?;
        if cfg.version != 1 && cfg.version != 2 {
            return Err(ctx
                .params
                .error("version", format!("must be 1 or 2, got {}", cfg.version)));
        }
        target::check_momentum(cfg.momentum).map_err(|m| ctx.params.error("momentum", m))?;
        if cfg.queue_size == 0 {
            return Err(ctx.params.error("queue_size", "must be at least 1"));
        }
        let mut defaults = toml::Table::new();
        defaults.insert("version".into(), (cfg.version as i64).into());
        let spec = head_spec(&ctx, projector, "projector", "moco", defaults)?;
        let d = ctx.encoder.output_dim();
        let projector = build_head_at(&spec, d, ctx.vb.pp("projector"))?;
        let key_encoder = target::target_encoder(&ctx)?;
        let key_projector = build_head_at(&spec, d, ctx.vb.pp("target").pp("projector"))?;
        let target = TargetNetwork::link(&ctx.store)?;
        let loss = match ctx.loss.take() {
            Some(l) => l,
            None => Box::new(InfoNce::new(InfoNceConfig {
                temperature: if cfg.version == 1 { 0.07 } else { 0.2 },
            })?),
        };
        let k = projector.output_dim();
        let device = ctx.vb.device().clone();
        let queue = l2_normalize(&Rng::derive(ctx.seed, "moco/queue", &[]).normal_tensor(
            (cfg.queue_size, k),
            0.0,
            1.0,
            DType::F32,
            &device,
        )?)?;
        Ok(Moco {
            encoder: ctx.encoder,
            projector,
            key_encoder,
            key_projector,
            target,
            loss,
            cfg,
            queue,
            ptr: 0,
            pending: Vec::new(),
        })
    }

    fn query(&self, b: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let h = self.encoder.forward(b, ctx)?;
        self.projector.forward(&h, ctx)
    }

    fn key(&self, b: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let h = self.key_encoder.forward(b, ctx)?;
        Ok(l2_normalize(&self.key_projector.forward(&h, ctx)?)?.detach())
    }
}

/// Writes `keys [n, K]` into `queue [size, K]` from row `ptr` on, wrapping
/// around (the newest `size` keys when `n > size`); returns the new queue
/// and pointer.
pub fn enqueue(queue: &Tensor, ptr: usize, keys: &Tensor) -> Result<(Tensor, usize)> {
    let (size, k) = queue.dims2()?;
    let n = keys.dim(0)?;
    let keys = if n > size {
        keys.narrow(0, n - size, size)?
    } else {
        keys.clone()
    };
    let n = keys.dim(0)?;
    let first = n.min(size - ptr);
    let mut q = queue.slice_assign(&[ptr..ptr + first, 0..k], &keys.narrow(0, 0, first)?)?;
    if first < n {
        q = q.slice_assign(&[0..n - first, 0..k], &keys.narrow(0, first, n - first)?)?;
    }
    Ok((q, (ptr + n) % size))
}

/// Replaces `queue` with the checkpoint's tensor `key` of `state`, which
/// must have its shape; `who` names the method in errors.
pub fn restore_queue(
    state: &std::collections::HashMap<String, Tensor>,
    key: &str,
    queue: &mut Tensor,
    who: &str,
) -> Result<()> {
    let saved = state
        .get(key)
        .ok_or_else(|| Error::Recipe(format!("{who}: the checkpoint has no {key}")))?;
    if saved.dims() != queue.dims() {
        return Err(Error::Shape(format!(
            "{who}: the checkpoint's {key} is {:?}, the recipe's {:?}",
            saved.dims(),
            queue.dims()
        )));
    }
    *queue = saved.to_device(queue.device())?;
    Ok(())
}

/// The checkpoint's queue pointer (`queue_ptr`), modulo `size`; 0 if absent.
pub fn restore_pointer(
    state: &std::collections::HashMap<String, Tensor>,
    size: usize,
) -> Result<usize> {
    Ok(match state.get("queue_ptr") {
        Some(p) => p.to_vec1::<i64>()?.first().copied().unwrap_or(0) as usize % size,
        None => 0,
    })
}

impl Method for Moco {
    fn step(&mut self, views: &[Batch], ctx: &mut ForwardCtx) -> Result<StepOutput> {
        if views.len() != 2 {
            return Err(Error::Shape(format!(
                "moco needs 2 views, got {}",
                views.len()
            )));
        }
        let q0 = self.query(&views[0], ctx)?;
        let k1 = self.key(&views[1], ctx)?;
        let mut loss = self.loss.forward(
            &LossInputs::new()
                .with("query", q0.clone())
                .with("key", k1.clone())
                .with("queue", self.queue.clone()),
        )?;
        let mut keys = vec![k1.clone()];
        if self.cfg.symmetric {
            let q1 = self.query(&views[1], ctx)?;
            let k0 = self.key(&views[0], ctx)?;
            let l2 = self.loss.forward(
                &LossInputs::new()
                    .with("query", q1)
                    .with("key", k0.clone())
                    .with("queue", self.queue.clone()),
            )?;
            loss = ((loss + l2)? * 0.5)?;
            keys.push(k0);
        }
        self.pending.extend(keys);
        let n0 = l2_normalize(&q0.detach())?;
        let pos = (&n0 * &k1)?.sum(1)?.mean_all()?.to_scalar::<f32>()? as f64;
        Ok(StepOutput {
            loss,
            scalars: vec![("train/positive_cosine".into(), pos)],
            embeddings: Some(n0.clone()),
            pair: Some((n0, k1)),
        })
    }

    fn after_step(&mut self, info: &StepInfo) -> Result<()> {
        let m = target::momentum_at(
            self.cfg.momentum,
            self.cfg.momentum_schedule,
            info.step,
            info.total_steps,
        );
        self.target.update(m)?;
        for keys in std::mem::take(&mut self.pending) {
            (self.queue, self.ptr) = enqueue(&self.queue, self.ptr, &keys)?;
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
        2
    }

    fn state(&self) -> Result<std::collections::BTreeMap<String, Tensor>> {
        let mut s = std::collections::BTreeMap::new();
        s.insert("queue".into(), self.queue.clone());
        s.insert(
            "queue_ptr".into(),
            Tensor::new(&[self.ptr as i64], self.queue.device())?,
        );
        Ok(s)
    }

    fn load_state(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        restore_queue(state, "queue", &mut self.queue, "moco")?;
        self.ptr = restore_pointer(state, self.cfg.queue_size)?;
        Ok(())
    }
}

crate::register!(
    method,
    "moco",
    "MoCo v1/v2: momentum key encoder and a queue of negatives (He et al. 2020)",
    |ctx| Ok(Box::new(Moco::build(ctx)?))
);

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_queue_wraps_around_oldest_first() {
        let q = Tensor::zeros((5, 2), DType::F32, &Device::Cpu).unwrap();
        let keys = |v: f32, n: usize| Tensor::full(v, (n, 2), &Device::Cpu).unwrap();
        let (q, p) = enqueue(&q, 0, &keys(1.0, 3)).unwrap();
        assert_eq!(p, 3);
        let (q, p) = enqueue(&q, p, &keys(2.0, 3)).unwrap();
        assert_eq!(p, 1);
        let firsts: Vec<f32> = q.to_vec2::<f32>().unwrap().iter().map(|r| r[0]).collect();
        assert_eq!(firsts, vec![2.0, 1.0, 1.0, 2.0, 2.0]);
        // more keys than the queue holds: the newest fill it
        let many = Tensor::arange(0f32, 14.0, &Device::Cpu)
            .unwrap()
            .reshape((7, 2))
            .unwrap();
        let (q, p) = enqueue(&q, 1, &many).unwrap();
        assert_eq!(p, 1);
        let firsts: Vec<f32> = q.to_vec2::<f32>().unwrap().iter().map(|r| r[0]).collect();
        assert_eq!(firsts, vec![12.0, 4.0, 6.0, 8.0, 10.0]);
    }
}
