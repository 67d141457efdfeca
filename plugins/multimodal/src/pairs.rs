//! `[data] name = "image_text"`: image-caption pairs listed in a manifest
//! (JSON Lines, or CSV with a header row), with the images in a folder.
//!
//! ```toml
//! [data]
//! name = "image_text"
//! manifest = "data/pairs/train.jsonl"      # .jsonl / .json / .ndjson, or .csv
//! test_manifest = "data/pairs/test.jsonl"  # the test split (evaluators)
//! root = "data/pairs"                      # default: each manifest's folder
//! image_key = "image"
//! caption_key = "caption"
//! # label_key = "label"                    # class names or integer labels
//! size = 32                                # resize to 32 x 32 (bilinear)
//! channels = 3                             # 1 or 3; default: from the first image
//! on_corrupt = "error"                     # or "skip"
//! max_length = 32
//! # limit = 1000                           # first rows of the manifest
//! # test_limit = 500
//! # [data.limits]                         # bounds on the image files, as image_folder's
//! # max_width = 16384
//! ```
//!
//! Images are decoded once, when the source is built, and held as bytes;
//! every distinct caption is tokenized once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parallax_core::batch::Sample;
use parallax_core::data::{BuildCtx, DataMeta, DataSource, Split};
use parallax_core::error::{Error, Result};
use parallax_core::recipe::Params;
use parallax_text::sources::{csv_fields, is_jsonl, json_str, jsonl_objects, read_text};
use parallax_text::tokenizer::TextTokenizer;
use parallax_vision::image::Image;
use parallax_vision::image_folder::{decode_with, to_chw, DecodeLimits, InMemoryImages, OnCorrupt};
use serde::Deserialize;

use crate::tokens::{caption_tokenizer, CaptionTokens, DEFAULT_MAX_LENGTH};

/// `[data] name = "image_text"` options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageTextConfig {
    /// The training manifest: JSON Lines (`.jsonl`, `.json`, `.ndjson`) or
    /// CSV with a header row (`.csv`).
    manifest: String,
    /// The test manifest, laid out like `manifest` (needed by evaluators).
    #[serde(default)]
    test_manifest: Option<String>,
    /// The folder image paths are relative to; default: the folder of the
    /// manifest being read.
    #[serde(default)]
    root: Option<String>,
    /// The field (JSON) or column (CSV) with the image path; default
    /// `image`.
    #[serde(default = "default_image_key")]
    image_key: String,
    /// The field or column with the caption; default `caption`.
    #[serde(default = "default_caption_key")]
    caption_key: String,
    /// The field or column with a class label, if any: class names (ids
    /// follow their sorted order over both manifests) or integers.
    #[serde(default)]
    label_key: Option<String>,
    /// Resize every image to `size` x `size` (bilinear); default: keep the
    /// first image's size and require every image to have it.
    #[serde(default)]
    size: Option<usize>,
    /// 1 (grayscale) or 3 (RGB), converting as needed; default: 3 when the
    /// first image has colour, else 1.
    #[serde(default)]
    channels: Option<usize>,
    /// `"error"` (default) or `"skip"` rows whose image is missing or does
    /// not decode.
    #[serde(default)]
    on_corrupt: OnCorrupt,
    /// Tokens per caption (padded or truncated); default
    /// [`DEFAULT_MAX_LENGTH`] (32).
    #[serde(default = "default_max_length")]
    max_length: usize,
    /// The tokenizer (see [`crate::tokens`]); default: the recipe
    /// encoder's, else the embedded `bert-base-uncased` vocabulary.
    #[serde(default)]
    tokenizer: Option<String>,
    /// Use only the first `limit` rows of `manifest`.
    #[serde(default)]
    limit: Option<usize>,
    /// Use only the first `test_limit` rows of `test_manifest`.
    #[serde(default)]
    test_limit: Option<usize>,
    /// Bounds on the image files (see
    /// [`parallax_vision::image_folder::DecodeLimits`]).
    #[serde(default)]
    limits: DecodeLimits,
}

fn default_image_key() -> String {
    "image".into()
}

fn default_caption_key() -> String {
    "caption".into()
}

fn default_max_length() -> usize {
    DEFAULT_MAX_LENGTH
}

/// A class label as a manifest gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RawLabel {
    Name(String),
    Id(i64),
}

