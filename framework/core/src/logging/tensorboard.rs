//! A small writer of TensorBoard event files: scalars, histograms, images,
//! markdown text and hyper-parameters.
//!
//! We write our own instead of using the `tensorboard-rs` crate: that crate
//! is unmaintained, depends on `protobuf` 2.28 (RUSTSEC-2024-0437), swaps
//! image width and height, and panics on hyper-parameters and text. The
//! format is small: an event file is a TFRecord file (see [`write_record`])
//! of `Event` protocol buffers, whose message definitions we declare by hand
//! in [`proto`] with `prost` (field numbers from TensorBoard's `.proto`
//! files; only the fields we write).
//!
//! Events are buffered; call [`EventWriter::flush`] to make them visible to
//! a running TensorBoard. Dropping the writer ends the hyper-parameter
//! session (if one was started) and flushes.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

/// Hand-written `prost` messages for the subset of TensorBoard's protocol
/// buffers we write (`tensorboard/compat/proto/{event,summary,tensor,
/// tensor_shape}.proto`, `tensorboard/plugins/hparams/{api,plugin_data}.proto`
/// and `google/protobuf/struct.proto`). Fields we never write are left out;
/// readers skip them.
pub mod proto {
    use std::collections::BTreeMap;

    /// `tensorboard.Event`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        /// Seconds since the epoch.
        #[prost(double, tag = "1")]
        pub wall_time: f64,
        /// The global step.
        #[prost(int64, tag = "2")]
        pub step: i64,
        /// What the event holds.
        #[prost(oneof = "EventWhat", tags = "3, 5")]
        pub what: Option<EventWhat>,
    }

    /// `tensorboard.Event.what`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum EventWhat {
        /// The file version, `brain.Event:2`, in a file's first event.
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// A summary.
        #[prost(message, tag = "5")]
        Summary(Summary),
    }

    /// `tensorboard.Summary`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        /// The values.
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<SummaryValue>,
    }

    /// `tensorboard.Summary.Value`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryValue {
        /// The tag.
        #[prost(string, tag = "1")]
        pub tag: String,
        /// Which plugin reads the value (needed the first time a tag is seen).
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<SummaryMetadata>,
        /// The value.
        #[prost(oneof = "SummaryValueKind", tags = "2, 4, 5, 8")]
        pub value: Option<SummaryValueKind>,
    }

    /// `tensorboard.Summary.Value.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum SummaryValueKind {
        /// A scalar.
        #[prost(float, tag = "2")]
        SimpleValue(f32),
        /// An encoded image.
        #[prost(message, tag = "4")]
        Image(SummaryImage),
        /// A histogram.
        #[prost(message, tag = "5")]
        Histo(HistogramProto),
        /// A tensor, read by the plugin named in the metadata.
        #[prost(message, tag = "8")]
        Tensor(TensorProto),
    }

    /// `tensorboard.Summary.Image`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryImage {
        /// Height in pixels.
        #[prost(int32, tag = "1")]
        pub height: i32,
        /// Width in pixels.
        #[prost(int32, tag = "2")]
        pub width: i32,
        /// 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
        #[prost(int32, tag = "3")]
        pub colorspace: i32,
        /// The PNG file.
        #[prost(bytes = "vec", tag = "4")]
        pub encoded_image_string: Vec<u8>,
    }

    /// `tensorboard.HistogramProto`: bucket `i` counts the values `v` with
    /// `bucket_limit[i - 1] <= v < bucket_limit[i]`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HistogramProto {
        /// Smallest value.
        #[prost(double, tag = "1")]
        pub min: f64,
        /// Largest value.
        #[prost(double, tag = "2")]
        pub max: f64,
        /// Number of values.
        #[prost(double, tag = "3")]
        pub num: f64,
        /// Sum of the values.
        #[prost(double, tag = "4")]
        pub sum: f64,
        /// Sum of the squared values.
        #[prost(double, tag = "5")]
        pub sum_squares: f64,
        /// Right edges of the buckets (packed).
        #[prost(double, repeated, tag = "6")]
        pub bucket_limit: Vec<f64>,
        /// Counts (packed).
        #[prost(double, repeated, tag = "7")]
        pub bucket: Vec<f64>,
    }

    /// `tensorboard.SummaryMetadata`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryMetadata {
        /// The plugin that reads the value.
        #[prost(message, optional, tag = "1")]
        pub plugin_data: Option<PluginData>,
        /// Display name.
        #[prost(string, tag = "2")]
        pub display_name: String,
        /// Description (markdown).
        #[prost(string, tag = "3")]
        pub summary_description: String,
        /// `tensorboard.DataClass` (0: unknown).
        #[prost(int32, tag = "4")]
        pub data_class: i32,
    }

    /// `tensorboard.SummaryMetadata.PluginData`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginData {
        /// `text`, `hparams`, ...
        #[prost(string, tag = "1")]
        pub plugin_name: String,
        /// The plugin's own serialized message.
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }

    /// `tensorboard.DataType` value for floats.
    pub const DT_FLOAT: i32 = 1;
    /// `tensorboard.DataType` value for strings.
    pub const DT_STRING: i32 = 7;

    /// `tensorboard.TensorProto` (strings only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        /// `tensorboard.DataType`.
        #[prost(int32, tag = "1")]
        pub dtype: i32,
        /// The shape.
        #[prost(message, optional, tag = "2")]
        pub tensor_shape: Option<TensorShapeProto>,
        /// The elements, for `DT_STRING`.
        #[prost(bytes = "vec", repeated, tag = "8")]
        pub string_val: Vec<Vec<u8>>,
    }

    /// `tensorboard.TensorShapeProto`; no dimensions is a scalar.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        /// The dimensions.
        #[prost(message, repeated, tag = "2")]
        pub dim: Vec<TensorShapeDim>,
    }

    /// `tensorboard.TensorShapeProto.Dim`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeDim {
        /// Size.
        #[prost(int64, tag = "1")]
        pub size: i64,
        /// Optional name.
        #[prost(string, tag = "2")]
        pub name: String,
    }

    /// `tensorboard.hparams.HParamsPluginData`, the `hparams` plugin's content.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HParamsPluginData {
        /// Always 0.
        #[prost(int32, tag = "1")]
        pub version: i32,
        /// What the summary holds.
        #[prost(oneof = "HParamsData", tags = "2, 3, 4")]
        pub data: Option<HParamsData>,
    }

    /// `tensorboard.hparams.HParamsPluginData.data`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum HParamsData {
        /// The experiment: the hyper-parameters and metrics.
        #[prost(message, tag = "2")]
        Experiment(Experiment),
        /// A session's hyper-parameter values.
        #[prost(message, tag = "3")]
        SessionStartInfo(SessionStartInfo),
        /// A session's end.
        #[prost(message, tag = "4")]
        SessionEndInfo(SessionEndInfo),
    }

    /// `tensorboard.hparams.Experiment`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Experiment {
        /// Description.
        #[prost(string, tag = "1")]
        pub description: String,
        /// User.
        #[prost(string, tag = "2")]
        pub user: String,
        /// Creation time, seconds since the epoch.
        #[prost(double, tag = "3")]
        pub time_created_secs: f64,
        /// The hyper-parameters.
        #[prost(message, repeated, tag = "4")]
        pub hparam_infos: Vec<HParamInfo>,
        /// The metrics.
        #[prost(message, repeated, tag = "5")]
        pub metric_infos: Vec<MetricInfo>,
        /// Name.
        #[prost(string, tag = "6")]
        pub name: String,
    }

    /// `tensorboard.hparams.DataType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum HParamDataType {
        /// Unset.
        Unset = 0,
        /// A string.
        String = 1,
        /// A boolean.
        Bool = 2,
        /// A number.
        Float64 = 3,
    }

    /// `tensorboard.hparams.HParamInfo` (domains left out).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HParamInfo {
        /// Name, the key in [`SessionStartInfo::hparams`].
        #[prost(string, tag = "1")]
        pub name: String,
        /// Display name.
        #[prost(string, tag = "2")]
        pub display_name: String,
        /// Description.
        #[prost(string, tag = "3")]
        pub description: String,
        /// The value type.
        #[prost(enumeration = "HParamDataType", tag = "4")]
        pub r#type: i32,
    }

    /// `tensorboard.hparams.MetricInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricInfo {
        /// The scalar summary the metric is read from.
        #[prost(message, optional, tag = "1")]
        pub name: Option<MetricName>,
        /// Display name.
        #[prost(string, tag = "3")]
        pub display_name: String,
        /// Description.
        #[prost(string, tag = "4")]
        pub description: String,
        /// `tensorboard.hparams.DatasetType` (0: unknown).
        #[prost(int32, tag = "5")]
        pub dataset_type: i32,
    }

    /// `tensorboard.hparams.MetricName`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricName {
        /// The run's sub-directory, empty for the run itself.
        #[prost(string, tag = "1")]
        pub group: String,
        /// The scalar tag.
        #[prost(string, tag = "2")]
        pub tag: String,
    }

    /// `tensorboard.hparams.SessionStartInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionStartInfo {
        /// The hyper-parameter values.
        #[prost(btree_map = "string, message", tag = "1")]
        pub hparams: BTreeMap<String, Value>,
        /// Model URI.
        #[prost(string, tag = "2")]
        pub model_uri: String,
        /// Monitor URL.
        #[prost(string, tag = "3")]
        pub monitor_url: String,
        /// Group name; empty groups sessions by their values.
        #[prost(string, tag = "4")]
        pub group_name: String,
        /// Start time, seconds since the epoch.
        #[prost(double, tag = "5")]
        pub start_time_secs: f64,
    }

    /// `tensorboard.hparams.Status`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Status {
        /// Unknown.
        Unknown = 0,
        /// Finished normally.
        Success = 1,
        /// Failed.
        Failure = 2,
        /// Still running.
        Running = 3,
    }

    /// `tensorboard.hparams.SessionEndInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionEndInfo {
        /// How the session ended.
        #[prost(enumeration = "Status", tag = "1")]
        pub status: i32,
        /// End time, seconds since the epoch.
        #[prost(double, tag = "2")]
        pub end_time_secs: f64,
    }

    /// `google.protobuf.Value`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        /// The value.
        #[prost(oneof = "ValueKind", tags = "1, 2, 3, 4, 5, 6")]
        pub kind: Option<ValueKind>,
    }

    /// `google.protobuf.Value.kind`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum ValueKind {
        /// `google.protobuf.NullValue` (always 0).
        #[prost(int32, tag = "1")]
        NullValue(i32),
        /// A number.
        #[prost(double, tag = "2")]
        NumberValue(f64),
        /// A string.
        #[prost(string, tag = "3")]
        StringValue(String),
        /// A boolean.
        #[prost(bool, tag = "4")]
        BoolValue(bool),
        /// A struct.
        #[prost(message, tag = "5")]
        StructValue(Struct),
        /// A list.
        #[prost(message, tag = "6")]
        ListValue(ListValue),
    }

    /// `google.protobuf.Struct`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Struct {
        /// The fields.
        #[prost(btree_map = "string, message", tag = "1")]
        pub fields: BTreeMap<String, Value>,
    }

    /// `google.protobuf.ListValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListValue {
        /// The elements.
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<Value>,
    }
}

