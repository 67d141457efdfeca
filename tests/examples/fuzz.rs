//! Fuzzes one decoder for a while (see `parallax_tests::fuzz`).
//!
//! ```text
//! cargo run --release -p parallax-tests --example fuzz -- TARGET SECONDS [SEED]
//! cargo run --release -p parallax-tests --example fuzz -- list
//! cargo run --release -p parallax-tests --example fuzz -- replay TARGET FILE...
//! cargo run --release -p parallax-tests --example fuzz -- seeds TARGET DIR
//! ```
//!
//! `seeds` writes the target's seed inputs (and its saved crashes from
//! `tests/fixtures/fuzz/TARGET/`) into `DIR`: the starting corpus of the
//! libFuzzer targets in `tests/fuzz/`.
//!
//! Each panicking input is saved as `fuzz-crashes/TARGET/crash-ID` with the
//! panic message in `crash-ID.txt`; the first few inputs on which a
//! dependency panicked and a guard of the decoder made that an error, as
//! `caught-ID` (for the record: they are not failures). The input being decoded is kept in
//! `fuzz-crashes/TARGET/in-flight` until the run ends, so that an input that
//! aborts the process (stack overflow, failed allocation) is not lost:
//! `scripts/fuzz.sh` renames it to `abort-ID`. The last line printed is
//! `RESULT TARGET INPUTS PANICS CAUGHT ACCEPTED SLOWEST_MS`, for the script.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use parallax_tests::fuzz::{self, Budget, Outcome};

fn usage() -> ExitCode {
    eprintln!(
        "usage: fuzz TARGET SECONDS [SEED] | fuzz list | fuzz replay TARGET FILE... | fuzz seeds TARGET DIR\ntargets: {}",
        fuzz::TARGETS
            .iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(" ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    // never reach for the network: every target reads local files
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("list") => {
            for t in fuzz::TARGETS {
                println!("{:<12} {}", t.name, t.about);
            }
            ExitCode::SUCCESS
        }
        Some("replay") if args.len() >= 3 => replay(&args[1], &args[2..]),
        Some("seeds") if args.len() == 3 => seeds(&args[1], Path::new(&args[2])),
        Some(name) if args.len() == 2 || args.len() == 3 => {
            let Some(target) = fuzz::target(name) else {
                eprintln!("unknown target `{name}`");
                return usage();
            };
            let (Ok(secs), Ok(seed)) = (
                args[1].parse::<f64>(),
                args.get(2).map_or(Ok(0x5eed), |s| s.parse::<u64>()),
            ) else {
                return usage();
            };
            run(target, Duration::from_secs_f64(secs.max(0.0)), seed)
        }
        _ => usage(),
    }
}

fn crash_dir(target: &str) -> PathBuf {
    PathBuf::from("fuzz-crashes").join(target)
}

fn run(target: &fuzz::Target, time: Duration, seed: u64) -> ExitCode {
    let dir = crash_dir(target.name);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let in_flight = dir.join("in-flight");
    let work = tempfile::tempdir().expect("temp dir");
    let report = fuzz::fuzz(target, seed, Budget::Time(time), work.path(), |input| {
        let _ = std::fs::write(&in_flight, input);
    });
    let _ = std::fs::remove_file(&in_flight);
    let mut seen = std::collections::BTreeSet::new();
    for (input, message) in &report.panics {
        let id = fuzz::input_id(input);
        let _ = std::fs::write(dir.join(format!("crash-{id}")), input);
        let _ = std::fs::write(dir.join(format!("crash-{id}.txt")), message);
        // one line per distinct panic (its first line: location and message)
        let head = message.lines().next().unwrap_or_default().to_string();
        if seen.insert(head.clone()) {
            eprintln!(
                "{}: panic ({} bytes, crash-{id}): {head}",
                target.name,
                input.len()
            );
        }
    }
    for (input, message) in &report.caught_samples {
        let id = fuzz::input_id(input);
        let _ = std::fs::write(dir.join(format!("caught-{id}")), input);
        let _ = std::fs::write(dir.join(format!("caught-{id}.txt")), message);
    }
    // leave no empty folder behind
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_dir(Path::new("fuzz-crashes"));
    println!(
        "RESULT {} {} {} {} {} {}",
        target.name,
        report.inputs,
        report.panics.len(),
        report.caught,
        report.accepted,
        report.slowest.as_millis()
    );
    if report.panics.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn replay(name: &str, files: &[String]) -> ExitCode {
    let Some(target) = fuzz::target(name) else {
        eprintln!("unknown target `{name}`");
        return usage();
    };
    let work = tempfile::tempdir().expect("temp dir");
    let mut failed = false;
    for f in files {
        let input = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{f}: {e}");
                failed = true;
                continue;
            }
        };
        match fuzz::run_input(target, work.path(), &input) {
            Outcome::Ok => println!("{f}: ok"),
            Outcome::Err(e) => println!("{f}: error: {e}"),
            Outcome::Caught(m) => println!("{f}: error, after a caught panic: {m}"),
            Outcome::Panic(m) => {
                println!("{f}: PANIC: {m}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn seeds(name: &str, dir: &Path) -> ExitCode {
    let Some(target) = fuzz::target(name) else {
        eprintln!("unknown target `{name}`");
        return usage();
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let saved = fuzz::regression_inputs(name).into_iter().map(|(_, b)| b);
    for input in (target.seeds)().into_iter().chain(saved) {
        let path = dir.join(format!("seed-{}", fuzz::input_id(&input)));
        if let Err(e) = std::fs::write(&path, &input) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
