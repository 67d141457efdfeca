//! `[data] name = "image_folder"`: PNG and JPEG files in a folder, labelled
//! by sub-folder (`path/cat/001.png`, `path/dog/002.jpg`, ...) or
//! unlabelled (`path/*.png`), plus [`InMemoryImages`], the in-memory source
//! it (and the CIFAR sources) build.
//!
//! ```toml
//! [data]
//! name = "image_folder"
//! path = "data/pets/train"
//! test_path = "data/pets/test"
//! size = 32            # resize every image to 32 x 32 (bilinear)
//! channels = 3         # convert to RGB
//! on_corrupt = "skip"  # or "error" (the default)
//!
//! [data.limits]        # what a file may claim before it is refused (defaults)
//! max_width = 16384
//! max_height = 16384
//! max_alloc_mib = 512
//! ```

use std::path::{Path, PathBuf};

use std::sync::Arc;

use parallax_core::batch::{Field, Sample};
use parallax_core::data::{BuildCtx, DataMeta, DataSource, Split};
use parallax_core::error::{Error, Result};
use parallax_core::recipe::Params;
use serde::Deserialize;

use crate::image::Image;

/// Same-shape 8-bit images (CHW) with optional labels, held in memory.
pub struct InMemoryImages {
    shape: [usize; 3],
    pixels: Vec<u8>,
    labels: Option<Vec<i64>>,
    num_classes: Option<usize>,
    class_names: Vec<String>,
    description: String,
}

impl InMemoryImages {
    /// A source of `pixels.len() / (c * h * w)` images of `shape` [C, H, W]
    /// (values 0..=255, scaled to [0, 1] by `get`), each with a label when
    /// `labels` is given (then one per image). `num_classes` defaults to
    /// the number of class names, or one more than the largest label.
    pub fn new(
        shape: [usize; 3],
        pixels: Vec<u8>,
        labels: Option<Vec<i64>>,
        num_classes: Option<usize>,
        class_names: Vec<String>,
        description: String,
    ) -> Result<Self> {
        let per = shape.iter().product::<usize>();
        if per == 0 || pixels.len() % per != 0 {
            return Err(Error::Data(format!(
                "{description}: {} bytes do not make whole {shape:?} images",
                pixels.len()
            )));
        }
        let n = pixels.len() / per;
        if let Some(l) = &labels {
            if l.len() != n {
                return Err(Error::Data(format!(
                    "{description}: {} labels for {n} images",
                    l.len()
                )));
            }
        }
        let num_classes = labels.as_ref().map(|l| {
            let from_labels = l.iter().copied().max().map_or(0, |m| m as usize + 1);
            num_classes.unwrap_or(class_names.len().max(from_labels))
        });
        Ok(InMemoryImages {
            shape,
            pixels,
            labels,
            num_classes,
            class_names,
            description,
        })
    }

    /// Keeps only the first `limit` images.
    pub fn truncate(&mut self, limit: usize) {
        let per = self.shape.iter().product::<usize>();
        self.pixels.truncate(limit * per);
        if let Some(l) = &mut self.labels {
            l.truncate(limit);
        }
    }

    /// The bytes of image `i` (CHW).
    pub fn pixels(&self, i: usize) -> Option<&[u8]> {
        let per = self.shape.iter().product::<usize>();
        self.pixels.get(i * per..(i + 1) * per)
    }

    /// The label of image `i`, for labelled sources.
    pub fn label(&self, i: usize) -> Option<i64> {
        self.labels.as_ref().and_then(|l| l.get(i).copied())
    }

    /// Replaces the description (the text `describe` starts with).
    pub fn set_description(&mut self, description: String) {
        self.description = description;
    }
}

impl DataSource for InMemoryImages {
    fn len(&self) -> usize {
        self.pixels.len() / self.shape.iter().product::<usize>()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let px = self.pixels(index).ok_or_else(|| {
            Error::Data(format!("{}: index {index} out of range", self.description))
        })?;
        let mut s = Sample::with(
            "image",
            Field::F32 {
                shape: self.shape.to_vec(),
                data: px.iter().map(|&p| f32::from(p) / 255.0).collect(),
            },
        );
        if let Some(l) = self.label(index) {
            s.insert("label", Field::label(l));
        }
        Ok(s)
    }

    fn meta(&self) -> DataMeta {
        DataMeta {
            image_shape: Some(self.shape),
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
            vocab_size: None,
        }
    }

    fn describe(&self) -> String {
        format!("{} ({} images)", self.description, self.len())
    }
}

/// What to do with an image file that is missing or does not decode
/// (`on_corrupt` of the image sources).
#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnCorrupt {
    /// Fail, naming the file.
    #[default]
    Error,
    /// Leave it out and count it.
    Skip,
}