use proto::{
    Event, EventWhat, HParamsData, HParamsPluginData, HistogramProto, PluginData, Summary,
    SummaryMetadata, SummaryValue, SummaryValueKind,
};

/// What can go wrong writing events.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Creating or writing the event file.
    #[error("event file {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An image whose size, channels and data do not agree.
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// PNG encoding failed.
    #[error("png encoding: {0}")]
    Png(#[from] png::EncodingError),
}

type Result<T> = std::result::Result<T, EventError>;

/// An 8-bit image, rows of pixels with interleaved channels (HWC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageU8 {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 (grey), 3 (RGB) or 4 (RGBA).
    pub channels: usize,
    /// `height * width * channels` bytes, row after row.
    pub data: Vec<u8>,
}

/// A hyper-parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum HParamValue {
    /// A number.
    Number(f64),
    /// A string.
    Text(String),
    /// A boolean.
    Bool(bool),
}

/// The TFRecord checksum: CRC-32C of `data`, rotated right by 15 bits plus
/// a constant.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes one TFRecord: the length (u64 LE), its masked CRC (u32 LE), the
/// data, and the data's masked CRC (u32 LE).
pub fn write_record(w: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    w.write_all(&len)?;
    w.write_all(&masked_crc32c(&len).to_le_bytes())?;
    w.write_all(data)?;
    w.write_all(&masked_crc32c(data).to_le_bytes())
}

