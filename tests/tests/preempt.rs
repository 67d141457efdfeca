//! Preemption: a real signal sent to the running binary. SIGTERM, SIGUSR1
//! and SIGINT finish the current step, write a checkpoint and exit with
//! status 75; the run then resumes. A second SIGINT exits at once (130).
#![cfg(unix)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use parallax_tests::{bin, ok, parallax, root, tiny_recipe};

/// Starts a long run (many epochs, a checkpoint only at the end) logging
/// every step.
fn start(out: &Path, extra: &[&str]) -> Child {
    let mut cmd = Command::new(bin());
    cmd.current_dir(root())
        .args([
            "train",
            &tiny_recipe(),
            "--out",
            out.to_str().unwrap(),
            "--set",
            "train.epochs=1000",
            "--set",
            "train.checkpoint_every=100000",
            "--set",
            "train.log_every=1",
            "--set",
            "eval=[]",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("PARALLAX_") {
            cmd.env_remove(k);
        }
    }
    cmd.spawn().expect("start parallax")
}

/// Waits until the run has logged `steps` steps to metrics.jsonl.
fn wait_for_steps(child: &mut Child, out: &Path, steps: usize) {
    let t = Instant::now();
    loop {
        let n = std::fs::read_to_string(out.join("metrics.jsonl"))
            .map(|s| s.lines().filter(|l| l.contains("train/loss")).count())
            .unwrap_or(0);
        if n >= steps {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended early with {status}");
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(child: &Child, signal: &str) {
    let s = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(s.success());
}

#[test]
fn a_stop_signal_writes_a_checkpoint_and_exits_75_then_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    for signal in ["TERM", "USR1", "INT"] {
        let out = dir.path().join(signal);
        let mut child = start(&out, &[]);
        wait_for_steps(&mut child, &out, 2);
        kill(&child, signal);
        let o = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(75), "SIG{signal}: {stderr}");
        assert!(
            stderr.contains(&format!("stopped by SIG{signal}")),
            "{stderr}"
        );
        assert!(stderr.contains("--resume"), "{stderr}");
        let ck = parallax_core::checkpoint::load(&out.join("checkpoint.safetensors"), &Device::Cpu)
            .unwrap();
        let step = ck.meta.step;
        assert!(step >= 2, "SIG{signal}: checkpoint at step {step}");
        // no results.json: the run is not finished
        assert!(!out.join("results.json").exists());
        // and it continues from there
        let more = (step + 2).to_string();
        let resumed = ok(&parallax(&[
            "train",
            &tiny_recipe(),
            "--out",
            out.to_str().unwrap(),
            "--resume",
            "--max-steps",
            &more,
            "--set",
            "train.epochs=1000",
            "--set",
            "eval=[]",
        ]));
        assert!(resumed.contains(&format!("steps: {more}")), "{resumed}");
    }
}

#[test]
fn a_second_sigint_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // steps of a second or so (the whole embedded slice in one batch of a
    // wider CNN), so that both signals land within one step
    let mut child = start(
        &out,
        &[
            "--set",
            "data.train_limit=1024",
            "--set",
            "train.batch_size=1024",
            "--set",
            "encoder.channels=[32, 64]",
        ],
    );
    wait_for_steps(&mut child, &out, 1);
    kill(&child, "INT");
    // apart, so that the kernel does not merge them into one pending signal
    std::thread::sleep(Duration::from_millis(100));
    kill(&child, "INT");
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // nothing was written on the way out
    assert!(!out.join("checkpoint.safetensors").exists());
}
