//! Optimizers against hand-computed updates, parameter groups, schedules,
//! gradient clipping and the resume property of the optimizer state.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use parallax_core::optim::clip;
use parallax_core::optim::lars::{trust_ratio, Lars};
use parallax_core::optim::schedule::{Schedule, ScheduleConfig, ScheduleKind, Warmup};
use parallax_core::optim::{self, LarsOptions, Optimizer, OptimizerSpec, ParamGroup};
use parallax_core::recipe::Params;

const DEV: Device = Device::Cpu;

fn spec(name: &str, toml_text: &str) -> OptimizerSpec {
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    optim::parse(name, &Params::from_toml("optimizer", table).unwrap()).unwrap()
}

fn var(vals: &[f32]) -> Var {
    Var::new(vals, &DEV).unwrap()
}

fn values(v: &Var) -> Vec<f32> {
    v.as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn group(vars: &[(&str, &Var)], weight_decay: f64, lars_adapt: bool) -> ParamGroup {
    ParamGroup {
        vars: vars
            .iter()
            .map(|(n, v)| (n.to_string(), (*v).clone()))
            .collect(),
        weight_decay,
        lars_adapt,
    }
}

/// Gradients of the quadratic 0.5 * sum(a * w^2), i.e. g = a * w.
fn quad_grads(w: &Var, a: &[f32]) -> GradStore {
    let a = Tensor::new(a, &DEV).unwrap();
    let loss = ((w.as_tensor().sqr().unwrap() * a)
        .unwrap()
        .sum_all()
        .unwrap()
        * 0.5)
        .unwrap();
    loss.backward().unwrap()
}

/// Gradients of the linear sum(c * w), i.e. g = c.
fn linear_grads(w: &Var, c: &[f32]) -> GradStore {
    let c = Tensor::new(c, &DEV).unwrap();
    (w.as_tensor() * c)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (*g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: got {got:?}, want {want:?}"
        );
    }
}

const A: [f32; 3] = [1.0, 2.0, 3.0];
const W0: [f32; 3] = [1.0, -2.0, 0.5];

/// Runs 3 steps of `spec` with w in one group of weight decay `wd` on the
/// quadratic and compares with `want`.
fn run_quadratic(spec: &OptimizerSpec, wd: f64, lr: f64, want: &[[f64; 3]; 3], what: &str) {
    let w = var(&W0);
    let mut opt = optim::build(spec, vec![group(&[("w", &w)], wd, true)]).unwrap();
    for (k, want) in want.iter().enumerate() {
        let g = quad_grads(&w, &A);
        opt.step(&g, lr).unwrap();
        assert_close(&values(&w), want, 1e-6, &format!("{what} step {}", k + 1));
    }
}

#[test]
fn sgd_momentum_and_weight_decay() {
    // g = a*w + 0.01*w; b = g, then b = 0.9*b + g; w -= 0.1*b
    // step 1: g = [1.01, -4.02, 1.505], w = [0.899, -1.598, 0.3495]
    let want = [
        [0.899, -1.598, 0.3495],
        [0.717301, -0.915002, 0.1088505],
        [0.481324499, -0.116388398, -0.1404980505],
    ];
    let s = spec("sgd", "momentum = 0.9\nweight_decay = 0.01");
    run_quadratic(&s, s.weight_decay, 0.1, &want, "sgd");
}

#[test]
fn sgd_nesterov() {
    // step 1: b = g, update g + 0.9*b = 1.9*g: w = w - 0.19*[1.01, -4.02, 1.505]
    let want = [
        [0.8081, -1.2362, 0.21405],
        [0.57121561, -0.43847522, -0.030270195],
        [0.321859673441, 0.223302188518, -0.1748607009795],
    ];
    let s = spec(
        "sgd",
        "momentum = 0.9\nweight_decay = 0.01\nnesterov = true",
    );
    run_quadratic(&s, 0.01, 0.1, &want, "nesterov");
}

