//! The losses' parameter validation, shape checks, numerical stability and
//! the behaviours the fixtures do not cover (mining strategies, masking,
//! optional inputs).

use candle_core::{DType, Device, Tensor, Var};
use parallax_core::losses::{Loss, LossInputs};
use parallax_core::recipe::Params;
use parallax_core::registry;
use parallax_core::rng::Rng;
use parallax_core::{Error, Result};
use serde_json::json;

fn build(name: &str, params: serde_json::Value) -> Result<Box<dyn Loss>> {
    let p = Params::from_json("loss", &params)?;
    (registry::loss(name)?.build)(&p)
}

fn loss_names() -> Vec<&'static str> {
    registry::all()
        .into_iter()
        .find(|(kind, _)| *kind == "loss")
        .map(|(_, entries)| entries.into_iter().map(|(name, _)| name).collect())
        .unwrap_or_default()
}

fn randn(rng: &mut Rng, shape: &[usize], scale: f64) -> Tensor {
    rng.normal_tensor(shape, 0.0, scale, DType::F32, &Device::Cpu)
        .unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn all_seventeen_losses_are_registered() {
    let names = loss_names();
    for name in [
        "nt_xent",
        "info_nce",
        "triplet",
        "triplet_batch_hard",
        "spectral",
        "debiased_info_nce",
        "hard_negative_info_nce",
        "simsiam",
        "byol",
        "dino",
        "clip",
        "simcse",
        "curl_bilinear",
        "wav2vec2_contrastive",
        "codebook_diversity",
        "alignment",
        "uniformity",
    ] {
        assert!(names.contains(&name), "`{name}` not registered: {names:?}");
    }
}

#[test]
fn every_loss_builds_with_defaults_and_rejects_unknown_keys() {
    for name in loss_names() {
        build(name, json!({})).unwrap_or_else(|e| panic!("{name} with defaults: {e}"));
        let err = build(name, json!({"no_such_key": 1}))
            .err()
            .unwrap_or_else(|| panic!("{name} accepted an unknown key"))
            .to_string();
        assert!(err.contains("loss.no_such_key"), "{name}: {err}");
    }
}

#[test]
fn a_misspelt_key_is_named_with_the_expected_ones() {
    let err = build("nt_xent", json!({"temprature": 0.5}))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("loss.temprature"), "{err}");
    assert!(err.contains("temperature"), "{err}");
}

#[test]
fn out_of_range_parameters_are_rejected() {
    let cases = [
        ("nt_xent", json!({"temperature": 0.0}), "temperature"),
        ("nt_xent", json!({"temperature": -0.5}), "temperature"),
        ("info_nce", json!({"temperature": 0.0}), "temperature"),
        ("clip", json!({"temperature": 0.0}), "temperature"),
        ("simcse", json!({"temperature": 0.0}), "temperature"),
        (
            "wav2vec2_contrastive",
            json!({"temperature": 0.0}),
            "temperature",
        ),
        (
            "debiased_info_nce",
            json!({"temperature": 0.0}),
            "temperature",
        ),
        ("debiased_info_nce", json!({"tau_plus": 1.0}), "tau_plus"),
        ("debiased_info_nce", json!({"tau_plus": -0.1}), "tau_plus"),
        (
            "hard_negative_info_nce",
            json!({"tau_plus": 1.0}),
            "tau_plus",
        ),
        ("hard_negative_info_nce", json!({"beta": -1.0}), "beta"),
        (
            "hard_negative_info_nce",
            json!({"temperature": 0.0}),
            "temperature",
        ),
        ("dino", json!({"teacher_temp": 0.0}), "teacher_temp"),
        ("dino", json!({"student_temp": 0.0}), "student_temp"),
        ("triplet", json!({"margin": -0.1}), "margin"),
        ("triplet_batch_hard", json!({"margin": -1.0}), "margin"),
        ("alignment", json!({"alpha": 0.0}), "alpha"),
        ("uniformity", json!({"t": 0.0}), "t must be"),
    ];
    for (name, params, key) in cases {
        match build(name, params.clone()) {
            Err(Error::Invalid { component, message }) => {
                assert_eq!(component, name);
                assert!(message.contains(key), "{name} {params}: {message}");
                assert!(
                    message.starts_with(|c: char| c.is_lowercase()),
                    "{name}: message should be lowercase: {message}"
                );
            }
            Err(e) => panic!("{name} {params}: expected an invalid-parameter error, got {e}"),
            Ok(_) => panic!("{name} accepted {params}"),
        }
    }
    // tau_plus just below 1 and margin 0 are fine
    build("debiased_info_nce", json!({"tau_plus": 0.99})).unwrap();
    build("triplet", json!({"margin": 0.0})).unwrap();
    // an unknown mining strategy names the key and the choices
    let err = build("triplet_batch_hard", json!({"mining": "hardest"}))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("loss.mining") && err.contains("semi_hard"),
        "{err}"
    );
}

