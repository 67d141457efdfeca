// Training allocates and frees many large tensors; mimalloc reuses their
// memory where the system allocator maps and unmaps it each time (page
// faults were a third of a training step's time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    parallax::cli::main()
}