/// One row of a manifest.
#[derive(Clone, Debug)]
struct Row {
    /// The 1-based line in the manifest.
    line: usize,
    image: String,
    caption: String,
    label: Option<RawLabel>,
}

/// The manifest format, by extension.
fn manifest_kind(path: &Path, key: &str, p: &Params) -> Result<bool> {
    if is_jsonl(path) {
        return Ok(true);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => Ok(false),
        _ => Err(p.error(
            key,
            format!(
                "{}: a manifest must end in .jsonl, .json, .ndjson (JSON Lines) or .csv",
                path.display()
            ),
        )),
    }
}

/// The rows of the manifest at `path` (JSON Lines when `jsonl`, else CSV).
fn read_rows(path: &Path, jsonl: bool, c: &ImageTextConfig) -> Result<Vec<Row>> {
    let text = read_text(path)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let origin = path.display().to_string();
    if jsonl {
        return jsonl_objects(text, &origin)?
            .into_iter()
            .map(|(line, o)| {
                let image = json_str(&o, &c.image_key, &origin, line)?.to_string();
                let caption = json_str(&o, &c.caption_key, &origin, line)?.to_string();
                let label = match &c.label_key {
                    None => None,
                    Some(k) => {
                        let label = match o.get(k) {
                            Some(serde_json::Value::String(s)) => Some(RawLabel::Name(s.clone())),
                            Some(v) => v.as_i64().map(RawLabel::Id),
                            None => None,
                        };
                        Some(label.ok_or_else(|| {
                            Error::Data(format!(
                                "{origin}:{line}: missing label field `{k}` (a string or an integer; fields: {})",
                                o.keys().cloned().collect::<Vec<_>>().join(", ")
                            ))
                        })?)
                    }
                };
                Ok(Row {
                    line,
                    image,
                    caption,
                    label,
                })
            })
            .collect();
    }
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((h, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header: Vec<String> = csv_fields(header)
        .into_iter()
        .map(|f| f.trim().to_string())
        .collect();
    let column = |key: &str| {
        header.iter().position(|f| f == key).ok_or_else(|| {
            Error::Data(format!(
                "{origin}:{}: the header has no column `{key}` (columns: {})",
                h + 1,
                header.join(", ")
            ))
        })
    };
    let image_col = column(&c.image_key)?;
    let caption_col = column(&c.caption_key)?;
    let label_col = c.label_key.as_deref().map(column).transpose()?;
    let mut rows = Vec::new();
    for (i, l) in lines {
        let line = i + 1;
        let fields = csv_fields(l);
        if fields.len() > header.len() {
            return Err(Error::Data(format!(
                "{origin}:{line}: {} fields but the header has {} (quote fields that contain commas)",
                fields.len(),
                header.len()
            )));
        }
        let field = |col: usize| {
            fields.get(col).ok_or_else(|| {
                Error::Data(format!(
                    "{origin}:{line}: missing field `{}` (fields present: {})",
                    header[col],
                    header[..fields.len()].join(", ")
                ))
            })
        };
        let image = field(image_col)?.trim().to_string();
        let caption = field(caption_col)?.clone();
        let label = match label_col {
            None => None,
            Some(col) => {
                let v = field(col)?.trim();
                Some(match v.parse::<i64>() {
                    Ok(id) => RawLabel::Id(id),
                    Err(_) => RawLabel::Name(v.to_string()),
                })
            }
        };
        rows.push(Row {
            line,
            image,
            caption,
            label,
        });
    }
    Ok(rows)
}

/// The class names (sorted, for name labels; empty for integer labels)
/// and the number of classes, from the labels of every manifest.
fn classes(all: &[&Row], p: &Params) -> Result<(Vec<String>, usize)> {
    let names: BTreeSet<&str> = all
        .iter()
        .filter_map(|r| match &r.label {
            Some(RawLabel::Name(n)) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let ids: Vec<i64> = all
        .iter()
        .filter_map(|r| match &r.label {
            Some(RawLabel::Id(i)) => Some(*i),
            _ => None,
        })
        .collect();
    if !names.is_empty() && !ids.is_empty() {
        return Err(p.error(
            "label_key",
            format!(
                "the manifests mix class names ({}) and integer labels ({}); use one kind",
                names.iter().next().copied().unwrap_or_default(),
                ids[0]
            ),
        ));
    }
    if let Some(neg) = ids.iter().find(|&&i| i < 0) {
        return Err(p.error(
            "label_key",
            format!("labels must not be negative, found {neg}"),
        ));
    }
    if names.is_empty() {
        let n = ids.iter().max().map_or(0, |&m| m as usize + 1);
        return Ok((Vec::new(), n));
    }
    let n = names.len();
    Ok((names.into_iter().map(String::from).collect(), n))
}

/// Image-caption pairs held in memory: images as bytes, captions as
/// tokens.
pub struct ImageTextPairs {
    images: InMemoryImages,
    captions: Vec<String>,
    /// Each distinct caption, tokenized.
    tokens: CaptionTokens,
    vocab_size: usize,
    skipped: usize,
    description: String,
}

impl ImageTextPairs {
    /// The caption of sample `index`.
    pub fn caption(&self, index: usize) -> Result<String> {
        self.captions
            .get(index)
            .cloned()
            .ok_or_else(|| Error::Data(format!("{}: index {index} out of range", self.description)))
    }

    /// The number of rows left out because their image was missing or did
    /// not decode (`on_corrupt = "skip"`).
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

impl DataSource for ImageTextPairs {
    fn len(&self) -> usize {
        self.captions.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let caption = self.captions.get(index).ok_or_else(|| {
            Error::Data(format!("{}: index {index} out of range", self.description))
        })?;
        let mut s = self.images.get(index)?;
        self.tokens
            .insert_into(caption, &mut s, &self.description)?;
        Ok(s)
    }

    fn meta(&self) -> DataMeta {
        let mut meta = self.images.meta();
        meta.vocab_size = Some(self.vocab_size);
        meta
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// Decodes the images of `rows` and tokenizes their captions; `classes`
/// are the class names (empty for integer labels) and their number.
fn load(
    manifest: &Path,
    root: &Path,
    rows: &[Row],
    c: &ImageTextConfig,
    (class_names, num_classes): (Vec<String>, usize),
    tokenizer: &TextTokenizer,
    split: Split,
) -> Result<ImageTextPairs> {
    let labelled = c.label_key.is_some();
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut captions = Vec::new();
    // The shape every image must have, and the file that set it.
    let mut shape: Option<([usize; 3], PathBuf)> = None;
    let mut skipped: Vec<(PathBuf, usize, String)> = Vec::new();
    for row in rows {
        let file = root.join(&row.image);
        let at = || format!("{}:{}: {}", manifest.display(), row.line, file.display());
        if row.image.is_empty() {
            return Err(Error::Data(format!(
                "{}:{}: the field `{}` is empty",
                manifest.display(),
                row.line,
                c.image_key
            )));
        }
        let img = match decode_with(&file, &c.limits) {
            Ok(img) => img,
            Err(e) if c.on_corrupt == OnCorrupt::Skip => {
                skipped.push((file.clone(), row.line, e));
                continue;
            }
            Err(e) => {
                let hint = "set on_corrupt = \"skip\" to leave such rows out";
                return Err(Error::Data(format!(
                    "{}: cannot read the image ({e}); {hint}",
                    at()
                )));
            }
        };
        let (h, w) = (img.height() as usize, img.width() as usize);
        let [ch, sh, sw] = match &shape {
            Some((s, _)) => *s,
            None => {
                let ch = c
                    .channels
                    .unwrap_or(if img.color().has_color() { 3 } else { 1 });
                let (sh, sw) = c.size.map_or((h, w), |s| (s, s));
                shape = Some(([ch, sh, sw], file.clone()));
                [ch, sh, sw]
            }
        };
        let bytes = to_chw(&img, ch);
        if (h, w) == (sh, sw) {
            pixels.extend(bytes);
        } else if c.size.is_some() {
            let f = Image::from_u8(ch, h, w, &bytes)
                .map_err(|e| Error::Data(format!("{}: {e}", at())))?;
            pixels.extend(f.resize(sh, sw).to_u8());
        } else {
            let first = shape.as_ref().map(|(_, p)| p.display().to_string());
            return Err(Error::Data(format!(
                "{}: the image is {w}x{h} but {} is {sw}x{sh}; set `size` to resize them all",
                at(),
                first.unwrap_or_default()
            )));
        }
        if labelled {
            labels.push(match &row.label {
                Some(RawLabel::Id(i)) => *i,
                Some(RawLabel::Name(n)) => {
                    class_names.iter().position(|c| c == n).unwrap_or(0) as i64
                }
                None => 0,
            });
        }
        captions.push(row.caption.clone());
    }
    let Some((shape, _)) = shape else {
        return Err(Error::Data(format!(
            "{}: no readable images{}",
            manifest.display(),
            if skipped.is_empty() {
                " (the manifest has no rows)".to_string()
            } else {
                format!(" ({} missing or corrupt images skipped)", skipped.len())
            }
        )));
    };
    let tokens = CaptionTokens::new(tokenizer, captions.iter().cloned())?;
    let mut description = format!(
        "image_text {} ({}, {} pairs{})",
        split.as_str(),
        manifest.display(),
        captions.len(),
        if !labelled {
            String::new()
        } else {
            format!(", {num_classes} classes")
        }
    );
    if let Some((first, line, why)) = skipped.first() {
        eprintln!(
            "image_text: skipped {} missing or corrupt image(s) listed in {} (first: line {line}, {}: {why})",
            skipped.len(),
            manifest.display(),
            first.display()
        );
        description.push_str(&format!(
            " [{} missing or corrupt images skipped]",
            skipped.len()
        ));
    }
    let images = InMemoryImages::new(
        shape,
        pixels,
        labelled.then_some(labels),
        labelled.then_some(num_classes),
        class_names,
        description.clone(),
    )?;
    Ok(ImageTextPairs {
        images,
        captions,
        tokens,
        vocab_size: tokenizer.vocab_size(),
        skipped: skipped.len(),
        description,
    })
}

impl ImageTextPairs {
    /// The source a `[data] name = "image_text"` table describes, for
    /// `ctx.split`.
    pub fn from_params(p: &Params, ctx: &BuildCtx) -> Result<Self> {
        build(p, ctx)
    }
}

fn build(p: &Params, ctx: &BuildCtx) -> Result<ImageTextPairs> {
    let c: ImageTextConfig = p.extract()?;
    if let Some(ch) = c.channels {
        if ch != 1 && ch != 3 {
            return Err(p.error("channels", format!("must be 1 or 3, got {ch}")));
        }
    }
    if c.size == Some(0) {
        return Err(p.error("size", "must be at least 1"));
    }
    if c.max_length == 0 {
        return Err(p.error("max_length", "must be at least 1"));
    }
    for (key, value) in [("image_key", &c.image_key), ("caption_key", &c.caption_key)] {
        if value.is_empty() {
            return Err(p.error(key, "must not be empty"));
        }
    }
    let (key, manifest, limit) =
        match ctx.split {
            Split::Train => ("manifest", c.manifest.as_str(), c.limit),
            Split::Test => match &c.test_manifest {
                Some(t) => ("test_manifest", t.as_str(), c.test_limit),
                None => return Err(p.error(
                    "test_manifest",
                    "the test split was asked for (by an evaluator) but no test_manifest is set",
                )),
            },
        };
    let path = ctx.resolve(manifest);
    let mut rows = read_rows(&path, manifest_kind(&path, key, p)?, &c)?;
    if rows.is_empty() {
        return Err(Error::Data(format!(
            "{}: the manifest has no rows",
            path.display()
        )));
    }
    // Class ids must agree between the splits: collect the labels of the
    // other manifest too.
    let other = match (ctx.split, &c.test_manifest) {
        _ if c.label_key.is_none() => Vec::new(),
        (Split::Train, Some(t)) => {
            let o = ctx.resolve(t);
            read_rows(&o, manifest_kind(&o, "test_manifest", p)?, &c)?
        }
        (Split::Train, None) => Vec::new(),
        (Split::Test, _) => {
            let o = ctx.resolve(&c.manifest);
            read_rows(&o, manifest_kind(&o, "manifest", p)?, &c)?
        }
    };
    let all: Vec<&Row> = rows.iter().chain(other.iter()).collect();
    let classes = classes(&all, p)?;
    if let Some(l) = limit {
        rows.truncate(l);
    }
    let root = match &c.root {
        Some(r) => ctx.resolve(r),
        None => path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    let tokenizer = caption_tokenizer(c.tokenizer.as_deref(), ctx, c.max_length)?;
    load(&path, &root, &rows, &c, classes, &tokenizer, ctx.split)
}

fn build_source(p: &Params, ctx: &BuildCtx) -> Result<Arc<dyn DataSource>> {
    Ok(Arc::new(build(p, ctx)?))
}

parallax_core::register!(
    data_source,
    "image_text",
    "image-caption pairs from a JSON Lines or CSV manifest and an image folder",
    build_source
);
