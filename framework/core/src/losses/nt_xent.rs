//! NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.
//!
//! Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive
//! Learning of Visual Representations", ICML 2020, eq. (1).
//!
//! Inputs: `z0 [N, D]`, `z1 [N, D]`, two views of the same `N` examples.
//! The `2N` embeddings are L2-normalised; for each, the positive is the other
//! view of its example and the negatives are the other `2N - 2` embeddings.
//! The loss is the mean over the `2N` anchors of
//! `-log(exp(s_pos / t) / sum_{k != i} exp(s_ik / t))` (lightly's
//! `NTXentLoss` with `memory_bank_size = 0`). Output: a scalar.
//!
//! On the CPU (float32/float64) the `2N x 2N` part runs as one fused op (no
//! dense identity mask, no chain of elementwise tensors). Up to 1 GiB of
//! similarities, `z zᵀ` is one matrix product kept for the backward pass;
//! a threaded, vectorisable read-only pass gives each row's masked
//! log-sum-exp (the anchor's own column is skipped), and the backward pass
//! forms the symmetric `S = diag(g) P + Pᵀ diag(g)` row by row from the
//! kept similarities and takes one more product, `dz = S z / t`. Above
//! 1 GiB the similarities are computed in blocks of rows, in the forward
//! pass and again in the backward pass. At `N x D = 4096 x 128` forward +
//! backward (of the earlier two-product backward pass)
//! took 0.6 s against 2.7 s for the masked-matrix version (release build, 2
//! cores). Other devices and dtypes use the same definition built from basic
//! tensor ops ([`masked_row_lse_reference`]).

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Storage, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::losses::common::{check_temperature, mask_value, row_dot, same_shape};
use crate::losses::{l2_normalize, log_sum_exp_rows, Loss, LossInputs};

/// Configuration of [`NtXent`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NtXentConfig {
    /// Softmax temperature; SimCLR's default for its batch sizes is 0.5
    /// (lightly's default), 0.1 in the paper's best ImageNet runs.
    pub temperature: f64,
}

impl Default for NtXentConfig {
    fn default() -> Self {
        NtXentConfig { temperature: 0.5 }
    }
}

/// The NT-Xent loss.
pub struct NtXent {
    temperature: f64,
}

impl NtXent {
    /// Builds the loss; the temperature must be positive.
    pub fn new(cfg: NtXentConfig) -> Result<Self> {
        check_temperature("nt_xent", "temperature", cfg.temperature)?;
        Ok(NtXent {
            temperature: cfg.temperature,
        })
    }
}

impl Loss for NtXent {
    fn forward(&self, inputs: &LossInputs) -> Result<Tensor> {
        let z0 = inputs.get("nt_xent", "z0")?;
        let z1 = inputs.get("nt_xent", "z1")?;
        let (n, _) = same_shape("nt_xent", ("z0", z0), ("z1", z1))?;
        if n == 0 {
            return Err(Error::Shape("nt_xent: empty batch".into()));
        }
        let scale = 1.0 / self.temperature;
        let z = l2_normalize(&Tensor::cat(&[z0, z1], 0)?)?;
        // Each positive pair appears twice (i -> i + N and back), with the
        // same similarity: the mean over 2N anchors of s_pos is the mean
        // over N pairs.
        let pos = row_dot(&z.narrow(0, 0, n)?, &z.narrow(0, n, n)?)?;
        let lse = masked_row_lse(&z, scale)?;
        Ok((lse.mean_all()? - (pos.mean_all()? * scale)?)?)
    }
}

/// `lse_i = log sum_{k != i} exp(scale * z_i . z_k)` for the rows of
/// `z [M, D]`: fused on the CPU (float32/float64), basic ops elsewhere.
pub fn masked_row_lse(z: &Tensor, scale: f64) -> Result<Tensor> {
    let m = z.dim(0)?;
    // without a gradient to compute (evaluation) nothing is kept
    let keep_probs = z.track_op() && m * m * z.dtype().size_in_bytes() <= KEEP_PROBS_BYTES;
    fused_or_reference(z, scale, keep_probs)
}

