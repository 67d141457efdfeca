//! Sparse x dense matrix products, `S @ D` with a constant sparse `S`
//! ([`crate::graph::Csr`]) and a dense `D [S.cols, K]`: GCN's propagation
//! `Â H` and the first layer's `X W` on sparse features. The gradient with
//! respect to `D` is `Sᵀ @ dY` (the transpose is built once per matrix and
//! kept); `S` gets none.
//!
//! On the CPU the product is a custom op (rows in parallel, each row a sum
//! of scaled rows of `D`, f32 or f64); on other devices it is Candle's
//! `index_select` + `index_add`, whose gradients Candle has. Both are
//! gradient-checked against finite differences in
//! `framework/core/tests/gradcheck_spmm.rs`.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::graph::Csr;

/// A constant sparse matrix for [`spmm`], with its transpose built on
/// first use (by the backward pass). Cloning is cheap.
#[derive(Clone, Debug)]
pub struct SparseMatrix {
    a: Arc<Csr>,
    at: Arc<OnceLock<Arc<Csr>>>,
}

impl SparseMatrix {
    /// Wraps `a`.
    pub fn new(a: Csr) -> Self {
        SparseMatrix {
            a: Arc::new(a),
            at: Arc::new(OnceLock::new()),
        }
    }

    /// The matrix.
    pub fn csr(&self) -> &Csr {
        &self.a
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.a.rows, self.a.cols)
    }

    /// The transpose, sharing this matrix (whose transpose it is).
    pub fn t(&self) -> SparseMatrix {
        let at = self.at.get_or_init(|| Arc::new(self.a.transpose())).clone();
        let back = OnceLock::new();
        let _ = back.set(self.a.clone());
        SparseMatrix {
            a: at,
            at: Arc::new(back),
        }
    }
}

struct Spmm(SparseMatrix);

fn rows_product<T>(a: &Csr, d: &[T], k: usize) -> Vec<T>
where
    T: candle_core::WithDType + std::ops::AddAssign + std::ops::Mul<Output = T> + Send + Sync,
{
    let mut out = vec![T::zero(); a.rows * k];
    out.par_chunks_mut(k.max(1)).enumerate().for_each(|(r, o)| {
        let (cols, vals) = a.row(r);
        for (&c, &v) in cols.iter().zip(vals) {
            let v = T::from_f64(v as f64);
            let src = &d[c as usize * k..(c as usize + 1) * k];
            for (o, &s) in o.iter_mut().zip(src) {
                *o += v * s;
            }
        }
    });
    out
}

impl CustomOp1 for Spmm {
    fn name(&self) -> &'static str {
        "spmm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let a = self.0.csr();
        let (rows, k) = layout.shape().dims2()?;
        if rows != a.cols {
            bail!(
                "spmm: a {}x{} sparse matrix times a {rows}x{k} matrix",
                a.rows,
                a.cols
            )
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("spmm: the dense operand must be contiguous")
        };
        let out = match storage {
            CpuStorage::F32(d) => CpuStorage::F32(rows_product(a, &d[start..end], k)),
            CpuStorage::F64(d) => CpuStorage::F64(rows_product(a, &d[start..end], k)),
            _ => bail!("spmm: only f32 and f64 are supported"),
        };
        Ok((out, Shape::from((a.rows, k))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(spmm(&self.0.t(), grad_res)?))
    }
}

/// `s @ d` for `d [s.cols, K]`: `[s.rows, K]`, differentiable in `d`.
pub fn spmm(s: &SparseMatrix, d: &Tensor) -> Result<Tensor> {
    let (rows, k) = d.dims2()?;
    let (sr, sc) = s.dims();
    if rows != sc {
        bail!("spmm: a {sr}x{sc} sparse matrix times a {rows}x{k} matrix")
    }
    if d.device().is_cpu() && matches!(d.dtype(), DType::F32 | DType::F64) {
        return d.contiguous()?.apply_op1(Spmm(s.clone()));
    }
    spmm_composite(s, d)
}

/// `s @ d` from Candle ops (gather the rows of `d`, scale, scatter-add into
/// the output rows): what [`spmm`] runs on devices other than the CPU.
pub fn spmm_composite(s: &SparseMatrix, d: &Tensor) -> Result<Tensor> {
    let a = s.csr();
    let (_, k) = d.dims2()?;
    let dev = d.device();
    let row_ids: Vec<u32> = (0..a.rows)
        .flat_map(|r| std::iter::repeat_n(r as u32, a.indptr[r + 1] - a.indptr[r]))
        .collect();
    let rows = Tensor::from_vec(row_ids, a.nnz(), dev)?;
    let cols = Tensor::from_slice(&a.indices, a.nnz(), dev)?;
    let vals = Tensor::from_slice(&a.values, (a.nnz(), 1), dev)?.to_dtype(d.dtype())?;
    let gathered = d.index_select(&cols, 0)?.broadcast_mul(&vals)?;
    Tensor::zeros((a.rows, k), d.dtype(), dev)?.index_add(&rows, &gathered, 0)
}
