//! The `captioned` and `image_text` data sources: captions of the embedded
//! Fashion-MNIST slice (fields, labels, phrases, templates, determinism,
//! recipe errors) and image-caption manifests written here (JSON Lines and
//! CSV, string and integer labels, resizing, corrupt and missing images,
//! missing fields, the test split).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use parallax_core::batch::{Field, Sample};
use parallax_core::data::{BuildCtx, DataSource, Split};
use parallax_core::error::Result;
use parallax_core::recipe::Params;
use parallax_multimodal::captioned::{default_phrases, fill, Captioned, DEFAULT_TEMPLATES};
use parallax_multimodal::pairs::ImageTextPairs;
use parallax_text::tokenizer::TextTokenizer;

// Links the plugins so that their sources are registered.
use parallax_multimodal as _;
use parallax_vision as _;

fn params(options: &str) -> Params {
    let table: toml::Table = toml::from_str(options).expect("valid TOML");
    Params::from_toml("data", table).expect("params")
}

fn ctx(seed: u64, split: Split, base: &Path) -> BuildCtx {
    let mut ctx = BuildCtx::new(seed, split);
    ctx.base_dir = base.to_path_buf();
    ctx
}

fn captioned(options: &str, seed: u64, split: Split) -> Result<Captioned> {
    Captioned::from_params(&params(options), &ctx(seed, split, Path::new(".")))
}

fn pairs(options: &str, split: Split, base: &Path) -> Result<ImageTextPairs> {
    ImageTextPairs::from_params(&params(options), &ctx(0, split, base))
}

/// Builds through the registry, as a recipe would.
fn registered(name: &str, options: &str, split: Split, base: &Path) -> Result<Arc<dyn DataSource>> {
    let entry = parallax_core::registry::data_source(name)?;
    (entry.build)(&params(options), &ctx(0, split, base))
}

fn error<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn image(s: &Sample) -> (Vec<usize>, Vec<f32>) {
    match s.get("image") {
        Some(Field::F32 { shape, data }) => (shape.clone(), data.clone()),
        other => panic!("no image: {other:?}"),
    }
}

fn ints(s: &Sample, name: &str) -> (Vec<usize>, Vec<i64>) {
    match s.get(name) {
        Some(Field::I64 { shape, data }) => (shape.clone(), data.clone()),
        other => panic!("no {name}: {other:?}"),
    }
}

fn label(s: &Sample) -> Option<i64> {
    s.get("label").map(|_| {
        let (shape, data) = ints(s, "label");
        assert!(shape.is_empty(), "label shape {shape:?}");
        data[0]
    })
}

#[test]
fn captioned_fashion_mnist_samples() {
    let src = captioned("", 0, Split::Train).expect("default captioned source");
    assert_eq!(src.len(), 10_000);
    assert_eq!(src.num_templates(), DEFAULT_TEMPLATES.len());
    let meta = src.meta();
    assert_eq!(meta.image_shape, Some([1, 28, 28]));
    assert_eq!(meta.num_classes, Some(10));
    assert_eq!(meta.class_names.len(), 10);
    assert_eq!(meta.vocab_size, Some(30522));
    let d = src.describe();
    assert!(
        d.starts_with("captioned fashion_mnist train")
            && d.contains("10000 images")
            && d.contains("16 templates"),
        "{d}"
    );

    let plain =
        registered("fashion_mnist", "", Split::Train, Path::new(".")).expect("fashion_mnist");
    let tok = TextTokenizer::embedded(32).expect("embedded tokenizer");
    let mut templates = BTreeSet::new();
    for i in (0..10_000).step_by(97) {
        let s = src.get(i).expect("sample");
        let (shape, px) = image(&s);
        assert_eq!(shape, vec![1, 28, 28]);
        assert!(px.iter().all(|&v| (0.0..=1.0).contains(&v)));
        // the image and label of the underlying source
        let p = plain.get(i).expect("plain sample");
        assert_eq!(s.get("image"), p.get("image"));
        let l = label(&s).expect("a label");
        assert_eq!(Some(l), label(&p));
        // tokens of the caption
        let caption = src.caption(i).expect("caption");
        let (ids_shape, ids) = ints(&s, "input_ids");
        let (mask_shape, mask) = ints(&s, "attention_mask");
        assert_eq!(ids_shape, vec![32]);
        assert_eq!(mask_shape, vec![32]);
        assert_eq!((ids, mask), tok.encode(&caption).expect("encode"));
        // a phrase of the sample's class in one of the templates
        let phrases = default_phrases(&meta.class_names[l as usize]);
        let used = DEFAULT_TEMPLATES
            .iter()
            .position(|t| phrases.iter().any(|p| fill(t, p) == caption));
        match used {
            Some(t) => {
                templates.insert(t);
            }
            None => panic!("{caption:?} is not a template filled with one of {phrases:?}"),
        }
    }
    assert!(templates.len() >= 8, "templates used: {templates:?}");
    // Fashion-MNIST's built-in phrases, with articles
    assert_eq!(default_phrases("Ankle boot"), vec!["ankle boot", "boot"]);
    assert_eq!(
        default_phrases("T-shirt/top"),
        vec!["t-shirt", "top", "tee"]
    );
    assert_eq!(
        fill("a photo of a {}.", "ankle boot"),
        "a photo of an ankle boot."
    );

    let test = captioned("", 0, Split::Test).expect("test split");
    assert_eq!(test.len(), 2_000);
    assert!(test.describe().contains("test"), "{}", test.describe());
}

