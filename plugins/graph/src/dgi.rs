//! Deep Graph Infomax (Velickovic, Fedus, Hamilton, Liò, Bengio, Hjelm.
//! "Deep Graph Infomax", ICLR 2019): node embeddings of the graph and of a
//! corruption of it (the feature rows shuffled, the edges kept), a summary
//! `s = sigmoid(mean of the real embeddings)`, a bilinear discriminator
//! `D(h, s) = hᵀ W s + b`, and binary cross entropy with real nodes as
//! positives and corrupted ones as negatives. Training stops when the loss
//! has not improved for `patience` steps, and the parameters of the best
//! step are restored for evaluation (as the paper's code does).

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use candle_nn::Init;
use parallax_core::graph::{GraphEncoder, GraphInput, GraphMethod, GraphMethodCtx};
use parallax_core::methods::StepOutput;
use parallax_core::nn::encoder::ForwardCtx;
use parallax_core::nn::init::VarStore;
use parallax_core::ops::spmm::SparseMatrix;
use parallax_core::Result;
use serde::Deserialize;

/// `[method] name = "dgi"` options (paper: patience 20 on the training
/// loss).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DgiConfig {
    /// Steps without a lower loss before training stops (0: never).
    pub patience: u64,
}

impl Default for DgiConfig {
    fn default() -> Self {
        DgiConfig { patience: 20 }
    }
}

/// `log(1 + exp(x))`, stable for large `|x|`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    Ok(x.relu()?.add(&tail)?)
}

/// DGI's objective: binary cross entropy on the logits of real (label 1)
/// and corrupted (label 0) nodes, the mean over all `2N` of them.
pub fn dgi_loss(real: &Tensor, corrupted: &Tensor) -> Result<Tensor> {
    let pos = softplus(&real.neg()?)?.sum_all()?;
    let neg = softplus(corrupted)?.sum_all()?;
    let n = (real.elem_count() + corrupted.elem_count()) as f64;
    Ok(pos.add(&neg)?.affine(1.0 / n, 0.0)?)
}

/// The DGI method.
pub struct Dgi {
    encoder: Box<dyn GraphEncoder>,
    weight: Tensor,
    bias: Tensor,
    patience: u64,
    store: VarStore,
    best_loss: f64,
    best_step: u64,
    steps: u64,
    best: Option<BTreeMap<String, Tensor>>,
}

impl Dgi {
    /// The discriminator's logits `[N]` of embeddings `h [N, D]` against
    /// the summary `s [D]`.
    fn discriminate(&self, h: &Tensor, s: &Tensor) -> Result<Tensor> {
        let ws = self.weight.matmul(&s.unsqueeze(1)?)?;
        Ok(h.matmul(&ws)?.squeeze(1)?.broadcast_add(&self.bias)?)
    }
}

impl GraphMethod for Dgi {
    fn step(&mut self, input: &GraphInput, ctx: &mut ForwardCtx) -> Result<StepOutput> {
        let n = input.graph.num_nodes();
        let perm = ctx.rng.permutation(n);
        let shuffled = SparseMatrix::new(input.features.csr().permute_rows(&perm));
        let h = self
            .encoder
            .forward(&input.features, &input.propagation, ctx)?;
        let h_bad = self.encoder.forward(&shuffled, &input.propagation, ctx)?;
        let s = candle_nn::ops::sigmoid(&h.mean(0)?)?;
        let loss = dgi_loss(&self.discriminate(&h, &s)?, &self.discriminate(&h_bad, &s)?)?;
        // the parameters that gave the lowest loss so far, kept before
        // this step's update (as the paper's code saves its model)
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if value < self.best_loss {
            self.best_loss = value;
            self.best_step = self.steps;
            self.best = Some(
                self.store
                    .tensors()
                    .into_iter()
                    .map(|(k, t)| Ok((k, t.copy()?)))
                    .collect::<Result<_>>()?,
            );
        }
        self.steps += 1;
        Ok(StepOutput {
            loss,
            scalars: vec![("train/best_loss".into(), self.best_loss)],
            embeddings: Some(parallax_core::losses::l2_normalize(&h.detach())?),
            pair: None,
        })
    }

    fn embed(&self, input: &GraphInput) -> Result<Tensor> {
        self.encoder.embed(input)
    }

    fn should_stop(&self) -> Option<String> {
        let waited = self.steps.saturating_sub(self.best_step + 1);
        (self.patience > 0 && waited >= self.patience).then(|| {
            format!(
                "the loss has not improved on {:.5} (step {}) for {} steps",
                self.best_loss,
                self.best_step + 1,
                self.patience
            )
        })
    }

    fn finish(&mut self) -> Result<Option<String>> {
        let Some(best) = self.best.take() else {
            return Ok(None);
        };
        let values: HashMap<String, Tensor> = best.into_iter().collect();
        self.store.assign_all(&values)?;
        Ok(Some(format!(
            "restored the parameters of step {} (loss {:.5})",
            self.best_step + 1,
            self.best_loss
        )))
    }

    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut m = BTreeMap::new();
        let scalars = [self.best_loss, self.best_step as f64, self.steps as f64];
        m.insert(
            "dgi.progress".into(),
            Tensor::new(&scalars[..], &Device::Cpu)?,
        );
        if let Some(best) = &self.best {
            for (k, t) in best {
                m.insert(format!("dgi.best.{k}"), t.clone());
            }
        }
        Ok(m)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        if let Some(p) = state.get("dgi.progress") {
            let v = p.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            if let [loss, best, steps] = v[..] {
                self.best_loss = loss;
                self.best_step = best as u64;
                self.steps = steps as u64;
            }
        }
        let best: BTreeMap<String, Tensor> = state
            .iter()
            .filter_map(|(k, t)| Some((k.strip_prefix("dgi.best.")?.to_string(), t.clone())))
            .collect();
        if !best.is_empty() {
            self.best = Some(best);
        }
        Ok(())
    }
}

fn build(ctx: GraphMethodCtx) -> Result<Box<dyn GraphMethod>> {
    let c: DgiConfig = ctx.params.extract()?;
    let d = ctx.encoder.output_dim();
    let vb = ctx.vb.pp("discriminator");
    // Glorot-uniform as PyTorch's xavier_uniform_ on nn.Bilinear's
    // [1, D, D] weight: fan in D x D, fan out D
    let b = (6.0 / (d * d + d) as f64).sqrt();
    let weight = vb.get_with_hints((d, d), "weight", Init::Uniform { lo: -b, up: b })?;
    let bias = vb.get_with_hints(1, "bias", Init::Const(0.0))?;
    Ok(Box::new(Dgi {
        encoder: ctx.encoder,
        weight,
        bias,
        patience: c.patience,
        store: ctx.store,
        best_loss: f64::INFINITY,
        best_step: 0,
        steps: 0,
        best: None,
    }))
}

parallax_core::register!(
    graph_method,
    "dgi",
    "Deep Graph Infomax (Velickovic et al. 2019): real vs row-shuffled nodes against a summary",
    build
);
