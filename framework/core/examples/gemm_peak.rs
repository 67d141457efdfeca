//! How close `gemm` (the GEMM under the convolutions) comes to this CPU's
//! peak on the products of a CIFAR ResNet-18 training step.
//!
//! Measures the peak of one core first — a loop of independent AVX-512
//! fused multiply-adds (12 accumulators, no memory traffic) — then runs the
//! step's heaviest products one at a time on one thread, with the shapes
//! and strides the convolutions pass (batch 64, chunks of 8 images; from
//! the `layer1`, `layer2` and `layer3` 3x3 convolutions: forward, kernel
//! gradient, input gradient), and prints GFLOP/s and the share of the peak.
//!
//! `cargo run --release -p parallax-core --example gemm_peak [REPS]`

use std::time::Instant;

/// (what, m, n, k, dst strides, lhs strides, rhs strides, accumulate)
type Case = (
    &'static str,
    usize,
    usize,
    usize,
    (usize, usize),
    (usize, usize),
    (usize, usize),
    bool,
);

const CASES: &[Case] = &[
    (
        "64->64 @32 forward",
        64,
        3072,
        576,
        (1, 64),
        (576, 1),
        (1, 576),
        false,
    ),
    (
        "64->64 @32 kernel grad.",
        64,
        576,
        3072,
        (576, 1),
        (3072, 1),
        (576, 1),
        true,
    ),
    (
        "64->64 @32 input grad.",
        576,
        3072,
        64,
        (1, 576),
        (1, 576),
        (3072, 1),
        false,
    ),
    (
        "128->128 @16 forward",
        128,
        1536,
        1152,
        (1, 128),
        (1152, 1),
        (1, 1152),
        false,
    ),
    (
        "128->128 @16 kernel grad.",
        128,
        1152,
        1536,
        (1152, 1),
        (1536, 1),
        (1152, 1),
        true,
    ),
    (
        "128->128 @16 input grad.",
        1152,
        1536,
        128,
        (1, 1152),
        (1, 1152),
        (1536, 1),
        false,
    ),
    (
        "256->256 @8 forward",
        256,
        832,
        2304,
        (1, 256),
        (2304, 1),
        (1, 2304),
        false,
    ),
    (
        "256->256 @8 kernel grad.",
        256,
        2304,
        832,
        (2304, 1),
        (832, 1),
        (2304, 1),
        true,
    ),
    (
        "256->256 @8 input grad.",
        2304,
        832,
        256,
        (1, 2304),
        (1, 2304),
        (832, 1),
        false,
    ),
];

/// GFLOP/s of one core: 12 independent chains of 16-lane fused
/// multiply-adds (more than the 2 units x 4 cycles of latency need) in
/// registers, on zeros (no denormals). Written in assembly: the AVX-512
/// intrinsics need a newer Rust than the workspace's minimum.
#[cfg(target_arch = "x86_64")]
fn fma_peak() -> f64 {
    let iters: u64 = 100_000_000;
    let t = Instant::now();
    // SAFETY: called only where the CPU has AVX-512F; touches no memory
    // and declares every register it writes.
    unsafe {
        std::arch::asm!(
            "vpxord zmm0, zmm0, zmm0",
            "vpxord zmm1, zmm1, zmm1",
            "vpxord zmm2, zmm2, zmm2",
            "vpxord zmm3, zmm3, zmm3",
            "vpxord zmm4, zmm4, zmm4",
            "vpxord zmm5, zmm5, zmm5",
            "vpxord zmm6, zmm6, zmm6",
            "vpxord zmm7, zmm7, zmm7",
            "vpxord zmm8, zmm8, zmm8",
            "vpxord zmm9, zmm9, zmm9",
            "vpxord zmm10, zmm10, zmm10",
            "vpxord zmm11, zmm11, zmm11",
            "vpxord zmm12, zmm12, zmm12",
            "vpxord zmm13, zmm13, zmm13",
            "2:",
            "vfmadd231ps zmm0, zmm12, zmm13",
            "vfmadd231ps zmm1, zmm12, zmm13",
            "vfmadd231ps zmm2, zmm12, zmm13",
            "vfmadd231ps zmm3, zmm12, zmm13",
            "vfmadd231ps zmm4, zmm12, zmm13",
            "vfmadd231ps zmm5, zmm12, zmm13",
            "vfmadd231ps zmm6, zmm12, zmm13",
            "vfmadd231ps zmm7, zmm12, zmm13",
            "vfmadd231ps zmm8, zmm12, zmm13",
            "vfmadd231ps zmm9, zmm12, zmm13",
            "vfmadd231ps zmm10, zmm12, zmm13",
            "vfmadd231ps zmm11, zmm12, zmm13",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _,
            options(nostack, nomem),
        );
    }
    (iters * 12 * 16 * 2) as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn span(r: usize, c: usize, (rs, cs): (usize, usize)) -> usize {
    (r - 1) * rs + (c - 1) * cs + 1
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    #[cfg(target_arch = "x86_64")]
    let peak = if std::arch::is_x86_feature_detected!("avx512f") {
        (0..3).map(|_| fma_peak()).fold(0.0, f64::max)
    } else {
        f64::NAN
    };
    #[cfg(not(target_arch = "x86_64"))]
    let peak = f64::NAN;
    println!("one core, AVX-512 FMA peak: {peak:.1} GFLOP/s");
    let mut x = 1u64;
    let mut rand = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    for &(what, m, n, k, d, l, r, acc) in CASES {
        let a: Vec<f32> = (0..span(m, k, l)).map(|_| rand()).collect();
        let b: Vec<f32> = (0..span(k, n, r)).map(|_| rand()).collect();
        let mut c: Vec<f32> = (0..span(m, n, d)).map(|_| rand()).collect();
        let mut best = f64::MAX;
        for _ in 0..reps {
            let t = Instant::now();
            // SAFETY: each view's span lies inside its vector, and `c`
            // does not overlap `a` or `b`.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    d.1 as isize,
                    d.0 as isize,
                    acc,
                    a.as_ptr(),
                    l.1 as isize,
                    l.0 as isize,
                    b.as_ptr(),
                    r.1 as isize,
                    r.0 as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            };
            best = best.min(t.elapsed().as_secs_f64());
        }
        std::hint::black_box(&c);
        let gflops = 2.0 * (m * n * k) as f64 / best / 1e9;
        println!(
            "{what:26} m={m:5} n={n:5} k={k:5}: {gflops:6.1} GFLOP/s, {:.0}% of the peak",
            100.0 * gflops / peak
        );
    }
}
