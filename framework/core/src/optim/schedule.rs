//! Learning-rate schedules: a linear warm-up from 0 to the base rate, then
//! a cosine decay (Loshchilov & Hutter 2017, without restarts, as in SimCLR,
//! BYOL and MoCo v2), a linear decay or a constant rate.

/// The shape of the schedule after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScheduleKind {
    /// Half a cosine from the base rate down to `min_lr` (the default).
    #[default]
    Cosine,
    /// The base rate throughout.
    Constant,
    /// A straight line from the base rate down to `min_lr`.
    Linear,
}

/// The length of the warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Warmup {
    /// In epochs (may be fractional; rounded to whole steps).
    Epochs(f64),
    /// In optimizer steps.
    Steps(u64),
}

impl Default for Warmup {
    fn default() -> Self {
        Warmup::Epochs(0.0)
    }
}

/// The schedule part of the `[optimizer]` section.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ScheduleConfig {
    /// `schedule`: `cosine` (default), `constant` or `linear`.
    pub kind: ScheduleKind,
    /// `warmup_epochs` (default 0) or `warmup_steps`.
    pub warmup: Warmup,
    /// `min_lr`: the rate at the end of a decaying schedule (default 0).
    pub min_lr: f64,
}

/// A learning-rate schedule resolved to steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    kind: ScheduleKind,
    base_lr: f64,
    min_lr: f64,
    warmup_steps: u64,
    total_steps: u64,
}

impl Schedule {
    /// The schedule of `cfg` for a run of `total_steps` optimizer steps of
    /// which `steps_per_epoch` make an epoch. A warm-up longer than the run
    /// is cut to the run.
    pub fn new(cfg: &ScheduleConfig, base_lr: f64, total_steps: u64, steps_per_epoch: u64) -> Self {
        let warmup = match cfg.warmup {
            Warmup::Epochs(e) => (e.max(0.0) * steps_per_epoch as f64).round() as u64,
            Warmup::Steps(s) => s,
        };
        Schedule {
            kind: cfg.kind,
            base_lr,
            min_lr: cfg.min_lr,
            warmup_steps: warmup.min(total_steps),
            total_steps,
        }
    }

    /// The number of warm-up steps.
    pub fn warmup_steps(&self) -> u64 {
        self.warmup_steps
    }

    /// The learning rate of step `step` (counted from 0): `base * step /
    /// warmup` during the warm-up (so 0 at step 0 and the base rate at the
    /// end of the warm-up), then the decay, which reaches `min_lr` at
    /// `total_steps` and stays there.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * step as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps);
        let progress = if span == 0 {
            1.0
        } else {
            ((step - self.warmup_steps) as f64 / span as f64).min(1.0)
        };
        let (base, min) = (self.base_lr, self.min_lr);
        match self.kind {
            ScheduleKind::Constant => base,
            ScheduleKind::Linear => base + (min - base) * progress,
            ScheduleKind::Cosine => {
                min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let cfg = ScheduleConfig {
            kind: ScheduleKind::Cosine,
            warmup: Warmup::Epochs(1.5),
            min_lr: 0.01,
        };
        let s = Schedule::new(&cfg, 1.0, 100, 10);
        assert_eq!(s.warmup_steps(), 15);
        assert_eq!(s.lr_at(0), 0.0);
        assert!((s.lr_at(5) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.lr_at(15), 1.0);
        assert!((s.lr_at(100) - 0.01).abs() < 1e-12);
        assert!((s.lr_at(1000) - 0.01).abs() < 1e-12);
        let mid = 15 + 85 / 2;
        assert!(
            (s.lr_at(mid)
                - (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * 42.0 / 85.0).cos())))
            .abs()
                < 1e-12
        );
    }

    #[test]
    fn constant_and_linear() {
        let mut cfg = ScheduleConfig {
            kind: ScheduleKind::Constant,
            warmup: Warmup::Steps(4),
            min_lr: 0.0,
        };
        let s = Schedule::new(&cfg, 0.5, 20, 3);
        assert_eq!(s.lr_at(2), 0.25);
        assert_eq!(s.lr_at(4), 0.5);
        assert_eq!(s.lr_at(20), 0.5);
        cfg.kind = ScheduleKind::Linear;
        let s = Schedule::new(&cfg, 0.5, 20, 3);
        assert_eq!(s.lr_at(12), 0.25);
        assert_eq!(s.lr_at(20), 0.0);
    }

    #[test]
    fn degenerate_runs() {
        let cfg = ScheduleConfig {
            warmup: Warmup::Steps(50),
            ..Default::default()
        };
        let s = Schedule::new(&cfg, 1.0, 10, 5);
        assert_eq!(s.warmup_steps(), 10);
        assert_eq!(s.lr_at(5), 0.5);
        let s = Schedule::new(&ScheduleConfig::default(), 1.0, 0, 0);
        assert_eq!(s.lr_at(0), 0.0);
        let s = Schedule::new(&ScheduleConfig::default(), 1.0, 10, 5);
        assert_eq!(s.lr_at(0), 1.0);
    }
}