/// Distinguishes the files of writers created in the same second.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::env::var("COMPUTERNAME").ok())
        })
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

fn step_i64(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

fn plugin_metadata(plugin_name: &str, content: Vec<u8>) -> Option<SummaryMetadata> {
    Some(SummaryMetadata {
        plugin_data: Some(PluginData {
            plugin_name: plugin_name.into(),
            content,
        }),
        ..Default::default()
    })
}

/// Octaves per sign in [`histogram`]: at most 30 buckets in all.
const OCTAVES: i32 = 15;

/// A histogram of the finite values (NaN and infinities are skipped), with
/// exponential buckets like TensorFlow's default: mirrored around zero,
/// each twice as wide as the next one in, the outermost ending just past
/// the largest magnitude, `OCTAVES` a side. Empty buckets at both ends are
/// left out.
pub fn histogram(values: &[f32]) -> HistogramProto {
    let finite = || {
        values
            .iter()
            .map(|&v| f64::from(v))
            .filter(|v| v.is_finite())
    };
    let mut h = HistogramProto {
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        ..Default::default()
    };
    for v in finite() {
        h.min = h.min.min(v);
        h.max = h.max.max(v);
        h.num += 1.0;
        h.sum += v;
        h.sum_squares += v * v;
    }
    if h.num == 0.0 {
        h.min = 0.0;
        h.max = 0.0;
        return h;
    }
    let abs_max = h.min.abs().max(h.max.abs());
    // The smallest power of two above every magnitude.
    let mut top = if abs_max > 0.0 {
        abs_max.log2().floor() as i32
    } else {
        0
    };
    while 2f64.powi(top) <= abs_max {
        top += 1;
    }
    let mut limits: Vec<f64> = (1..OCTAVES).map(|k| -(2f64.powi(top - k))).collect();
    limits.push(0.0);
    limits.extend((0..OCTAVES).rev().map(|k| 2f64.powi(top - k)));
    let mut counts = vec![0.0; limits.len()];
    for v in finite() {
        let i = limits.partition_point(|&l| l <= v).min(limits.len() - 1);
        counts[i] += 1.0;
    }
    let first = counts.iter().position(|&c| c > 0.0).unwrap_or(0);
    let last = counts.iter().rposition(|&c| c > 0.0).unwrap_or(0);
    h.bucket_limit = limits[first..=last].to_vec();
    h.bucket = counts[first..=last].to_vec();
    h
}

/// Encodes an image as PNG.
pub fn encode_png(image: &ImageU8) -> Result<Vec<u8>> {
    let color = match image.channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        c => {
            return Err(EventError::InvalidImage(format!(
                "{c} channels, expected 1, 3 or 4"
            )))
        }
    };
    let expected = image.height * image.width * image.channels;
    if image.height == 0 || image.width == 0 || image.data.len() != expected {
        return Err(EventError::InvalidImage(format!(
            "{}x{}x{} (height x width x channels) needs {expected} bytes, got {}",
            image.height,
            image.width,
            image.channels,
            image.data.len()
        )));
    }
    let too_big = |_| EventError::InvalidImage("image too large for png".into());
    let width = u32::try_from(image.width).map_err(too_big)?;
    let height = u32::try_from(image.height).map_err(too_big)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&image.data)?;
    writer.finish()?;
    Ok(out)
}

