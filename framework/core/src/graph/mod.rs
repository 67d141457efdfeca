//! Graphs as one big sample: node-level methods (GRACE, DGI, a supervised
//! GCN) see the whole graph at every step, so they get a [`Graph`] rather
//! than a data set of independent items, and train in the full-graph loop
//! (`train.loop = "full_graph"`, [`crate::trainer::full_graph`]).
//!
//! The kinds a graph plugin registers: `graph data` (builds a [`Graph`]),
//! `graph encoder` ([`GraphEncoder`]), `graph method` ([`GraphMethod`]) and
//! `graph evaluator` ([`GraphEvaluator`]).

mod csr;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;

pub use csr::Csr;

use crate::error::{Error, Result};
use crate::methods::{StepInfo, StepOutput};
use crate::nn::encoder::ForwardCtx;
use crate::ops::spmm::SparseMatrix;
use crate::recipe::{Component, Params};

/// The node-classification split a data set is published with (Planetoid's
/// public split: Cora 140 / 500 / 1000).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSplit {
    /// Training nodes.
    pub train: Vec<usize>,
    /// Validation nodes.
    pub val: Vec<usize>,
    /// Test nodes.
    pub test: Vec<usize>,
}

/// One graph with node features and labels.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The adjacency `[N, N]`: row `i` lists the nodes with an edge into
    /// `i` (for an undirected graph both directions are stored). Binary,
    /// no self-loops: GCN layers add theirs ([`Csr::gcn_normalized`]).
    pub edges: Csr,
    /// Node features `[N, F]`, sparse (bag-of-words rows).
    pub features: Csr,
    /// Class of each node; -1 for a node without a label.
    pub labels: Vec<i64>,
    /// Number of classes (labels are below it).
    pub num_classes: usize,
    /// The published split, when the data set has one.
    pub split: Option<NodeSplit>,
    /// A one-line description for logs (`cora (embedded, 2708 nodes, ...)`).
    pub describe: String,
}

impl Graph {
    /// Checks that the parts agree (square adjacency, one feature row and
    /// one label per node, labels below `num_classes`, split indices in
    /// range and disjoint). `what` names the data in errors.
    pub fn validate(&self, what: &str) -> Result<()> {
        let n = self.num_nodes();
        let bad = |m: String| Err(Error::Data(format!("{what}: {m}")));
        if self.edges.cols != n {
            return bad(format!(
                "the adjacency is {}x{}, it must be square",
                n, self.edges.cols
            ));
        }
        if self.features.rows != n {
            return bad(format!("{} feature rows for {n} nodes", self.features.rows));
        }
        if self.labels.len() != n {
            return bad(format!("{} labels for {n} nodes", self.labels.len()));
        }
        if let Some(l) = self
            .labels
            .iter()
            .find(|&&l| l < -1 || l >= self.num_classes as i64)
        {
            return bad(format!(
                "label {l} is outside 0..{} (and -1 for none)",
                self.num_classes
            ));
        }
        if let Some(s) = &self.split {
            let mut seen = vec![false; n];
            for (name, idx) in [("train", &s.train), ("val", &s.val), ("test", &s.test)] {
                for &i in idx {
                    if i >= n {
                        return bad(format!("{name} node {i} is out of range for {n} nodes"));
                    }
                    if seen[i] {
                        return bad(format!("node {i} is in more than one split ({name})"));
                    }
                    if self.labels[i] < 0 {
                        return bad(format!("{name} node {i} has no label"));
                    }
                    seen[i] = true;
                }
            }
        }
        Ok(())
    }

    /// Number of nodes.
    pub fn num_nodes(&self) -> usize {
        self.edges.rows
    }

    /// Number of stored (directed) edges.
    pub fn num_edges(&self) -> usize {
        self.edges.nnz()
    }

    /// Number of feature columns.
    pub fn num_features(&self) -> usize {
        self.features.cols
    }

    /// The nodes that have a label.
    pub fn labelled(&self) -> Vec<usize> {
        (0..self.num_nodes())
            .filter(|&i| self.labels[i] >= 0)
            .collect()
    }
}

/// The graph as the methods use it on a device: the data, the GCN
/// propagation matrix of the full graph and the features.
#[derive(Clone)]
pub struct GraphInput {
    /// The graph.
    pub graph: Arc<Graph>,
    /// [`Csr::gcn_normalized`] of the graph's edges.
    pub propagation: SparseMatrix,
    /// The node features.
    pub features: SparseMatrix,
    /// Where the model lives.
    pub device: Device,
}

