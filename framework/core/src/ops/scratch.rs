//! Scratch buffers kept per thread between kernel calls.
//!
//! A kernel that asks for `vec![0.0; n]` scratch on every call pays for a
//! zeroed allocation each time (the allocator keeps the memory, but
//! `calloc` must clear it again): in a ResNet-18 training step the
//! Winograd convolutions' per-group buffers alone were about 2% of the
//! CPU time in `memset`. [`with_scratch`] lends buffers from the calling
//! thread's spares instead, best fit first, and takes them back after the
//! closure; a buffer is only zeroed where it has to grow. The contents are
//! whatever an earlier user left: callers write before they read.

use super::Real;
use std::cell::RefCell;
use std::thread::LocalKey;

/// Spares kept per thread and type; more are dropped.
const MAX_SPARES: usize = 16;

thread_local! {
    static SPARE_F32: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static SPARE_F64: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

/// The element types that have spares.
pub(crate) trait Spare: Sized + 'static {
    fn spares() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>>;
}

impl Spare for f32 {
    fn spares() -> &'static LocalKey<RefCell<Vec<Vec<f32>>>> {
        &SPARE_F32
    }
}

impl Spare for f64 {
    fn spares() -> &'static LocalKey<RefCell<Vec<Vec<f64>>>> {
        &SPARE_F64
    }
}

/// Runs `f` on `N` buffers of exactly `lens[i]` elements each, lent from
/// this thread's spares (unspecified contents) and given back afterwards.
/// Nested calls on the same thread (rayon may run another task while
/// this one waits) get other spares or fresh buffers.
pub(crate) fn with_scratch<T: Real, const N: usize, R>(
    lens: [usize; N],
    f: impl FnOnce([&mut [T]; N]) -> R,
) -> R {
    let mut bufs: [Vec<T>; N] = T::spares().with(|s| {
        let mut s = s.borrow_mut();
        lens.map(|len| take_best_fit(&mut s, len))
    });
    for (b, &len) in bufs.iter_mut().zip(&lens) {
        if b.len() < len {
            b.resize(len, T::zero());
        }
    }
    let mut i = 0;
    let r = f(bufs.each_mut().map(|b| {
        let s = &mut b[..lens[i]];
        i += 1;
        s
    }));
    T::spares().with(|s| {
        let mut s = s.borrow_mut();
        s.extend(bufs.into_iter().filter(|b| !b.is_empty()));
        if s.len() > MAX_SPARES {
            // Keep the largest.
            s.sort_by_key(|b| std::cmp::Reverse(b.len()));
            s.truncate(MAX_SPARES);
        }
    });
    r
}

/// The smallest spare holding at least `len` elements, else the largest
/// (to grow), else a new empty one; nothing for an empty request (a
/// buffer a kernel does not need this call).
fn take_best_fit<T>(spares: &mut Vec<Vec<T>>, len: usize) -> Vec<T> {
    if len == 0 {
        return Vec::new();
    }
    let fit = spares
        .iter()
        .enumerate()
        .filter(|(_, b)| b.len() >= len)
        .min_by_key(|(_, b)| b.len())
        .or_else(|| spares.iter().enumerate().max_by_key(|(_, b)| b.len()))
        .map(|(i, _)| i);
    match fit {
        Some(i) => spares.swap_remove(i),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_buffers_of_the_lengths_asked_for_and_reuses_them() {
        let first = with_scratch::<f32, 2, _>([5, 3], |[a, b]| {
            assert_eq!((a.len(), b.len()), (5, 3));
            a.fill(1.0);
            b.fill(2.0);
            (a.as_ptr() as usize, b.as_ptr() as usize)
        });
        // The same thread gets the same memory back, best fit first: the
        // 3-element request takes the 3-element spare, the 4-element one the
        // 5-element spare.
        with_scratch::<f32, 2, _>([3, 4], |[a, b]| {
            assert_eq!(
                (a.as_ptr() as usize, b.as_ptr() as usize),
                (first.1, first.0)
            );
            assert_eq!((a.len(), b.len()), (3, 4));
            assert_eq!(a, &[2.0; 3]);
        });
        // An empty request takes no spare, and nothing empty is kept.
        let before = f32::spares().with(|s| s.borrow().len());
        with_scratch::<f32, 2, _>([0, 3], |[a, b]| {
            assert_eq!((a.len(), b.len()), (0, 3));
            assert_eq!(f32::spares().with(|s| s.borrow().len()), before - 1);
        });
        assert_eq!(f32::spares().with(|s| s.borrow().len()), before);
        // Nested: distinct buffers.
        with_scratch::<f64, 1, _>([8], |[a]| {
            a.fill(0.5);
            with_scratch::<f64, 1, _>([8], |[b]| {
                b.fill(1.5);
            });
            assert_eq!(a, &[0.5; 8]);
        });
    }

    #[test]
    fn keeps_at_most_max_spares() {
        with_scratch::<f32, 20, _>([7; 20], |_| ());
        let kept = f32::spares().with(|s| s.borrow().len());
        assert!(kept <= MAX_SPARES, "{kept} spares kept");
    }
}
