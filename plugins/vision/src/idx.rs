//! A reader for the IDX format of MNIST, Fashion-MNIST, KMNIST and friends.
//!
//! An IDX file is a 4-byte magic number `00 00 <dtype> <ndims>`, then
//! `ndims` big-endian `u32` dimension sizes, then the data in row-major
//! order. Only dtype `0x08` (unsigned byte), the one every MNIST-style
//! dataset uses, is supported. Files may be gzipped: gzip is recognised by
//! its `1f 8b` magic bytes, whatever the file is called.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

/// The dtype code of unsigned bytes.
const DTYPE_U8: u8 = 0x08;

/// The first two bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimension sizes, outermost first (e.g. `[n, 28, 28]` for images).
    pub dims: Vec<usize>,
    /// The values, row-major; `dims.iter().product()` of them.
    pub data: Vec<u8>,
}

/// Grayscale images with one label each, as MNIST-style datasets ship them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    /// Pixels, `n * height * width` bytes, image after image, row-major.
    pub images: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// Number of images.
    pub n: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

impl ImageSet {
    /// Pairs an `[n, height, width]` image array with an `[n]` label array;
    /// `images_name` and `labels_name` name them in errors.
    pub fn from_arrays(
        images: IdxArray,
        labels: IdxArray,
        images_name: &str,
        labels_name: &str,
    ) -> Result<ImageSet, IdxError> {
        let [n, height, width] = images.dims[..] else {
            return Err(wrong_rank(images_name, 3, &images.dims));
        };
        let [n_labels] = labels.dims[..] else {
            return Err(wrong_rank(labels_name, 1, &labels.dims));
        };
        if n != n_labels {
            return Err(IdxError::CountMismatch {
                images: images_name.to_string(),
                labels: labels_name.to_string(),
                n_images: n,
                n_labels,
            });
        }
        Ok(ImageSet {
            images: images.data,
            labels: labels.data,
            n,
            height,
            width,
        })
    }

    /// The pixels of image `i` (`height * width` bytes), if there is one.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let size = self.height * self.width;
        let start = i.checked_mul(size)?;
        self.images.get(start..start.checked_add(size)?)
    }
}

/// What can go wrong reading an IDX file; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    /// The file starts with the gzip magic but does not decompress.
    #[error("{file}: corrupt gzip data: {source}")]
    Gzip {
        file: String,
        source: std::io::Error,
    },
    /// The first two bytes are not zero, so this is not an IDX file.
    #[error(
        "{file}: bad magic number {found:02x?}: not an idx file (expected 00 00 <dtype> <ndims>)"
    )]
    BadMagic { file: String, found: Vec<u8> },
    /// A dtype other than unsigned byte.
    #[error("{file}: unsupported dtype 0x{dtype:02x} (only 0x08, unsigned byte, is supported)")]
    UnsupportedDtype { file: String, dtype: u8 },
    /// Fewer bytes than the header (or the dimensions it declares) needs.
    #[error("{file}: truncated: expected {expected} bytes of {part}, found {found}")]
    Truncated {
        file: String,
        part: &'static str,
        expected: usize,
        found: usize,
    },
    /// More bytes than the dimensions declare.
    #[error("{file}: expected {expected} bytes of data, found {found} (trailing bytes)")]
    TrailingData {
        file: String,
        expected: usize,
        found: usize,
    },
    /// A gzipped file whose header declares more data than its compressed
    /// size can hold (a corrupt header or a gzip bomb).
    #[error(
        "{file}: dimensions {dims:?} declare {declared} bytes, more than {compressed} gzipped bytes can hold"
    )]
    Implausible {
        file: String,
        dims: Vec<usize>,
        declared: usize,
        compressed: usize,
    },
    /// The dimensions multiply to more elements than memory can address.
    #[error("{file}: dimensions {dims:?} are too large")]
    TooLarge { file: String, dims: Vec<usize> },
    /// An array with the wrong number of dimensions for its role.
    #[error("{file}: expected a {expected}-dimensional array, found dimensions {dims:?}")]
    WrongRank {
        file: String,
        expected: usize,
        dims: Vec<usize>,
    },
    /// Image and label files that disagree on the number of items.
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        images: String,
        labels: String,
        n_images: usize,
        n_labels: usize,
    },
}

