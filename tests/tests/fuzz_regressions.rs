//! No decoder of user files panics (issue #28): every input under
//! `tests/fixtures/fuzz/TARGET/` (crashes the fuzzer found, since fixed)
//! and a few hundred seeded mutations of each target's seeds go through
//! their decoder, which must answer `Ok` or `Err` (for the saved crashes,
//! an error of the decoder's own, not a dependency's panic that a guard
//! caught). See
//! `parallax_tests::fuzz` and `scripts/fuzz.sh` for the long runs.

use std::collections::BTreeSet;

use parallax_tests::fuzz::{self, Budget, Outcome, TARGETS};

/// The seed of the mutations here (the fuzz example uses others).
const SEED: u64 = 28;

fn check(name: &str) {
    let target = fuzz::target(name).unwrap_or_else(|| panic!("no fuzz target `{name}`"));
    let work = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for (path, input) in fuzz::regression_inputs(name) {
        // a fixed crash is an error of the decoder's own, not one that a
        // guard made of a dependency's panic
        match fuzz::run_input(target, work.path(), &input) {
            Outcome::Panic(m) => failures.push(format!("{}: {m}", path.display())),
            Outcome::Caught(m) => failures.push(format!(
                "{}: a dependency panicked (caught by a guard): {m}",
                path.display()
            )),
            Outcome::Ok | Outcome::Err(_) => {}
        }
    }
    let report = fuzz::fuzz(
        target,
        SEED,
        Budget::Inputs(u64::from(target.quick)),
        work.path(),
        |_| {},
    );
    for (input, m) in &report.panics {
        failures.push(format!(
            "a mutation ({} bytes, id {}): {m}",
            input.len(),
            fuzz::input_id(input)
        ));
    }
    assert!(
        failures.is_empty(),
        "{name}: {} panic(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // the seeds themselves decode
    assert!(report.accepted > 0, "{name}: no input was accepted");
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        #[test]
        fn every_target_and_fixture_folder_is_covered() {
            let tested: BTreeSet<&str> = [$(stringify!($name)),*].into();
            let table: BTreeSet<&str> = TARGETS.iter().map(|t| t.name).collect();
            assert_eq!(tested, table, "a target without a test here, or the reverse");
            let dir = parallax_tests::root().join("tests/fixtures/fuzz");
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                assert!(table.contains(n.as_str()), "{}: no target `{n}`", dir.display());
            }
        }
    };
}

targets!(
    recipe, recipe_set, idx, image, cifar, tokenizer, pretrained, checkpoint, sentences, labelled,
    triples, image_text, hf_config, hf_weights,
);
