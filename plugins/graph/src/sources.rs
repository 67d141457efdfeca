//! The graph data sets of recipes (`[data]` with `train.loop =
//! "full_graph"`): `graph_npz` (Cora embedded, or any npz in the
//! gnn-benchmark layout) and `edge_list` (users' own graphs).

use std::sync::Arc;

use parallax_core::data::BuildCtx;
use parallax_core::graph::Graph;
use parallax_core::recipe::Params;
use parallax_core::{Error, Result};
use serde::Deserialize;

use crate::edge_list::read_edge_list;
use crate::npz::{read_graph, Npz};

/// Cora in the gnn-benchmark layout (Shchur et al. 2018; MIT, see
/// `data/LICENSE.gnn-benchmark`): 2708 nodes, no split.
pub const CORA_NPZ: &[u8] = include_bytes!("../data/cora.npz");
/// Cora's Planetoid files (Yang et al. 2016; MIT, see
/// `data/LICENSE.planetoid`) with the public split, converted by
/// `scripts/planetoid_to_npz.py`.
pub const CORA_PUBLIC_NPZ: &[u8] = include_bytes!("../data/cora.public.npz");

/// `[data] name = "graph_npz"` options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NpzConfig {
    /// An npz file in the gnn-benchmark layout (optionally with
    /// `idx_train` / `idx_val` / `idx_test`); none: the embedded graph.
    path: Option<String>,
    /// The embedded graph when no `path`: `cora` (gnn-benchmark) or
    /// `cora.public` (Planetoid, with the public split).
    embedded: String,
    /// Keep the adjacency's direction (default: both directions, as GCN).
    directed: bool,
    /// Divide each feature row by its sum (GCN, DGI and GRACE do).
    normalize_features: bool,
}

impl Default for NpzConfig {
    fn default() -> Self {
        NpzConfig {
            path: None,
            embedded: "cora".into(),
            directed: false,
            normalize_features: true,
        }
    }
}

fn finish(mut g: Graph, normalize: bool) -> Arc<Graph> {
    if normalize {
        g.features = g.features.row_normalized();
    }
    Arc::new(g)
}

fn graph_npz(p: &Params, ctx: &BuildCtx) -> Result<Arc<Graph>> {
    let c: NpzConfig = p.extract()?;
    let g = match &c.path {
        Some(path) => {
            let file = ctx.resolve(path);
            read_graph(
                &Npz::open(&file)?,
                &format!("{}", file.display()),
                c.directed,
            )?
        }
        None => {
            let bytes = match c.embedded.as_str() {
                "cora" => CORA_NPZ,
                "cora.public" => CORA_PUBLIC_NPZ,
                other => {
                    return Err(p.error(
                        "embedded",
                        format!("`{other}` is not embedded (cora, cora.public); give `path` for other graphs"),
                    ))
                }
            };
            let name = format!("{} (embedded)", c.embedded);
            read_graph(&Npz::from_bytes(&name, bytes)?, &name, c.directed)?
        }
    };
    Ok(finish(g, c.normalize_features))
}

/// `[data] name = "edge_list"` options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeListConfig {
    /// `node f1 ... fF` per line.
    features: String,
    /// `source target` per line.
    edges: String,
    /// `node label` per line (optional).
    #[serde(default)]
    labels: Option<String>,
    /// Keep the edges' direction (default: both directions).
    #[serde(default)]
    directed: bool,
    /// Divide each feature row by its sum.
    #[serde(default = "yes")]
    normalize_features: bool,
}

fn yes() -> bool {
    true
}

fn edge_list(p: &Params, ctx: &BuildCtx) -> Result<Arc<Graph>> {
    let c: EdgeListConfig = p.extract()?;
    let labels = c.labels.as_ref().map(|l| ctx.resolve(l));
    let g = read_edge_list(
        &ctx.resolve(&c.features),
        &ctx.resolve(&c.edges),
        labels.as_deref(),
        c.directed,
    )
    .map_err(|e| Error::Data(e.to_string()))?;
    Ok(finish(g, c.normalize_features))
}

parallax_core::register!(
    graph_data,
    "graph_npz",
    "a graph in the npz layout (gnn-benchmark; Planetoid converted): Cora embedded, or `path`",
    graph_npz
);
parallax_core::register!(
    graph_data,
    "edge_list",
    "a graph from text files: edges (`source target`), features (`node f1 ...`), labels",
    edge_list
);
