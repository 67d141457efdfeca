//! The ViT encoder (shapes, gradients against finite differences in f64)
//! and pretrained weights for the ViT and the ResNet: timm / torchvision
//! names, Hugging Face `ViTModel` names, shape errors, position-embedding
//! resizing and a Hub id through a mock Hub.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use parallax_core::batch::Batch;
use parallax_core::data::DataMeta;
use parallax_core::nn::encoder::{EncoderCtx, ForwardCtx};
use parallax_core::nn::init::VarStore;
use parallax_core::rng::Rng;
use parallax_vision::resnet::{ResNet, ResNetConfig};
use parallax_vision::vit::{resize_pos_embed, Pool, Variant, Vit, VitConfig};

#[allow(dead_code)]
#[path = "../../../tests/src/mock_hub.rs"]
mod mock_hub;

const PREFIX: &str = "encoder.";

fn tiny(pool: Pool) -> VitConfig {
    VitConfig {
        variant: Variant::Custom,
        dim: Some(8),
        depth: Some(1),
        heads: Some(2),
        patch_size: Some(4),
        pool,
        ..Default::default()
    }
}

fn vit(cfg: &VitConfig, shape: [usize; 3], seed: u64, dtype: DType) -> (VarStore, Vit) {
    let store = VarStore::new(seed);
    let vb = store.var_builder(dtype, &Device::Cpu).pp("encoder");
    let net = Vit::new(cfg, Some(shape), vb).unwrap();
    (store, net)
}

