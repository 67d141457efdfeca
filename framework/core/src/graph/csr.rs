//! [`Csr`]: a sparse matrix in compressed sparse row layout, the form of
//! graph adjacencies and of sparse node features (bag-of-words), with the
//! transforms graph methods need: transposing, dropping entries, GCN's
//! symmetric normalisation with self-loops, row normalisation, permuting
//! rows.

use crate::error::{Error, Result};

/// A sparse `rows x cols` matrix: row `r`'s entries are
/// `indices[indptr[r]..indptr[r + 1]]` (column indices) with `values` at
/// the same positions.
#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row offsets into `indices` / `values` (`rows + 1` entries).
    pub indptr: Vec<usize>,
    /// Column index of each entry.
    pub indices: Vec<u32>,
    /// Value of each entry.
    pub values: Vec<f32>,
}

impl Csr {
    /// Checks the parts: `indptr` has `rows + 1` non-decreasing offsets
    /// from 0 to the number of entries, every column index is below
    /// `cols`, and the values are finite. `what` names the matrix in errors.
    pub fn new(
        what: &str,
        rows: usize,
        cols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<Csr> {
        let bad = |m: String| Err(Error::Data(format!("{what}: {m}")));
        if cols > u32::MAX as usize {
            return bad(format!(
                "{cols} columns exceed the 2^32 that CSR indices hold"
            ));
        }
        if indptr.len() != rows + 1 {
            return bad(format!(
                "indptr has {} entries, a {rows}-row matrix needs {}",
                indptr.len(),
                rows + 1
            ));
        }
        if indices.len() != values.len() {
            return bad(format!(
                "{} column indices but {} values",
                indices.len(),
                values.len()
            ));
        }
        if indptr[0] != 0 || indptr[rows] != indices.len() {
            return bad(format!(
                "indptr must run from 0 to the {} entries, it runs from {} to {}",
                indices.len(),
                indptr[0],
                indptr[rows]
            ));
        }
        if let Some(r) = (0..rows).find(|&r| indptr[r] > indptr[r + 1]) {
            return bad(format!("indptr decreases at row {r}"));
        }
        if let Some(c) = indices.iter().find(|&&c| c as usize >= cols) {
            return bad(format!(
                "column index {c} is out of range for {cols} columns"
            ));
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return bad(format!("a value is {v}"));
        }
        Ok(Csr {
            rows,
            cols,
            indptr,
            indices,
            values,
        })
    }

    /// The matrix with entries `(row, col, value)`; entries at the same
    /// position are summed, columns sorted within each row.
    pub fn from_entries(rows: usize, cols: usize, entries: &[(u32, u32, f32)]) -> Csr {
        let mut counts = vec![0usize; rows + 1];
        for &(r, _, _) in entries {
            counts[r as usize + 1] += 1;
        }
        for r in 0..rows {
            counts[r + 1] += counts[r];
        }
        let mut next = counts.clone();
        let mut cells = vec![(0u32, 0f32); entries.len()];
        for &(r, c, v) in entries {
            cells[next[r as usize]] = (c, v);
            next[r as usize] += 1;
        }
        let mut indptr = Vec::with_capacity(rows + 1);
        let mut indices = Vec::with_capacity(entries.len());
        let mut values = Vec::with_capacity(entries.len());
        indptr.push(0);
        for r in 0..rows {
            let row = &mut cells[counts[r]..counts[r + 1]];
            row.sort_by_key(|&(c, _)| c);
            for &(c, v) in row.iter() {
                if indices.len() > indptr[r] && *indices.last().unwrap_or(&u32::MAX) == c {
                    *values.last_mut().expect("a value per index") += v;
                } else {
                    indices.push(c);
                    values.push(v);
                }
            }
            indptr.push(indices.len());
        }
        Csr {
            rows,
            cols,
            indptr,
            indices,
            values,
        }
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Row `r`'s column indices and values.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// The entries `(row, col, value)` in row-major order.
    pub fn entries(&self) -> impl Iterator<Item = (u32, u32, f32)> + '_ {
        (0..self.rows).flat_map(move |r| {
            let (c, v) = self.row(r);
            c.iter().zip(v).map(move |(&c, &v)| (r as u32, c, v))
        })
    }

    /// The transpose (`cols x rows`), columns sorted within each row.
    pub fn transpose(&self) -> Csr {
        let mut counts = vec![0usize; self.cols + 1];
        for &c in &self.indices {
            counts[c as usize + 1] += 1;
        }
        for c in 0..self.cols {
            counts[c + 1] += counts[c];
        }
        let mut next = counts.clone();
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0f32; self.nnz()];
        // rows are visited in order, so each transposed row comes out sorted
        for (r, c, v) in self.entries() {
            let at = next[c as usize];
            indices[at] = r;
            values[at] = v;
            next[c as usize] += 1;
        }
        Csr {
            rows: self.cols,
            cols: self.rows,
            indptr: counts,
            indices,
            values,
        }
    }

