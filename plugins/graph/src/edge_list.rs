//! Users' own graphs as plain text: an edge list, a feature file and an
//! optional label file, each one record per line with fields separated by
//! commas, tabs or spaces (CSV / TSV); empty lines and lines starting with
//! `#` are skipped.
//!
//! - features: `node f1 f2 ... fF` — the nodes, in this order, with their
//!   feature values (every row the same width);
//! - edges: `source target` by node name; with `directed = false` (GCN's
//!   convention) both directions are used. Self-loops are dropped and
//!   duplicate edges kept once: GCN adds one self-loop per node itself;
//! - labels: `node label`; the classes are the distinct labels, sorted
//!   (numerically when they are all integers). Nodes without a line have
//!   no label.
//!
//! A malformed line is an error naming the file and line.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use parallax_core::graph::{Csr, Graph};

use crate::error::GraphDataError;

/// The binary adjacency of `n` nodes with the edges `(source, target)`
/// (row `target` lists `source`; both directions unless `directed`);
/// self-loops dropped, duplicates kept once.
pub fn adjacency(n: usize, edges: impl Iterator<Item = (u32, u32)>, directed: bool) -> Csr {
    let mut entries = Vec::new();
    for (s, t) in edges.filter(|(s, t)| s != t) {
        entries.push((t, s, 1.0f32));
        if !directed {
            entries.push((s, t, 1.0));
        }
    }
    let a = Csr::from_entries(n, n, &entries);
    Csr {
        values: vec![1.0; a.nnz()],
        ..a
    }
}

fn fields(line: &str) -> Vec<&str> {
    line.split([',', '\t', ' '])
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect()
}

/// The records of a text file: `(line number, fields)` of each line that is
/// neither empty nor a comment.
fn records(path: &Path) -> Result<Vec<(usize, Vec<String>)>, GraphDataError> {
    let text = std::fs::read_to_string(path).map_err(|e| GraphDataError::Io {
        file: path.display().to_string(),
        source: e,
    })?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| (i + 1, fields(l).into_iter().map(String::from).collect()))
        .collect())
}

/// Reads a graph from `features`, `edges` and optional `labels` files.
pub fn read_edge_list(
    features: &Path,
    edges: &Path,
    labels: Option<&Path>,
    directed: bool,
) -> Result<Graph, GraphDataError> {
    let line_err = |p: &Path, line: usize, m: String| GraphDataError::Line {
        file: p.display().to_string(),
        line,
        message: m,
    };
    let mut names: HashMap<String, u32> = HashMap::new();
    let mut rows: Vec<(u32, u32, f32)> = Vec::new();
    let mut width = None;
    for (line, f) in records(features)? {
        let Some((name, values)) = f.split_first() else {
            continue;
        };
        if values.is_empty() {
            return Err(line_err(
                features,
                line,
                format!("node `{name}` has no feature values"),
            ));
        }
        match width {
            None => width = Some(values.len()),
            Some(w) if w != values.len() => {
                return Err(line_err(
                    features,
                    line,
                    format!("{} feature values, the first row has {w}", values.len()),
                ))
            }
            _ => {}
        }
        let id = names.len() as u32;
        if names.insert(name.clone(), id).is_some() {
            return Err(line_err(
                features,
                line,
                format!("node `{name}` is listed twice"),
            ));
        }
        for (j, v) in values.iter().enumerate() {
            let x: f32 = v
                .parse()
                .ok()
                .filter(|x: &f32| x.is_finite())
                .ok_or_else(|| {
                    line_err(
                        features,
                        line,
                        format!("feature {} is `{v}`, not a finite number", j + 1),
                    )
                })?;
            if x != 0.0 {
                rows.push((id, j as u32, x));
            }
        }
    }
    let n = names.len();
    let Some(width) = width else {
        return Err(GraphDataError::Format {
            file: features.display().to_string(),
            message: "no nodes".into(),
        });
    };
    let node = |p: &Path, line: usize, name: &str| {
        names.get(name).copied().ok_or_else(|| {
            line_err(
                p,
                line,
                format!("node `{name}` is not in {}", features.display()),
            )
        })
    };
    let mut pairs = Vec::new();
    for (line, f) in records(edges)? {
        if f.len() != 2 {
            return Err(line_err(
                edges,
                line,
                format!("{} fields, an edge is `source target`", f.len()),
            ));
        }
        pairs.push((node(edges, line, &f[0])?, node(edges, line, &f[1])?));
    }
    let mut label_of = vec![None; n];
    if let Some(lp) = labels {
        for (line, f) in records(lp)? {
            if f.len() != 2 {
                return Err(line_err(
                    lp,
                    line,
                    format!("{} fields, a label line is `node label`", f.len()),
                ));
            }
            let id = node(lp, line, &f[0])? as usize;
            if label_of[id].is_some() {
                return Err(line_err(
                    lp,
                    line,
                    format!("node `{}` has a second label", f[0]),
                ));
            }
            label_of[id] = Some(f[1].clone());
        }
    }
    let classes: BTreeSet<&String> = label_of.iter().flatten().collect();
    let mut classes: Vec<&String> = classes.into_iter().collect();
    if classes.iter().all(|c| c.parse::<u64>().is_ok()) {
        classes.sort_by_key(|c| c.parse::<u64>().unwrap_or(0));
    }
    let index: HashMap<&String, i64> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as i64))
        .collect();
    let labels_v: Vec<i64> = label_of
        .iter()
        .map(|l| l.as_ref().map_or(-1, |l| index[l]))
        .collect();
    let edges_csr = adjacency(n, pairs.into_iter(), directed);
    let graph = Graph {
        describe: format!(
            "edge list {} ({n} nodes, {} edges, {width} features, {} classes)",
            edges.display(),
            edges_csr.nnz(),
            classes.len()
        ),
        edges: edges_csr,
        features: Csr::from_entries(n, width, &rows),
        labels: labels_v,
        num_classes: classes.len(),
        split: None,
    };
    Ok(graph)
}