#[test]
fn sgd_dampening_starts_from_the_gradient() {
    // PyTorch: the first buffer is g itself, later ones mu*b + (1 - d)*g
    let want = [
        [0.9, -1.6, 0.35],
        [0.765, -1.08, 0.1625],
        [0.60525, -0.504, -0.030625],
    ];
    let s = spec("sgd", "momentum = 0.9\nweight_decay = 0.0\ndampening = 0.5");
    run_quadratic(&s, 0.0, 0.1, &want, "dampening");
}

#[test]
fn adamw_matches_pytorch_formula() {
    // w *= 1 - lr*wd; m = 0.9m + 0.1g; v = 0.999v + 0.001g^2;
    // w -= lr * (m / (1 - 0.9^t)) / (sqrt(v / (1 - 0.999^t)) + eps)
    // step 1: m_hat/sqrt(v_hat) = sign(g), so w = 0.999*w - 0.01*sign(w)
    let want = [
        [0.9890000001, -1.988000000025, 0.48950000006666666],
        [0.9780140361691815, -1.976013613962142, 0.47901659469548374],
        [0.9670441524960462, -1.9640419109960356, 0.4685539909220221],
    ];
    let s = spec("adamw", "lr = 0.01\nweight_decay = 0.1");
    run_quadratic(&s, s.weight_decay, 0.01, &want, "adamw");
    let want = [
        [0.9900000001, -1.990000000025, 0.49000000006666666],
        [0.98000274609637, -1.9800013380039458, 0.48000577580071974],
        [0.97001009952905, -1.9700049115673468, 0.47002132930480056],
    ];
    run_quadratic(&s, 0.0, 0.01, &want, "adamw without decay");
}

#[test]
fn lars_trust_ratio_known_case() {
    // ||w|| = 5; d = c + 0.1*w = [0.9, 1.2], ||d|| = 1.5;
    // q = 0.01 * 5 / 1.5 = 1/30; b = q*d = [0.03, 0.04]; w = w - b
    let opts = LarsOptions {
        momentum: 0.9,
        trust_coefficient: 0.01,
        eps: 0.0,
    };
    let c = [0.6f32, 0.8];
    let w = var(&[3.0, 4.0]);
    let mut opt = Lars::new(vec![group(&[("w", &w)], 0.1, true)], opts.clone()).unwrap();
    opt.step(&linear_grads(&w, &c), 1.0).unwrap();
    assert_close(&values(&w), &[2.97, 3.96], 1e-6, "lars step 1");
    // ||w|| = 4.95, d = [0.6, 0.8] + 0.1*w = [0.897, 1.196], ||d|| = 1.495;
    // q = 0.0495 / 1.495; b = 0.9*[0.03, 0.04] + q*d
    let q = 0.0495 / 1.495;
    let want = [2.97 - (0.027 + q * 0.897), 3.96 - (0.036 + q * 1.196)];
    opt.step(&linear_grads(&w, &c), 1.0).unwrap();
    assert_close(&values(&w), &want, 1e-6, "lars step 2");

    // without weight decay: d = c, ||d|| = 1, q = 0.05
    let w = var(&[3.0, 4.0]);
    let mut opt = Lars::new(vec![group(&[("w", &w)], 0.0, true)], opts.clone()).unwrap();
    opt.step(&linear_grads(&w, &c), 1.0).unwrap();
    assert_close(&values(&w), &[2.97, 3.96], 1e-6, "lars no decay step 1");
    opt.step(&linear_grads(&w, &c), 1.0).unwrap();
    assert_close(&values(&w), &[2.9133, 3.8844], 1e-6, "lars no decay step 2");

    // groups without adaptation get plain momentum SGD
    let b = var(&[3.0, 4.0]);
    let mut opt = Lars::new(vec![group(&[("b", &b)], 0.0, false)], opts.clone()).unwrap();
    opt.step(&linear_grads(&b, &c), 0.5).unwrap();
    assert_close(&values(&b), &[2.7, 3.6], 1e-6, "unadapted step 1");
    opt.step(&linear_grads(&b, &c), 0.5).unwrap();
    assert_close(
        &values(&b),
        &[2.7 - 0.5 * 1.14, 3.6 - 0.5 * 1.52],
        1e-6,
        "unadapted step 2",
    );

    // a zero parameter (or update) norm gives a ratio of 1
    let z = var(&[0.0, 0.0]);
    let mut opt = Lars::new(vec![group(&[("z", &z)], 0.0, true)], opts).unwrap();
    opt.step(&linear_grads(&z, &c), 0.5).unwrap();
    assert_close(&values(&z), &[-0.3, -0.4], 1e-6, "zero norm");
    let t = |v: &[f32]| Tensor::new(v, &DEV).unwrap();
    let r = |p: &[f32], d: &[f32]| {
        trust_ratio(&t(p), &t(d), 0.01, 0.0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0]
    };
    assert!((r(&[3.0, 4.0], &[0.6, 0.8]) - 0.05).abs() < 1e-7);
    assert_eq!(r(&[0.0, 0.0], &[0.6, 0.8]), 1.0);
    assert_eq!(r(&[3.0, 4.0], &[0.0, 0.0]), 1.0);
}