    /// The entries for which `keep(row, col, entry_number)` holds
    /// (`entry_number` counts the entries in row-major order).
    pub fn filter(&self, mut keep: impl FnMut(u32, u32, usize) -> bool) -> Csr {
        let mut indptr = Vec::with_capacity(self.rows + 1);
        let mut indices = Vec::new();
        let mut values = Vec::new();
        indptr.push(0);
        let mut k = 0;
        for r in 0..self.rows {
            let (cs, vs) = self.row(r);
            for (&c, &v) in cs.iter().zip(vs) {
                if keep(r as u32, c, k) {
                    indices.push(c);
                    values.push(v);
                }
                k += 1;
            }
            indptr.push(indices.len());
        }
        Csr {
            rows: self.rows,
            cols: self.cols,
            indptr,
            indices,
            values,
        }
    }

    /// Each value multiplied by `scale(row, col)`.
    pub fn scaled(&self, scale: impl Fn(u32, u32) -> f32) -> Csr {
        let mut out = self.clone();
        for r in 0..self.rows {
            for k in self.indptr[r]..self.indptr[r + 1] {
                out.values[k] *= scale(r as u32, self.indices[k]);
            }
        }
        out
    }

    /// Each row divided by its sum (rows summing to 0 are left as they
    /// are): the feature normalisation of GCN, DGI and GRACE.
    pub fn row_normalized(&self) -> Csr {
        let sums: Vec<f32> = (0..self.rows).map(|r| self.row(r).1.iter().sum()).collect();
        self.scaled(|r, _| {
            let s = sums[r as usize];
            if s != 0.0 {
                1.0 / s
            } else {
                1.0
            }
        })
    }

    /// Row `i` of the result is row `perm[i]` of `self` (DGI's corruption
    /// of the feature matrix by a row shuffle).
    pub fn permute_rows(&self, perm: &[usize]) -> Csr {
        let mut indptr = Vec::with_capacity(self.rows + 1);
        let mut indices = Vec::with_capacity(self.nnz());
        let mut values = Vec::with_capacity(self.nnz());
        indptr.push(0);
        for &p in perm {
            let (c, v) = self.row(p);
            indices.extend_from_slice(c);
            values.extend_from_slice(v);
            indptr.push(indices.len());
        }
        Csr {
            rows: perm.len(),
            cols: self.cols,
            indptr,
            indices,
            values,
        }
    }

