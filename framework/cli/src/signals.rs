//! Preemption as clusters do it: SIGTERM, SIGINT and SIGUSR1 (Slurm's
//! warning before a time limit, with `--signal=USR1@SECONDS`) ask the
//! running `parallax train` to finish its current optimizer step, write a
//! checkpoint and exit with [`STOPPED_EXIT_CODE`]. A second SIGINT (Ctrl-C
//! twice) exits at once with status 130, writing nothing more.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The exit status of a run stopped by a signal after writing its
/// checkpoint: 75, `EX_TEMPFAIL` ("try again later"), so that job scripts
/// can tell it from success (0) and from failure (1) and requeue it.
pub const STOPPED_EXIT_CODE: u8 = 75;

/// The exit status of a second SIGINT: 128 + 2, as shells report Ctrl-C.
pub const INTERRUPTED_EXIT_CODE: i32 = 130;

/// The handlers' shared state: whether a stop was asked for, and by which
/// signal.
pub struct Stop {
    flag: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Stop {
    /// The flag the trainer polls after each step.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// The name of the signal that asked for the stop (`SIGTERM`, ...).
    pub fn signal_name(&self) -> &'static str {
        name(self.signal.load(Ordering::SeqCst))
    }
}

#[cfg(unix)]
fn name(signal: usize) -> &'static str {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    match signal as i32 {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

#[cfg(not(unix))]
fn name(_signal: usize) -> &'static str {
    "a signal"
}

/// Installs the handlers (once per process is enough; each call adds
/// another set sharing nothing with the last).
#[cfg(unix)]
pub fn install() -> std::io::Result<Stop> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    use signal_hook::flag;
    let stop = Stop {
        flag: Arc::new(AtomicBool::new(false)),
        signal: Arc::new(AtomicUsize::new(0)),
    };
    // registered first, so it sees the flag as the previous SIGINT left it
    flag::register_conditional_shutdown(SIGINT, INTERRUPTED_EXIT_CODE, stop.flag.clone())?;
    for sig in [SIGTERM, SIGINT, SIGUSR1] {
        flag::register_usize(sig, stop.signal.clone(), sig as usize)?;
        flag::register(sig, stop.flag.clone())?;
    }
    Ok(stop)
}

/// Without Unix signals nothing asks for a stop.
#[cfg(not(unix))]
pub fn install() -> std::io::Result<Stop> {
    Ok(Stop {
        flag: Arc::new(AtomicBool::new(false)),
        signal: Arc::new(AtomicUsize::new(0)),
    })
}
