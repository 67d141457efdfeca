//! The npz layout of graph data sets (Shchur et al. 2018, gnn-benchmark):
//! a zip of `.npy` arrays holding the adjacency and the node features in
//! CSR form (`adj_data`, `adj_indices`, `adj_indptr`, `adj_shape`,
//! `attr_*`), the `labels`, and optionally a published split
//! (`idx_train`, `idx_val`, `idx_test`, as `scripts/planetoid_to_npz.py`
//! writes for the Planetoid files). Stored or deflated members; each
//! `.npy` is read with `npyz`, integers of any width, f32 or f64 values.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::Path;

use parallax_core::graph::{Csr, Graph, NodeSplit};

use crate::error::GraphDataError;

/// The largest array member read (1 GiB): a member claiming more is an
/// error, not an allocation.
const MAX_MEMBER: u64 = 1 << 30;

/// The arrays of an npz archive, by name (without `.npy`).
#[derive(Debug)]
pub struct Npz {
    name: String,
    arrays: BTreeMap<String, Vec<u8>>,
}

/// A numeric array read from a `.npy` member: its shape and values.
#[derive(Debug)]
pub struct Array<T> {
    /// The shape.
    pub shape: Vec<usize>,
    /// The values in C order.
    pub values: Vec<T>,
}

