// Training allocates and frees many large tensors; mimalloc reuses their
// memory where the system allocator maps and unmaps it each time (page
// faults were a third of a training step's time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its `mimalloc.h`, v3: the 16th option).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // By default mimalloc hands freed memory back to the OS after 10 ms, and
    // a training step's next allocations fault it in again: the kernel
    // zeroing those pages took a quarter of a ResNet-18 step. Keep freed
    // memory instead (peak memory is unchanged: it is reused, not grown),
    // unless the user set MIMALLOC_PURGE_DELAY.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide integer option; no other thread runs yet.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    // Candle's element-wise kernels hand half their work to a worker
    // thread that, after each op, spins 25,000 times before it sleeps: on
    // two cores that spinning takes CPU time from the convolutions' threads
    // (3.5% of a ResNet-18 step's samples in `perf`). Let it sleep at once,
    // unless the user set the variable.
    const SPIN: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(SPIN).is_none() {
        // No other thread runs yet, and Candle reads the variable when its
        // pool first starts.
        std::env::set_var(SPIN, "0");
    }
    parallax::cli::main()
}