fn wrong_rank(file: &str, expected: usize, dims: &[usize]) -> IdxError {
    IdxError::WrongRank {
        file: file.to_string(),
        expected,
        dims: dims.to_vec(),
    }
}

/// Reads the IDX file at `path`, gzipped or not.
pub fn read_idx(path: &Path) -> Result<IdxArray, IdxError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| IdxError::Io {
        file: name.clone(),
        source,
    })?;
    parse_idx(&bytes, &name)
}

/// Parses the bytes of an IDX file, gzipped or not; `name` names it in
/// errors.
pub fn parse_idx(bytes: &[u8], name: &str) -> Result<IdxArray, IdxError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        parse_raw(&gunzip(bytes, name)?, name)
    } else {
        parse_raw(bytes, name)
    }
}

/// Reads an image file (`[n, height, width]`) and a label file (`[n]`) and
/// checks that they hold the same number of items.
pub fn read_images_labels(images: &Path, labels: &Path) -> Result<ImageSet, IdxError> {
    let image_array = read_idx(images)?;
    let label_array = read_idx(labels)?;
    ImageSet::from_arrays(
        image_array,
        label_array,
        &images.display().to_string(),
        &labels.display().to_string(),
    )
}

/// The most a gzip (deflate) stream expands: about 1032 to 1 at best.
pub const MAX_GZIP_RATIO: usize = 1032;

/// Decompresses a gzipped IDX file without trusting its header: the
/// magic number and dimensions are read first, a declared size that
/// `bytes.len()` compressed bytes cannot hold is an error, and no more
/// than one byte past the declared size is decompressed (a gzip bomb
/// costs nothing).
fn gunzip(bytes: &[u8], name: &str) -> Result<Vec<u8>, IdxError> {
    let gzip = |source| IdxError::Gzip {
        file: name.to_string(),
        source,
    };
    let mut dec = MultiGzDecoder::new(bytes);
    let mut out = Vec::new();
    (&mut dec).take(4).read_to_end(&mut out).map_err(gzip)?;
    if out.len() < 4 || out[..2] != [0, 0] || out[2] != DTYPE_U8 {
        // not an unsigned-byte IDX file: parse_raw says why
        return Ok(out);
    }
    let header = 4 + 4 * usize::from(out[3]);
    (&mut dec)
        .take((header - 4) as u64)
        .read_to_end(&mut out)
        .map_err(gzip)?;
    if out.len() < header {
        return Ok(out);
    }
    let dims = parse_dims(&out, usize::from(out[3]), name)?;
    let declared = element_count(&dims, name)?;
    let bound = bytes.len().saturating_mul(MAX_GZIP_RATIO);
    if declared > bound {
        return Err(IdxError::Implausible {
            file: name.to_string(),
            dims,
            declared,
            compressed: bytes.len(),
        });
    }
    out.reserve(declared);
    (&mut dec)
        .take(declared as u64 + 1)
        .read_to_end(&mut out)
        .map_err(gzip)?;
    Ok(out)
}

fn parse_raw(bytes: &[u8], name: &str) -> Result<IdxArray, IdxError> {
    let (dtype, ndims) = parse_magic(bytes, name)?;
    if dtype != DTYPE_U8 {
        return Err(IdxError::UnsupportedDtype {
            file: name.to_string(),
            dtype,
        });
    }
    let dims = parse_dims(bytes, ndims, name)?;
    let header = 4 + 4 * ndims;
    let expected = element_count(&dims, name)?;
    check_data_len(name, expected, bytes.len() - header)?;
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// The dtype and number of dimensions from the 4-byte magic number.
fn parse_magic(bytes: &[u8], name: &str) -> Result<(u8, usize), IdxError> {
    let Some(magic) = bytes.get(..4) else {
        if bytes.iter().take(2).any(|&b| b != 0) {
            return Err(bad_magic(bytes, name));
        }
        return Err(truncated(name, "header", 4, bytes.len()));
    };
    if magic[..2] != [0, 0] {
        return Err(bad_magic(magic, name));
    }
    Ok((magic[2], magic[3] as usize))
}

fn bad_magic(found: &[u8], name: &str) -> IdxError {
    IdxError::BadMagic {
        file: name.to_string(),
        found: found.iter().take(4).copied().collect(),
    }
}

fn truncated(name: &str, part: &'static str, expected: usize, found: usize) -> IdxError {
    IdxError::Truncated {
        file: name.to_string(),
        part,
        expected,
        found,
    }
}

/// The `ndims` big-endian dimension sizes that follow the magic number.
fn parse_dims(bytes: &[u8], ndims: usize, name: &str) -> Result<Vec<usize>, IdxError> {
    let header = 4 + 4 * ndims;
    let Some(raw) = bytes.get(4..header) else {
        return Err(truncated(name, "header", header, bytes.len()));
    };
    Ok(raw
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect())
}

fn element_count(dims: &[usize], name: &str) -> Result<usize, IdxError> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| IdxError::TooLarge {
            file: name.to_string(),
            dims: dims.to_vec(),
        })
}

