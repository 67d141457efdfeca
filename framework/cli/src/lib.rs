//! The `parallax` command line. The binary is a thin `main` over
//! [`cli::main`]; linking every plugin happens in [`plugins`], a library
//! module, so that the binary and the tests see the same registrations.

pub mod cli;
pub mod cmd_bench_loss;
pub mod cmd_bench_train_step;
pub mod cmd_hub;
pub mod cmd_verify_loss;
pub mod plugins;
pub mod signals;