#[test]
fn lars_spec_defaults_follow_simclr() {
    let s = spec("lars", "");
    assert_eq!(s.weight_decay, 1e-6);
    let optim::OptimizerKind::Lars(o) = &s.kind else {
        panic!("{:?}", s.kind)
    };
    assert_eq!((o.momentum, o.trust_coefficient, o.eps), (0.9, 1e-3, 0.0));
}

fn model_vars() -> Vec<(String, Var)> {
    let mk = |shape: &[usize], seed: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i as f32 + 1.0) * seed).sin()).collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &DEV).unwrap()).unwrap()
    };
    vec![
        ("encoder.conv.weight".into(), mk(&[4, 2, 3, 3], 0.7)),
        ("encoder.conv.bias".into(), mk(&[4], 1.3)),
        ("encoder.norm.weight".into(), mk(&[4], 2.1)),
        ("head.weight".into(), mk(&[3, 4], 0.9)),
        ("head.bias".into(), mk(&[3], 0.4)),
        ("unused.weight".into(), mk(&[2, 2], 0.5)),
    ]
}

#[test]
fn param_groups_exclude_biases_and_norms() {
    let vars = model_vars();
    let s = spec("sgd", "weight_decay = 5e-4");
    let groups = optim::param_groups(vars.clone(), &s);
    assert_eq!(groups.len(), 2);
    let names = |g: &ParamGroup| g.vars.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&groups[0]),
        ["encoder.conv.weight", "head.weight", "unused.weight"]
    );
    assert_eq!((groups[0].weight_decay, groups[0].lars_adapt), (5e-4, true));
    assert_eq!(
        names(&groups[1]),
        ["encoder.conv.bias", "encoder.norm.weight", "head.bias"]
    );
    assert_eq!((groups[1].weight_decay, groups[1].lars_adapt), (0.0, false));

    let s = spec("sgd", "weight_decay = 5e-4\nexclude_bias_and_norm = false");
    let groups = optim::param_groups(vars, &s);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].vars.len(), 6);
    assert_eq!((groups[0].weight_decay, groups[0].lars_adapt), (5e-4, true));
}

#[test]
fn a_variable_in_two_groups_is_an_error() {
    let w = var(&[1.0]);
    let s = spec("sgd", "");
    let err = optim::build(
        &s,
        vec![
            group(&[("w", &w)], 0.0, true),
            group(&[("w", &w)], 0.0, false),
        ],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("`w`"), "{err}");
}

