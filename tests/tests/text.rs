//! Text end to end: SimCSE (unsupervised and supervised) on the embedded
//! data with a small BERT, the text evaluators, export to the Hugging Face
//! layout and loading it back as `pretrained`.

use std::path::Path;

use parallax_tests::{fails, ok, parallax};

/// A tiny from-scratch SimCSE recipe; `extra` is appended (e.g. `[[eval]]`).
fn recipe(
    dir: &Path,
    data: &str,
    views: &str,
    method_views: usize,
    encoder: &str,
    extra: &str,
) -> String {
    let text = format!(
        r#"
name = "tiny_simcse"
seed = 3
device = "cpu"

[data]
{data}

[views]
{views}

[encoder]
name = "bert"
{encoder}

[method]
name = "simcse"
views = {method_views}

[optimizer]
name = "adamw"
lr = 1e-3

[train]
epochs = 1
batch_size = 16
checkpoint_every = 2
log_every = 1
histogram_every = 0
workers = 1
prefetch = 2
{extra}
"#
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const SMALL_BERT: &str = "hidden_size = 16\nnum_hidden_layers = 1\nnum_attention_heads = 2\nmax_position_embeddings = 64";

fn write_eval_files(dir: &Path) {
    let lee = dir.join("lee");
    std::fs::create_dir_all(&lee).unwrap();
    std::fs::write(
        lee.join("lee.cor"),
        "The cat sat on the mat.\nA dog barked at the mailman.\nStocks fell sharply on Monday.\nMarkets dropped as shares fell.\n",
    )
    .unwrap();
    std::fs::write(
        lee.join("similarities0-1.txt"),
        "1\t0.6\t0.1\t0.1\n0\t1\t0.1\t0.2\n0\t0\t1\t0.9\n0\t0\t0\t1\n",
    )
    .unwrap();
    let mut polarity = String::new();
    for i in 0..10 {
        polarity.push_str(&format!(
            "__label__pos a wonderful , moving film number {i} .\n"
        ));
        polarity.push_str(&format!(
            "__label__neg a dull , tedious mess number {i} .\n"
        ));
    }
    std::fs::write(dir.join("polarity.cor"), polarity).unwrap();
    std::fs::write(
        dir.join("sts.tsv"),
        "a man plays guitar\ta person plays a guitar\t4.5\nthe sun is hot\tit rains in london\t0.5\na woman cooks\ta lady is cooking\t4.8\n",
    )
    .unwrap();
}

fn metric(out: &str, key: &str) -> f64 {
    out.lines()
        .find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix(key)?.trim_start().strip_prefix('=')?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .unwrap_or_else(|| panic!("no `{key}` in:\n{out}"))
}

#[test]
fn unsupervised_simcse_trains_evaluates_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    write_eval_files(dir.path());
    let d = dir.path().display();
    let evals = format!(
        r#"
[[eval]]
name = "lee"
path = "{d}/lee"
max_length = 32

[[eval]]
name = "text_probe"
path = "{d}/polarity.cor"
folds = 4
epochs = 20

[[eval]]
name = "sts"
path = "{d}/sts.tsv"
"#
    );
    let r = recipe(
        dir.path(),
        "name = \"sentences\"\nlimit = 64\nmax_length = 24",
        "name = \"copies\"\nviews = 2",
        2,
        SMALL_BERT,
        &evals,
    );
    let run = dir.path().join("run");
    let out = ok(&parallax(&["train", &r, "--out", run.to_str().unwrap()]));
    for key in [
        "lee/spearman",
        "lee/pearson",
        "text_probe/accuracy",
        "sts/spearman",
    ] {
        let v = metric(&out, key);
        assert!(v.is_finite(), "{key} = {v}");
    }
    let acc = metric(&out, "text_probe/accuracy");
    assert!((0.0..=1.0).contains(&acc));
    assert!(run.join("checkpoint.safetensors").is_file());

    // export into the Hugging Face layout, then load it as `pretrained`
    let hf = dir.path().join("hf");
    let listed = ok(&parallax(&[
        "export",
        run.to_str().unwrap(),
        "--out",
        hf.to_str().unwrap(),
    ]));
    assert!(listed.contains("model.safetensors"), "{listed}");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(hf.join(f).is_file(), "{f} missing");
    }
    let r2 = recipe(
        dir.path(),
        "name = \"sentences\"\nlimit = 32\nmax_length = 24",
        "name = \"copies\"\nviews = 2",
        2,
        &format!("pretrained = \"{}\"", hf.display()),
        &evals,
    );
    let out2 = ok(&parallax(&[
        "train",
        &r2,
        "--out",
        dir.path().join("run2").to_str().unwrap(),
        "--max-steps",
        "1",
    ]));
    // the reloaded model before training is the exported one:
    // its Lee score before training equals the first run's final score
    let before = out2
        .lines()
        .find(|l| l.starts_with("lee/pearson"))
        .and_then(|l| l.split("before training:").nth(1))
        .and_then(|v| v.trim().trim_end_matches(')').parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no initial lee score in:\n{out2}"));
    assert!(
        (before - metric(&out, "lee/pearson")).abs() < 1e-3,
        "exported model scores {before}, trained run {}",
        metric(&out, "lee/pearson")
    );
}

#[test]
fn supervised_simcse_uses_triples_and_three_views() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "name = \"sentence_triples\"\nlimit = 32",
        "name = \"triples\"",
        3,
        SMALL_BERT,
        "",
    );
    let run = dir.path().join("run");
    ok(&parallax(&["train", &r, "--out", run.to_str().unwrap()]));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("train/hard_negative_cosine"), "{metrics}");
    // 2 views against a 3-view method is caught before training
    let bad = recipe(
        dir.path(),
        "name = \"sentence_triples\"\nlimit = 32",
        "name = \"copies\"\nviews = 2",
        3,
        SMALL_BERT,
        "",
    );
    let err = fails(&parallax(&[
        "train",
        &bad,
        "--out",
        dir.path().join("bad").to_str().unwrap(),
    ]));
    assert!(err.contains("3 views") || err.contains("views"), "{err}");
}

