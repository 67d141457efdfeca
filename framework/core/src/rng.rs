//! The project's seeded random number generator.
//!
//! Candle's CPU RNG cannot be seeded, so everything random in a run
//! (initialisation, data order, augmentation, dropout, masking) draws from
//! [`Rng`], a ChaCha8 stream. Independent streams are derived from the run's
//! seed and a purpose tag with [`Rng::derive`], so that adding a worker thread
//! or reordering code does not change another stream.

use candle_core::{DType, Device, Shape, Tensor};
use rand::{Rng as _, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded random number generator. It needs no saving: every stream of
/// a run is derived from the seed and the step, epoch or sample index.
#[derive(Clone, Debug)]
pub struct Rng {
    inner: ChaCha8Rng,
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// An independent stream derived from `seed`, a purpose tag and indices
    /// (e.g. epoch and sample index): the same arguments give the same stream.
    pub fn derive(seed: u64, purpose: &str, indices: &[u64]) -> Self {
        // FNV-1a over the inputs, then SplitMix64 to spread the bits.
        let mut h: u64 = 0xcbf29ce484222325;
        let mut eat = |b: u8| {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        };
        seed.to_le_bytes().into_iter().for_each(&mut eat);
        purpose.bytes().for_each(&mut eat);
        for i in indices {
            i.to_le_bytes().into_iter().for_each(&mut eat);
        }
        let mut z = h.wrapping_add(0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        Self::new(z ^ (z >> 31))
    }

    /// A uniform draw in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.inner.random::<f32>()
    }

    /// A standard normal draw (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = (1.0 - self.inner.random::<f64>()).max(f64::MIN_POSITIVE);
        let u2 = self.inner.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// A Fisher-Yates shuffle of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.inner.random_range(0..=i);
            p.swap(i, j);
        }
        p
    }

    /// A tensor of uniform draws in [lo, hi).
    pub fn uniform_tensor<S: Into<Shape>>(
        &mut self,
        shape: S,
        lo: f64,
        hi: f64,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let shape = shape.into();
        let v: Vec<f32> = (0..shape.elem_count())
            .map(|_| (lo + (hi - lo) * self.inner.random::<f64>()) as f32)
            .collect();
        Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
    }

    /// A tensor of normal draws with `mean` and `std`.
    pub fn normal_tensor<S: Into<Shape>>(
        &mut self,
        shape: S,
        mean: f64,
        std: f64,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let shape = shape.into();
        let v: Vec<f32> = (0..shape.elem_count())
            .map(|_| (mean + std * self.normal() as f64) as f32)
            .collect();
        Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
    }

    /// The underlying generator, for code that takes a `rand::RngCore`.
    pub fn core(&mut self) -> &mut dyn RngCore {
        &mut self.inner
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.inner.fill_bytes(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xa: Vec<f32> = (0..5).map(|_| a.uniform()).collect();
        let xb: Vec<f32> = (0..5).map(|_| b.uniform()).collect();
        assert_eq!(xa, xb);
        let mut c = Rng::new(8);
        let xc: Vec<f32> = (0..5).map(|_| c.uniform()).collect();
        assert_ne!(xa, xc);
    }

    #[test]
    fn derived_streams_differ_by_purpose_and_index() {
        let x = Rng::derive(1, "aug", &[0, 1]).uniform();
        assert_ne!(x, Rng::derive(1, "aug", &[0, 2]).uniform());
        assert_ne!(x, Rng::derive(1, "drop", &[0, 1]).uniform());
        assert_eq!(x, Rng::derive(1, "aug", &[0, 1]).uniform());
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = Rng::new(3).permutation(100);
        p.sort();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }
}