/// [`masked_row_lse`] with the choice of keeping the probabilities for the
/// backward pass (`true`) or recomputing them block by block (`false`).
fn fused_or_reference(z: &Tensor, scale: f64, keep_probs: bool) -> Result<Tensor> {
    let fused = matches!(z.device(), Device::Cpu) && matches!(z.dtype(), DType::F32 | DType::F64);
    if fused {
        Ok(z.contiguous()?.apply_op1(MaskedLse {
            scale,
            keep_probs,
            sims: Mutex::new(None),
        })?)
    } else {
        masked_row_lse_reference(z, scale)
    }
}

/// The definition of [`masked_row_lse`] in basic tensor ops (any device).
pub fn masked_row_lse_reference(z: &Tensor, scale: f64) -> Result<Tensor> {
    let m = z.dim(0)?;
    let logits = (z.matmul(&z.t()?)? * scale)?;
    let mask = Tensor::eye(m, z.dtype(), z.device())?.affine(mask_value(z.dtype()), 0.0)?;
    log_sum_exp_rows(&(logits + mask)?)
}

/// Up to this size the `[M, M]` probabilities are kept from the forward
/// pass for the backward pass (three matrix products in all); above it they
/// are recomputed in row blocks (four products, memory `O(BLOCK_ROWS * M)`).
const KEEP_PROBS_BYTES: usize = 1 << 30;

/// Rows of the similarity matrix computed at a time.
const BLOCK_ROWS: usize = 512;

/// The fused masked log-sum-exp of the rows of `z zᵀ * scale`.
struct MaskedLse {
    scale: f64,
    keep_probs: bool,
    sims: Mutex<Option<Tensor>>,
}

/// The float types the fused op runs on.
trait Real: candle_core::WithDType + crate::ops::Real {
    /// `exp(self)` for `self <= 0` (larger arguments are clamped), fast.
    fn exp_nonpos(self) -> Self;
    fn ln(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn exp_nonpos(self) -> Self {
        exp_f32(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn exp_nonpos(self) -> Self {
        f64::exp(self.min(700.0))
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
}

/// `exp(x)` in float32 without a library call, so that loops over it
/// vectorise: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, `e^r` by Cephes'
/// degree-5 minimax polynomial (relative error about 2e-7), `2^n` through
/// the exponent bits. `x` is clamped to [-87, 88]: below, the result is
/// about 1.6e-38 instead of 0.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // adding and subtracting 1.5 * 2^23 rounds to the nearest integer
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    er * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The largest value of `s` (8 lanes, so that the loop vectorises).
fn lane_max<T: Real>(s: &[T]) -> T {
    let mut lanes = [T::from_f64(f64::NEG_INFINITY); 8];
    let chunks = s.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v > *l { v } else { *l };
        }
    }
    let mut m = T::from_f64(f64::NEG_INFINITY);
    for &v in lanes.iter().chain(rest) {
        m = if v > m { v } else { m };
    }
    m
}

/// The sum of `s` (8 lanes, so that the loop vectorises).
fn lane_sum<T: Real>(s: &[T]) -> T {
    lane_sum_map(s, |v| v)
}

/// The sum of `f(v)` over `s`, in eight lanes the compiler vectorises.
fn lane_sum_map<T: Real>(s: &[T], f: impl Fn(T) -> T) -> T {
    let mut lanes = [T::from_f64(0.0); 8];
    let chunks = s.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v);
        }
    }
    let mut total = T::from_f64(0.0);
    for &v in rest {
        total += f(v);
    }
    for l in lanes {
        total += l;
    }
    total
}

/// For the row `s` of anchor `i`: writes `exp(scale * s_k - max)` into
/// `out` (0 at `i`), where `max` is the largest `scale * s_k`, `k != i`, and
/// returns `(max, sum of out)`.
fn row_exp<T: Real>(s: &[T], i: usize, scale: T, out: &mut [T]) -> (T, T) {
    let lo = lane_max(&s[..i]);
    let hi = lane_max(&s[i + 1..]);
    let max = if lo > hi { lo } else { hi } * scale;
    for (o, &v) in out.iter_mut().zip(s) {
        *o = (v * scale - max).exp_nonpos();
    }
    out[i] = T::from_f64(0.0);
    (max, lane_sum(out))
}

/// The rows `r0..r0 + b` of `z zᵀ` as a contiguous CPU tensor.
fn sim_block(z: &Tensor, zt: &Tensor, r0: usize, b: usize) -> candle_core::Result<Tensor> {
    z.narrow(0, r0, b)?.matmul(zt)?.contiguous()
}