/// The inputs of `name` with batch size `n` (and `bad` inputs of batch
/// size `n + 1`).
fn inputs_for(name: &str, n: usize, bad: &[&str], rng: &mut Rng) -> LossInputs {
    let d = 8;
    let rows = |input: &str| if bad.contains(&input) { n + 1 } else { n };
    let mut inputs = LossInputs::new();
    let add = |inputs: &mut LossInputs, input: &str, rng: &mut Rng| {
        inputs.insert(input, randn(rng, &[rows(input), d], 1.0));
    };
    match name {
        "nt_xent"
        | "spectral"
        | "debiased_info_nce"
        | "hard_negative_info_nce"
        | "simcse"
        | "alignment" => {
            for i in ["z0", "z1"] {
                add(&mut inputs, i, rng);
            }
        }
        "info_nce" => {
            for i in ["query", "key", "queue"] {
                add(&mut inputs, i, rng);
            }
        }
        "triplet" => {
            for i in ["anchor", "positive", "negative"] {
                add(&mut inputs, i, rng);
            }
        }
        "simsiam" | "byol" => {
            for i in ["p0", "p1", "z0", "z1"] {
                add(&mut inputs, i, rng);
            }
        }
        "clip" => {
            for i in ["image", "text"] {
                add(&mut inputs, i, rng);
            }
            inputs.insert("logit_scale", Tensor::new(&[2.0f32], &Device::Cpu).unwrap());
        }
        "curl_bilinear" => {
            for i in ["anchor", "positive"] {
                add(&mut inputs, i, rng);
            }
            inputs.insert("w", randn(rng, &[d, d], 0.1));
        }
        "dino" => {
            for i in [
                "teacher.0",
                "teacher.1",
                "student.0",
                "student.1",
                "student.2",
            ] {
                add(&mut inputs, i, rng);
            }
        }
        "wav2vec2_contrastive" => {
            for i in ["context", "targets"] {
                add(&mut inputs, i, rng);
            }
            let idx: Vec<i64> = (0..n * 3)
                .map(|j| ((j / 3 + 1 + j % 3) % n) as i64)
                .collect();
            inputs.insert(
                "negative_indices",
                Tensor::from_vec(idx, (n, 3), &Device::Cpu).unwrap(),
            );
        }
        "triplet_batch_hard" => {
            add(&mut inputs, "embeddings", rng);
            let labels: Vec<i64> = (0..rows("labels")).map(|i| (i % 3) as i64).collect();
            let len = labels.len();
            inputs.insert(
                "labels",
                Tensor::from_vec(labels, len, &Device::Cpu).unwrap(),
            );
        }
        "uniformity" => add(&mut inputs, "z", rng),
        "codebook_diversity" => inputs.insert("logits", randn(rng, &[n, 2, 4], 1.0)),
        other => panic!("no inputs for {other}"),
    }
    inputs
}

#[test]
fn every_loss_runs_on_its_inputs() {
    let mut rng = Rng::new(1);
    for name in loss_names() {
        let loss = build(name, json!({})).unwrap();
        let v = loss
            .forward(&inputs_for(name, 6, &[], &mut rng))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.dims(), &[] as &[usize], "{name} must return a scalar");
        assert!(scalar(&v).is_finite(), "{name}");
    }
}

