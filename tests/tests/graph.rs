//! The graph plugin end to end through the binary: GRACE, DGI and the
//! supervised GCN train in the full-graph loop on the embedded Cora files
//! (and on an edge-list graph), DGI stops early and restores its best
//! step, `parallax eval` re-measures a finished run, and recipe mistakes
//! are errors naming the key.

use std::path::Path;

use parallax_tests::{fails, ok, parallax, root};

fn recipe(name: &str) -> String {
    root().join("recipes").join(name).display().to_string()
}

fn results(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap()
}

fn train(recipe: &str, out: &Path, sets: &[&str]) -> String {
    let mut args = vec!["train", recipe, "--out", out.to_str().unwrap()];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    ok(&parallax(&args))
}

#[test]
fn grace_trains_on_embedded_cora_and_eval_remeasures_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("grace");
    let out = train(
        &recipe("grace.toml"),
        &run,
        &[
            "train.epochs=3",
            r#"eval=[{name="node_probe", protocol="random", splits=2, epochs=30}]"#,
        ],
    );
    assert!(out.contains("steps: 3"), "{out}");
    let r = results(&run);
    let acc = r["final"]["probe_random/acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{r}");
    assert!(r["final"]["probe_random/acc_std"].as_f64().is_some(), "{r}");
    assert!(r["init"]["probe_random/acc"].as_f64().is_some(), "{r}");
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(
        log.contains("train/alignment"),
        "the views' alignment is logged"
    );
    // `parallax eval` rebuilds the run and gets the same probe accuracy
    let again = ok(&parallax(&["eval", run.to_str().unwrap()]));
    assert!(
        again.contains(&format!("probe_random/acc = {acc:.4}")),
        "{again} vs {acc}"
    );
}

#[test]
fn dgi_stops_early_and_restores_its_best_step() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("dgi");
    // with a negligible learning rate the loss only varies with the
    // corruption: after a few steps no new minimum comes within the patience
    let out = train(
        &recipe("dgi.toml"),
        &run,
        &[
            "method.patience=3",
            "optimizer.lr=1e-12",
            "train.epochs=200",
            "encoder.dims=[32]",
        ],
    );
    let steps: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("steps: "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    assert!(steps < 200, "{out}");
    assert!(out.contains("early stop at step"), "{out}");
    assert!(out.contains("restored the parameters of step"), "{out}");
    let acc = results(&run)["final"]["probe_public/acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    // the checkpoint keeps the last step (for --resume); `eval` restores
    // the best step from the method state as `train` did
    let again = ok(&parallax(&["eval", run.to_str().unwrap()]));
    assert!(
        again.contains(&format!("probe_public/acc = {acc:.4}")),
        "{again} vs {acc}"
    );
}

#[test]
fn the_supervised_gcn_learns_cora_in_a_few_steps() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("gcn");
    train(&recipe("gcn_supervised.toml"), &run, &["train.epochs=30"]);
    let r = results(&run);
    let (acc, init) = (
        r["final"]["classifier/acc"].as_f64().unwrap(),
        r["init"]["classifier/acc"].as_f64().unwrap(),
    );
    // 7 classes: chance is about 0.14 (the largest class 0.32)
    assert!(acc > 0.6 && acc > init + 0.3, "{r}");
}