/// Calls `f` on the data of a contiguous CPU tensor.
fn with_slice<T: Real, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("nt_xent fused op: expected a cpu tensor");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("nt_xent fused op: expected a contiguous tensor");
    };
    Ok(f(&T::cpu_storage_as_slice(cpu)?[start..end]))
}

/// Runs `f(row, s_row, lse_row, out_row)` for each row of the block `s`
/// (rows of width `m`, the first being row `r0`), split across the worker
/// threads. `out` holds the rows' outputs (width `m`), or is empty, and
/// then each thread gets a scratch row instead.
fn for_rows<T: Real>(
    s: &[T],
    m: usize,
    r0: usize,
    lse: &mut [T],
    out: &mut [T],
    f: impl Fn(usize, &[T], &mut T, &mut [T]) + Sync,
) {
    let rows = lse.len();
    let threads = candle_core::utils::get_num_threads()
        .clamp(1, 64)
        .min(rows.max(1));
    let per = rows.div_ceil(threads).max(1);
    let has_out = !out.is_empty();
    let mut out_parts: Vec<&mut [T]> = if has_out {
        out.chunks_mut(per * m).collect()
    } else {
        Vec::new()
    };
    std::thread::scope(|scope| {
        for (c, (s_part, l_part)) in s.chunks(per * m).zip(lse.chunks_mut(per)).enumerate() {
            let o_part = if has_out {
                Some(std::mem::take(&mut out_parts[c]))
            } else {
                None
            };
            let f = &f;
            scope.spawn(move || {
                let mut o_part = o_part;
                let mut scratch = if o_part.is_none() {
                    vec![T::from_f64(0.0); m]
                } else {
                    Vec::new()
                };
                for (r, (s_row, l)) in s_part.chunks(m).zip(l_part.iter_mut()).enumerate() {
                    let o_row: &mut [T] = match &mut o_part {
                        Some(o) => &mut o[r * m..(r + 1) * m],
                        None => &mut scratch[..],
                    };
                    f(r0 + c * per + r, s_row, l, o_row);
                }
            });
        }
    });
}

/// The masked row log-sum-exp of `z zᵀ * scale` (`[M]`), a block of rows
/// at a time (memory `O(BLOCK_ROWS * M)`; nothing kept).
fn lse_by_blocks<T: Real>(z: &Tensor, scale: f64) -> candle_core::Result<Vec<T>> {
    let m = z.dim(0)?;
    let zt = z.t()?;
    let scale = T::from_f64(scale);
    let mut lse = vec![T::from_f64(0.0); m];
    for r0 in (0..m).step_by(BLOCK_ROWS) {
        let b = BLOCK_ROWS.min(m - r0);
        let sim = sim_block(z, &zt, r0, b)?;
        with_slice::<T, _>(&sim, |s| {
            for_rows(
                s,
                m,
                r0,
                &mut lse[r0..r0 + b],
                &mut [],
                |i, s_row, l, p_row| {
                    let (max, sum) = row_exp(s_row, i, scale, p_row);
                    *l = max + sum.ln();
                },
            )
        })?;
    }
    Ok(lse)
}

/// Splits the rows of an `m`-column row-major buffer across the worker
/// threads: `f(first_row, rows)` on each part.
fn par_rows<T: Real>(buf: &mut [T], m: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let rows = buf.len() / m.max(1);
    let threads = candle_core::utils::get_num_threads()
        .clamp(1, 64)
        .min(rows.max(1));
    let per = rows.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (c, part) in buf.chunks_mut(per * m).enumerate() {
            let f = &f;
            scope.spawn(move || f(c * per, part));
        }
    });
}