/// Writes events to `events.out.tfevents.{unix_secs}.{hostname}.{pid}.{n}`
/// in a directory (what `tensorboard --logdir` reads).
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// The hyper-parameter session is started and not yet ended.
    session_open: bool,
}

impl EventWriter {
    /// Creates `dir` (and its parents) and a new event file in it, starting
    /// with the `brain.Event:2` file-version event.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EventError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let secs = now_secs() as u64;
        let (host, pid) = (hostname(), std::process::id());
        let (path, file) = loop {
            let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("events.out.tfevents.{secs}.{host}.{pid}.{n}"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&path)(e)),
            }
        };
        let mut writer = EventWriter {
            path,
            out: BufWriter::new(file),
            session_open: false,
        };
        writer.write_event(0, EventWhat::FileVersion("brain.Event:2".into()))?;
        Ok(writer)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, step: u64, what: EventWhat) -> Result<()> {
        let event = Event {
            wall_time: now_secs(),
            step: step_i64(step),
            what: Some(what),
        };
        write_record(&mut self.out, &event.encode_to_vec()).map_err(|source| EventError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn write_value(
        &mut self,
        tag: &str,
        step: u64,
        metadata: Option<SummaryMetadata>,
        value: SummaryValueKind,
    ) -> Result<()> {
        let value = SummaryValue {
            tag: tag.into(),
            metadata,
            value: Some(value),
        };
        self.write_event(step, EventWhat::Summary(Summary { value: vec![value] }))
    }

    /// A scalar (stored as `f32`, as TensorBoard's `simple_value` is).
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: u64) -> Result<()> {
        self.write_value(tag, step, None, SummaryValueKind::SimpleValue(value as f32))
    }

    /// A histogram of `values`; see [`histogram`] for the buckets.
    pub fn add_histogram(&mut self, tag: &str, values: &[f32], step: u64) -> Result<()> {
        self.write_value(tag, step, None, SummaryValueKind::Histo(histogram(values)))
    }

    /// An image, stored as PNG.
    pub fn add_image(&mut self, tag: &str, image: &ImageU8, step: u64) -> Result<()> {
        let encoded_image_string = encode_png(image)?;
        let image = proto::SummaryImage {
            height: image.height as i32,
            width: image.width as i32,
            colorspace: image.channels as i32,
            encoded_image_string,
        };
        self.write_value(tag, step, None, SummaryValueKind::Image(image))
    }

    /// Markdown text, for the text dashboard.
    pub fn add_text(&mut self, tag: &str, markdown: &str, step: u64) -> Result<()> {
        let tensor = proto::TensorProto {
            dtype: proto::DT_STRING,
            tensor_shape: Some(proto::TensorShapeProto::default()),
            string_val: vec![markdown.as_bytes().to_vec()],
        };
        // The text plugin's content is an empty `TextPluginData` (version 0).
        let metadata = plugin_metadata("text", Vec::new());
        self.write_value(tag, step, metadata, SummaryValueKind::Tensor(tensor))
    }

    fn add_hparams_data(&mut self, tag: &str, data: HParamsData) -> Result<()> {
        let content = HParamsPluginData {
            version: 0,
            data: Some(data),
        }
        .encode_to_vec();
        // The hparams plugin reads the metadata; the tensor is an empty float
        // vector, as TensorBoard's own summaries write.
        let tensor = proto::TensorProto {
            dtype: proto::DT_FLOAT,
            tensor_shape: Some(proto::TensorShapeProto {
                dim: vec![proto::TensorShapeDim::default()],
            }),
            string_val: Vec::new(),
        };
        let metadata = plugin_metadata("hparams", content);
        self.write_value(tag, 0, metadata, SummaryValueKind::Tensor(tensor))
    }

    /// The run's hyper-parameters and the scalar tags that are its metrics,
    /// for the hparams dashboard: the experiment and the start of the
    /// session. The session ends (status success) when the writer is closed
    /// or dropped, or with the next call.
    pub fn add_hparams(
        &mut self,
        hparams: &[(String, HParamValue)],
        metric_tags: &[String],
    ) -> Result<()> {
        use proto::{HParamDataType, HParamInfo, MetricInfo, MetricName, Value, ValueKind};
        self.end_session(proto::Status::Success)?;
        let now = now_secs();
        let hparam_infos = hparams
            .iter()
            .map(|(name, v)| HParamInfo {
                name: name.clone(),
                r#type: match v {
                    HParamValue::Number(_) => HParamDataType::Float64,
                    HParamValue::Text(_) => HParamDataType::String,
                    HParamValue::Bool(_) => HParamDataType::Bool,
                } as i32,
                ..Default::default()
            })
            .collect();
        let metric_infos = metric_tags
            .iter()
            .map(|tag| MetricInfo {
                name: Some(MetricName {
                    group: String::new(),
                    tag: tag.clone(),
                }),
                ..Default::default()
            })
            .collect();
        let experiment = proto::Experiment {
            time_created_secs: now,
            hparam_infos,
            metric_infos,
            ..Default::default()
        };
        self.add_hparams_data("_hparams_/experiment", HParamsData::Experiment(experiment))?;
        let values = hparams
            .iter()
            .map(|(name, v)| {
                let kind = match v {
                    HParamValue::Number(x) => ValueKind::NumberValue(*x),
                    HParamValue::Text(s) => ValueKind::StringValue(s.clone()),
                    HParamValue::Bool(b) => ValueKind::BoolValue(*b),
                };
                (name.clone(), Value { kind: Some(kind) })
            })
            .collect();
        let start = proto::SessionStartInfo {
            hparams: values,
            start_time_secs: now,
            ..Default::default()
        };
        self.add_hparams_data(
            "_hparams_/session_start_info",
            HParamsData::SessionStartInfo(start),
        )?;
        self.session_open = true;
        Ok(())
    }

    /// Ends the hyper-parameter session started by [`Self::add_hparams`],
    /// if one is open.
    fn end_session(&mut self, status: proto::Status) -> Result<()> {
        if !self.session_open {
            return Ok(());
        }
        self.session_open = false;
        let end = proto::SessionEndInfo {
            status: status as i32,
            end_time_secs: now_secs(),
        };
        self.add_hparams_data(
            "_hparams_/session_end_info",
            HParamsData::SessionEndInfo(end),
        )
    }

    /// Writes buffered events to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|source| EventError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Ends the hyper-parameter session (success) and flushes, reporting
    /// errors that dropping the writer would ignore.
    pub fn close(mut self) -> Result<()> {
        self.end_session(proto::Status::Success)?;
        self.flush()
    }
}

