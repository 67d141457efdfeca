//! Graph views for contrastive methods: GRACE's edge dropping and feature
//! masking (Zhu et al. 2020, Sec. 3.2), each view with its own rates. A
//! view is one single-view transform; a method holds a list of them.

use parallax_core::graph::Graph;
use parallax_core::ops::spmm::SparseMatrix;
use parallax_core::rng::Rng;
use parallax_core::{Error, Result};

/// One augmented view of a graph.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GraphView {
    /// Each stored (directed) edge is dropped with this probability.
    pub drop_edge: f64,
    /// Each feature column is zeroed, for every node, with this probability.
    pub mask_feature: f64,
}

impl GraphView {
    /// A view with the given rates (each in `[0, 1)`).
    pub fn new(drop_edge: f64, mask_feature: f64) -> Result<GraphView> {
        for (k, p) in [("drop_edge", drop_edge), ("mask_feature", mask_feature)] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::Recipe(format!(
                    "{k}: a rate must be in [0, 1), got {p}"
                )));
            }
        }
        Ok(GraphView {
            drop_edge,
            mask_feature,
        })
    }

    /// The view's features and GCN propagation matrix, drawn from `rng`:
    /// first one uniform draw per stored edge (row-major), then one per
    /// feature column.
    pub fn apply(&self, graph: &Graph, rng: &mut Rng) -> (SparseMatrix, SparseMatrix) {
        let edges = if self.drop_edge > 0.0 {
            let keep: Vec<bool> = (0..graph.edges.nnz())
                .map(|_| rng.uniform() as f64 >= self.drop_edge)
                .collect();
            graph.edges.filter(|_, _, k| keep[k])
        } else {
            graph.edges.clone()
        };
        let features = if self.mask_feature > 0.0 {
            let keep: Vec<bool> = (0..graph.features.cols)
                .map(|_| rng.uniform() as f64 >= self.mask_feature)
                .collect();
            graph.features.filter(|_, c, _| keep[c as usize])
        } else {
            graph.features.clone()
        };
        (
            SparseMatrix::new(features),
            SparseMatrix::new(edges.gcn_normalized()),
        )
    }
}