/// The masked row log-sum-exp of `z zᵀ * scale` (`[M]`) and the
/// similarities `z zᵀ` (`[M, M]`), kept for the backward pass: one matrix
/// product, then one read-only pass over its rows.
fn lse_and_sims<T: Real>(z: &Tensor, scale: f64) -> candle_core::Result<(Vec<T>, Tensor)> {
    let m = z.dim(0)?;
    let sims = z.matmul(&z.t()?)?.contiguous()?;
    let scale = T::from_f64(scale);
    let mut lse = vec![T::from_f64(0.0); m];
    with_slice::<T, _>(&sims, |s| {
        par_rows(&mut lse, 1, |first, part| {
            for (r, l) in part.iter_mut().enumerate() {
                let i = first + r;
                let row = &s[i * m..(i + 1) * m];
                let (lo, hi) = (lane_max(&row[..i]), lane_max(&row[i + 1..]));
                let max = if lo > hi { lo } else { hi } * scale;
                let exp = |v: T| (v * scale - max).exp_nonpos();
                let sum = lane_sum_map(&row[..i], exp) + lane_sum_map(&row[i + 1..], exp);
                *l = max + sum.ln();
            }
        })
    })?;
    Ok((lse, sims))
}

/// The backward pass from the kept similarities: `dz = S z` with the
/// symmetric `S = diag(g) P + Pᵀ diag(g)`, formed row by row as
/// `S_ik = g_i exp(a_ik - lse_i) + g_k exp(a_ik - lse_k)` (`a = scale z zᵀ`
/// is symmetric, so `P_ki = exp(a_ik - lse_k)`: no transposed reads), then
/// one matrix product instead of two.
fn grad_from_sims<T: Real>(
    sims: &Tensor,
    z: &Tensor,
    g: &[T],
    lse: &[T],
    scale: f64,
) -> candle_core::Result<Tensor> {
    let m = g.len();
    let scale = T::from_f64(scale);
    let zero = T::from_f64(0.0);
    let sym = with_slice::<T, _>(sims, |s| {
        let mut out = vec![zero; m * m];
        par_rows(&mut out, m, |first, rows| {
            for (r, row) in rows.chunks_mut(m).enumerate() {
                let i = first + r;
                let (gi, li) = (g[i], lse[i]);
                let src = &s[i * m..(i + 1) * m];
                for (((o, &v), &gk), &lk) in row.iter_mut().zip(src).zip(g).zip(lse) {
                    let a = v * scale;
                    *o = gi * (a - li).exp_nonpos() + gk * (a - lk).exp_nonpos();
                }
                row[i] = zero;
            }
        });
        out
    })?;
    Tensor::from_vec(sym, (m, m), &Device::Cpu)?.matmul(z)
}

/// The gradient `scale * (g ⊙ (P z) + Pᵀ (g ⊙ z))` (`g` already scaled) with
/// `P` recomputed in row blocks from `z` and the row log-sum-exp `lse`.
fn grad_by_blocks<T: Real>(
    z: &Tensor,
    lse: &Tensor,
    g: &Tensor,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let m = z.dim(0)?;
    let zt = z.t()?;
    let lse: Vec<T> = lse.to_vec1::<T>()?;
    let gz = z.broadcast_mul(g)?;
    let scale = T::from_f64(scale);
    let mut own = Vec::new();
    let mut others: Option<Tensor> = None;
    for r0 in (0..m).step_by(BLOCK_ROWS) {
        let b = BLOCK_ROWS.min(m - r0);
        let sim = sim_block(z, &zt, r0, b)?;
        let mut p = vec![T::from_f64(0.0); b * m];
        let mut lse_blk = lse[r0..r0 + b].to_vec();
        with_slice::<T, _>(&sim, |s| {
            for_rows(s, m, r0, &mut lse_blk, &mut p, |i, s_row, l, p_row| {
                for (o, &v) in p_row.iter_mut().zip(s_row) {
                    *o = (v * scale - *l).exp_nonpos();
                }
                p_row[i] = T::from_f64(0.0);
            })
        })?;
        let p = Tensor::from_vec(p, (b, m), &Device::Cpu)?;
        own.push(p.matmul(z)?.broadcast_mul(&g.narrow(0, r0, b)?)?);
        let o = p.t()?.matmul(&gz.narrow(0, r0, b)?)?;
        others = Some(match others {
            Some(acc) => (acc + o)?,
            None => o,
        });
    }
    let own = Tensor::cat(&own, 0)?;
    match others {
        Some(o) => own + o,
        None => Ok(own),
    }
}

