//! Every registered loss against the reference fixtures in
//! `tests/fixtures/losses/` (computed in float64 by PyTorch / lightly; see the
//! README there).

use std::path::PathBuf;

use candle_core::{DType, Device, Var};
use parallax_core::losses::verify::{fixture_files, verify_file};
use parallax_core::losses::LossInputs;
use parallax_core::recipe::Params;
use parallax_core::registry;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/losses")
}

/// Fixtures whose expected values contradict their own metadata. Each must
/// still fail the generic check (so that a corrected fixture is noticed and
/// taken off this list) and has its own test below that pins down the
/// discrepancy.
const INCONSISTENT: &[(&str, &str)] = &[(
    "codebook_diversity_0.safetensors",
    "expected values use 64 codevectors as the normaliser, not G*V = 2*8 = 16 as its `formula` \
     and `logits [10, 2, 8]` say (codebook_diversity_1 has G*V = 64 and passes)",
)];

#[test]
fn every_fixture_passes() {
    let files = fixture_files(&fixture_dir()).expect("fixture directory");
    assert!(
        files.len() >= 34,
        "expected at least 34 fixtures in {}, found {}",
        fixture_dir().display(),
        files.len()
    );
    let mut failed = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let inconsistent = INCONSISTENT.iter().find(|(f, _)| *f == name);
        match verify_file(file) {
            Ok(report) => {
                println!("{report}");
                match (report.passed, inconsistent) {
                    (true, None) | (false, Some(_)) => {}
                    (false, None) => failed.push(report.to_string()),
                    (true, Some(_)) => failed.push(format!(
                        "{name} now passes: take it off the INCONSISTENT list"
                    )),
                }
            }
            Err(e) => {
                println!("{}: error: {e}  FAIL", file.display());
                failed.push(format!("{}: {e}", file.display()));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "failing fixtures:\n{}",
        failed.join("\n")
    );
}

/// codebook_diversity_0: with the fixture's expected values rescaled from
/// its normaliser (64) to G*V = 16, value and gradient match ours, so the
/// loss is right and only the fixture's constant is off.
#[test]
fn codebook_diversity_0_differs_only_by_its_normaliser() {
    let path = fixture_dir().join("codebook_diversity_0.safetensors");
    let t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let logits = Var::from_tensor(&t["logits"]).unwrap();
    let (_, g, v) = logits.dims3().unwrap();
    let codes = (g * v) as f64;
    assert_eq!(codes, 16.0);
    let fixture_codes = 64.0;
    let loss =
        (registry::loss("codebook_diversity").unwrap().build)(&Params::empty("loss")).unwrap();
    let inputs = LossInputs::new().with("logits", logits.as_tensor().clone());
    let ours = loss.forward(&inputs).unwrap();
    let grads = ours.backward().unwrap();
    let ours = ours
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let reference = t["expected.loss"]
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap();
    let reference = reference.to_vec1::<f64>().unwrap()[0];
    // loss = 1 - perplexity / codes: compare the perplexities
    let (p_ours, p_ref) = ((1.0 - ours) * codes, (1.0 - reference) * fixture_codes);
    assert!(
        ((p_ours - p_ref) / p_ref).abs() < 1e-5,
        "{p_ours} vs {p_ref}"
    );
    // gradient = -d perplexity / codes
    let g_ours = grads
        .get(logits.as_tensor())
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let g_ref = t["expected.grad.logits"].to_dtype(DType::F64).unwrap();
    let g_ref = (g_ref * (fixture_codes / codes)).unwrap();
    let diff = (&g_ours - &g_ref)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let norm = g_ref.sqr().unwrap().sum_all().unwrap();
    let rel = (diff.to_scalar::<f64>().unwrap() / norm.to_scalar::<f64>().unwrap()).sqrt();
    assert!(rel < 1e-3, "gradient relative error {rel}");
}