#[test]
fn captioned_captions_are_seeded() {
    let a = captioned("", 0, Split::Train).expect("seed 0");
    let b = captioned("", 0, Split::Train).expect("seed 0 again");
    let c = captioned("", 1, Split::Train).expect("seed 1");
    let caps = |s: &Captioned| -> Vec<String> {
        (0..60).map(|i| s.caption(i).expect("caption")).collect()
    };
    let (ca, cb, cc) = (caps(&a), caps(&b), caps(&c));
    assert_eq!(ca, cb);
    let differ = ca.iter().zip(&cc).filter(|(x, y)| x != y).count();
    assert!(
        differ > 30,
        "only {differ} of 60 captions differ between seeds"
    );
    assert_eq!(a.get(5).expect("get"), b.get(5).expect("get"));
    assert_ne!(
        (0..60).map(|i| a.get(i).expect("get")).collect::<Vec<_>>(),
        (0..60).map(|i| c.get(i).expect("get")).collect::<Vec<_>>()
    );
}

#[test]
fn captioned_options() {
    let src = captioned(
        r#"
        max_length = 12
        templates = ["a photo of a {}.", "{} again"]
        classes = { "Dress" = ["gown", "frock"], "Bag" = ["purse"] }
        [images]
        name = "fashion_mnist"
        train_limit = 300
        "#,
        3,
        Split::Train,
    )
    .expect("captioned with options");
    assert_eq!(src.len(), 300);
    assert_eq!(src.num_templates(), 2);
    let names = src.meta().class_names;
    let mut dress = 0;
    for i in 0..300 {
        let s = src.get(i).expect("sample");
        assert_eq!(ints(&s, "input_ids").0, vec![12]);
        let caption = src.caption(i).expect("caption");
        let class = &names[label(&s).expect("label") as usize];
        assert!(
            caption.starts_with("a photo of a") || caption.ends_with(" again"),
            "{caption}"
        );
        match class.as_str() {
            "Dress" => {
                dress += 1;
                assert!(
                    caption.contains("gown") || caption.contains("frock"),
                    "{caption}"
                );
            }
            "Bag" => assert!(caption.contains("purse"), "{caption}"),
            "Coat" => assert!(
                caption.contains("coat") || caption.contains("jacket"),
                "{caption}"
            ),
            _ => {}
        }
    }
    assert!(dress > 0);
}