#[test]
fn mismatched_batch_sizes_name_the_inputs() {
    let cases: &[(&str, &str, &str)] = &[
        ("nt_xent", "z0", "z1"),
        ("spectral", "z0", "z1"),
        ("debiased_info_nce", "z0", "z1"),
        ("hard_negative_info_nce", "z0", "z1"),
        ("simcse", "z0", "z1"),
        ("alignment", "z0", "z1"),
        ("info_nce", "query", "key"),
        ("triplet", "anchor", "negative"),
        ("simsiam", "p0", "z1"),
        ("byol", "p1", "z0"),
        ("clip", "image", "text"),
        ("curl_bilinear", "anchor", "positive"),
        ("dino", "teacher.0", "student.2"),
        ("wav2vec2_contrastive", "context", "targets"),
        ("triplet_batch_hard", "embeddings", "labels"),
    ];
    let mut rng = Rng::new(2);
    for &(name, ok, bad) in cases {
        let loss = build(name, json!({})).unwrap();
        let inputs = inputs_for(name, 5, &[bad], &mut rng);
        match loss.forward(&inputs) {
            Err(Error::Shape(msg)) => {
                assert!(msg.contains(ok) && msg.contains(bad), "{name}: {msg}");
                assert!(msg.starts_with(name), "{name}: {msg}");
            }
            Err(e) => panic!("{name}: expected a shape error, got {e}"),
            Ok(_) => panic!("{name}: accepted `{bad}` of another batch size"),
        }
    }
    // a missing input is named too
    let loss = build("info_nce", json!({})).unwrap();
    let inputs = LossInputs::new().with("query", randn(&mut rng, &[4, 8], 1.0));
    let err = loss.forward(&inputs).err().unwrap().to_string();
    assert!(err.contains("info_nce") && err.contains("`key`"), "{err}");
}

/// Forward + backward; asserts a finite value and finite gradients for
/// every float input given as a variable.
fn assert_finite(
    name: &str,
    params: serde_json::Value,
    vars: &[(&str, Tensor)],
    extra: &[(&str, Tensor)],
) {
    let loss = build(name, params).unwrap();
    let mut inputs = LossInputs::new();
    let vars: Vec<(&str, Var)> = vars
        .iter()
        .map(|(n, t)| (*n, Var::from_tensor(t).unwrap()))
        .collect();
    for (n, v) in &vars {
        inputs.insert(n, v.as_tensor().clone());
    }
    for (n, t) in extra {
        inputs.insert(n, t.clone());
    }
    let value = loss.forward(&inputs).unwrap();
    let v = scalar(&value);
    assert!(v.is_finite(), "{name}: loss {v}");
    let grads = value.backward().unwrap();
    for (n, var) in &vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                g.iter().all(|x| x.is_finite()),
                "{name}: gradient of {n} not finite"
            );
        }
    }
}

#[test]
fn small_temperatures_and_large_dot_products_stay_finite() {
    let mut rng = Rng::new(3);
    let (n, d) = (16, 16);
    // rows of norm ~100: dot products ~1e4; view 1 is a small perturbation
    // of view 0 so that the positives are near-maximal logits (1 / 0.01)
    let z0 = randn(&mut rng, &[n, d], 25.0);
    let z1 = (&z0 + randn(&mut rng, &[n, d], 0.5)).unwrap();
    let queue = randn(&mut rng, &[64, d], 25.0);
    let t = json!({"temperature": 0.01});
    assert_finite(
        "nt_xent",
        t.clone(),
        &[("z0", z0.clone()), ("z1", z1.clone())],
        &[],
    );
    assert_finite(
        "info_nce",
        t.clone(),
        &[("query", z0.clone()), ("key", z1.clone())],
        &[("queue", queue)],
    );
    assert_finite(
        "simcse",
        t.clone(),
        &[("z0", z0.clone()), ("z1", z1.clone())],
        &[],
    );
    let hard = randn(&mut rng, &[n, d], 25.0);
    assert_finite(
        "simcse",
        t.clone(),
        &[
            ("z0", z0.clone()),
            ("z1", z1.clone()),
            ("hard_negative", hard),
        ],
        &[],
    );
    let scale = Tensor::new(&[100f32.ln()], &Device::Cpu).unwrap();
    assert_finite(
        "clip",
        json!({}),
        &[
            ("image", z0.clone()),
            ("text", z1.clone()),
            ("logit_scale", scale),
        ],
        &[],
    );
    assert_finite(
        "clip",
        t.clone(),
        &[("image", z0.clone()), ("text", z1.clone())],
        &[],
    );
    for name in ["debiased_info_nce", "hard_negative_info_nce"] {
        assert_finite(
            name,
            t.clone(),
            &[("z0", z0.clone()), ("z1", z1.clone())],
            &[],
        );
    }
    let idx: Vec<i64> = (0..n * 4)
        .map(|j| ((j / 4 + 1 + j % 4) % n) as i64)
        .collect();
    assert_finite(
        "wav2vec2_contrastive",
        t,
        &[("context", z0.clone()), ("targets", z1.clone())],
        &[(
            "negative_indices",
            Tensor::from_vec(idx, (n, 4), &Device::Cpu).unwrap(),
        )],
    );
    assert_finite(
        "dino",
        json!({"teacher_temp": 0.01, "student_temp": 0.01}),
        &[("student.0", z0.clone()), ("student.1", z1.clone())],
        &[("teacher.0", z1.clone()), ("teacher.1", z0.clone())],
    );
    assert_finite("uniformity", json!({"t": 100.0}), &[("z", z0)], &[]);
}