fn run_fwd<T: Real>(
    op: &MaskedLse,
    data: &[T],
    layout: &Layout,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (m, d) = layout.shape().dims2()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("nt_xent fused op: input is not contiguous");
    };
    let (lse, probs) = if op.keep_probs {
        let z = Tensor::from_slice(&data[start..end], (m, d), &Device::Cpu)?;
        let (lse, sims) = lse_and_sims::<T>(&z, op.scale)?;
        (lse, Some(sims))
    } else {
        let z = Tensor::from_slice(&data[start..end], (m, d), &Device::Cpu)?;
        (lse_by_blocks::<T>(&z, op.scale)?, None)
    };
    *op.sims.lock().unwrap_or_else(|e| e.into_inner()) = probs;
    Ok((T::to_cpu_storage_owned(lse), Shape::from(m)))
}

impl CustomOp1 for MaskedLse {
    fn name(&self) -> &'static str {
        "nt_xent_masked_lse"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        match storage {
            CpuStorage::F32(v) => run_fwd::<f32>(self, v, layout),
            CpuStorage::F64(v) => run_fwd::<f64>(self, v, layout),
            other => candle_core::bail!("nt_xent fused op: unsupported dtype {:?}", other.dtype()),
        }
    }

    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // d lse_i / d z = scale * (sum_k P_ik z_k) through the anchor, and
        // scale * P_ik z_i through each other row k:
        // dz = scale * (g ⊙ (P z) + Pᵀ (g ⊙ z)).
        let z = arg.detach();
        let g = (grad.detach() * self.scale)?.unsqueeze(1)?;
        // taken: a second backward pass recomputes them block by block
        let cached = self.sims.lock().unwrap_or_else(|e| e.into_inner()).take();
        let dz = match cached {
            Some(sims) => {
                let (z, g) = (z.contiguous()?, g.flatten_all()?);
                match z.dtype() {
                    DType::F64 => grad_from_sims::<f64>(
                        &sims,
                        &z,
                        &g.to_vec1()?,
                        &res.to_vec1()?,
                        self.scale,
                    )?,
                    _ => grad_from_sims::<f32>(
                        &sims,
                        &z,
                        &g.to_vec1()?,
                        &res.to_vec1()?,
                        self.scale,
                    )?,
                }
            }
            None => match z.dtype() {
                DType::F64 => grad_by_blocks::<f64>(&z, &res.detach(), &g, self.scale)?,
                _ => grad_by_blocks::<f32>(&z, &res.detach(), &g, self.scale)?,
            },
        };
        Ok(Some(dz))
    }
}

crate::register!(
    loss,
    "nt_xent",
    "SimCLR's normalised temperature-scaled cross-entropy (Chen et al. 2020)",
    |p| Ok(Box::new(NtXent::new(p.extract()?)?))
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::Var;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    #[test]
    fn fused_matches_reference_values_and_gradients() {
        let mut rng = Rng::new(5);
        // 1100 rows: more than two row blocks, the last one partial
        for (dtype, m, scale) in [
            (DType::F32, 13, 3.0),
            (DType::F64, 13, 3.0),
            (DType::F32, 1100, 10.0),
            (DType::F64, 1100, 100.0),
        ] {
            let z = rng
                .normal_tensor((m, 6), 0.0, 1.0, dtype, &Device::Cpu)
                .unwrap();
            let z = Var::from_tensor(&l2_normalize(&z).unwrap()).unwrap();
            let w = rng.normal_tensor(m, 0.0, 1.0, dtype, &Device::Cpu).unwrap();
            let reference = masked_row_lse_reference(z.as_tensor(), scale).unwrap();
            let gr = (&reference * &w)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gr = gr.get(z.as_tensor()).unwrap();
            for keep in [true, false] {
                let fused = fused_or_reference(z.as_tensor(), scale, keep).unwrap();
                let tol = if dtype == DType::F32 { 1e-4 } else { 1e-10 } * scale;
                let d = max_abs_diff(&fused, &reference);
                assert!(d < tol, "{dtype:?} m={m} keep={keep}: value {d}");
                let gf = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
                let d = max_abs_diff(gf.get(z.as_tensor()).unwrap(), gr);
                assert!(d < tol, "{dtype:?} m={m} keep={keep}: gradient {d}");
            }
        }
    }

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            worst = worst.max((got - want).abs() / want);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-1e30) < 1e-37 && exp_f32(-1e30) >= 0.0);
        assert!(exp_f32(1e30).is_finite());
    }
}