impl Npz {
    /// Reads every member of the archive `bytes`; `name` (a path) names
    /// it in errors.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Npz, GraphDataError> {
        let bad = |m: String| GraphDataError::Format {
            file: name.to_string(),
            message: m,
        };
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| bad(format!("not a zip (npz) archive: {e}")))?;
        let mut arrays = BTreeMap::new();
        for i in 0..zip.len() {
            let mut f = zip
                .by_index(i)
                .map_err(|e| bad(format!("member {i}: {e}")))?;
            let fname = f
                .name()
                .map_err(|e| bad(format!("member {i}: {e}")))?
                .to_string();
            let Some(key) = fname.strip_suffix(".npy").map(str::to_string) else {
                continue;
            };
            let mut data = Vec::new();
            (&mut f)
                .take(MAX_MEMBER + 1)
                .read_to_end(&mut data)
                .map_err(|e| bad(format!("{key}.npy: {e}")))?;
            if data.len() as u64 > MAX_MEMBER {
                return Err(bad(format!("{key}.npy is larger than {MAX_MEMBER} bytes")));
            }
            arrays.insert(key, data);
        }
        Ok(Npz {
            name: name.to_string(),
            arrays,
        })
    }

    /// Reads the archive at `path`.
    pub fn open(path: &Path) -> Result<Npz, GraphDataError> {
        let bytes = std::fs::read(path).map_err(|e| GraphDataError::Io {
            file: path.display().to_string(),
            source: e,
        })?;
        Npz::from_bytes(&path.display().to_string(), &bytes)
    }

    /// Whether the archive has the array `key`.
    pub fn has(&self, key: &str) -> bool {
        self.arrays.contains_key(key)
    }

    fn err(&self, key: &str, message: impl std::fmt::Display) -> GraphDataError {
        GraphDataError::Format {
            file: self.name.clone(),
            message: format!("{key}: {message}"),
        }
    }

    fn npy(&self, key: &str) -> Result<(npyz::NpyFile<&[u8]>, Vec<usize>), GraphDataError> {
        let bytes = self
            .arrays
            .get(key)
            .ok_or_else(|| self.err(key, "the array is missing"))?;
        let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| self.err(key, e))?;
        if npy.order() != npyz::Order::C && npy.shape().len() > 1 {
            return Err(self.err(key, "Fortran-ordered arrays are not supported"));
        }
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        // the header's claimed size must fit the bytes that follow it
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| self.err(key, "the shape overflows"))?;
        let item = match npy.dtype() {
            npyz::DType::Plain(t) => t.size_field() as usize,
            _ => return Err(self.err(key, "a structured or nested dtype, not numbers")),
        };
        if count.saturating_mul(item) > bytes.len() {
            return Err(self.err(
                key,
                format!(
                    "the header claims {count} items of {item} bytes but the member has {} bytes",
                    bytes.len()
                ),
            ));
        }
        Ok((npy, shape))
    }

    /// The integer array `key` (any signed or unsigned width) as i64.
    pub fn ints(&self, key: &str) -> Result<Array<i64>, GraphDataError> {
        let (npy, shape) = self.npy(key)?;
        macro_rules! attempt {
            ($npy:expr, $($t:ty),*) => {{
                let npy = $npy;
                $(
                    let npy = match npy.try_data::<$t>() {
                        Ok(r) => {
                            let v = r
                                .map(|x| x.map(|x| x as i64))
                                .collect::<std::io::Result<Vec<i64>>>()
                                .map_err(|e| self.err(key, e))?;
                            return Ok(Array { shape, values: v });
                        }
                        Err(back) => back,
                    };
                )*
                npy
            }};
        }
        let npy = attempt!(npy, i64, i32, i16, i8, u8, u16, u32);
        let npy = match npy.try_data::<u64>() {
            Ok(r) => {
                let v = r
                    .map(|x| {
                        x.and_then(|x| {
                            i64::try_from(x).map_err(|_| {
                                std::io::Error::new(
                                    std::io::ErrorKind::InvalidData,
                                    "u64 above i64",
                                )
                            })
                        })
                    })
                    .collect::<std::io::Result<Vec<i64>>>()
                    .map_err(|e| self.err(key, e))?;
                return Ok(Array { shape, values: v });
            }
            Err(back) => back,
        };
        Err(self.err(
            key,
            format!("dtype {} is not an integer type", npy.dtype().descr()),
        ))
    }

    /// The float array `key` (f32, f64, or integers) as f32.
    pub fn floats(&self, key: &str) -> Result<Array<f32>, GraphDataError> {
        let (npy, shape) = self.npy(key)?;
        let npy = match npy.try_data::<f32>() {
            Ok(r) => {
                let values = r
                    .collect::<std::io::Result<Vec<f32>>>()
                    .map_err(|e| self.err(key, e))?;
                return Ok(Array { shape, values });
            }
            Err(back) => back,
        };
        match npy.try_data::<f64>() {
            Ok(r) => {
                let values = r
                    .map(|x| x.map(|x| x as f32))
                    .collect::<std::io::Result<Vec<f32>>>()
                    .map_err(|e| self.err(key, e))?;
                Ok(Array { shape, values })
            }
            Err(_) => {
                let a = self.ints(key)?;
                Ok(Array {
                    shape: a.shape,
                    values: a.values.into_iter().map(|x| x as f32).collect(),
                })
            }
        }
    }

    /// The CSR matrix stored as `{prefix}_data`, `_indices`, `_indptr`,
    /// `_shape`.
    pub fn csr(&self, prefix: &str) -> Result<Csr, GraphDataError> {
        let shape = self.ints(&format!("{prefix}_shape"))?.values;
        let [rows, cols] = shape[..] else {
            return Err(self.err(&format!("{prefix}_shape"), "needs two entries"));
        };
        if rows < 0 || cols < 0 {
            return Err(self.err(&format!("{prefix}_shape"), "a negative size"));
        }
        let data = self.floats(&format!("{prefix}_data"))?.values;
        let indices = self.ints(&format!("{prefix}_indices"))?.values;
        let indptr = self.ints(&format!("{prefix}_indptr"))?.values;
        let key = format!("{prefix}_indices");
        let indices = indices
            .into_iter()
            .map(|i| {
                u32::try_from(i).map_err(|_| self.err(&key, format!("index {i} out of range")))
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let key = format!("{prefix}_indptr");
        let indptr = indptr
            .into_iter()
            .map(|i| {
                usize::try_from(i).map_err(|_| self.err(&key, format!("offset {i} is negative")))
            })
            .collect::<Result<Vec<usize>, _>>()?;
        Csr::new(
            &format!("{}: {prefix}", self.name),
            rows as usize,
            cols as usize,
            indptr,
            indices,
            data,
        )
        .map_err(|e| GraphDataError::Format {
            file: self.name.clone(),
            message: e.to_string().trim_start_matches("data error: ").to_string(),
        })
    }

    /// The node indices `key` (e.g. `idx_train`).
    fn indices(&self, key: &str, n: usize) -> Result<Vec<usize>, GraphDataError> {
        self.ints(key)?
            .values
            .into_iter()
            .map(|i| {
                usize::try_from(i)
                    .ok()
                    .filter(|&i| i < n)
                    .ok_or_else(|| self.err(key, format!("node {i} is out of range for {n} nodes")))
            })
            .collect()
    }
}

/// Reads a graph in the npz layout; `describe` starts its description.
/// With `directed` false (GCN's convention) every edge is used in both
/// directions.
pub fn read_graph(npz: &Npz, describe: &str, directed: bool) -> Result<Graph, GraphDataError> {
    let adj = npz.csr("adj")?;
    let features = npz.csr("attr")?;
    let n = adj.rows;
    if adj.cols != n {
        return Err(npz.err("adj_shape", format!("{}x{} is not square", n, adj.cols)));
    }
    if features.rows != n {
        return Err(npz.err(
            "attr_shape",
            format!("{} feature rows for {n} nodes", features.rows),
        ));
    }
    let labels = npz.ints("labels")?.values;
    if labels.len() != n {
        return Err(npz.err("labels", format!("{} labels for {n} nodes", labels.len())));
    }
    if let Some(l) = labels.iter().find(|&&l| l < -1) {
        return Err(npz.err("labels", format!("label {l} (use -1 for none)")));
    }
    let num_classes = labels
        .iter()
        .copied()
        .max()
        .map_or(0, |m| (m + 1).max(0) as usize);
    let split = if npz.has("idx_train") {
        Some(NodeSplit {
            train: npz.indices("idx_train", n)?,
            val: npz.indices("idx_val", n)?,
            test: npz.indices("idx_test", n)?,
        })
    } else {
        None
    };
    let edges = crate::edge_list::adjacency(n, adj.entries().map(|(r, c, _)| (r, c)), directed);
    let graph = Graph {
        describe: format!(
            "{describe}, {n} nodes, {} edges, {} features, {num_classes} classes{}",
            edges.nnz(),
            features.cols,
            match &split {
                Some(s) => format!(", split {}/{}/{}", s.train.len(), s.val.len(), s.test.len()),
                None => String::new(),
            }
        ),
        edges,
        features,
        labels,
        num_classes,
        split,
    };
    graph
        .validate(&npz.name)
        .map_err(|e| GraphDataError::Format {
            file: npz.name.clone(),
            message: e.to_string(),
        })?;
    Ok(graph)
}
