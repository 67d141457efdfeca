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

/// One product: (what, m, n, k, dst strides, lhs strides, rhs strides,
/// accumulate).
type Case = (
    String,
    usize,
    usize,
    usize,
    (usize, usize),
    (usize, usize),
    (usize, usize),
    bool,
);

/// The 3x3 stride-1 convolutions measured: (channels, side, pixels per
/// chunk, i.e. images per chunk x side²), as `conv2d` chunks a batch of 64.
const LAYERS: &[(usize, usize, usize)] = &[(64, 32, 3072), (128, 16, 1536), (256, 8, 832)];

/// The three products of a `c -> c` 3x3 convolution on the channels-last
/// path, with `p` pixels per chunk and `k = 9c` taps: the forward
/// (`[O, p] = w · colsᵀ`, written channels-last), the kernel gradient
/// (`dw [O, k] += dy · cols`) and the input gradient (`dcols = wᵀ · dy`).
fn products(c: usize, side: usize, p: usize) -> [Case; 3] {
    let k = 9 * c;
    let name = |what: &str| format!("{c}->{c} @{side} {what}");
    [
        (name("forward"), c, p, k, (1, c), (k, 1), (1, k), false),
        (name("kernel grad."), c, k, p, (k, 1), (p, 1), (k, 1), true),
        (name("input grad."), k, p, c, (1, k), (1, k), (p, 1), false),
    ]
}

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
    let cases = LAYERS.iter().flat_map(|&(c, side, p)| products(c, side, p));
    for (what, m, n, k, d, l, r, acc) in cases {
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