/// Bounds on what an image file may make the decoder do (`[data.limits]` of
/// the image sources): a file whose header claims more pixels, or whose
/// decoding would allocate more, is refused with an error naming the file
/// (skipped under `on_corrupt = "skip"`) instead of exhausting memory. The
/// defaults let through any photograph up to 16384 x 16384 pixels within
/// the `image` crate's default allocation bound of 512 MiB. Converting a
/// decoded image (to CHW bytes, then to floats to resize it) takes a few
/// times its size again.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeLimits {
    /// The largest width in pixels; default 16384.
    pub max_width: u32,
    /// The largest height in pixels; default 16384.
    pub max_height: u32,
    /// The most the decoder may allocate, in MiB; default 512.
    pub max_alloc_mib: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_width: 16384,
            max_height: 16384,
            max_alloc_mib: 512,
        }
    }
}

impl DecodeLimits {
    /// The `image` crate's limits.
    pub fn to_image_limits(&self) -> ::image::Limits {
        let mut l = ::image::Limits::default();
        l.max_image_width = Some(self.max_width);
        l.max_image_height = Some(self.max_height);
        l.max_alloc = Some(self.max_alloc_mib.saturating_mul(1 << 20));
        l
    }
}

/// `[data] name = "image_folder"` options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageFolderConfig {
    /// The training images: class sub-folders of images, or images.
    path: String,
    /// The test images, laid out like `path` (needed by evaluators).
    #[serde(default)]
    test_path: Option<String>,
    /// Resize every image to `size` x `size` (bilinear); default: keep the
    /// first image's size and require every image to have it.
    #[serde(default)]
    size: Option<usize>,
    /// 1 (grayscale) or 3 (RGB), converting as needed; default: 3 when the
    /// first image has colour, else 1.
    #[serde(default)]
    channels: Option<usize>,
    /// `"error"` (default) or `"skip"` files that do not decode.
    #[serde(default)]
    on_corrupt: OnCorrupt,
    /// Use at most `limit` training images, spread evenly over the sorted
    /// file list (so every class keeps its share).
    #[serde(default)]
    limit: Option<usize>,
    /// The same for the test images.
    #[serde(default)]
    test_limit: Option<usize>,
    /// Bounds on the image files (see [`DecodeLimits`]).
    #[serde(default)]
    limits: DecodeLimits,
}

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn io_error(p: &Path, e: impl std::fmt::Display) -> Error {
    Error::Data(format!("{}: {e}", p.display()))
}

