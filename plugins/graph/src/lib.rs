//! Parallax graph plugin: node-level contrastive learning on one big graph.
//!
//! - data: Cora and CiteSeer in the npz layout (gnn-benchmark, and the
//!   Planetoid public split converted by `scripts/planetoid_to_npz.py`;
//!   Cora is embedded), and users' own graphs as an edge list with feature
//!   and label files;
//! - [`gcn::Gcn`]: the GCN encoder (Kipf and Welling 2017) on sparse
//!   features, with ReLU, PReLU (DGI) or ELU;
//! - methods: [`grace::Grace`] (Zhu et al. 2020), [`dgi::Dgi`]
//!   (Velickovic et al. 2019) and the supervised GCN baseline;
//! - evaluators: a logistic-regression probe on frozen node embeddings
//!   (the public split, or random 10/10/80 splits) and the classifier's
//!   accuracy.
//!
//! All of it trains in the core's full-graph loop (`train.loop =
//! "full_graph"`).

pub mod dgi;
pub mod edge_list;
pub mod error;
pub mod eval;
pub mod gcn;
pub mod grace;
pub mod npz;
pub mod sources;
pub mod supervised;
pub mod views;

pub use error::GraphDataError;