fn check_data_len(name: &str, expected: usize, found: usize) -> Result<(), IdxError> {
    if found < expected {
        return Err(truncated(name, "data", expected, found));
    }
    if found > expected {
        return Err(IdxError::TrailingData {
            file: name.to_string(),
            expected,
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    /// A hand-built IDX file of unsigned bytes.
    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, DTYPE_U8, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).expect("gzip into memory");
        enc.finish().expect("gzip into memory")
    }

    fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write temp file");
        path
    }

    fn sample_images() -> (Vec<u32>, Vec<u8>) {
        let dims = vec![3, 2, 4];
        let data = (0..24u8).map(|v| v * 10).collect();
        (dims, data)
    }

    #[test]
    fn round_trip_raw_and_gzip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (dims, data) = sample_images();
        let raw = idx_bytes(&dims, &data);
        // The gzipped copy is deliberately not called *.gz: detection is by magic.
        for (name, bytes) in [("raw.idx", raw.clone()), ("packed.idx", gzip(&raw))] {
            let path = write_temp(&dir, name, &bytes);
            let arr = read_idx(&path).expect("valid idx file");
            assert_eq!(arr.dims, vec![3, 2, 4], "{name}");
            assert_eq!(arr.data, data, "{name}");
        }
    }

    #[test]
    fn truncated_file_names_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (dims, data) = sample_images();
        let path = write_temp(&dir, "short-images.idx", &idx_bytes(&dims, &data[..20]));
        let err = read_idx(&path).expect_err("truncated file");
        let msg = err.to_string();
        assert!(matches!(err, IdxError::Truncated { .. }), "{msg}");
        assert!(msg.contains("short-images.idx"), "{msg}");
        assert!(msg.contains("expected 24 bytes of data, found 20"), "{msg}");
    }

    #[test]
    fn truncated_header() {
        let err = parse_idx(&[0, 0, 8, 3, 0, 0, 0, 1], "tiny").expect_err("short header");
        assert_eq!(
            err.to_string(),
            "tiny: truncated: expected 16 bytes of header, found 8"
        );
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut bytes = idx_bytes(&[2], &[1, 2]);
        bytes.push(3);
        let err = parse_idx(&bytes, "long").expect_err("trailing byte");
        assert!(matches!(
            err,
            IdxError::TrailingData {
                expected: 2,
                found: 3,
                ..
            }
        ));
    }

    #[test]
    fn wrong_magic() {
        let err = parse_idx(b"P5\n28 28\n255\n", "picture.pgm").expect_err("not idx");
        let msg = err.to_string();
        assert!(matches!(err, IdxError::BadMagic { .. }), "{msg}");
        assert!(msg.starts_with("picture.pgm: bad magic number"), "{msg}");
    }

    #[test]
    fn unsupported_dtype() {
        let mut bytes = idx_bytes(&[1], &[0, 0, 0, 0]);
        bytes[2] = 0x0d; // float
        let err = parse_idx(&bytes, "floats.idx").expect_err("float dtype");
        assert_eq!(
            err.to_string(),
            "floats.idx: unsupported dtype 0x0d (only 0x08, unsigned byte, is supported)"
        );
    }

    #[test]
    fn corrupt_gzip() {
        let mut bytes = gzip(&idx_bytes(&[4], &[1, 2, 3, 4]));
        let n = bytes.len();
        bytes.truncate(n - 6);
        let err = parse_idx(&bytes, "broken.gz").expect_err("corrupt gzip");
        assert!(matches!(err, IdxError::Gzip { .. }));
        assert!(err.to_string().starts_with("broken.gz: corrupt gzip data"));
    }

    #[test]
    fn huge_declared_sizes_are_errors_before_any_allocation() {
        // raw: a header claiming 28 TB in 24 bytes
        let raw = idx_bytes(&[1_000_000, 1_000_000, 28], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let err = parse_idx(&raw, "huge.idx").expect_err("terabytes declared");
        assert!(
            matches!(err, IdxError::Truncated { part: "data", .. }),
            "{err}"
        );
        // more elements than memory can address
        let raw = idx_bytes(&[u32::MAX, u32::MAX, 255], &[]);
        let err = parse_idx(&raw, "huger.idx").expect_err("overflow");
        assert!(matches!(err, IdxError::TooLarge { .. }), "{err}");
        // gzip: 10^12 bytes declared in a few dozen compressed bytes
        let gz = gzip(&idx_bytes(&[1_000_000, 1_000_000], &[0; 16]));
        let err = parse_idx(&gz, "bomb.idx.gz").expect_err("implausible");
        let msg = err.to_string();
        assert!(matches!(err, IdxError::Implausible { .. }), "{msg}");
        assert!(
            msg.starts_with("bomb.idx.gz: dimensions [1000000, 1000000]"),
            "{msg}"
        );
        // a gzip bomb behind a small header is not decompressed past it
        let mut body = idx_bytes(&[4], &[1, 2, 3, 4]);
        body.extend(std::iter::repeat_n(0u8, 50_000_000));
        let err = parse_idx(&gzip(&body), "tail.gz").expect_err("trailing");
        assert!(
            matches!(
                err,
                IdxError::TrailingData {
                    expected: 4,
                    found: 5,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn gzip_round_trip_of_every_rank() {
        for dims in [vec![], vec![3], vec![2, 3], vec![2, 1, 3]] {
            let n: u32 = dims.iter().product();
            let data: Vec<u8> = (0..n as u8).collect();
            let arr = parse_idx(&gzip(&idx_bytes(&dims, &data)), "r.gz").expect("valid");
            assert_eq!(arr.data, data);
            assert_eq!(arr.dims.len(), dims.len());
        }
        let err = parse_idx(&gzip(&[0, 0, 8, 2, 0, 0]), "short.gz").expect_err("short");
        assert!(
            matches!(err, IdxError::Truncated { part: "header", .. }),
            "{err}"
        );
        let err =
            parse_idx(&gzip(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]), "f.gz").expect_err("float");
        assert!(matches!(err, IdxError::UnsupportedDtype { .. }), "{err}");
    }

    #[test]
    fn missing_file_names_it() {
        let err = read_idx(Path::new("/nonexistent/labels.idx")).expect_err("missing");
        assert!(matches!(err, IdxError::Io { .. }));
        assert!(err
            .to_string()
            .starts_with("/nonexistent/labels.idx: cannot read"));
    }

    #[test]
    fn images_and_labels() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (dims, data) = sample_images();
        let images = write_temp(&dir, "images", &gzip(&idx_bytes(&dims, &data)));
        let labels = write_temp(&dir, "labels", &idx_bytes(&[3], &[7, 0, 9]));
        let set = read_images_labels(&images, &labels).expect("matching files");
        assert_eq!((set.n, set.height, set.width), (3, 2, 4));
        assert_eq!(set.labels, vec![7, 0, 9]);
        assert_eq!(set.image(1), Some(&data[8..16]));
        assert_eq!(set.image(3), None);
    }

    #[test]
    fn count_mismatch_and_rank() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (dims, data) = sample_images();
        let images = write_temp(&dir, "images", &idx_bytes(&dims, &data));
        let labels = write_temp(&dir, "labels", &idx_bytes(&[2], &[1, 2]));
        let err = read_images_labels(&images, &labels).expect_err("3 images, 2 labels");
        assert!(err.to_string().contains("has 3 images but"), "{err}");
        let err = read_images_labels(&labels, &images).expect_err("swapped");
        assert!(
            matches!(err, IdxError::WrongRank { expected: 3, .. }),
            "{err}"
        );
    }
}