    /// The propagation matrix of a GCN layer (Kipf and Welling 2017) for
    /// the square adjacency `self`, whose row `i` lists the nodes that send
    /// messages to `i`: existing self-loops are replaced by one of weight 1
    /// per node, and entry `(i, j)` becomes `a_ij / sqrt(d_i d_j)`, with
    /// `d_i` the sum of row `i` (self-loop included). For a symmetric
    /// adjacency this is `D^-1/2 (A + I) D^-1/2`.
    pub fn gcn_normalized(&self) -> Csr {
        let n = self.rows;
        let mut entries: Vec<(u32, u32, f32)> =
            self.entries().filter(|&(r, c, _)| r != c).collect();
        entries.extend((0..n as u32).map(|i| (i, i, 1.0)));
        let a = Csr::from_entries(n, self.cols.max(n), &entries);
        let deg: Vec<f32> = (0..n).map(|r| a.row(r).1.iter().sum()).collect();
        let inv: Vec<f32> = deg
            .iter()
            .map(|&d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
            .collect();
        a.scaled(|r, c| inv[r as usize] * inv[c as usize])
    }

    /// The dense matrix, row-major (for tests and small graphs).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, c, v) in self.entries() {
            out[r as usize * self.cols + c as usize] += v;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Csr {
        // [[0, 1, 0], [2, 0, 3]]
        Csr::from_entries(2, 3, &[(1, 2, 3.0), (0, 1, 1.0), (1, 0, 2.0)])
    }

    #[test]
    fn from_entries_sorts_and_sums_duplicates() {
        let a = Csr::from_entries(2, 2, &[(0, 1, 1.0), (0, 0, 2.0), (0, 1, 0.5)]);
        assert_eq!(a.indptr, vec![0, 2, 2]);
        assert_eq!(a.indices, vec![0, 1]);
        assert_eq!(a.values, vec![2.0, 1.5]);
    }

    #[test]
    fn transpose_matches_the_dense_transpose() {
        let a = small();
        let t = a.transpose();
        assert_eq!((t.rows, t.cols), (3, 2));
        let (d, dt) = (a.to_dense(), t.to_dense());
        for r in 0..2 {
            for c in 0..3 {
                assert_eq!(d[r * 3 + c], dt[c * 2 + r]);
            }
        }
        assert_eq!(t.transpose(), a);
    }

    #[test]
    fn new_rejects_bad_parts() {
        let e = Csr::new("m", 2, 2, vec![0, 1], vec![0], vec![1.0]).unwrap_err();
        assert!(e.to_string().contains("indptr has 2 entries"), "{e}");
        let e = Csr::new("m", 1, 2, vec![0, 1], vec![2], vec![1.0]).unwrap_err();
        assert!(e.to_string().contains("column index 2"), "{e}");
        let e = Csr::new("m", 2, 2, vec![0, 2, 1], vec![0, 1], vec![1.0, 1.0]).unwrap_err();
        assert!(e.to_string().contains("indptr"), "{e}");
        let e = Csr::new("m", 1, 2, vec![0, 1], vec![0], vec![f32::NAN]).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
    }

    #[test]
    fn gcn_normalization_of_a_path() {
        // 0 - 1 - 2, with a self-loop on 0 that is replaced
        let a = Csr::from_entries(
            3,
            3,
            &[
                (0, 0, 5.0),
                (0, 1, 1.0),
                (1, 0, 1.0),
                (1, 2, 1.0),
                (2, 1, 1.0),
            ],
        );
        let n = a.gcn_normalized().to_dense();
        let d = [2.0f32, 3.0, 2.0];
        let want = |i: usize, j: usize, a: f32| a / (d[i] * d[j]).sqrt();
        let expect = [
            want(0, 0, 1.0),
            want(0, 1, 1.0),
            0.0,
            want(1, 0, 1.0),
            want(1, 1, 1.0),
            want(1, 2, 1.0),
            0.0,
            want(2, 1, 1.0),
            want(2, 2, 1.0),
        ];
        for (g, w) in n.iter().zip(expect) {
            assert!((g - w).abs() < 1e-6, "{n:?}");
        }
    }

    #[test]
    fn row_normalization_and_permutation() {
        let a = small().row_normalized();
        assert_eq!(a.to_dense(), vec![0.0, 1.0, 0.0, 0.4, 0.0, 0.6]);
        let p = a.permute_rows(&[1, 0, 1]);
        assert_eq!(p.rows, 3);
        assert_eq!(p.row(0), a.row(1));
        assert_eq!(p.row(1), a.row(0));
        let f = small().filter(|_, c, _| c != 0);
        assert_eq!(f.to_dense(), vec![0.0, 1.0, 0.0, 0.0, 0.0, 3.0]);
    }
}