#[test]
fn nt_xent_is_exact_at_a_large_batch_and_small_temperature() {
    // the fused CPU path against the definition in float64, 2N = 1200 rows
    // (more than one block of the similarity matrix)
    let mut rng = Rng::new(4);
    let (n, d, t) = (600, 12, 0.05);
    let z0 = randn(&mut rng, &[n, d], 1.0);
    let z1 = (&z0 + randn(&mut rng, &[n, d], 0.3)).unwrap();
    let loss = build("nt_xent", json!({"temperature": t})).unwrap();
    let ours = scalar(
        &loss
            .forward(
                &LossInputs::new()
                    .with("z0", z0.clone())
                    .with("z1", z1.clone()),
            )
            .unwrap(),
    );
    let norm = |x: &Tensor| -> Vec<Vec<f64>> {
        x.to_dtype(DType::F64)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap()
            .into_iter()
            .map(|r| {
                let s = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                r.into_iter().map(|v| v / s).collect()
            })
            .collect()
    };
    let z: Vec<Vec<f64>> = norm(&z0).into_iter().chain(norm(&z1)).collect();
    let m = 2 * n;
    let mut total = 0.0;
    for i in 0..m {
        let logits: Vec<f64> = (0..m)
            .map(|k| z[i].iter().zip(&z[k]).map(|(a, b)| a * b).sum::<f64>() / t)
            .collect();
        let max = (0..m)
            .filter(|&k| k != i)
            .map(|k| logits[k])
            .fold(f64::MIN, f64::max);
        let lse = max
            + (0..m)
                .filter(|&k| k != i)
                .map(|k| (logits[k] - max).exp())
                .sum::<f64>()
                .ln();
        total += lse - logits[(i + n) % m];
    }
    let want = total / m as f64;
    assert!(((ours - want) / want).abs() < 1e-5, "{ours} vs {want}");
}

/// Brute-force triplet loss for the three mining strategies.
fn brute_triplet(e: &[Vec<f64>], labels: &[i64], margin: f64, mining: &str) -> f64 {
    let n = e.len();
    let d = |i: usize, j: usize| {
        e[i].iter()
            .zip(&e[j])
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt()
    };
    let mut terms = Vec::new();
    for a in 0..n {
        let pos: Vec<usize> = (0..n)
            .filter(|&p| p != a && labels[p] == labels[a])
            .collect();
        let neg: Vec<usize> = (0..n).filter(|&k| labels[k] != labels[a]).collect();
        if pos.is_empty() || neg.is_empty() {
            continue;
        }
        match mining {
            "batch_hard" => {
                let dp = pos.iter().map(|&p| d(a, p)).fold(f64::MIN, f64::max);
                let dn = neg.iter().map(|&k| d(a, k)).fold(f64::MAX, f64::min);
                terms.push((dp - dn + margin).max(0.0));
            }
            "semi_hard" => {
                for &p in &pos {
                    let dp = d(a, p);
                    let farther = neg.iter().map(|&k| d(a, k)).filter(|&x| x > dp);
                    let dn = farther
                        .reduce(f64::min)
                        .unwrap_or_else(|| neg.iter().map(|&k| d(a, k)).fold(f64::MIN, f64::max));
                    terms.push((dp - dn + margin).max(0.0));
                }
            }
            "batch_all" => {
                for &p in &pos {
                    for &k in &neg {
                        let l = d(a, p) - d(a, k) + margin;
                        if l > 0.0 {
                            terms.push(l);
                        }
                    }
                }
            }
            _ => unreachable!(),
        }
    }
    if terms.is_empty() {
        0.0
    } else {
        terms.iter().sum::<f64>() / terms.len() as f64
    }
}