#[test]
fn schedule_warmup_cosine() {
    let s = spec("sgd", "lr = 0.5\nwarmup_epochs = 2.0\nmin_lr = 0.001");
    assert_eq!(s.schedule.kind, ScheduleKind::Cosine);
    let sched = Schedule::new(&s.schedule, s.lr, 100, 10);
    assert_eq!(sched.lr_at(0), 0.0);
    assert_eq!(sched.lr_at(20), 0.5);
    assert!((sched.lr_at(10) - 0.25).abs() < 1e-12);
    assert!((sched.lr_at(100) - 0.001).abs() < 1e-12);
    let lrs: Vec<f64> = (0..=100).map(|k| sched.lr_at(k)).collect();
    let peak = lrs.iter().cloned().fold(f64::MIN, f64::max);
    assert_eq!(peak, 0.5);
    for (k, w) in lrs.windows(2).enumerate() {
        if k < 20 {
            assert!(w[0] < w[1], "warm-up rises at {k}");
        } else {
            assert!(w[0] > w[1], "cosine falls at {k}");
        }
    }
    // half way through the decay: the mean of base and min
    assert!((sched.lr_at(60) - (0.5 + 0.001) / 2.0).abs() < 1e-12);

    // warm-up in steps, linear and constant decay
    let cfg = ScheduleConfig {
        kind: ScheduleKind::Linear,
        warmup: Warmup::Steps(5),
        min_lr: 0.0,
    };
    let sched = Schedule::new(&cfg, 1.0, 15, 3);
    assert_eq!(sched.lr_at(5), 1.0);
    assert_eq!(sched.lr_at(10), 0.5);
    assert_eq!(sched.lr_at(15), 0.0);
    let s = spec("adamw", "schedule = \"constant\"");
    let sched = Schedule::new(&s.schedule, s.lr, 50, 5);
    assert!((0..=50).all(|k| sched.lr_at(k) == s.lr));
}

fn two_var_grads(w1: &Var, w2: &Var) -> GradStore {
    let c1 = Tensor::new(&[3f32, 4.0], &DEV).unwrap();
    let c2 = Tensor::new(&[12f32], &DEV).unwrap();
    let l1 = (w1.as_tensor() * c1).unwrap().sum_all().unwrap();
    let l2 = (w2.as_tensor() * c2).unwrap().sum_all().unwrap();
    (l1 + l2).unwrap().backward().unwrap()
}