impl Drop for EventWriter {
    /// Ends the hyper-parameter session (failure while panicking, success
    /// otherwise) and flushes; errors are ignored.
    fn drop(&mut self) {
        let status = if std::thread::panicking() {
            proto::Status::Failure
        } else {
            proto::Status::Success
        };
        let _ = self.end_session(status);
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a TFRecord file into records, checking lengths and checksums.
    fn read_records(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (len_bytes, tail) = rest.split_at(8);
            let len_crc = u32::from_le_bytes(tail[..4].try_into().unwrap());
            assert_eq!(len_crc, masked_crc32c(len_bytes), "length checksum");
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let (data, tail) = tail[4..].split_at(len);
            let data_crc = u32::from_le_bytes(tail[..4].try_into().unwrap());
            assert_eq!(data_crc, masked_crc32c(data), "data checksum");
            records.push(data.to_vec());
            rest = &tail[4..];
        }
        records
    }

    fn read_events(path: &Path) -> Vec<Event> {
        let bytes = std::fs::read(path).unwrap();
        read_records(&bytes)
            .iter()
            .map(|r| Event::decode(r.as_slice()).unwrap())
            .collect()
    }

    fn value(event: &Event) -> &SummaryValue {
        match &event.what {
            Some(EventWhat::Summary(s)) => &s.value[0],
            other => panic!("not a summary: {other:?}"),
        }
    }