#[test]
fn triplet_mining_strategies_match_brute_force() {
    let mut rng = Rng::new(5);
    let (n, d) = (14, 5);
    let e = randn(&mut rng, &[n, d], 1.0);
    let labels: Vec<i64> = (0..n).map(|i| (i % 4) as i64).collect();
    let e64 = e.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
    for mining in ["batch_hard", "semi_hard", "batch_all"] {
        let loss = build(
            "triplet_batch_hard",
            json!({"margin": 0.5, "mining": mining}),
        )
        .unwrap();
        let var = Var::from_tensor(&e).unwrap();
        let inputs = LossInputs::new()
            .with("embeddings", var.as_tensor().clone())
            .with(
                "labels",
                Tensor::new(labels.as_slice(), &Device::Cpu).unwrap(),
            );
        let v = loss.forward(&inputs).unwrap();
        let want = brute_triplet(&e64, &labels, 0.5, mining);
        let got = scalar(&v);
        assert!(
            (got - want).abs() < 1e-5 * want.max(1.0),
            "{mining}: {got} vs {want}"
        );
        let g = v.backward().unwrap();
        let g: Vec<f32> = g
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            g.iter().all(|x| x.is_finite()) && g.iter().any(|&x| x != 0.0),
            "{mining}"
        );
    }
    // a batch of one label has no triplet: zero loss, no error
    let loss = build("triplet_batch_hard", json!({})).unwrap();
    let inputs = LossInputs::new().with("embeddings", e).with(
        "labels",
        Tensor::zeros(n, DType::I64, &Device::Cpu).unwrap(),
    );
    assert_eq!(scalar(&loss.forward(&inputs).unwrap()), 0.0);
}

#[test]
fn wav2vec2_masks_a_distractor_that_is_the_positive() {
    let mut rng = Rng::new(6);
    let (t, d) = (5, 8);
    let c = randn(&mut rng, &[t, d], 1.0);
    let q = randn(&mut rng, &[t, d], 1.0);
    let loss = build("wav2vec2_contrastive", json!({})).unwrap();
    let run = |idx: Vec<i64>, k: usize| {
        let inputs = LossInputs::new()
            .with("context", c.clone())
            .with("targets", q.clone())
            .with(
                "negative_indices",
                Tensor::from_vec(idx, (t, k), &Device::Cpu).unwrap(),
            );
        scalar(&loss.forward(&inputs).unwrap())
    };
    // step s draws s itself as its second distractor
    let with_self: Vec<i64> = (0..t)
        .flat_map(|s| [((s + 1) % t) as i64, s as i64])
        .collect();
    let without: Vec<i64> = (0..t).map(|s| ((s + 1) % t) as i64).collect();
    let (a, b) = (run(with_self, 2), run(without, 1));
    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    // an index out of range is an error naming the input
    let inputs = LossInputs::new()
        .with("context", c.clone())
        .with("targets", q.clone())
        .with(
            "negative_indices",
            Tensor::new(&[[9i64], [0], [0], [0], [0]], &Device::Cpu).unwrap(),
        );
    let err = loss.forward(&inputs).err().unwrap().to_string();
    assert!(
        err.contains("negative_indices") && err.contains('9'),
        "{err}"
    );
}

#[test]
fn clip_without_logit_scale_uses_the_configured_temperature() {
    let mut rng = Rng::new(7);
    let image = randn(&mut rng, &[6, 8], 1.0);
    let text = randn(&mut rng, &[6, 8], 1.0);
    let fixed = build("clip", json!({"temperature": 0.25})).unwrap();
    let a = scalar(
        &fixed
            .forward(
                &LossInputs::new()
                    .with("image", image.clone())
                    .with("text", text.clone()),
            )
            .unwrap(),
    );
    let learnable = build("clip", json!({})).unwrap();
    let scale = Tensor::new(&[4f32.ln()], &Device::Cpu).unwrap();
    let inputs = LossInputs::new()
        .with("image", image)
        .with("text", text)
        .with("logit_scale", scale);
    let b = scalar(&learnable.forward(&inputs).unwrap());
    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
}

#[test]
fn dino_without_center_equals_a_zero_center() {
    let mut rng = Rng::new(8);
    let views: Vec<Tensor> = (0..5).map(|_| randn(&mut rng, &[3, 7], 1.0)).collect();
    let loss = build("dino", json!({})).unwrap();
    let base = LossInputs::new()
        .with("teacher.0", views[0].clone())
        .with("teacher.1", views[1].clone())
        .with("student.0", views[2].clone())
        .with("student.1", views[3].clone())
        .with("student.2", views[4].clone());
    let a = scalar(&loss.forward(&base).unwrap());
    let centred = base.with(
        "center",
        Tensor::zeros((1, 7), DType::F32, &Device::Cpu).unwrap(),
    );
    let b = scalar(&loss.forward(&centred).unwrap());
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    // one teacher and one student view make no pair of different views
    let single = LossInputs::new()
        .with("teacher.0", views[0].clone())
        .with("student.0", views[1].clone());
    assert!(matches!(loss.forward(&single), Err(Error::Shape(_))));
}