#[test]
fn captioned_errors_name_the_key() {
    let e = error(captioned(
        r#"templates = ["a photo of a dress."]"#,
        0,
        Split::Train,
    ));
    assert!(e.contains("templates") && e.contains("{}"), "{e}");
    let e = error(captioned(
        r#"templates = ["a {} and a {}"]"#,
        0,
        Split::Train,
    ));
    assert!(e.contains("templates"), "{e}");
    let e = error(captioned("templates = []", 0, Split::Train));
    assert!(e.contains("templates"), "{e}");
    let e = error(captioned("max_lenght = 16", 0, Split::Train));
    assert!(e.contains("max_lenght"), "{e}");
    let e = error(captioned(
        r#"classes = { "Jumper" = ["jumper"] }"#,
        0,
        Split::Train,
    ));
    assert!(
        e.contains("classes") && e.contains("Jumper") && e.contains("Ankle boot"),
        "{e}"
    );
    let e = error(captioned(r#"classes = { "Dress" = [] }"#, 0, Split::Train));
    assert!(e.contains("classes") && e.contains("Dress"), "{e}");
    let e = error(captioned(
        "[images]\nname = \"no_such_source\"",
        0,
        Split::Train,
    ));
    assert!(e.contains("no_such_source"), "{e}");
    let e = error(captioned(
        "[images]\nname = \"fashion_mnist\"\nbogus = 1",
        0,
        Split::Train,
    ));
    assert!(e.contains("bogus"), "{e}");
}

/// A `w` x `h` RGB image whose pixel (x, y) is (r, x, y).
fn rgb(w: u32, h: u32, r: u8) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([r, x as u8, y as u8]))
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// `dir/img/{a,b,c}.png` (6 x 4 RGB, red 10, 20, 30), `dir/img/big.png`
/// (8 x 8), `dir/img/bad.png` (not an image) and manifests:
/// `train.jsonl` (a, b, c with labels dog, cat, dog), `test.jsonl` (c:
/// fish) and `pairs.csv` (a, b with quoted captions).
fn fixture(dir: &Path) {
    std::fs::create_dir_all(dir.join("img")).expect("mkdir");
    for (name, r) in [("a", 10u8), ("b", 20), ("c", 30)] {
        rgb(6, 4, r)
            .save(dir.join(format!("img/{name}.png")))
            .expect("png");
    }
    rgb(8, 8, 40).save(dir.join("img/big.png")).expect("png");
    std::fs::write(dir.join("img/bad.png"), b"not a png at all").expect("write");
    write(
        &dir.join("train.jsonl"),
        concat!(
            r#"{"image": "img/a.png", "caption": "a red square", "label": "dog"}"#,
            "\n\n",
            r#"{"image": "img/b.png", "caption": "a darker square", "label": "cat"}"#,
            "\n",
            r#"{"image": "img/c.png", "caption": "a red square", "label": "dog"}"#,
            "\n"
        ),
    );
    write(
        &dir.join("test.jsonl"),
        concat!(
            r#"{"image": "img/c.png", "caption": "a fish", "label": "fish"}"#,
            "\n"
        ),
    );
    write(
        &dir.join("pairs.csv"),
        "image,caption,label\nimg/a.png,\"a red, small square\",dog\nimg/b.png,\"say \"\"hi\"\", twice\",cat\n",
    );
}

#[test]
fn image_text_jsonl_pairs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    fixture(dir);
    let src = pairs(
        r#"manifest = "train.jsonl"
        test_manifest = "test.jsonl"
        label_key = "label""#,
        Split::Train,
        dir,
    )
    .expect("pairs");
    assert_eq!(src.len(), 3);
    assert_eq!(src.skipped(), 0);
    let meta = src.meta();
    assert_eq!(meta.image_shape, Some([3, 4, 6]));
    // sorted class names over both manifests
    assert_eq!(meta.class_names, vec!["cat", "dog", "fish"]);
    assert_eq!(meta.num_classes, Some(3));
    assert_eq!(meta.vocab_size, Some(30522));
    let tok = TextTokenizer::embedded(32).expect("tokenizer");
    for (i, (r, l, caption)) in [
        (10u8, 1, "a red square"),
        (20, 0, "a darker square"),
        (30, 1, "a red square"),
    ]
    .into_iter()
    .enumerate()
    {
        let s = src.get(i).expect("sample");
        let (shape, px) = image(&s);
        assert_eq!(shape, vec![3, 4, 6]);
        // pixel (x=5, y=3): (r, 5, 3) in CHW planes
        let at = |c: usize| px[c * 24 + 3 * 6 + 5];
        assert_eq!(
            [at(0), at(1), at(2)],
            [f32::from(r) / 255.0, 5.0 / 255.0, 3.0 / 255.0]
        );
        assert_eq!(label(&s), Some(l));
        assert_eq!(src.caption(i).expect("caption"), caption);
        assert_eq!(
            (ints(&s, "input_ids").1, ints(&s, "attention_mask").1),
            tok.encode(caption).expect("encode")
        );
    }
    assert!(src.get(3).is_err());
    assert!(src.describe().contains("3 pairs"), "{}", src.describe());

    // the test split, with the same class ids
    let test = pairs(
        r#"manifest = "train.jsonl"
        test_manifest = "test.jsonl"
        label_key = "label""#,
        Split::Test,
        dir,
    )
    .expect("test pairs");
    assert_eq!(test.len(), 1);
    assert_eq!(label(&test.get(0).expect("sample")), Some(2));
    assert_eq!(test.meta().class_names, vec!["cat", "dog", "fish"]);

    // through the registry; no labels without label_key; limit; grey
    let src = registered(
        "image_text",
        r#"manifest = "train.jsonl"
        limit = 2
        channels = 1
        max_length = 8"#,
        Split::Train,
        dir,
    )
    .expect("registered");
    assert_eq!(src.len(), 2);
    let s = src.get(1).expect("sample");
    assert_eq!(label(&s), None);
    assert_eq!(image(&s).0, vec![1, 4, 6]);
    assert_eq!(ints(&s, "input_ids").0, vec![8]);
    assert!(src.meta().class_names.is_empty() && src.meta().num_classes.is_none());
}

