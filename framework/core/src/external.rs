//! What some tests need from outside Cargo (a Python package, a model in
//! the Hub cache), and what they do without it.
//!
//! On a fresh machine `cargo test` passes with nothing installed beyond
//! Rust: a test whose requirement is missing prints one line,
//! `skipped: <test>: <what> is missing (<how to install>)`, and passes. CI
//! asks for every requirement, so there nothing skips: with `CI=true`, or
//! the requirement's own variable set to `1` (e.g. `REQUIRE_TENSORBOARD=1`),
//! a missing requirement fails the test with the same line. `.ci/run`
//! installs them all and sets the variables.

use std::process::Command;

/// Something a test needs that Cargo does not build.
#[derive(Clone, Copy, Debug)]
pub struct Requirement {
    /// What it is, e.g. `Python's tensorboard package`.
    pub what: &'static str,
    /// How to get it, e.g. `pip install tensorboard`.
    pub install: &'static str,
    /// The variable that makes it required (`1`), e.g. `REQUIRE_TENSORBOARD`.
    pub var: &'static str,
}

/// TensorBoard's Python reader (for the event-file checks).
pub const TENSORBOARD: Requirement = Requirement {
    what: "python3 with the tensorboard package",
    install: "pip install tensorboard",
    var: "REQUIRE_TENSORBOARD",
};

/// Python's Hugging Face client (for the Hub cache interop checks).
pub const HF_HUB_PYTHON: Requirement = Requirement {
    what: "python3 with the huggingface_hub package",
    install: "pip install huggingface_hub",
    var: "REQUIRE_HF_HUB_PYTHON",
};

/// The real all-MiniLM-L6-v2 in the Hub cache.
pub const MINILM: Requirement = Requirement {
    what: "sentence-transformers/all-MiniLM-L6-v2 in the Hub cache",
    install: "run scripts/fetch-models.sh",
    var: "REQUIRE_MINILM",
};

impl Requirement {
    /// Whether the environment asks for this requirement: `CI=true` (or
    /// `1`), or its own variable set to `1`.
    pub fn required(&self) -> bool {
        self.required_in(&|k| std::env::var(k).ok())
    }

    fn required_in(&self, var: &dyn Fn(&str) -> Option<String>) -> bool {
        let on = |k: &str, values: &[&str]| var(k).is_some_and(|v| values.contains(&v.trim()));
        on("CI", &["true", "1"]) || on(self.var, &["1", "true"])
    }

    /// The line that names what is missing, for test `test`.
    pub fn message(&self, test: &str, why: &str) -> String {
        format!(
            "skipped: {test}: {} is missing ({why}); {} (set {}=1 to make this a failure)",
            self.what, self.install, self.var
        )
    }

    /// Runs `probe`; `true` when the requirement is there. When it is not:
    /// panics with the reason if the requirement is asked for (see
    /// [`Requirement::required`]), else prints the skip line to standard
    /// error and returns `false`.
    pub fn check(&self, test: &str, probe: impl FnOnce() -> Result<(), String>) -> bool {
        match probe() {
            Ok(()) => true,
            Err(why) => {
                let line = self.message(test, &why);
                if self.required() {
                    panic!(
                        "{line} — but it is required here (CI=true or {}=1)",
                        self.var
                    );
                }
                // straight to the process's stderr: the test harness
                // captures `eprintln!` of passing tests, and this line must
                // be seen
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "{line}");
                false
            }
        }
    }
}

/// A probe: `python3 -c "import MODULE"` succeeds.
pub fn python_module(module: &str) -> Result<(), String> {
    match Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "python3 cannot import {module}: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(e) => Err(format!("cannot run python3: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_by_ci_or_by_its_variable() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(!TENSORBOARD.required_in(&env(&[])));
        assert!(TENSORBOARD.required_in(&env(&[("CI", "true")])));
        assert!(TENSORBOARD.required_in(&env(&[("REQUIRE_TENSORBOARD", "1")])));
        assert!(!TENSORBOARD.required_in(&env(&[("REQUIRE_MINILM", "1")])));
        assert!(!TENSORBOARD.required_in(&env(&[("CI", "false")])));
    }

    #[test]
    fn the_skip_line_names_the_test_what_and_how() {
        let line = TENSORBOARD.message("my_test", "python3 cannot import tensorboard");
        assert!(line.starts_with("skipped: my_test: "), "{line}");
        assert!(line.contains("pip install tensorboard"), "{line}");
        assert!(line.contains("REQUIRE_TENSORBOARD=1"), "{line}");
    }

    #[test]
    fn a_missing_module_is_named() {
        let err = python_module("parallax_no_such_module_xyz").unwrap_err();
        assert!(
            err.contains("parallax_no_such_module_xyz") || err.contains("python3"),
            "{err}"
        );
    }
}