    #[test]
    fn masked_crc_matches_known_values() {
        // Reference values from TensorBoard's Python implementation.
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(&5u64.to_le_bytes()), 0x3e04_b2ea);
    }

    #[test]
    fn record_framing() {
        let mut buf = Vec::new();
        write_record(&mut buf, b"hello").unwrap();
        write_record(&mut buf, b"").unwrap();
        assert_eq!(buf.len(), 8 + 4 + 5 + 4 + 8 + 4 + 4);
        assert_eq!(&buf[..8], &5u64.to_le_bytes());
        assert_eq!(&buf[8..12], &0x3e04_b2eau32.to_le_bytes());
        assert_eq!(read_records(&buf), vec![b"hello".to_vec(), Vec::new()]);
    }

    #[test]
    fn events_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let mut w = EventWriter::create(&dir.path().join("run")).unwrap();
            w.add_scalar("train/loss", 0.5, 3).unwrap();
            w.add_histogram("w", &[1.0, -2.0, f32::NAN, 0.25], 4)
                .unwrap();
            let image = ImageU8 {
                height: 2,
                width: 3,
                channels: 1,
                data: vec![0, 50, 100, 150, 200, 250],
            };
            w.add_image("img", &image, 5).unwrap();
            w.add_text("note", "*hi*", 6).unwrap();
            w.add_hparams(
                &[("lr".into(), HParamValue::Number(0.1))],
                &["train/loss".into()],
            )
            .unwrap();
            w.path().to_path_buf()
        };
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        assert!(name.ends_with(&format!(
            ".{}.{}",
            std::process::id(),
            name.rsplit('.').next().unwrap()
        )));

        let events = read_events(&path);
        assert_eq!(events.len(), 8, "{events:?}");
        assert_eq!(
            events[0].what,
            Some(EventWhat::FileVersion("brain.Event:2".into()))
        );

        assert_eq!(events[1].step, 3);
        assert_eq!(value(&events[1]).tag, "train/loss");
        assert_eq!(
            value(&events[1]).value,
            Some(SummaryValueKind::SimpleValue(0.5))
        );

        let Some(SummaryValueKind::Histo(h)) = &value(&events[2]).value else {
            panic!()
        };
        assert_eq!(
            (h.min, h.max, h.num, h.sum, h.sum_squares),
            (-2.0, 1.0, 3.0, -0.75, 5.0625)
        );
        assert_eq!(h.bucket.iter().sum::<f64>(), 3.0);

        let Some(SummaryValueKind::Image(img)) = &value(&events[3]).value else {
            panic!()
        };
        assert_eq!((img.height, img.width, img.colorspace), (2, 3, 1));
        let png = &img.encoded_image_string;
        assert_eq!(&png[1..4], b"PNG");
        // IHDR: width then height, big-endian.
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 3);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 2);

        let text = value(&events[4]);
        assert_eq!(
            text.metadata
                .as_ref()
                .unwrap()
                .plugin_data
                .as_ref()
                .unwrap()
                .plugin_name,
            "text"
        );
        let Some(SummaryValueKind::Tensor(t)) = &text.value else {
            panic!()
        };
        assert_eq!(
            (t.dtype, t.string_val.clone()),
            (proto::DT_STRING, vec![b"*hi*".to_vec()])
        );

        let hparams = |e: &Event| {
            let v = value(e);
            let pd = v.metadata.as_ref().unwrap().plugin_data.as_ref().unwrap();
            assert_eq!(pd.plugin_name, "hparams");
            (
                v.tag.clone(),
                HParamsPluginData::decode(pd.content.as_slice()).unwrap(),
            )
        };
        let (tag, exp) = hparams(&events[5]);
        assert_eq!(tag, "_hparams_/experiment");
        let Some(HParamsData::Experiment(exp)) = exp.data else {
            panic!()
        };
        assert_eq!(exp.hparam_infos[0].name, "lr");
        assert_eq!(exp.metric_infos[0].name.as_ref().unwrap().tag, "train/loss");
        let (tag, start) = hparams(&events[6]);
        assert_eq!(tag, "_hparams_/session_start_info");
        let Some(HParamsData::SessionStartInfo(start)) = start.data else {
            panic!()
        };
        assert_eq!(
            start.hparams["lr"].kind,
            Some(proto::ValueKind::NumberValue(0.1))
        );
        let (tag, end) = hparams(&events[7]);
        assert_eq!(tag, "_hparams_/session_end_info");
        let Some(HParamsData::SessionEndInfo(end)) = end.data else {
            panic!()
        };
        assert_eq!(end.status, proto::Status::Success as i32);
    }

    #[test]
    fn two_writers_get_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = EventWriter::create(dir.path()).unwrap();
        let b = EventWriter::create(dir.path()).unwrap();
        assert_ne!(a.path(), b.path());
    }

    #[test]
    fn histogram_buckets() {
        let values: Vec<f32> = (-100..=100).map(|i| i as f32 / 10.0).collect();
        let h = histogram(&values);
        assert_eq!((h.min, h.max, h.num), (-10.0, 10.0, 201.0));
        assert!(h.bucket.len() <= 30 && h.bucket.len() >= 8, "{h:?}");
        assert_eq!(h.bucket_limit.len(), h.bucket.len());
        assert!(h.bucket_limit.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(h.bucket.iter().sum::<f64>(), 201.0);
        assert_eq!(*h.bucket_limit.last().unwrap(), 16.0);
        // Each count matches its bucket's range.
        for (i, (&limit, &count)) in h.bucket_limit.iter().zip(&h.bucket).enumerate() {
            let lo = if i == 0 {
                f64::NEG_INFINITY
            } else {
                h.bucket_limit[i - 1]
            };
            let n = values
                .iter()
                .filter(|&&v| f64::from(v) >= lo && f64::from(v) < limit)
                .count();
            assert_eq!(n as f64, count, "bucket {i} [{lo}, {limit})");
        }
        // A power of two at the top lands inside the last bucket.
        let h = histogram(&[4.0, 1.0]);
        assert_eq!(*h.bucket_limit.last().unwrap(), 8.0);
        // Zeros, nothing, only NaN.
        assert_eq!(histogram(&[0.0, 0.0]).bucket, vec![2.0]);
        let empty = histogram(&[f32::NAN, f32::INFINITY]);
        assert_eq!(
            (empty.num, empty.min, empty.max, empty.bucket.len()),
            (0.0, 0.0, 0.0, 0)
        );
    }

    #[test]
    fn bad_images_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        let two_channels = ImageU8 {
            height: 1,
            width: 1,
            channels: 2,
            data: vec![0, 0],
        };
        let err = w.add_image("x", &two_channels, 0).unwrap_err().to_string();
        assert!(err.contains("2 channels"), "{err}");
        let short = ImageU8 {
            height: 2,
            width: 2,
            channels: 3,
            data: vec![0; 5],
        };
        assert!(w.add_image("x", &short, 0).is_err());
    }
}