#[test]
fn image_text_csv_root_and_resizing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    fixture(dir);
    // the manifest in another folder, images under `root`
    write(
        &dir.join("lists/mixed.csv"),
        "file,text,class\nimg/a.png,\"big, and small\",3\nimg/big.png,plain caption,0\n",
    );
    let src = pairs(
        r#"manifest = "pairs.csv"
        label_key = "label""#,
        Split::Train,
        dir,
    )
    .expect("csv pairs");
    assert_eq!(src.len(), 2);
    assert_eq!(src.caption(0).expect("caption"), "a red, small square");
    assert_eq!(src.caption(1).expect("caption"), "say \"hi\", twice");
    assert_eq!(src.meta().class_names, vec!["cat", "dog"]);
    assert_eq!(label(&src.get(0).expect("sample")), Some(1));

    // different sizes: an error naming `size`; resized with it
    let opts = |extra: &str| {
        format!(
            r#"manifest = "lists/mixed.csv"
            root = "."
            image_key = "file"
            caption_key = "text"
            label_key = "class"
            {extra}"#
        )
    };
    let e = error(pairs(&opts(""), Split::Train, dir));
    assert!(e.contains("big.png") && e.contains("size"), "{e}");
    let src = pairs(&opts("size = 5"), Split::Train, dir).expect("resized");
    assert_eq!(src.meta().image_shape, Some([3, 5, 5]));
    let s = src.get(1).expect("sample");
    let (shape, px) = image(&s);
    assert_eq!(shape, vec![3, 5, 5]);
    // the red plane of big.png is 40 everywhere, resized or not
    assert!(
        px[..25].iter().all(|&v| (v - 40.0 / 255.0).abs() < 1e-6),
        "{:?}",
        &px[..25]
    );
    assert_eq!(src.caption(0).expect("caption"), "big, and small");
    // integer labels: no names, classes up to the largest
    assert_eq!(label(&src.get(0).expect("sample")), Some(3));
    assert!(src.meta().class_names.is_empty());
    assert_eq!(src.meta().num_classes, Some(4));
    assert!(src.describe().contains("mixed.csv"), "{}", src.describe());
}