fn try_vit(cfg: &VitConfig, shape: [usize; 3]) -> String {
    let store = VarStore::new(0);
    let vb = store.var_builder(DType::F32, &Device::Cpu).pp("encoder");
    match Vit::new(cfg, Some(shape), vb) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn images(n: usize, shape: [usize; 3], seed: u64, dtype: DType) -> Tensor {
    Rng::new(seed)
        .uniform_tensor(
            (n, shape[0], shape[1], shape[2]),
            0.0,
            1.0,
            dtype,
            &Device::Cpu,
        )
        .unwrap()
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The store's values under their names in the checkpoint (prefix dropped).
fn unprefixed(store: &VarStore) -> HashMap<String, Tensor> {
    store
        .tensors()
        .into_iter()
        .map(|(k, v)| (k.strip_prefix(PREFIX).unwrap().to_string(), v))
        .collect()
}

/// Gives every variable random values (positive running variances), so
/// that a loaded model cannot agree with a fresh one by chance.
fn randomize(store: &VarStore, seed: u64) {
    let mut rng = Rng::new(seed);
    for (name, var) in store.named_vars() {
        let t = if name.ends_with("running_var") {
            rng.uniform_tensor(var.shape(), 0.5, 1.5, var.dtype(), &Device::Cpu)
        } else {
            rng.normal_tensor(var.shape(), 0.0, 0.5, var.dtype(), &Device::Cpu)
        }
        .unwrap();
        var.set(&t).unwrap();
    }
}

fn save(tensors: &HashMap<String, Tensor>, path: &Path) {
    candle_core::safetensors::save(tensors, path).unwrap();
}

fn with_pretrained(cfg: &VitConfig, path: &Path) -> VitConfig {
    VitConfig {
        pretrained: Some(path.display().to_string()),
        ..cfg.clone()
    }
}

#[test]
fn output_shapes_of_tiny_and_custom_configs() {
    let (store, net) = vit(&VitConfig::default(), [3, 32, 32], 0, DType::F32);
    let a = net.arch();
    assert_eq!(
        (a.dim, a.depth, a.heads, a.patch, a.grid()),
        (192, 12, 3, 4, 8)
    );
    assert!(store.get_var("encoder.blocks.11.attn.qkv.weight").is_some());
    assert_eq!(
        store.get_var("encoder.pos_embed").unwrap().dims(),
        &[1, 65, 192]
    );
    let y = net
        .features(
            &images(2, [3, 32, 32], 1, DType::F32),
            &mut ForwardCtx::eval(),
        )
        .unwrap();
    assert_eq!(y.dims(), &[2, 192]);

    // custom, one channel, 28 px, mean pooling, non-default MLP ratio
    let cfg = VitConfig {
        variant: Variant::Custom,
        dim: Some(24),
        depth: Some(2),
        heads: Some(4),
        patch_size: Some(7),
        mlp_ratio: 2.0,
        pool: Pool::Mean,
        dropout: 0.1,
        ..Default::default()
    };
    let (store, net) = vit(&cfg, [1, 28, 28], 0, DType::F32);
    assert_eq!(
        store
            .get_var("encoder.blocks.1.mlp.fc1.weight")
            .unwrap()
            .dims(),
        &[48, 24]
    );
    assert_eq!(
        store
            .get_var("encoder.patch_embed.proj.weight")
            .unwrap()
            .dims(),
        &[24, 1, 7, 7]
    );
    let x = images(3, [1, 28, 28], 2, DType::F32);
    let y = net.features(&x, &mut ForwardCtx::eval()).unwrap();
    assert_eq!(y.dims(), &[3, 24]);
    // dropout: training views differ, evaluation is deterministic
    let t1 = net
        .features(&x, &mut ForwardCtx::train(Rng::new(1)))
        .unwrap();
    let t2 = net
        .features(&x, &mut ForwardCtx::train(Rng::new(2)))
        .unwrap();
    assert_ne!(vals(&t1), vals(&t2));
    assert_eq!(
        vals(&y),
        vals(&net.features(&x, &mut ForwardCtx::eval()).unwrap())
    );
    // wrong image size
    let e = net
        .features(
            &images(1, [1, 32, 32], 2, DType::F32),
            &mut ForwardCtx::eval(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("[B, 1, 28, 28]"), "{e}");
}

#[test]
fn registered_and_configured_from_a_recipe_table() {
    let table: toml::Table =
        toml::from_str("variant = \"custom\"\ndim = 16\ndepth = 1\nheads = 2\npool = \"mean\"")
            .unwrap();
    let params = parallax_core::recipe::Params::from_toml("encoder", table).unwrap();
    let ctx = EncoderCtx {
        meta: DataMeta {
            image_shape: Some([1, 28, 28]),
            ..Default::default()
        },
    };
    let store = VarStore::new(0);
    let entry = parallax_core::registry::encoder("vit").unwrap();
    let enc = (entry.build)(&params, &ctx, store.var_builder(DType::F32, &Device::Cpu)).unwrap();
    assert_eq!(enc.output_dim(), 16);
    // 28 px images: patch 4 by default, 7x7 grid
    assert_eq!(store.get_var("pos_embed").unwrap().dims(), &[1, 50, 16]);
    let mut b = Batch::default();
    b.tensors
        .insert("image".into(), images(2, [1, 28, 28], 0, DType::F32));
    assert_eq!(
        enc.forward(&b, &mut ForwardCtx::eval()).unwrap().dims(),
        &[2, 16]
    );
    let table: toml::Table = toml::from_str("dimension = 16").unwrap();
    let params = parallax_core::recipe::Params::from_toml("encoder", table).unwrap();
    let e = (entry.build)(&params, &ctx, store.var_builder(DType::F32, &Device::Cpu))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("dimension"), "{e}");
}

#[test]
fn gradients_of_every_parameter_match_finite_differences() {
    let shape = [3, 8, 8];
    for pool in [Pool::Cls, Pool::Mean] {
        let (store, net) = vit(&tiny(pool), shape, 7, DType::F64);
        assert_eq!(store.named_vars().len(), 18);
        // away from the initialisation's near-zero values
        randomize(&store, 5);
        let x = images(2, shape, 3, DType::F64);
        let probe = Rng::new(4)
            .normal_tensor((2, 8), 0.0, 1.0, DType::F64, &Device::Cpu)
            .unwrap();
        let loss = || -> Tensor {
            let out = net.features(&x, &mut ForwardCtx::eval()).unwrap();
            (out * &probe).unwrap().sum_all().unwrap()
        };
        let grads = loss().backward().unwrap();
        let mut rng = Rng::new(11);
        let mut checked = 0;
        for (name, var) in store.named_vars() {
            let g = match grads.get(var.as_tensor()) {
                Some(g) => vals(g),
                None => panic!("no gradient reached `{name}` ({pool:?})"),
            };
            let base = vals(var.as_tensor());
            // every entry of small variables, 12 random ones of the others
            let entries: Vec<usize> = if base.len() <= 48 {
                (0..base.len()).collect()
            } else {
                (0..12)
                    .map(|_| (rng.uniform() as f64 * base.len() as f64) as usize % base.len())
                    .collect()
            };
            let scale = g.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
            for k in entries {
                let eps = 1e-6;
                let set = |v: Vec<f64>| {
                    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                        .unwrap()
                };
                let mut plus = base.clone();
                plus[k] += eps;
                set(plus);
                let lp = loss().to_scalar::<f64>().unwrap();
                let mut minus = base.clone();
                minus[k] -= eps;
                set(minus);
                let lm = loss().to_scalar::<f64>().unwrap();
                set(base.clone());
                let fd = (lp - lm) / (2.0 * eps);
                assert!(
                    (fd - g[k]).abs() <= 1e-5 * scale.max(fd.abs()),
                    "{name}[{k}] ({pool:?}): autograd {} vs finite differences {fd}",
                    g[k]
                );
                checked += 1;
            }
        }
        assert!(checked >= 200, "checked {checked} entries");
    }
}

#[test]
fn timm_names_round_trip_through_safetensors() {
    let shape = [3, 8, 8];
    let cfg = tiny(Pool::Cls);
    let (store, net) = vit(&cfg, shape, 1, DType::F32);
    randomize(&store, 2);
    let mut tensors = unprefixed(&store);
    for n in [
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "blocks.0.norm1.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.qkv.bias",
        "blocks.0.attn.proj.weight",
        "blocks.0.norm2.bias",
        "blocks.0.mlp.fc1.weight",
        "blocks.0.mlp.fc2.bias",
        "norm.weight",
    ] {
        assert!(tensors.contains_key(n), "missing {n}");
    }
    // a classifier head is ignored
    tensors.insert(
        "head.weight".into(),
        Tensor::zeros((10, 8), DType::F32, &Device::Cpu).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vit.safetensors");
    save(&tensors, &path);
    let x = images(2, shape, 3, DType::F32);
    let want = vals(&net.features(&x, &mut ForwardCtx::eval()).unwrap());
    let (_, back) = vit(&with_pretrained(&cfg, &path), shape, 99, DType::F32);
    assert_eq!(
        vals(&back.features(&x, &mut ForwardCtx::eval()).unwrap()),
        want
    );
    // a folder holding model.safetensors, loaded in f64
    save(&tensors, &dir.path().join("model.safetensors"));
    let (_, back) = vit(&with_pretrained(&cfg, dir.path()), shape, 98, DType::F64);
    let got = vals(
        &back
            .features(&x.to_dtype(DType::F64).unwrap(), &mut ForwardCtx::eval())
            .unwrap(),
    );
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

/// timm's names → Hugging Face `ViTForImageClassification`'s.
fn to_hf(timm: &HashMap<String, Tensor>, dim: usize) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for (k, v) in timm {
        let name = match k.as_str() {
            "cls_token" => "embeddings.cls_token".to_string(),
            "pos_embed" => "embeddings.position_embeddings".to_string(),
            "norm.weight" => "layernorm.weight".to_string(),
            "norm.bias" => "layernorm.bias".to_string(),
            k if k.starts_with("patch_embed.proj.") => k.replace(
                "patch_embed.proj.",
                "embeddings.patch_embeddings.projection.",
            ),
            k => {
                let rest = k.strip_prefix("blocks.").unwrap();
                let (i, tail) = rest.split_once('.').unwrap();
                let pre = format!("encoder.layer.{i}");
                if let Some(param) = tail.strip_prefix("attn.qkv.") {
                    for (j, part) in ["query", "key", "value"].iter().enumerate() {
                        out.insert(
                            format!("vit.{pre}.attention.attention.{part}.{param}"),
                            v.narrow(0, j * dim, dim).unwrap().contiguous().unwrap(),
                        );
                    }
                    continue;
                }
                let tail = tail
                    .replace("attn.proj.", "attention.output.dense.")
                    .replace("norm1.", "layernorm_before.")
                    .replace("norm2.", "layernorm_after.")
                    .replace("mlp.fc1.", "intermediate.dense.")
                    .replace("mlp.fc2.", "output.dense.");
                format!("{pre}.{tail}")
            }
        };
        out.insert(format!("vit.{name}"), v.clone());
    }
    out
}

#[test]
fn hugging_face_vit_names_load_with_split_query_key_value() {
    let shape = [3, 8, 8];
    let cfg = tiny(Pool::Mean);
    let (store, net) = vit(&cfg, shape, 1, DType::F32);
    randomize(&store, 3);
    let mut hf = to_hf(&unprefixed(&store), 8);
    assert!(hf.contains_key("vit.encoder.layer.0.attention.attention.key.bias"));
    assert!(hf.contains_key("vit.encoder.layer.0.layernorm_after.weight"));
    hf.insert(
        "classifier.weight".into(),
        Tensor::zeros((10, 8), DType::F32, &Device::Cpu).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hf.safetensors");
    save(&hf, &path);
    let x = images(2, shape, 3, DType::F32);
    let want = vals(&net.features(&x, &mut ForwardCtx::eval()).unwrap());
    let (_, back) = vit(&with_pretrained(&cfg, &path), shape, 42, DType::F32);
    assert_eq!(
        vals(&back.features(&x, &mut ForwardCtx::eval()).unwrap()),
        want
    );
    // a missing value projection is named
    hf.remove("vit.encoder.layer.0.attention.attention.value.weight");
    save(&hf, &path);
    let e = try_vit(&with_pretrained(&cfg, &path), shape);
    assert!(
        e.contains("encoder.layer.0.attention.attention.value.weight"),
        "{e}"
    );
}

#[test]
fn mis_shaped_missing_and_unused_tensors_are_named() {
    let shape = [3, 8, 8];
    let cfg = tiny(Pool::Cls);
    let (store, _) = vit(&cfg, shape, 1, DType::F32);
    let good = unprefixed(&store);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    let file = path.display().to_string();

    let mut t = good.clone();
    t.insert(
        "blocks.0.mlp.fc1.weight".into(),
        Tensor::zeros((31, 8), DType::F32, &Device::Cpu).unwrap(),
    );
    save(&t, &path);
    let e = try_vit(&with_pretrained(&cfg, &path), shape);
    assert!(
        e.contains("blocks.0.mlp.fc1.weight")
            && e.contains("[31, 8]")
            && e.contains("[32, 8]")
            && e.contains(&file),
        "{e}"
    );

    let mut t = good.clone();
    t.remove("norm.bias");
    save(&t, &path);
    let e = try_vit(&with_pretrained(&cfg, &path), shape);
    assert!(
        e.contains("no tensor `norm.bias`") && e.contains(&file),
        "{e}"
    );

    // a deeper checkpoint than the configuration
    let mut t = good.clone();
    t.insert(
        "blocks.1.norm1.weight".into(),
        Tensor::ones(8, DType::F32, &Device::Cpu).unwrap(),
    );
    save(&t, &path);
    let e = try_vit(&with_pretrained(&cfg, &path), shape);
    assert!(
        e.contains("blocks.1.norm1.weight") && e.contains(&file),
        "{e}"
    );

    // a position table that is not a square grid
    let mut t = good;
    t.insert(
        "pos_embed".into(),
        Tensor::zeros((1, 7, 8), DType::F32, &Device::Cpu).unwrap(),
    );
    save(&t, &path);
    let e = try_vit(&with_pretrained(&cfg, &path), shape);
    assert!(e.contains("7 positions") && e.contains("needs 5"), "{e}");

    let e = try_vit(
        &with_pretrained(&cfg, &dir.path().join("nope.safetensors")),
        shape,
    );
    assert!(e.contains("no such file"), "{e}");
    let e = try_vit(&with_pretrained(&cfg, dir.path()), shape);
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn position_embeddings_of_another_grid_are_resized() {
    let cfg = tiny(Pool::Cls);
    // trained on 16x16 images: a 4x4 grid
    let (store, _) = vit(&cfg, [3, 16, 16], 1, DType::F32);
    randomize(&store, 4);
    let tensors = unprefixed(&store);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vit16.safetensors");
    save(&tensors, &path);
    // loaded for 8x8 images: a 2x2 grid
    let (back, net) = vit(&with_pretrained(&cfg, &path), [3, 8, 8], 2, DType::F32);
    let pos = back.get_var("encoder.pos_embed").unwrap();
    assert_eq!(pos.dims(), &[1, 5, 8]);
    let want = resize_pos_embed(&tensors["pos_embed"], 2).unwrap();
    assert_eq!(vals(pos.as_tensor()), vals(&want));
    let y = net
        .features(
            &images(1, [3, 8, 8], 0, DType::F32),
            &mut ForwardCtx::eval(),
        )
        .unwrap();
    assert_eq!(y.dims(), &[1, 8]);
}

fn resnet(cfg: &ResNetConfig, seed: u64) -> (VarStore, ResNet) {
    let store = VarStore::new(seed);
    let vb = store.var_builder(DType::F32, &Device::Cpu).pp("encoder");
    let net = ResNet::new(cfg, 3, vb).unwrap();
    (store, net)
}

#[test]
fn resnet18_round_trip_in_torchvision_names() {
    // ResNet-18's layout at width 8 (torchvision's names; 64 in the real model)
    let cfg = ResNetConfig {
        depth: 18,
        width: 8,
        ..Default::default()
    };
    let (store, net) = resnet(&cfg, 1);
    randomize(&store, 6);
    let mut tensors = unprefixed(&store);
    assert!(tensors.contains_key("layer2.0.downsample.0.weight"));
    assert!(tensors.contains_key("layer4.1.bn2.running_var"));
    // torchvision's classifier and batch counters are ignored
    tensors.insert(
        "fc.weight".into(),
        Tensor::ones((10, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "fc.bias".into(),
        Tensor::ones(10, DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "bn1.num_batches_tracked".into(),
        Tensor::new(&[7i64], &Device::Cpu).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.safetensors");
    save(&tensors, &path);
    let x = images(2, [3, 16, 16], 1, DType::F32);
    // evaluation mode: the running statistics must have been loaded too
    let want = vals(&net.features(&x, false).unwrap());
    let loaded = ResNetConfig {
        pretrained: Some(path.display().to_string()),
        ..cfg.clone()
    };
    let (_, back) = resnet(&loaded, 77);
    assert_eq!(vals(&back.features(&x, false).unwrap()), want);

    // a mis-shaped tensor is named with both shapes
    tensors.insert(
        "layer3.1.conv2.weight".into(),
        Tensor::zeros((32, 32, 1, 1), DType::F32, &Device::Cpu).unwrap(),
    );
    save(&tensors, &path);
    let store = VarStore::new(0);
    let e = ResNet::new(
        &loaded,
        3,
        store.var_builder(DType::F32, &Device::Cpu).pp("encoder"),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("layer3.1.conv2.weight")
            && e.contains("[32, 32, 1, 1]")
            && e.contains("[32, 32, 3, 3]")
            && e.contains("resnet18.safetensors"),
        "{e}"
    );
}

#[test]
fn a_hub_repo_id_is_pulled_through_the_hub_cache() {
    let shape = [3, 8, 8];
    let cfg = tiny(Pool::Cls);
    let (store, net) = vit(&cfg, shape, 1, DType::F32);
    randomize(&store, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save(&unprefixed(&store), &path);
    let mut files = std::collections::BTreeMap::new();
    files.insert(
        "model.safetensors".to_string(),
        std::fs::read(&path).unwrap(),
    );
    let hub = mock_hub::MockHub::start("acme/tiny-vit", files);
    let home = tempfile::tempdir().unwrap();
    // only this test uses the Hub variables
    std::env::set_var("HF_ENDPOINT", hub.url());
    std::env::set_var("HF_HOME", home.path());
    for v in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
    ] {
        std::env::remove_var(v);
    }
    let x = images(2, shape, 3, DType::F32);
    let want = vals(&net.features(&x, &mut ForwardCtx::eval()).unwrap());
    let hub_cfg = VitConfig {
        pretrained: Some("acme/tiny-vit".into()),
        revision: Some("main".into()),
        ..cfg.clone()
    };
    let (_, back) = vit(&hub_cfg, shape, 5, DType::F32);
    assert_eq!(
        vals(&back.features(&x, &mut ForwardCtx::eval()).unwrap()),
        want
    );
    assert!(
        hub.gets().iter().any(|g| g.ends_with("model.safetensors")),
        "{:?}",
        hub.gets()
    );
    assert!(home
        .path()
        .join("hub/models--acme--tiny-vit/snapshots")
        .join(mock_hub::COMMIT)
        .join("model.safetensors")
        .is_file());
    // an unknown repository is an error naming it
    let missing = VitConfig {
        pretrained: Some("acme/no-such-vit".into()),
        ..cfg
    };
    let e = try_vit(&missing, shape);
    assert!(e.contains("acme/no-such-vit"), "{e}");
}

#[test]
fn resnet18_loads_hugging_face_names() {
    let cfg = ResNetConfig {
        depth: 18,
        width: 8,
        ..Default::default()
    };
    let (store, net) = resnet(&cfg, 2);
    randomize(&store, 9);
    // torchvision's names -> transformers' ResNetForImageClassification names
    let hf: HashMap<String, Tensor> = unprefixed(&store)
        .into_iter()
        .map(|(k, v)| {
            let bn_or_conv = |s: &str| match s.strip_prefix("conv") {
                Some(i) => ("convolution", i.parse::<usize>().unwrap() - 1),
                None => (
                    "normalization",
                    s.trim_start_matches("bn").parse::<usize>().unwrap() - 1,
                ),
            };
            let parts: Vec<&str> = k.split('.').collect();
            let name = match parts.as_slice() {
                [first, rest @ ..] if *first == "conv1" || *first == "bn1" => format!(
                    "resnet.embedder.embedder.{}.{}",
                    bn_or_conv(first).0,
                    rest.join(".")
                ),
                [layer, b, "downsample", i, rest @ ..] => format!(
                    "resnet.encoder.stages.{}.layers.{b}.shortcut.{}.{}",
                    layer[5..].parse::<usize>().unwrap() - 1,
                    if *i == "0" {
                        "convolution"
                    } else {
                        "normalization"
                    },
                    rest.join(".")
                ),
                [layer, b, cb, rest @ ..] => {
                    let (kind, i) = bn_or_conv(cb);
                    format!(
                        "resnet.encoder.stages.{}.layers.{b}.layer.{i}.{kind}.{}",
                        layer[5..].parse::<usize>().unwrap() - 1,
                        rest.join(".")
                    )
                }
                _ => panic!("unexpected name {k}"),
            };
            (name, v)
        })
        .collect();
    assert!(hf.contains_key("resnet.encoder.stages.1.layers.0.shortcut.convolution.weight"));
    assert!(hf.contains_key("resnet.encoder.stages.3.layers.1.layer.1.normalization.running_var"));
    let mut hf = hf;
    hf.insert(
        "classifier.1.weight".into(),
        Tensor::ones((10, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save(&hf, &path);
    let x = images(2, [3, 16, 16], 3, DType::F32);
    let want = vals(&net.features(&x, false).unwrap());
    let loaded = ResNetConfig {
        pretrained: Some(dir.path().display().to_string()),
        ..cfg.clone()
    };
    let (_, back) = resnet(&loaded, 78);
    assert_eq!(vals(&back.features(&x, false).unwrap()), want);
}