/// The entries of `dir`, sorted, without hidden ones.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let p = e.map_err(|e| io_error(dir, e))?.path();
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if !hidden {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Every image file under `dir`, recursively, sorted.
fn images_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for p in entries(dir)? {
        if p.is_dir() {
            images_under(&p, out)?;
        } else if is_image(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Image files with their class index (none when unlabelled).
type Labelled = Vec<(PathBuf, Option<i64>)>;

/// The image files of `dir` with their class index, and the class names
/// (empty when `dir` has no sub-folders: unlabelled).
fn list(dir: &Path) -> Result<(Labelled, Vec<String>)> {
    let all = entries(dir)?;
    let classes: Vec<&PathBuf> = all.iter().filter(|p| p.is_dir()).collect();
    if classes.is_empty() {
        let files = all
            .into_iter()
            .filter(|p| is_image(p))
            .map(|p| (p, None))
            .collect();
        return Ok((files, Vec::new()));
    }
    if let Some(stray) = all.iter().find(|p| !p.is_dir() && is_image(p)) {
        return Err(Error::Data(format!(
            "{}: an image next to class folders (put it in one of them)",
            stray.display()
        )));
    }
    let mut files = Vec::new();
    let mut names = Vec::new();
    for (k, c) in classes.iter().enumerate() {
        names.push(
            c.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        );
        let mut found = Vec::new();
        images_under(c, &mut found)?;
        files.extend(found.into_iter().map(|p| (p, Some(k as i64))));
    }
    Ok((files, names))
}

/// Decodes the PNG or JPEG file at `path` (the format is guessed from the
/// content, not the extension) within the default [`DecodeLimits`]. The
/// error is the reader's or decoder's message, without the path: callers
/// name the file.
pub fn decode(path: &Path) -> std::result::Result<::image::DynamicImage, String> {
    decode_with(path, &DecodeLimits::default())
}

/// [`decode`] within `limits`.
pub fn decode_with(
    path: &Path,
    limits: &DecodeLimits,
) -> std::result::Result<::image::DynamicImage, String> {
    let mut reader = ::image::ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    reader.limits(limits.to_image_limits());
    reader.decode().map_err(|e| match e {
        ::image::ImageError::Limits(_) => format!(
            "{e}: the limits are {}x{} pixels and {} MiB (raise them in [data.limits])",
            limits.max_width, limits.max_height, limits.max_alloc_mib
        ),
        e => e.to_string(),
    })
}

/// The CHW bytes of `img` in `channels` channels: 1 (luma) or 3 (RGB
/// planes, converting grayscale as needed); any other value is taken as 3.
pub fn to_chw(img: &::image::DynamicImage, channels: usize) -> Vec<u8> {
    if channels == 1 {
        img.to_luma8().into_raw()
    } else {
        let rgb = img.to_rgb8();
        let n = (rgb.width() * rgb.height()) as usize;
        let raw = rgb.as_raw();
        let mut out = vec![0; 3 * n];
        for (i, px) in raw.chunks_exact(3).enumerate() {
            out[i] = px[0];
            out[n + i] = px[1];
            out[2 * n + i] = px[2];
        }
        out
    }
}

/// `count` indices spread evenly over 0..n.
fn spread(n: usize, count: usize) -> Vec<usize> {
    if count >= n {
        (0..n).collect()
    } else {
        (0..count).map(|i| i * n / count).collect()
    }
}

/// Reads the folder `dir` into memory.
fn load(
    dir: &Path,
    c: &ImageFolderConfig,
    limit: Option<usize>,
    split: Split,
) -> Result<InMemoryImages> {
    if !dir.is_dir() {
        return Err(Error::Data(format!("{}: no such folder", dir.display())));
    }
    let (files, class_names) = list(dir)?;
    let chosen = spread(files.len(), limit.unwrap_or(usize::MAX));
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    // The shape every image must have: channels, height, width.
    let mut shape: Option<([usize; 3], PathBuf)> = None;
    let mut skipped: Vec<(PathBuf, String)> = Vec::new();
    for &i in &chosen {
        let (path, label) = &files[i];
        let img = match decode_with(path, &c.limits) {
            Ok(img) => img,
            Err(e) if c.on_corrupt == OnCorrupt::Skip => {
                skipped.push((path.clone(), e));
                continue;
            }
            Err(e) => {
                return Err(Error::Data(format!(
                    "{}: cannot decode the image ({e}); set on_corrupt = \"skip\" to leave such files out",
                    path.display()
                )))
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
                shape = Some(([ch, sh, sw], path.clone()));
                [ch, sh, sw]
            }
        };
        let bytes = to_chw(&img, ch);
        if c.size.is_some() {
            if (h, w) != (sh, sw) {
                let f = Image::from_u8(ch, h, w, &bytes).map_err(|e| io_error(path, e))?;
                pixels.extend(f.resize(sh, sw).to_u8());
            } else {
                pixels.extend(bytes);
            }
        } else if (h, w) != (sh, sw) {
            let first = shape.as_ref().map(|(_, p)| p.display().to_string());
            return Err(Error::Data(format!(
                "{}: the image is {w}x{h} but {} is {sw}x{sh}; set `size` to resize them all",
                path.display(),
                first.unwrap_or_default()
            )));
        } else {
            pixels.extend(bytes);
        }
        labels.push(*label);
    }
    let Some((shape, _)) = shape else {
        return Err(Error::Data(format!(
            "{}: no readable PNG or JPEG images{}",
            dir.display(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" ({} corrupt files skipped)", skipped.len())
            }
        )));
    };
    let mut description = format!(
        "image_folder {} ({}{})",
        split.as_str(),
        dir.display(),
        if class_names.is_empty() {
            ", unlabelled".to_string()
        } else {
            format!(", {} classes", class_names.len())
        }
    );
    if let Some((first, why)) = skipped.first() {
        eprintln!(
            "image_folder: skipped {} corrupt file(s) under {} (first: {}: {why})",
            skipped.len(),
            dir.display(),
            first.display()
        );
        description.push_str(&format!(" [{} corrupt files skipped]", skipped.len()));
    }
    let labels = if class_names.is_empty() {
        None
    } else {
        Some(labels.into_iter().map(|l| l.unwrap_or(0)).collect())
    };
    let num_classes = labels.as_ref().map(|_| class_names.len());
    InMemoryImages::new(shape, pixels, labels, num_classes, class_names, description)
}

fn build(p: &Params, ctx: &BuildCtx) -> Result<Arc<dyn DataSource>> {
    let c: ImageFolderConfig = p.extract()?;
    if let Some(ch) = c.channels {
        if ch != 1 && ch != 3 {
            return Err(p.error("channels", format!("must be 1 or 3, got {ch}")));
        }
    }
    if c.size == Some(0) {
        return Err(p.error("size", "must be at least 1"));
    }
    let (path, limit) = match ctx.split {
        Split::Train => (c.path.as_str(), c.limit),
        Split::Test => match &c.test_path {
            Some(t) => (t.as_str(), c.test_limit),
            None => {
                return Err(p.error(
                    "test_path",
                    "the test split was asked for (by an evaluator) but no test_path is set",
                ))
            }
        },
    };
    Ok(Arc::new(load(&ctx.resolve(path), &c, limit, ctx.split)?))
}

parallax_core::register!(
    data_source,
    "image_folder",
    "PNG/JPEG files in a folder, labelled by sub-folder (sorted class names) or unlabelled",
    build
);

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = ::image::DynamicImage::ImageLuma8(::image::ImageBuffer::from_fn(w, h, |x, y| {
            ::image::Luma([(x + y) as u8])
        }));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, ::image::ImageFormat::Png)
            .expect("encode png");
        out.into_inner()
    }

    /// A PNG whose header claims `w` x `h` pixels (with a valid checksum)
    /// but holds the pixel data of a 1 x 1 image.
    fn png_claiming(w: u32, h: u32) -> Vec<u8> {
        let mut b = png(1, 1);
        // signature (8), IHDR length (4) and type (4), then width and height
        b[16..20].copy_from_slice(&w.to_be_bytes());
        b[20..24].copy_from_slice(&h.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&b[12..29]);
        b[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        b
    }

    fn config(toml_text: &str) -> ImageFolderConfig {
        toml::from_str(toml_text).expect("config")
    }

    #[test]
    fn decode_limits_refuse_huge_images() {
        let dir = tempfile::tempdir().expect("temp dir");
        let huge = dir.path().join("huge.png");
        std::fs::write(&huge, png_claiming(100_000, 100_000)).expect("write");
        let e = decode(&huge).expect_err("10^10 pixels");
        assert!(e.contains("limits") && e.contains("16384x16384"), "{e}");
        // within the limits the same trick is a plain decoding error
        std::fs::write(&huge, png_claiming(300, 200)).expect("write");
        let e = decode(&huge).expect_err("no pixel data");
        assert!(!e.contains("limits"), "{e}");

        let small = dir.path().join("small.png");
        std::fs::write(&small, png(64, 48)).expect("write");
        assert!(decode(&small).is_ok());
        let tight = DecodeLimits {
            max_width: 32,
            ..DecodeLimits::default()
        };
        let e = decode_with(&small, &tight).expect_err("wider than 32");
        assert!(e.contains("32x16384"), "{e}");
        let little_memory = DecodeLimits {
            max_alloc_mib: 0,
            ..DecodeLimits::default()
        };
        assert!(decode_with(&small, &little_memory).is_err());
    }

    #[test]
    fn the_folder_source_applies_its_limits() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.png"), png(8, 8)).expect("write");
        std::fs::write(dir.path().join("b.png"), png(40, 8)).expect("write");
        let path = dir.path().display().to_string();
        let c = config(&format!(
            "path = {path:?}\nsize = 8\n[limits]\nmax_width = 16"
        ));
        let e = load(dir.path(), &c, None, Split::Train)
            .err()
            .expect("b.png is too wide");
        let msg = e.to_string();
        assert!(msg.contains("b.png") && msg.contains("limits"), "{msg}");
        let c = config(&format!(
            "path = {path:?}\nsize = 8\non_corrupt = \"skip\"\n[limits]\nmax_width = 16"
        ));
        let src = load(dir.path(), &c, None, Split::Train).expect("b.png skipped");
        assert_eq!(src.len(), 1);
        assert!(toml::from_str::<ImageFolderConfig>(&format!(
            "path = {path:?}\n[limits]\nmax_pixels = 5"
        ))
        .is_err());
        assert_eq!(config("path = \"x\"").limits, DecodeLimits::default());
    }

    #[test]
    fn spread_keeps_every_part() {
        assert_eq!(spread(10, 3), vec![0, 3, 6]);
        assert_eq!(spread(3, 10), vec![0, 1, 2]);
        assert_eq!(spread(4, 0), Vec::<usize>::new());
    }

    #[test]
    fn in_memory_images_check_their_lengths() {
        let src = InMemoryImages::new(
            [1, 2, 2],
            vec![0, 255, 0, 255, 1, 2, 3, 4],
            Some(vec![1, 0]),
            None,
            vec![],
            "t".into(),
        )
        .expect("two images");
        assert_eq!(src.len(), 2);
        assert_eq!(src.meta().num_classes, Some(2));
        let s = src.get(0).expect("image 0");
        assert_eq!(s.get("label"), Some(&Field::label(1)));
        assert!(src.get(2).is_err());
        assert!(
            InMemoryImages::new([1, 2, 2], vec![0; 5], None, None, vec![], "t".into()).is_err()
        );
        assert!(InMemoryImages::new(
            [1, 2, 2],
            vec![0; 8],
            Some(vec![0]),
            None,
            vec![],
            "t".into()
        )
        .is_err());
    }
}