#[test]
fn image_text_corrupt_and_missing_images() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    fixture(dir);
    write(
        &dir.join("broken.jsonl"),
        concat!(
            r#"{"image": "img/a.png", "caption": "one"}"#,
            "\n",
            r#"{"image": "img/bad.png", "caption": "two"}"#,
            "\n",
            r#"{"image": "img/b.png", "caption": "three"}"#,
            "\n",
            r#"{"image": "img/gone.png", "caption": "four"}"#,
            "\n",
        ),
    );
    let e = error(pairs(r#"manifest = "broken.jsonl""#, Split::Train, dir));
    assert!(
        e.contains("bad.png") && e.contains("broken.jsonl:2") && e.contains("on_corrupt"),
        "{e}"
    );
    // the first row alone is fine
    let src = pairs(
        r#"manifest = "broken.jsonl"
        limit = 1"#,
        Split::Train,
        dir,
    )
    .expect("limit 1");
    assert_eq!(src.len(), 1);
    let src = pairs(
        r#"manifest = "broken.jsonl"
        on_corrupt = "skip""#,
        Split::Train,
        dir,
    )
    .expect("skipping");
    assert_eq!(src.len(), 2);
    assert_eq!(src.skipped(), 2);
    assert_eq!(src.caption(1).expect("caption"), "three");
    assert!(
        src.describe()
            .contains("2 missing or corrupt images skipped"),
        "{}",
        src.describe()
    );
    // a missing file alone
    write(&dir.join("gone.jsonl"), "{\"image\": \"img/a.png\", \"caption\": \"x\"}\n{\"image\": \"img/gone.png\", \"caption\": \"y\"}\n");
    let e = error(pairs(r#"manifest = "gone.jsonl""#, Split::Train, dir));
    assert!(e.contains("gone.png") && e.contains("gone.jsonl:2"), "{e}");
    // every image unreadable
    write(
        &dir.join("none.jsonl"),
        "{\"image\": \"img/bad.png\", \"caption\": \"x\"}\n",
    );
    let e = error(pairs(
        r#"manifest = "none.jsonl"
        on_corrupt = "skip""#,
        Split::Train,
        dir,
    ));
    assert!(
        e.contains("none.jsonl") && e.contains("no readable images"),
        "{e}"
    );
}

#[test]
fn image_text_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    fixture(dir);
    // a row without the caption field
    write(
        &dir.join("nocap.jsonl"),
        "{\"image\": \"img/a.png\", \"caption\": \"x\"}\n{\"image\": \"img/b.png\", \"text\": \"y\"}\n",
    );
    let e = error(pairs(r#"manifest = "nocap.jsonl""#, Split::Train, dir));
    assert!(
        e.contains("nocap.jsonl:2") && e.contains("`caption`") && e.contains("text"),
        "{e}"
    );
    // a CSV row without the caption field
    write(
        &dir.join("short.csv"),
        "image,caption\nimg/a.png,x\nimg/b.png\n",
    );
    let e = error(pairs(r#"manifest = "short.csv""#, Split::Train, dir));
    assert!(e.contains("short.csv:3") && e.contains("`caption`"), "{e}");
    // a CSV header without the image column
    write(&dir.join("nohead.csv"), "path,caption\nimg/a.png,x\n");
    let e = error(pairs(r#"manifest = "nohead.csv""#, Split::Train, dir));
    assert!(
        e.contains("nohead.csv:1") && e.contains("`image`") && e.contains("path"),
        "{e}"
    );
    // a label field missing with label_key
    let e = error(pairs(
        r#"manifest = "nocap.jsonl"
        caption_key = "image"
        label_key = "label""#,
        Split::Train,
        dir,
    ));
    assert!(e.contains("nocap.jsonl:1") && e.contains("label"), "{e}");
    // the test split without test_manifest
    let e = error(pairs(r#"manifest = "train.jsonl""#, Split::Test, dir));
    assert!(e.contains("test_manifest"), "{e}");
    // an unknown extension names the key
    write(&dir.join("pairs.txt"), "x\n");
    let e = error(pairs(r#"manifest = "pairs.txt""#, Split::Train, dir));
    assert!(e.contains("manifest") && e.contains(".csv"), "{e}");
    // a manifest that does not exist
    let e = error(pairs(r#"manifest = "nowhere.jsonl""#, Split::Train, dir));
    assert!(e.contains("nowhere.jsonl"), "{e}");
    // bad options
    let e = error(pairs(
        "manifest = \"train.jsonl\"\nchannels = 2",
        Split::Train,
        dir,
    ));
    assert!(e.contains("channels"), "{e}");
    let e = error(pairs(
        "manifest = \"train.jsonl\"\ncaptions = \"x\"",
        Split::Train,
        dir,
    ));
    assert!(e.contains("captions"), "{e}");
    let e = error(pairs("root = \"x\"", Split::Train, dir));
    assert!(e.contains("manifest"), "{e}");
    // an unlabelled image source cannot be captioned
    let opts = format!(
        "[images]\nname = \"image_text\"\nmanifest = \"{}\"",
        dir.join("train.jsonl")
            .display()
            .to_string()
            .replace('\\', "/")
    );
    let e = error(captioned(&opts, 0, Split::Train));
    assert!(e.contains("images") && e.contains("class names"), "{e}");
    // a labelled one can
    let src = captioned(&format!("{opts}\nlabel_key = \"label\""), 0, Split::Train)
        .expect("captioned image_text");
    assert_eq!(src.len(), 3);
    let caption = src.caption(1).expect("caption");
    assert!(caption.contains("cat"), "{caption}");
}