#[test]
fn an_edge_list_graph_trains_with_grace() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut f, mut e, mut l) = (String::new(), String::new(), String::new());
    for i in 0..40 {
        let c = i % 2;
        f.push_str(&format!("n{i},{},{},1\n", 1 - c, c));
        e.push_str(&format!("n{i},n{}\n", (i + 2) % 40));
        l.push_str(&format!("n{i},{}\n", if c == 0 { "even" } else { "odd" }));
    }
    for (name, text) in [("f.csv", &f), ("e.csv", &e), ("l.csv", &l)] {
        std::fs::write(d.join(name), text).unwrap();
    }
    let recipe = format!(
        r#"name = "el"
seed = 1
device = "cpu"
[data]
name = "edge_list"
features = "{0}/f.csv"
edges = "{0}/e.csv"
labels = "{0}/l.csv"
[encoder]
name = "gcn"
dims = [16, 8]
[method]
name = "grace"
proj_dim = 8
[optimizer]
name = "adamw"
lr = 0.01
[train]
loop = "full_graph"
epochs = 5
[[eval]]
name = "node_probe"
protocol = "random"
splits = 3
train_ratio = 0.25
val_ratio = 0.25
epochs = 50
"#,
        d.display()
    );
    let path = d.join("el.toml");
    std::fs::write(&path, recipe).unwrap();
    let run = d.join("run");
    let out = train(path.to_str().unwrap(), &run, &[]);
    assert!(out.contains("steps: 5"), "{out}");
    // the two classes are told apart by the features alone
    let acc = results(&run)["final"]["probe_random/acc"].as_f64().unwrap();
    assert!(acc > 0.9, "{acc}");
}

#[test]
fn graph_recipe_mistakes_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).display().to_string();
    let fail = |r: &str, o: &str, sets: &[&str]| {
        let mut args = vec!["train", r, "--out", o];
        for s in sets {
            args.push("--set");
            args.push(s);
        }
        fails(&parallax(&args))
    };
    let grace = recipe("grace.toml");
    let e = fail(&grace, &out("a"), &["train.loop=\"nope\""]);
    assert!(
        e.contains("train.loop") && e.contains("full_graph") && e.contains("epochs"),
        "{e}"
    );
    let e = fail(
        &grace,
        &out("b"),
        &[r#"eval=[{name="node_probe", protocol="public"}]"#],
    );
    assert!(
        e.contains("no published split") && e.contains("protocol"),
        "{e}"
    );
    let e = fail(&grace, &out("c"), &["method.tau=0.0"]);
    assert!(e.contains("method.tau"), "{e}");
    let e = fail(&grace, &out("d"), &["method.drop_edge=[0.2, 1.5]"]);
    assert!(e.contains("drop_edge") && e.contains("[0, 1)"), "{e}");
    let e = fail(&grace, &out("e"), &["encoder.activation=\"tanh\""]);
    assert!(
        e.contains("encoder.activation") && e.contains("tanh"),
        "{e}"
    );
    let e = fail(&grace, &out("f"), &["data.embedded=\"pubmed\""]);
    assert!(e.contains("data.embedded") && e.contains("pubmed"), "{e}");
    let e = fail(&grace, &out("g"), &["data.path=\"no/such.npz\""]);
    assert!(e.contains("no/such.npz"), "{e}");
    let e = fail(&grace, &out("h"), &["views.name=\"image\""]);
    assert!(e.contains("[views]") && e.contains("full_graph"), "{e}");
    let e = fail(
        &grace,
        &out("i"),
        &["method.name=\"supervised_gcn\"", "method.tau=0.4"],
    );
    assert!(e.contains("method"), "{e}");
    let e = fail(
        &recipe("dgi.toml"),
        &out("l"),
        &[r#"eval=[{name="node_probe", schedule="linear"}]"#],
    );
    assert!(
        e.contains("schedule") && e.contains("linear") && e.contains("constant"),
        "{e}"
    );
    let sup = recipe("gcn_supervised.toml");
    let e = fail(&sup, &out("j"), &["encoder.dims=[16, 5]"]);
    assert!(e.contains("7 classes") && e.contains("encoder"), "{e}");
    let e = fail(&sup, &out("k"), &["data.embedded=\"cora\""]);
    assert!(e.contains("published split"), "{e}");
}

#[test]
fn list_shows_the_graph_kinds() {
    let o = ok(&parallax(&["list", "loops"]));
    assert!(o.contains("full_graph") && o.contains("epochs"), "{o}");
    let o = ok(&parallax(&["list", "graph-methods"]));
    assert!(
        o.contains("grace") && o.contains("dgi") && o.contains("supervised_gcn"),
        "{o}"
    );
    let o = ok(&parallax(&["list", "graph-data"]));
    assert!(o.contains("graph_npz") && o.contains("edge_list"), "{o}");
}
