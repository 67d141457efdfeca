//! The progress bar: loss, throughput and ETA on a terminal, plain lines
//! when standard output is not a terminal (CI logs, files).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::error::Result;
use crate::logging::{Logger, RunInfo};

/// A progress bar, or plain lines without a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    start: Instant,
    start_step: u64,
    every_lines: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ProgressConfig {
    /// Without a terminal, print a line every this many logged steps' worth
    /// of scalars (0: every time scalars are logged).
    plain_every: u64,
}

fn pick(values: &[(String, f64)], key: &str) -> Option<f64> {
    values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

impl Progress {
    /// A bar for `info.total_steps` steps.
    pub fn new(info: &RunInfo, plain_every: u64) -> Self {
        let bar = if std::io::stdout().is_terminal() {
            let b = ProgressBar::new(info.total_steps);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_position(info.start_step);
            Some(b)
        } else {
            None
        };
        Progress {
            bar,
            total: info.total_steps,
            start: Instant::now(),
            start_step: info.start_step,
            every_lines: plain_every,
        }
    }
}

impl Logger for Progress {
    fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        let Some(loss) = pick(values, "train/loss") else {
            // evaluation results arrive as messages
            return Ok(());
        };
        let ips = pick(values, "train/examples_per_s");
        let mut msg = format!("loss {loss:.4}");
        if let Some(r) = ips {
            msg.push_str(&format!(" | {r:.0} ex/s"));
        }
        match &self.bar {
            Some(b) => {
                b.set_position(step);
                b.set_message(msg);
            }
            None => {
                if self.every_lines > 0 && step % self.every_lines != 0 && step != self.total {
                    return Ok(());
                }
                let done = step.saturating_sub(self.start_step) as f64;
                let left = self.total.saturating_sub(step) as f64;
                let el = self.start.elapsed().as_secs_f64();
                let eta = if done > 0.0 { el / done * left } else { 0.0 };
                println!(
                    "step {step}/{} | {msg} | elapsed {} | eta {}",
                    self.total,
                    fmt_secs(el),
                    fmt_secs(eta)
                );
            }
        }
        Ok(())
    }

    fn message(&mut self, _step: u64, text: &str) -> Result<()> {
        match &self.bar {
            Some(b) => b.println(text),
            None => println!("{text}"),
        }
        Ok(())
    }

    fn finish(&mut self, step: u64, _metrics: &[(String, f64)]) -> Result<()> {
        if let Some(b) = self.bar.take() {
            b.set_position(step);
            b.finish_and_clear();
        }
        Ok(())
    }
}

crate::register!(
    logger,
    "progress",
    "a progress bar with loss, throughput and ETA (plain lines without a terminal)",
    |p, info| {
        let c: ProgressConfig = p.extract()?;
        Ok(Box::new(Progress::new(info, c.plain_every)))
    }
);