impl GraphInput {
    /// Prepares `graph` for `device`.
    pub fn new(graph: Arc<Graph>, device: Device) -> Self {
        GraphInput {
            propagation: SparseMatrix::new(graph.edges.gcn_normalized()),
            features: SparseMatrix::new(graph.features.clone()),
            graph,
            device,
        }
    }
}

/// A node encoder: node features and a propagation matrix in, one
/// representation per node `[N, D]` out (a GCN).
pub trait GraphEncoder: Send + Sync {
    /// Representations of every node of the graph `features [N, F]` with
    /// propagation matrix `propagation [N, N]`.
    fn forward(
        &self,
        features: &SparseMatrix,
        propagation: &SparseMatrix,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor>;
    /// The size `D` of a representation.
    fn output_dim(&self) -> usize;
    /// The representations of `input`'s nodes in evaluation mode (no
    /// dropout), detached from the graph of gradients.
    fn embed(&self, input: &GraphInput) -> Result<Tensor> {
        let h = self.forward(&input.features, &input.propagation, &mut ForwardCtx::eval())?;
        Ok(h.detach())
    }
}

/// Everything a graph method constructor gets.
pub struct GraphMethodCtx {
    /// The `[method]` parameters.
    pub params: Params,
    /// The encoder built from `[encoder]` under `encoder.`.
    pub encoder: Box<dyn GraphEncoder>,
    /// The `[encoder]` component.
    pub encoder_spec: Component,
    /// The loss from `[loss]`, if the recipe names one (else the
    /// method's own).
    pub loss: Option<Box<dyn crate::losses::Loss>>,
    /// The root variable builder (`vb.pp("projector")`, ...).
    pub vb: VarBuilder<'static>,
    /// The graph.
    pub graph: Arc<Graph>,
    /// The run's seed.
    pub seed: u64,
    /// The store of every variable (to snapshot the best parameters).
    pub store: crate::nn::init::VarStore,
}

/// A node-level method trained on the whole graph at every step.
pub trait GraphMethod: Send {
    /// The loss of one step (views drawn from `ctx.rng`).
    fn step(&mut self, input: &GraphInput, ctx: &mut ForwardCtx) -> Result<StepOutput>;
    /// The frozen node embeddings `[N, D]` that evaluators probe
    /// (evaluation mode, the full graph).
    fn embed(&self, input: &GraphInput) -> Result<Tensor>;
    /// Class logits `[N, K]` for methods that train a classifier.
    fn logits(&self, _input: &GraphInput) -> Option<Result<Tensor>> {
        None
    }
    /// Called after each optimizer step with the step's loss (early
    /// stopping, EMA updates).
    fn after_step(&mut self, _info: &StepInfo, _loss: f64, _input: &GraphInput) -> Result<()> {
        Ok(())
    }
    /// Why training should end now (early stopping), if it should.
    fn should_stop(&self) -> Option<String> {
        None
    }
    /// Called before every final evaluation, in `train` after the last
    /// checkpoint is written (that keeps the last step's parameters, so the
    /// run can resume) and in `eval` after [`GraphMethod::load_state`]:
    /// e.g. restoring the parameters of the best step. Returns a line to
    /// log.
    fn finish(&mut self) -> Result<Option<String>> {
        Ok(None)
    }
    /// Whether the variable `name` is trained by the optimizer.
    fn is_trainable(&self, _name: &str) -> bool {
        true
    }
    /// State outside the model variables, for checkpoints.
    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        Ok(Default::default())
    }
    /// Restores [`GraphMethod::state`].
    fn load_state(&mut self, _state: &HashMap<String, Tensor>) -> Result<()> {
        Ok(())
    }
}

/// What a graph evaluator gets.
pub struct GraphEvalCtx<'a> {
    /// The graph on its device.
    pub input: &'a GraphInput,
    /// The trained method.
    pub method: &'a dyn GraphMethod,
    /// The run's seed.
    pub seed: u64,
}

/// Measures a trained graph method (a probe on frozen node embeddings, a
/// classifier's accuracy).
pub trait GraphEvaluator: Send {
    /// Runs every `every_epochs()` training epochs (0: only at the end).
    fn every_epochs(&self) -> usize {
        0
    }
    /// The metrics (`name/...`).
    fn evaluate(&mut self, ctx: &GraphEvalCtx) -> Result<Vec<(String, f64)>>;
}
