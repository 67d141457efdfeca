//! The graph model's pieces: the views (edge dropping, feature masking),
//! the GCN layer against a dense reference, PReLU's gradient, and both
//! losses against float64 references (GRACE's node-level NT-Xent written
//! out as in the paper, DGI's binary cross entropy).

use candle_core::{DType, Device, Tensor, Var};
use parallax_core::graph::{Csr, Graph, GraphEncoder};
use parallax_core::losses::nt_xent::{NtXent, NtXentConfig};
use parallax_core::losses::{Loss, LossInputs};
use parallax_core::nn::encoder::ForwardCtx;
use parallax_core::nn::init::VarStore;
use parallax_core::ops::spmm::SparseMatrix;
use parallax_core::recipe::Params;
use parallax_core::rng::Rng;
use parallax_graph::dgi::dgi_loss;
use parallax_graph::gcn::{prelu, Gcn, GcnConfig};
use parallax_graph::views::GraphView;

fn randn(rng: &mut Rng, n: usize, d: usize) -> (Vec<f64>, Tensor) {
    let v: Vec<f64> = (0..n * d).map(|_| rng.normal() as f64).collect();
    let t = Tensor::from_vec(v.clone(), (n, d), &Device::Cpu).unwrap();
    (v, t)
}

fn ring(n: usize, features: usize) -> Graph {
    let mut e = Vec::new();
    for i in 0..n as u32 {
        let j = (i + 1) % n as u32;
        e.push((i, j, 1.0));
        e.push((j, i, 1.0));
    }
    let f: Vec<_> = (0..n as u32)
        .flat_map(|i| (0..features as u32).map(move |c| (i, c, 1.0 + (i + c) as f32)))
        .collect();
    Graph {
        edges: Csr::from_entries(n, n, &e),
        features: Csr::from_entries(n, features, &f),
        labels: vec![-1; n],
        num_classes: 0,
        split: None,
        describe: "ring".into(),
    }
}

#[test]
fn views_drop_edges_and_mask_columns_at_their_rates() {
    let g = ring(400, 50);
    let view = GraphView::new(0.3, 0.4).unwrap();
    let (x, a) = view.apply(&g, &mut Rng::new(1));
    // kept edges + one self-loop per node
    let kept = (a.csr().nnz() - 400) as f64 / g.num_edges() as f64;
    assert!((kept - 0.7).abs() < 0.05, "kept {kept}");
    // a masked column is zero for every node; the others are untouched
    let dense = x.csr().to_dense();
    let masked: Vec<usize> = (0..50)
        .filter(|&c| (0..400).all(|r| dense[r * 50 + c] == 0.0))
        .collect();
    let share = masked.len() as f64 / 50.0;
    assert!((0.2..0.6).contains(&share), "masked {share}");
    for c in (0..50).filter(|c| !masked.contains(c)) {
        assert!((0..400).all(|r| dense[r * 50 + c] == 1.0 + (r + c) as f32));
    }
    // the same generator state gives the same view, another one another
    let (x2, a2) = view.apply(&g, &mut Rng::new(1));
    assert_eq!((x2.csr(), a2.csr()), (x.csr(), a.csr()));
    let (_, a3) = view.apply(&g, &mut Rng::new(2));
    assert_ne!(a3.csr(), a.csr());
    // rates of zero change nothing
    let (x0, a0) = GraphView::new(0.0, 0.0)
        .unwrap()
        .apply(&g, &mut Rng::new(1));
    assert_eq!(x0.csr(), &g.features);
    assert_eq!(a0.csr(), &g.edges.gcn_normalized());
    assert!(GraphView::new(1.0, 0.0).is_err());
}

#[test]
fn a_gcn_layer_is_relu_of_a_x_w_plus_b() {
    let g = ring(5, 3);
    let store = VarStore::new(3);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let cfg = GcnConfig {
        dims: vec![4],
        ..GcnConfig::default()
    };
    let gcn = Gcn::new(&cfg, 3, vb.pp("encoder"), &Params::empty("encoder")).unwrap();
    let prop = SparseMatrix::new(g.edges.gcn_normalized());
    let x = SparseMatrix::new(g.features.clone());
    let h = gcn.forward(&x, &prop, &mut ForwardCtx::eval()).unwrap();
    let w = store.get_var("encoder.layers.0.weight").unwrap();
    let b = store.get_var("encoder.layers.0.bias").unwrap();
    let a = Tensor::from_vec(prop.csr().to_dense(), (5, 5), &Device::Cpu).unwrap();
    let xd = Tensor::from_vec(g.features.to_dense(), (5, 3), &Device::Cpu).unwrap();
    let want = a
        .matmul(&xd.matmul(w.as_tensor()).unwrap())
        .unwrap()
        .broadcast_add(b.as_tensor())
        .unwrap()
        .relu()
        .unwrap();
    let diff = (h - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-5, "{diff}");
    assert_eq!(gcn.output_dim(), 4);
}