fn grad_values(g: &GradStore, v: &Var) -> Vec<f32> {
    g.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn clipping_accumulation_and_scaling() {
    let (w1, w2) = (var(&[1.0, 1.0]), var(&[1.0]));
    let vars = [w1.clone(), w2.clone()];
    let mut g = two_var_grads(&w1, &w2);
    // sqrt(3^2 + 4^2 + 12^2) = 13
    assert!((clip::grad_norm(&g, &vars).unwrap() - 13.0).abs() < 1e-5);
    assert!((clip::grad_norm(&g, &[w1.clone(), w1.clone()]).unwrap() - 5.0).abs() < 1e-5);
    // no clipping below the maximum
    let n = clip::clip_grad_norm(&mut g, &vars, 20.0).unwrap();
    assert!((n - 13.0).abs() < 1e-5);
    assert_eq!(grad_values(&g, &w1), [3.0, 4.0]);
    // clipping to 1.3 scales by 0.1 and returns the norm before clipping
    let n = clip::clip_grad_norm(&mut g, &vars, 1.3).unwrap();
    assert!((n - 13.0).abs() < 1e-5, "{n}");
    let after = clip::grad_norm(&g, &vars).unwrap();
    assert!(after <= 1.3 + 1e-6 && after > 1.29, "{after}");
    assert_close(&grad_values(&g, &w1), &[0.3, 0.4], 1e-5, "clipped w1");
    assert_close(&grad_values(&g, &w2), &[1.2], 1e-5, "clipped w2");
    assert!(clip::clip_grad_norm(&mut g, &vars, 0.0).is_err());

    // accumulation: into += from; a gradient only in `from` is copied
    let mut into = linear_grads(&w1, &[1.0, 2.0]);
    let from = two_var_grads(&w1, &w2);
    clip::accumulate(&mut into, &from, &vars).unwrap();
    assert_eq!(grad_values(&into, &w1), [4.0, 6.0]);
    assert_eq!(grad_values(&into, &w2), [12.0]);
    clip::scale(&mut into, &vars, 0.5).unwrap();
    assert_eq!(grad_values(&into, &w1), [2.0, 3.0]);
    assert_eq!(grad_values(&into, &w2), [6.0]);
}

/// A loss over the model that changes with the step (so that momentum and
/// moments matter); `unused.weight` gets no gradient.
fn model_grads(vars: &[(String, Var)], step: u64) -> GradStore {
    let get = |n: &str| {
        vars.iter()
            .find(|(k, _)| k == n)
            .unwrap()
            .1
            .as_tensor()
            .clone()
    };
    let x: Vec<f32> = (0..2 * 3 * 3)
        .map(|i| ((i as f32 + 1.0) * (step as f32 + 1.3)).cos())
        .collect();
    let x = Tensor::from_vec(x, (1, 2, 3, 3), &DEV).unwrap();
    let conv = get("encoder.conv.weight");
    let h = x
        .unsqueeze(1)
        .unwrap()
        .broadcast_mul(&conv.unsqueeze(0).unwrap())
        .unwrap()
        .sum((2, 3, 4))
        .unwrap(); // (1, 4)
    let h = h.broadcast_add(&get("encoder.conv.bias")).unwrap();
    let h = h
        .broadcast_mul(&get("encoder.norm.weight"))
        .unwrap()
        .tanh()
        .unwrap();
    let y = h.matmul(&get("head.weight").t().unwrap()).unwrap();
    let y = y.broadcast_add(&get("head.bias")).unwrap();
    let target = Tensor::new(&[[0.5f32, -1.0, (step as f32 * 0.3).sin()]], &DEV).unwrap();
    let loss = (y - target).unwrap().sqr().unwrap().sum_all().unwrap();
    loss.backward().unwrap()
}

fn snapshot(vars: &[(String, Var)]) -> Vec<Vec<f32>> {
    vars.iter().map(|(_, v)| values(v)).collect()
}

/// Trains 3 steps, saves the optimizer state through a safetensors file,
/// loads it into a fresh optimizer over fresh variables set to the trained
/// values, trains 3 more, and compares with 6 uninterrupted steps.
fn check_resume(name: &str, toml_text: &str) {
    let s = spec(name, toml_text);
    let sched = Schedule::new(&s.schedule, s.lr, 6, 2);
    let train =
        |vars: &[(String, Var)], opt: &mut Box<dyn Optimizer>, steps: std::ops::Range<u64>| {
            for k in steps {
                opt.step(&model_grads(vars, k), sched.lr_at(k)).unwrap();
            }
        };

    let full = model_vars();
    let mut opt = optim::build(&s, optim::param_groups(full.clone(), &s)).unwrap();
    train(&full, &mut opt, 0..6);
    let full_state = opt.state().unwrap();

    let first = model_vars();
    let mut opt = optim::build(&s, optim::param_groups(first.clone(), &s)).unwrap();
    train(&first, &mut opt, 0..3);
    assert_ne!(
        snapshot(&first),
        snapshot(&model_vars()),
        "{name}: training changes the model"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.safetensors");
    candle_core::safetensors::save(
        &opt.state().unwrap().into_iter().collect::<HashMap<_, _>>(),
        &path,
    )
    .unwrap();
    let loaded = candle_core::safetensors::load(&path, &DEV).unwrap();

    let resumed = model_vars();
    for ((_, v), (_, trained)) in resumed.iter().zip(&first) {
        v.set(&trained.as_tensor().copy().unwrap()).unwrap();
    }
    let mut opt = optim::build(&s, optim::param_groups(resumed.clone(), &s)).unwrap();
    opt.load_state(&loaded).unwrap();
    train(&resumed, &mut opt, 3..6);

    assert_eq!(
        snapshot(&resumed),
        snapshot(&full),
        "{name}: resumed run differs"
    );
    let resumed_state = opt.state().unwrap();
    assert_eq!(
        resumed_state.keys().collect::<Vec<_>>(),
        full_state.keys().collect::<Vec<_>>(),
        "{name}"
    );
    for (k, t) in &full_state {
        let a = t
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let b = resumed_state[k]
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(a, b, "{name}: state entry {k}");
    }
}

#[test]
fn resume_continues_identically() {
    check_resume(
        "sgd",
        "lr = 0.1\nmomentum = 0.9\nweight_decay = 0.01\nwarmup_steps = 2",
    );
    check_resume(
        "sgd",
        "lr = 0.1\nmomentum = 0.8\nnesterov = true\nweight_decay = 0.01",
    );
    check_resume("sgd", "lr = 0.1\nmomentum = 0.9\ndampening = 0.3");
    check_resume("sgd", "lr = 0.1\nmomentum = 0.0");
    check_resume(
        "adamw",
        "lr = 0.01\nweight_decay = 0.05\nwarmup_epochs = 1.0",
    );
    check_resume("lars", "lr = 0.5\nweight_decay = 1e-4\nwarmup_steps = 1");
}

#[test]
fn state_names_entries_and_load_checks_them() {
    let vars = model_vars();
    let s = spec("adamw", "");
    let mut opt = optim::build(&s, optim::param_groups(vars.clone(), &s)).unwrap();
    opt.step(&model_grads(&vars, 0), 0.01).unwrap();
    let state: HashMap<String, Tensor> = opt.state().unwrap().into_iter().collect();
    for k in [
        "adam.m/head.weight",
        "adam.v/encoder.conv.bias",
        "adam.t/head.bias",
        "adam.t/unused.weight",
    ] {
        assert!(state.contains_key(k), "{k}: {:?}", state.keys());
    }

    let fresh = || optim::build(&s, optim::param_groups(model_vars(), &s)).unwrap();
    let mut missing = state.clone();
    missing.remove("adam.v/head.weight");
    let err = fresh().load_state(&missing).unwrap_err().to_string();
    assert!(
        err.contains("adam.v/head.weight") && err.contains("missing"),
        "{err}"
    );

    let mut misshaped = state.clone();
    misshaped.insert(
        "adam.m/head.bias".into(),
        Tensor::zeros(7, DType::F32, &DEV).unwrap(),
    );
    let err = fresh().load_state(&misshaped).unwrap_err().to_string();
    assert!(
        err.contains("adam.m/head.bias") && err.contains("shape"),
        "{err}"
    );

    let mut extra = state.clone();
    extra.insert(
        "adam.m/other.weight".into(),
        Tensor::zeros(7, DType::F32, &DEV).unwrap(),
    );
    let err = fresh().load_state(&extra).unwrap_err().to_string();
    assert!(err.contains("adam.m/other.weight"), "{err}");

    // another optimizer's state
    let sgd = spec("sgd", "");
    let err = optim::build(&sgd, optim::param_groups(model_vars(), &sgd))
        .unwrap()
        .load_state(&state)
        .unwrap_err()
        .to_string();
    assert!(err.contains("momentum/") || err.contains("sgd.t/"), "{err}");

    // sgd's momentum buffers are named momentum/<variable>
    let mut opt = optim::build(&sgd, optim::param_groups(vars.clone(), &sgd)).unwrap();
    opt.step(&model_grads(&vars, 0), 0.01).unwrap();
    let st = opt.state().unwrap();
    assert!(
        st.contains_key("momentum/encoder.conv.weight"),
        "{:?}",
        st.keys()
    );
    assert_eq!(st["momentum/encoder.conv.weight"].dims(), [4, 2, 3, 3]);
}

#[test]
fn unknown_optimizer_lists_the_available() {
    let err = optim::parse("adam", &Params::empty("optimizer"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("adam") && err.contains("sgd, adamw, lars"),
        "{err}"
    );
}