#[test]
fn bad_text_inputs_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("s.jsonl");
    std::fs::write(
        &jsonl,
        "{\"text\": \"fine\"}\n{\"sentence\": \"wrong key\"}\n",
    )
    .unwrap();
    let r = recipe(
        dir.path(),
        &format!("name = \"sentences\"\npath = \"{}\"", jsonl.display()),
        "name = \"copies\"\nviews = 2",
        2,
        SMALL_BERT,
        "",
    );
    let err = fails(&parallax(&[
        "train",
        &r,
        "--out",
        dir.path().join("a").to_str().unwrap(),
    ]));
    assert!(err.contains("s.jsonl:2") && err.contains("`text`"), "{err}");
    // an unknown encoder key names the key
    let r = recipe(
        dir.path(),
        "name = \"sentences\"\nlimit = 8",
        "name = \"copies\"\nviews = 2",
        2,
        &format!("{SMALL_BERT}\nhiden_size = 3"),
        "",
    );
    let err = fails(&parallax(&[
        "train",
        &r,
        "--out",
        dir.path().join("b").to_str().unwrap(),
    ]));
    assert!(err.contains("hiden_size"), "{err}");
    // a missing Lee folder says how to get it
    let r = recipe(
        dir.path(),
        "name = \"sentences\"\nlimit = 8",
        "name = \"copies\"\nviews = 2",
        2,
        SMALL_BERT,
        &format!(
            "[[eval]]\nname = \"lee\"\npath = \"{}/nope\"",
            dir.path().display()
        ),
    );
    let err = fails(&parallax(&[
        "train",
        &r,
        "--out",
        dir.path().join("c").to_str().unwrap(),
    ]));
    assert!(
        err.contains("lee.cor") && err.contains("fetch-data.sh"),
        "{err}"
    );
}

#[test]
fn pretrained_comes_from_the_hub_then_the_offline_cache() {
    use std::collections::BTreeMap;

    use parallax_tests::mock_hub::MockHub;
    use parallax_tests::parallax_env;

    // a tiny BERT to serve: train nothing, just export a fresh one
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "name = \"sentences\"\nlimit = 16\nmax_length = 16",
        "name = \"copies\"\nviews = 2",
        2,
        SMALL_BERT,
        "",
    );
    let run = dir.path().join("run");
    ok(&parallax(&[
        "train",
        &r,
        "--out",
        run.to_str().unwrap(),
        "--max-steps",
        "1",
    ]));
    let hf = dir.path().join("hf");
    ok(&parallax(&[
        "export",
        run.to_str().unwrap(),
        "--out",
        hf.to_str().unwrap(),
    ]));
    let mut files = BTreeMap::new();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        files.insert(f.to_string(), std::fs::read(hf.join(f)).unwrap());
    }
    let hub = MockHub::start("acme/tiny-bert", files);
    let home = dir.path().join("hf-home");
    let home_s = home.to_str().unwrap();
    let r = recipe(
        dir.path(),
        "name = \"sentences\"\nlimit = 16\nmax_length = 16",
        "name = \"copies\"\nviews = 2",
        2,
        "pretrained = \"acme/tiny-bert\"\nrevision = \"main\"",
        "",
    );
    let env = [
        ("HF_ENDPOINT", hub.url()),
        ("HF_HOME", home_s),
        ("HF_HUB_CACHE", ""),
        ("HF_HUB_OFFLINE", "0"),
    ];
    let out = ok(&parallax_env(
        &[
            "train",
            &r,
            "--out",
            dir.path().join("a").to_str().unwrap(),
            "--max-steps",
            "1",
        ],
        &env,
    ));
    assert!(
        out.contains("acme--tiny-bert"),
        "the tokenizer comes from the pulled model:\n{out}"
    );
    let n = hub.requests().len();
    assert!(n >= 3, "{n} requests");
    // offline: the cache serves the model, no request reaches the Hub
    let offline = [
        ("HF_ENDPOINT", hub.url()),
        ("HF_HOME", home_s),
        ("HF_HUB_CACHE", ""),
        ("HF_HUB_OFFLINE", "1"),
    ];
    ok(&parallax_env(
        &[
            "train",
            &r,
            "--out",
            dir.path().join("b").to_str().unwrap(),
            "--max-steps",
            "1",
        ],
        &offline,
    ));
    assert_eq!(hub.requests().len(), n);
    // a repository the Hub does not have is named
    let bad = recipe(
        dir.path(),
        "name = \"sentences\"\nlimit = 16",
        "name = \"copies\"\nviews = 2",
        2,
        "pretrained = \"acme/missing-bert\"",
        "",
    );
    let err = fails(&parallax_env(
        &[
            "train",
            &bad,
            "--out",
            dir.path().join("c").to_str().unwrap(),
        ],
        &env,
    ));
    assert!(
        err.contains("acme/missing-bert") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn simcse_takes_the_debiased_loss_as_an_option() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "name = \"sentences\"\nlimit = 32\nmax_length = 16",
        "name = \"copies\"\nviews = 2",
        2,
        SMALL_BERT,
        "\n[loss]\nname = \"debiased_info_nce\"\ntemperature = 0.05\ntau_plus = 0.1\n",
    );
    let run = dir.path().join("run");
    let out = ok(&parallax(&["train", &r, "--out", run.to_str().unwrap()]));
    let loss = metric(&out, "train/loss");
    assert!(loss.is_finite() && loss > 0.0, "{out}");
}