#[test]
fn prelu_gradcheck_f64() {
    let mut rng = Rng::new(4);
    let (_, x) = randn(&mut rng, 4, 3);
    let a = Tensor::new(&[0.3f64], &Device::Cpu).unwrap();
    let (_, r) = randn(&mut rng, 4, 3);
    let loss = |x: &Tensor, a: &Tensor| -> f64 {
        prelu(x, a)
            .unwrap()
            .mul(&r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let (xv, av) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&a).unwrap());
    let g = prelu(xv.as_tensor(), av.as_tensor())
        .unwrap()
        .mul(&r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let gx: Vec<f64> = g
        .get(xv.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let ga: Vec<f64> = g.get(av.as_tensor()).unwrap().to_vec1().unwrap();
    let eps = 1e-6;
    let xs: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    for (j, &gj) in gx.iter().enumerate() {
        let at = |d: f64| {
            let mut v = xs.clone();
            v[j] += d;
            loss(&Tensor::from_vec(v, (4, 3), &Device::Cpu).unwrap(), &a)
        };
        let num = (at(eps) - at(-eps)) / (2.0 * eps);
        assert!((num - gj).abs() < 1e-6, "x[{j}]: {num} vs {gj}");
    }
    let at = |d: f64| loss(&x, &Tensor::new(&[0.3 + d], &Device::Cpu).unwrap());
    let num = (at(eps) - at(-eps)) / (2.0 * eps);
    assert!((num - ga[0]).abs() < 1e-6, "slope: {num} vs {}", ga[0]);
}

/// GRACE's loss as the paper writes it (eq. 1 and 2), in f64: for anchor
/// `u_i`, `-log(e(u_i,v_i) / (e(u_i,v_i) + sum_{k!=i} e(u_i,v_k) +
/// sum_{k!=i} e(u_i,u_k)))` with `e(a,b) = exp(cos(a,b)/tau)`, averaged
/// over both views' anchors.
fn grace_reference(u: &[f64], v: &[f64], n: usize, d: usize, tau: f64) -> f64 {
    let norm = |x: &[f64]| -> Vec<Vec<f64>> {
        x.chunks(d)
            .map(|r| {
                let s = r.iter().map(|a| a * a).sum::<f64>().sqrt();
                r.iter().map(|a| a / s).collect()
            })
            .collect()
    };
    let (u, v) = (norm(u), norm(v));
    let e = |a: &[f64], b: &[f64]| (a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / tau).exp();
    let side = |u: &[Vec<f64>], v: &[Vec<f64>]| -> f64 {
        (0..n)
            .map(|i| {
                let pos = e(&u[i], &v[i]);
                let inter: f64 = (0..n).filter(|&k| k != i).map(|k| e(&u[i], &v[k])).sum();
                let intra: f64 = (0..n).filter(|&k| k != i).map(|k| e(&u[i], &u[k])).sum();
                -(pos / (pos + inter + intra)).ln()
            })
            .sum::<f64>()
            / n as f64
    };
    0.5 * (side(&u, &v) + side(&v, &u))
}

#[test]
fn grace_loss_matches_the_paper_in_f64() {
    let mut rng = Rng::new(9);
    for (n, d, tau) in [(7, 5, 0.4), (12, 3, 0.9), (3, 8, 0.5)] {
        let (uv, u) = randn(&mut rng, n, d);
        let (vv, v) = randn(&mut rng, n, d);
        let loss = NtXent::new(NtXentConfig { temperature: tau }).unwrap();
        for dtype in [DType::F64, DType::F32] {
            let got = loss
                .forward(
                    &LossInputs::new()
                        .with("z0", u.to_dtype(dtype).unwrap())
                        .with("z1", v.to_dtype(dtype).unwrap()),
                )
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            let want = grace_reference(&uv, &vv, n, d, tau);
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert!(
                (got - want).abs() < tol * want.abs().max(1.0),
                "n {n}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn dgi_loss_matches_binary_cross_entropy_in_f64() {
    let mut rng = Rng::new(11);
    let (pv, pos) = randn(&mut rng, 9, 1);
    let (nv, neg) = randn(&mut rng, 9, 1);
    // large logits too: the loss must stay finite
    let big = Tensor::new(&[80.0f64, -90.0], &Device::Cpu).unwrap();
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let want = (pv.iter().map(|&x| -sig(x).ln()).sum::<f64>()
        + nv.iter().map(|&x| -(1.0 - sig(x)).ln()).sum::<f64>())
        / 18.0;
    let got = dgi_loss(&pos.flatten_all().unwrap(), &neg.flatten_all().unwrap())
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    let b = dgi_loss(&big, &big).unwrap().to_scalar::<f64>().unwrap();
    // softplus(-80) + softplus(90) + softplus(80) + softplus(-90), over 4
    assert!((b - (90.0 + 80.0) / 4.0).abs() < 1e-9, "{b}");
    // gradient: d/dx of the mean BCE is (sigmoid(x) - label) / 2N
    let x = Var::from_tensor(&pos.flatten_all().unwrap()).unwrap();
    let g = dgi_loss(x.as_tensor(), &neg.flatten_all().unwrap())
        .unwrap()
        .backward()
        .unwrap();
    let gx: Vec<f64> = g.get(x.as_tensor()).unwrap().to_vec1().unwrap();
    for (g, &p) in gx.iter().zip(&pv) {
        assert!((g - (sig(p) - 1.0) / 18.0).abs() < 1e-12);
    }
}
