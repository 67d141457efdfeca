//! A mutation fuzzer over every decoder and parser that reads user files
//! (issue #28: no panics on any input), with no fuzzing dependency.
//!
//! Each [`Target`] pairs one decoder with real small seed files (built in
//! code, or read from the repository's fixtures). A [`Mutator`] seeded with a
//! fixed number derives inputs from the seeds: bit flips, bytes overwritten
//! with 0, 0xff, 0x7f or 0x80, truncation, insertion, deletion and
//! duplication of byte runs, splices of two seeds, 4- and 8-byte integer
//! fields overwritten with huge values (at the known header offsets of
//! binary formats and anywhere), and, for text formats, tokens and numbers
//! swapped in. [`run_input`] feeds one input to its decoder under
//! `catch_unwind` with the panic message captured instead of printed; an
//! `Err` is a good answer, a panic is a finding.
//!
//! Run it with `scripts/fuzz.sh SECONDS` (every target, a table) or
//! `cargo run --release -p parallax-tests --example fuzz -- TARGET SECONDS`;
//! panicking inputs are saved under `fuzz-crashes/TARGET/`. Fixed crashes are
//! copied to `tests/fixtures/fuzz/TARGET/`, which
//! `tests/tests/fuzz_regressions.rs` replays along with a few hundred seeded
//! mutations per target.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use parallax_core::data::{BuildCtx, DataSource, Split};
use parallax_core::nn::init::VarStore;
use parallax_core::recipe::{parse_set, Params, Recipe};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a decoder made of an input: a value or an error (both fine).
pub type Answer = Result<(), String>;

/// One decoder under test.
pub struct Target {
    /// The name (`scripts/fuzz.sh` rows, `fuzz-crashes/NAME/`,
    /// `tests/fixtures/fuzz/NAME/`).
    pub name: &'static str,
    /// What is decoded, and through which function.
    pub about: &'static str,
    /// Real small inputs that mutations start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Byte offsets of integer fields in the seeds' binary headers, which
    /// the mutator overwrites with huge values.
    pub fields: &'static [usize],
    /// Whether the format is text (then tokens and numbers are swapped in).
    pub text: bool,
    /// Mutations per run of the regression test (kept small for slow
    /// decoders: the debug test build runs them all in a few seconds).
    pub quick: u32,
    /// Feeds one input to the decoder; `work` is an empty folder of the
    /// target's own for decoders that read files.
    pub run: fn(work: &Path, input: &[u8]) -> Answer,
}

/// Every target, one per decoder.
pub const TARGETS: &[Target] = &[
    Target {
        name: "recipe",
        about: "recipe TOML: parallax_core::recipe::Recipe::from_toml_str",
        seeds: recipe_seeds,
        fields: &[],
        text: true,
        quick: 300,
        run: run_recipe,
    },
    Target {
        name: "recipe_set",
        about: "`--set key=value` flags (one per line) over a recipe: parse_set, Recipe::from_toml_str",
        seeds: set_seeds,
        fields: &[],
        text: true,
        quick: 300,
        run: run_recipe_set,
    },
    Target {
        name: "idx",
        about: "IDX files (raw or gzip) through the `idx` data source: parallax_vision::idx::read_idx",
        seeds: idx_seeds,
        fields: &[0, 4, 8, 12],
        text: false,
        quick: 300,
        run: run_idx,
    },
    Target {
        name: "image",
        about: "PNG and JPEG files through the `image_folder` data source: image_folder::decode, to_chw, resize",
        seeds: image_seeds,
        fields: &[16, 20, 33],
        text: false,
        quick: 300,
        run: run_image,
    },
    Target {
        name: "cifar",
        about: "CIFAR-10/100 binary batches: parallax_vision::cifar::read_records, the `cifar100` data source",
        seeds: cifar_seeds,
        fields: &[],
        text: false,
        quick: 300,
        run: run_cifar,
    },
    Target {
        name: "tokenizer",
        about: "tokenizer.json: parallax_text::tokenizer::TextTokenizer::from_file, encode",
        seeds: tokenizer_seeds,
        fields: &[],
        text: true,
        quick: 300,
        run: run_tokenizer,
    },
    Target {
        name: "pretrained",
        about: "safetensors weights: parallax_vision::pretrained::Checkpoint::open, load_value",
        seeds: safetensors_seeds,
        fields: &[0],
        text: false,
        quick: 300,
        run: run_pretrained,
    },
    Target {
        name: "checkpoint",
        about: "run checkpoints: parallax_core::checkpoint::load, read_meta",
        seeds: checkpoint_seeds,
        fields: &[0],
        text: false,
        quick: 300,
        run: run_checkpoint,
    },
    Target {
        name: "sentences",
        about: "sentence files (lines, JSON Lines) through the `sentences` data source: read_text, jsonl_objects, encode",
        seeds: sentences_seeds,
        fields: &[],
        text: true,
        quick: 300,
        run: run_sentences,
    },
    Target {
        name: "labelled",
        about: "labelled sentences (fastText, TSV, JSON Lines): parallax_text::sources::labelled::read_labelled",
        seeds: labelled_seeds,
        fields: &[],
        text: true,
        quick: 300,
        run: run_labelled,
    },
    Target {
        name: "triples",
        about: "NLI triples (CSV, JSON Lines): parallax_text::sources::triples::parse_csv, parse_jsonl",
        seeds: triples_seeds,
        fields: &[],
        text: true,
        quick: 300,
        run: run_triples,
    },
    Target {
        name: "image_text",
        about: "image-caption manifests (JSON Lines, CSV) through the `image_text` data source",
        seeds: manifest_seeds,
        fields: &[],
        text: true,
        quick: 200,
        run: run_image_text,
    },
    Target {
        name: "hf_config",
        about: "Hugging Face config.json: BertConfig::from_json, HfClipConfig::from_json, the `bert` and `clip` encoders from a folder",
        seeds: hf_config_seeds,
        fields: &[],
        text: true,
        quick: 150,
        run: run_hf_config,
    },
    Target {
        name: "hf_weights",
        about: "Hugging Face model.safetensors: the `clip` (DualEncoder::build) and `bert` (BertEncoder::build) encoders from a folder",
        seeds: hf_weights_seeds,
        fields: &[0],
        text: false,
        quick: 100,
        run: run_hf_weights,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

// ---------------------------------------------------------------------------
// Running inputs

/// How one input went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The decoder returned a value.
    Ok,
    /// The decoder returned an error (its message).
    Err(String),
    /// The decoder panicked (message and location).
    Panic(String),
    /// The decoder returned (`Ok` or `Err`), but a dependency panicked
    /// inside it and a guard of the decoder turned that into its answer
    /// (the panic's message and location).
    Caught(String),
}

thread_local! {
    /// Set while this thread runs a decoder: its panics are recorded, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records, instead of printing, the
/// panics of threads inside [`run_input`]; other panics print as usual.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                default(info);
            }
        }));
    });
}

/// Feeds `input` to `target` in `work` (emptied first), catching panics.
pub fn run_input(target: &Target, work: &Path, input: &[u8]) -> Outcome {
    install_hook();
    if work.exists() {
        let _ = std::fs::remove_dir_all(work);
    }
    if let Err(e) = std::fs::create_dir_all(work) {
        return Outcome::Err(format!(
            "fuzz harness: cannot create {}: {e}",
            work.display()
        ));
    }
    QUIET.with(|q| q.set(true));
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let result = catch_unwind(AssertUnwindSafe(|| (target.run)(work, input)));
    QUIET.with(|q| q.set(false));
    let recorded = LAST_PANIC.with(|p| p.borrow_mut().take());
    match result {
        Ok(_) if recorded.is_some() => Outcome::Caught(recorded.unwrap_or_default()),
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(e)) => Outcome::Err(e),
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic payload".into());
            Outcome::Panic(recorded.unwrap_or(message))
        }
    }
}

/// The entry point of the libFuzzer targets in `tests/fuzz/` (`cargo fuzz`,
/// see `scripts/fuzz.sh`): feeds `input` to the target `name` through
/// [`run_input`] and aborts the process on a panic that escaped the decoder,
/// which libFuzzer records as a crash. A dependency's panic that a guard of
/// the decoder turned into an error ([`Outcome::Caught`]) is not a crash.
///
/// # Panics
///
/// On an unknown target name: a fuzz target of `tests/fuzz/` that
/// [`TARGETS`] does not know.
pub fn libfuzzer(name: &str, input: &[u8]) {
    static WORK: OnceLock<PathBuf> = OnceLock::new();
    let target = target(name).unwrap_or_else(|| panic!("no fuzz target `{name}`"));
    let work = WORK.get_or_init(|| {
        // never reach for the network: every target reads local files
        std::env::set_var("HF_HUB_OFFLINE", "1");
        std::env::temp_dir().join(format!("parallax-fuzz-{name}-{}", std::process::id()))
    });
    if let Outcome::Panic(message) = run_input(target, work, input) {
        eprintln!("{name}: the decoder panicked: {message}");
        std::process::abort();
    }
}

/// What a fuzzing run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs tried.
    pub inputs: u64,
    /// Inputs the decoder accepted.
    pub accepted: u64,
    /// Inputs that panicked: the input and the panic message.
    pub panics: Vec<(Vec<u8>, String)>,
    /// Inputs on which a dependency panicked and the decoder's guard
    /// answered with an error instead (see [`Outcome::Caught`]).
    pub caught: u64,
    /// The first few of those inputs, with the caught panic's message.
    pub caught_samples: Vec<(Vec<u8>, String)>,
    /// The slowest input's time.
    pub slowest: Duration,
}

/// How long to fuzz.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// This many mutated inputs (after the seeds themselves).
    Inputs(u64),
    /// Until this much time has passed.
    Time(Duration),
}

/// Runs the seeds of `target`, then mutations of them drawn from `seed`,
/// within `budget`. `before` sees every input before it runs (the example
/// writes it to disk, so an input that aborts the process is kept).
pub fn fuzz(
    target: &Target,
    seed: u64,
    budget: Budget,
    work: &Path,
    mut before: impl FnMut(&[u8]),
) -> Report {
    let seeds = (target.seeds)();
    let mut mutator = Mutator::new(seed);
    let mut report = Report::default();
    let start = Instant::now();
    let mut mutated = 0u64;
    for i in 0.. {
        let input = if i < seeds.len() {
            seeds[i].clone()
        } else {
            let done = match budget {
                Budget::Inputs(n) => mutated >= n,
                Budget::Time(t) => start.elapsed() >= t,
            };
            if done {
                break;
            }
            mutated += 1;
            mutator.mutate(&seeds, target)
        };
        before(&input);
        let t0 = Instant::now();
        let outcome = run_input(target, work, &input);
        report.slowest = report.slowest.max(t0.elapsed());
        report.inputs += 1;
        match outcome {
            Outcome::Ok => report.accepted += 1,
            Outcome::Err(_) => {}
            Outcome::Caught(m) => {
                report.caught += 1;
                if report.caught_samples.len() < 8 {
                    report.caught_samples.push((input, m));
                }
            }
            Outcome::Panic(m) => report.panics.push((input, m)),
        }
    }
    report
}

// ---------------------------------------------------------------------------
// Mutations

/// Derives inputs from seeds with a seeded RNG (the same seed, the same
/// inputs).
pub struct Mutator {
    rng: ChaCha8Rng,
}

/// Bytes worth writing over others.
const INTERESTING_BYTES: [u8; 8] = [0x00, 0xff, 0x7f, 0x80, 0x01, b'"', b'\n', b'\\'];

/// 4-byte values worth writing over integer fields.
const HUGE_U32: [u32; 7] = [
    0,
    1,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0xffff_fffe,
    0x0100_0000,
];

/// 8-byte values worth writing over integer fields.
const HUGE_U64: [u64; 6] = [0, u64::MAX, i64::MAX as u64, 1 << 40, 1 << 62, 0xffff_ffff];

/// Tokens for text formats (JSON, TOML, CSV).
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "{",
    "}",
    "[",
    "]",
    "[[",
    "]]",
    ":",
    ",",
    "=",
    ".",
    "\n",
    "\t",
    "\r\n",
    "null",
    "true",
    "-",
    "#",
    "\\",
    "\\u0000",
    "\\ud800",
    "\"\"",
    "{}",
    "[]",
    "\u{feff}",
    "é",
    "\u{1F600}",
    "\u{202e}",
    "\u{0}",
    "__label__",
    "\"type\": ",
    "name = ",
    "inf",
    "nan",
    "1e400",
];

/// Numbers to put in place of numbers in text formats.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "255",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "100000",
    "1e309",
    "-1e309",
    "0.5",
    "nan",
    "-0",
];

impl Mutator {
    /// A mutator drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        Mutator {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// One input: a seed of `target` with one to four mutations.
    pub fn mutate(&mut self, seeds: &[Vec<u8>], target: &Target) -> Vec<u8> {
        if seeds.is_empty() {
            return Vec::new();
        }
        let mut data = seeds[self.rng.random_range(0..seeds.len())].clone();
        let largest = seeds.iter().map(Vec::len).max().unwrap_or(0);
        let cap = 4 * largest + 1024;
        let n = 1 + self.rng.random_range(0..4usize);
        for _ in 0..n {
            self.once(&mut data, seeds, target);
            data.truncate(cap);
        }
        data
    }

    /// A random position in `data` (0 when empty).
    fn pos(&mut self, data: &[u8]) -> usize {
        if data.is_empty() {
            0
        } else {
            self.rng.random_range(0..data.len())
        }
    }

    /// A run length: mostly short, sometimes long.
    fn run_len(&mut self) -> usize {
        if self.rng.random_bool(0.9) {
            self.rng.random_range(1..=16)
        } else {
            self.rng.random_range(1..=1024)
        }
    }

    fn once(&mut self, data: &mut Vec<u8>, seeds: &[Vec<u8>], target: &Target) {
        let kinds = if target.text { 12 } else { 10 };
        match self.rng.random_range(0..kinds) {
            // a bit flip
            0 if !data.is_empty() => {
                let i = self.pos(data);
                data[i] ^= 1 << self.rng.random_range(0..8);
            }
            // an interesting byte
            1 if !data.is_empty() => {
                let i = self.pos(data);
                data[i] = INTERESTING_BYTES[self.rng.random_range(0..INTERESTING_BYTES.len())];
            }
            // a random byte
            2 if !data.is_empty() => {
                let i = self.pos(data);
                data[i] = self.rng.random();
            }
            // truncation
            3 => {
                let i = self.pos(data);
                data.truncate(i);
            }
            // insertion of a run of random or repeated bytes
            4 => {
                let i = self.pos(data);
                let len = self.run_len();
                let run: Vec<u8> = if self.rng.random_bool(0.5) {
                    (0..len).map(|_| self.rng.random()).collect()
                } else {
                    let b = INTERESTING_BYTES[self.rng.random_range(0..INTERESTING_BYTES.len())];
                    vec![b; len]
                };
                data.splice(i..i, run);
            }
            // deletion of a run
            5 if !data.is_empty() => {
                let i = self.pos(data);
                let end = (i + self.run_len()).min(data.len());
                data.drain(i..end);
            }
            // duplication of a run
            6 if !data.is_empty() => {
                let i = self.pos(data);
                let end = (i + self.run_len()).min(data.len());
                let run = data[i..end].to_vec();
                let at = self.pos(data);
                let times = if self.rng.random_bool(0.8) { 1 } else { 16 };
                for _ in 0..times {
                    data.splice(at..at, run.iter().copied());
                }
            }
            // a splice: the head of this input, the tail of another seed
            7 => {
                let other = &seeds[self.rng.random_range(0..seeds.len())];
                let cut = self.pos(data);
                let from = if other.is_empty() {
                    0
                } else {
                    self.rng.random_range(0..other.len())
                };
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            // a 4- or 8-byte integer field, at a header offset or anywhere
            8 | 9 => {
                let at = if !target.fields.is_empty() && self.rng.random_bool(0.7) {
                    target.fields[self.rng.random_range(0..target.fields.len())]
                } else {
                    self.pos(data)
                };
                let bytes: Vec<u8> = if self.rng.random_bool(0.5) {
                    let v = HUGE_U32[self.rng.random_range(0..HUGE_U32.len())];
                    if self.rng.random_bool(0.5) {
                        v.to_be_bytes().to_vec()
                    } else {
                        v.to_le_bytes().to_vec()
                    }
                } else {
                    let v = HUGE_U64[self.rng.random_range(0..HUGE_U64.len())];
                    if self.rng.random_bool(0.5) {
                        v.to_le_bytes().to_vec()
                    } else {
                        v.to_be_bytes().to_vec()
                    }
                };
                for (k, b) in bytes.into_iter().enumerate() {
                    if let Some(slot) = data.get_mut(at + k) {
                        *slot = b;
                    }
                }
            }
            // a token of the text format, inserted
            10 => {
                let i = self.pos(data);
                let t = TOKENS[self.rng.random_range(0..TOKENS.len())];
                data.splice(i..i, t.bytes());
            }
            // a number in place of a number
            11 => self.replace_number(data),
            _ => {}
        }
    }

    /// Replaces a run of ASCII digits (a random one) with another number.
    fn replace_number(&mut self, data: &mut Vec<u8>) {
        let runs: Vec<(usize, usize)> = {
            let mut runs = Vec::new();
            let mut i = 0;
            while i < data.len() {
                if data[i].is_ascii_digit() {
                    let start = i;
                    while i < data.len() && (data[i].is_ascii_digit() || data[i] == b'.') {
                        i += 1;
                    }
                    runs.push((start, i));
                } else {
                    i += 1;
                }
            }
            runs
        };
        if runs.is_empty() {
            return;
        }
        let (s, e) = runs[self.rng.random_range(0..runs.len())];
        let n = NUMBERS[self.rng.random_range(0..NUMBERS.len())];
        data.splice(s..e, n.bytes());
    }
}

// ---------------------------------------------------------------------------
// Helpers for the targets

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Writes `bytes` to `work/name` (creating folders) and returns the path.
fn put(work: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let p = work.join(name);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    std::fs::write(&p, bytes).map_err(err)?;
    Ok(p)
}

/// The workspace root (seeds from the repository's fixtures).
fn root() -> PathBuf {
    crate::root()
}

fn read(rel: &str) -> Vec<u8> {
    let p = root().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fuzz seed {}: {e}", p.display()))
}

/// Builds the registered data source `name` from the TOML `table` with
/// paths relative to `work`, and reads every sample of it (at most 64).
fn data_source(name: &str, table: &str, work: &Path, split: Split) -> Answer {
    let table: toml::Table = toml::from_str(table).map_err(err)?;
    let params = Params::from_toml("data", table).map_err(err)?;
    let entry = parallax_core::registry::data_source(name).map_err(err)?;
    let mut ctx = BuildCtx::new(0, split);
    ctx.base_dir = work.to_path_buf();
    let src: Arc<dyn DataSource> = (entry.build)(&params, &ctx).map_err(err)?;
    read_all(src.as_ref())
}

/// `Ok` when any of `answers` is (each decoder ran on the input; the input
/// was meant for one of them), else the first error.
fn any(answers: impl IntoIterator<Item = Answer>) -> Answer {
    let mut first = None;
    for a in answers {
        match a {
            Ok(()) => return Ok(()),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or_default())
}

fn read_all(src: &dyn DataSource) -> Answer {
    let _ = (src.meta(), src.describe());
    for i in 0..src.len().min(64) {
        src.get(i).map_err(err)?;
    }
    if src.get(src.len()).is_ok() {
        return Err("a sample past the end".into());
    }
    Ok(())
}

/// A TOML string literal of a path.
fn quoted(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

// ---------------------------------------------------------------------------
// Recipes

fn recipe_seeds() -> Vec<Vec<u8>> {
    [
        "tests/recipes/tiny.toml",
        "recipes/simclr.toml",
        "recipes/clip.toml",
        "recipes/dino.toml",
        "recipes/simcse_sup.toml",
    ]
    .iter()
    .map(|p| read(p))
    .collect()
}

fn run_recipe(_: &Path, input: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(input);
    let r = Recipe::from_toml_str(&text, &[]).map_err(err)?;
    let _ = (r.to_toml_string(), r.flat_settings());
    Ok(())
}

fn set_seeds() -> Vec<Vec<u8>> {
    [
        "train.epochs=3\noptimizer.lr=1e-3\nseed=7",
        "data.name=\"idx\"\ndata.path=data/mnist\ntrain.batch_size=64",
        "eval=[{ name = \"knn\", k = 5 }]\nmethod.projector.hidden_dim=128",
        "views.transforms=[{ name = \"random_resized_crop\", size = 28, scale = [0.5, 1.0] }]",
        "train.max_grad_norm=1.0\ntrain.precision=\"bf16\"\ndevice=cpu\nname=run-1",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn run_recipe_set(_: &Path, input: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(input);
    let sets: Vec<String> = text.lines().map(str::to_string).collect();
    for s in &sets {
        parse_set(s).map_err(err)?;
    }
    let base = String::from_utf8_lossy(&read("tests/recipes/tiny.toml")).into_owned();
    let r = Recipe::from_toml_str(&base, &sets).map_err(err)?;
    let _ = (r.to_toml_string(), r.flat_settings());
    Ok(())
}

// ---------------------------------------------------------------------------
// Vision

/// An IDX file of unsigned bytes.
fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// The first `n` (at most 8) real Fashion-MNIST test images and their
/// labels (decompressed once).
fn fashion(n: usize) -> (Vec<u8>, Vec<u8>) {
    static SET: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    let (images, labels) = SET.get_or_init(|| {
        let set = parallax_vision::embedded::fashion_mnist_test().expect("embedded fashion-mnist");
        (set.images[..8 * 28 * 28].to_vec(), set.labels[..8].to_vec())
    });
    (images[..n * 28 * 28].to_vec(), labels[..n].to_vec())
}

fn idx_seeds() -> Vec<Vec<u8>> {
    let (images, labels) = fashion(8);
    let small: Vec<u8> = images[..8 * 28 * 28].iter().step_by(4).copied().collect();
    vec![
        idx_bytes(&[8, 28, 28], &images),
        gzip(&idx_bytes(&[8, 28, 28], &images)),
        idx_bytes(&[8, 14, 14], &small),
        idx_bytes(&[8], &labels),
        gzip(&idx_bytes(&[8], &labels)),
    ]
}

fn run_idx(work: &Path, input: &[u8]) -> Answer {
    let (images, labels) = fashion(8);
    let good_images = idx_bytes(&[8, 28, 28], &images);
    let good_labels = idx_bytes(&[8], &labels);
    // the input as the images, then as the labels, beside a good partner
    let mut answers = Vec::new();
    for (img, lab) in [(input, &good_labels[..]), (&good_images[..], input)] {
        let dir = work.join("set");
        put(&dir, "train-images-idx3-ubyte", img)?;
        put(&dir, "train-labels-idx1-ubyte", lab)?;
        let table = format!("path = {}", quoted(&dir));
        answers.push(data_source("idx", &table, work, Split::Train));
    }
    any(answers)
}

fn encode(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode a seed image");
    out.into_inner()
}

fn image_seeds() -> Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(make_image_seeds).clone()
}

fn make_image_seeds() -> Vec<Vec<u8>> {
    use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
    let (px, _) = fashion(1);
    let gray = DynamicImage::ImageLuma8(ImageBuffer::from_fn(28, 28, |x, y| {
        Luma([px[(y * 28 + x) as usize]])
    }));
    let rgb = DynamicImage::ImageRgb8(ImageBuffer::from_fn(12, 9, |x, y| {
        Rgb([(x * 20) as u8, (y * 25) as u8, ((x + y) * 10) as u8])
    }));
    let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_fn(5, 7, |x, y| {
        Rgba([(x * 50) as u8, (y * 30) as u8, 128, (x * y * 10) as u8])
    }));
    let gray16 = DynamicImage::ImageLuma16(ImageBuffer::from_fn(6, 4, |x, y| {
        Luma([(x * 10000 + y * 1000) as u16])
    }));
    vec![
        encode(&gray, ImageFormat::Png),
        encode(&rgb, ImageFormat::Png),
        encode(&rgba, ImageFormat::Png),
        encode(&gray16, ImageFormat::Png),
        encode(&gray, ImageFormat::Jpeg),
        encode(&rgb, ImageFormat::Jpeg),
    ]
}

fn run_image(work: &Path, input: &[u8]) -> Answer {
    let seeds = image_seeds();
    let dir = work.join("images");
    put(&dir, "cat/a.png", &seeds[1])?;
    put(&dir, "dog/b.png", input)?;
    let path = quoted(&dir);
    // resized to 8 x 8 as RGB, then kept at the first image's size
    let a = data_source(
        "image_folder",
        &format!("path = {path}\nsize = 8\nchannels = 3"),
        work,
        Split::Train,
    );
    let b = data_source(
        "image_folder",
        &format!("path = {path}\nchannels = 1\non_corrupt = \"skip\""),
        work,
        Split::Train,
    );
    // b (corrupt files skipped) always succeeds: a says whether the input decoded
    b.and(a)
}

fn cifar_seeds() -> Vec<Vec<u8>> {
    let record = |label: &[u8], k: usize| {
        let mut r = label.to_vec();
        r.extend((0..parallax_vision::cifar::PIXELS).map(|i| ((i * 7 + k * 13) % 256) as u8));
        r
    };
    vec![
        [record(&[3], 0), record(&[9], 1)].concat(),
        [
            record(&[2, 41], 0),
            record(&[19, 99], 1),
            record(&[0, 0], 2),
        ]
        .concat(),
    ]
}

fn run_cifar(work: &Path, input: &[u8]) -> Answer {
    let file = put(work, "data_batch_1.bin", input)?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    let ten = parallax_vision::cifar::read_records(&file, 1, 0, 10, &mut pixels, &mut labels);
    let dir = work.join("cifar-100-binary");
    put(&dir, "train.bin", input)?;
    let hundred = data_source(
        "cifar100",
        &format!("path = {}", quoted(work)),
        work,
        Split::Train,
    );
    any([ten.map_err(err), hundred])
}

/// The pretrained-weights seeds: tensors of several dtypes and shapes.
fn safetensors_seeds() -> Vec<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let f32s: Vec<u8> = (0..6)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    let f16s: Vec<u8> = (0..4).flat_map(|i| [i as u8, 0x3c]).collect();
    let i64s: Vec<u8> = (0..3i64).flat_map(|i| i.to_le_bytes()).collect();
    let u8s: Vec<u8> = (0..5).collect();
    let one = |name: &str, dtype, shape: Vec<usize>, data: &[u8]| {
        let view = TensorView::new(dtype, shape, data).expect("seed tensor");
        safetensors::serialize([(name.to_string(), view)], None).expect("serialize a seed")
    };
    let many = safetensors::serialize(
        [
            (
                "conv.weight".to_string(),
                TensorView::new(Dtype::F32, vec![2, 3], &f32s).expect("seed tensor"),
            ),
            (
                "bn.running_mean".to_string(),
                TensorView::new(Dtype::F16, vec![4], &f16s).expect("seed tensor"),
            ),
            (
                "bn.num_batches_tracked".to_string(),
                TensorView::new(Dtype::I64, vec![3], &i64s).expect("seed tensor"),
            ),
        ],
        Some([("format".to_string(), "pt".to_string())].into()),
    )
    .expect("serialize a seed");
    vec![
        many,
        one("w", Dtype::BF16, vec![2, 2], &f16s),
        one("b", Dtype::U8, vec![5], &u8s),
        one("s", Dtype::F32, vec![], &f32s[..4]),
        one("e", Dtype::F32, vec![0, 3], &[]),
        one("x", Dtype::F64, vec![1, 1, 3], &[0u8; 24]),
    ]
}

fn run_pretrained(work: &Path, input: &[u8]) -> Answer {
    let file = put(work, "weights.safetensors", input)?;
    let spec = file.display().to_string();
    let ck = parallax_vision::pretrained::Checkpoint::open("fuzz", &spec, None).map_err(err)?;
    let store = VarStore::new(0);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let mut names: Vec<&String> = ck.tensors.keys().collect();
    names.sort();
    for name in names {
        let t = &ck.tensors[name];
        ck.get(name, t.dims()).map_err(err)?;
        parallax_core::nn::init::load_value(&vb, name, t).map_err(err)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Checkpoints

fn checkpoint_seeds() -> Vec<Vec<u8>> {
    use parallax_core::checkpoint::{save, CheckpointMeta};
    let dir = tempfile::tempdir().expect("temp dir");
    let meta = CheckpointMeta {
        step: 12,
        seed: 3,
        name: "fuzz".into(),
        format: 1,
    };
    let t = |v: Vec<f32>, n: usize| Tensor::from_vec(v, n, &Device::Cpu).expect("seed tensor");
    let model: BTreeMap<String, Tensor> = [
        ("encoder.w".to_string(), t(vec![0.5, -1.0, 2.0], 3)),
        ("encoder.b".to_string(), t(vec![0.25], 1)),
    ]
    .into();
    let optim: BTreeMap<String, Tensor> = [("m.encoder.w".to_string(), t(vec![0.0; 3], 3))].into();
    let method: BTreeMap<String, Tensor> = [("queue".to_string(), t(vec![1.0, 2.0], 2))].into();
    let path = dir.path().join("c.safetensors");
    save(&path, &meta, &model, &optim, &method).expect("save a seed checkpoint");
    let with_crc = std::fs::read(&path).expect("read the seed checkpoint");
    // a file of an earlier format: no checksum, so mutations of the
    // content get past the checksum to the tensors
    let meta_json = serde_json::to_string(&meta).expect("meta json");
    let views: Vec<(String, Tensor)> = model
        .iter()
        .map(|(k, v)| (format!("model/{k}"), v.clone()))
        .chain(
            method
                .iter()
                .map(|(k, v)| (format!("method/{k}"), v.clone())),
        )
        .collect();
    let no_crc = safetensors::serialize(views, Some([("parallax".to_string(), meta_json)].into()))
        .expect("serialize a seed");
    vec![with_crc, no_crc]
}

fn run_checkpoint(work: &Path, input: &[u8]) -> Answer {
    let file = put(work, "checkpoint.safetensors", input)?;
    let meta = parallax_core::checkpoint::read_meta(&file).map_err(err);
    let loaded = parallax_core::checkpoint::load(&file, &Device::Cpu).map_err(err);
    meta.and(loaded.map(|_| ()))
}

// ---------------------------------------------------------------------------
// Text

/// A small WordPiece tokenizer.json (BERT's layout, a few dozen tokens).
pub fn small_tokenizer_json() -> String {
    let words = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "photo", "of", "cat", "dog",
        "man", "woman", "is", "on", "in", "##s", "##ing", "good", "bad", "film", ".", ",", "!",
    ];
    let vocab: serde_json::Map<String, serde_json::Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
        .collect();
    let special = |id: usize, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::to_string_pretty(&serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"), special(3, "[SEP]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab}
    }))
    .expect("tokenizer json")
}

/// A small byte-level BPE tokenizer.json.
fn bpe_tokenizer_json() -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "vocab": {"c": 0, "a": 1, "t": 2, "ca": 3, "cat": 4, "Ġ": 5, "Ġcat": 6, "s": 7},
            "merges": ["c a", "ca t", "Ġ cat"]}
    }))
    .expect("tokenizer json")
}

/// A small Unigram tokenizer.json (the SentencePiece layout).
fn unigram_tokenizer_json() -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
        "post_processor": null,
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
        "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": false,
            "vocab": [["<unk>", 0.0], ["▁", -1.0], ["▁the", -2.0], ["cat", -2.5], ["s", -3.0], ["a", -3.5]]}
    }))
    .expect("tokenizer json")
}

fn tokenizer_seeds() -> Vec<Vec<u8>> {
    vec![
        small_tokenizer_json().into_bytes(),
        bpe_tokenizer_json().into_bytes(),
        unigram_tokenizer_json().into_bytes(),
        read("plugins/multimodal/tests/fixtures/tiny-clip/tokenizer.json"),
    ]
}

/// Texts every tokenizer is tried on.
const TEXTS: [&str; 4] = [
    "a photo of a cat.",
    "",
    "The WOMAN is on the dog's film!!  \u{1F600} é \u{0} \u{202e}x",
    "ab\u{fffd}cd ##s [CLS] [SEP] <|endoftext|> \t\n",
];

fn run_tokenizer(work: &Path, input: &[u8]) -> Answer {
    let file = put(work, "tokenizer.json", input)?;
    let tok = parallax_text::tokenizer::TextTokenizer::from_file(&file, 12).map_err(err)?;
    let v = tok.vocab_size();
    for text in TEXTS {
        let (ids, mask) = tok.encode(text).map_err(err)?;
        if ids.len() != 12 || mask.len() != 12 {
            return Err("wrong length".into());
        }
        if let Some(bad) = ids.iter().find(|&&i| i < 0 || i as usize >= v) {
            panic!("token id {bad} outside the vocabulary of {v}");
        }
    }
    Ok(())
}

fn sentences_seeds() -> Vec<Vec<u8>> {
    vec![
        b"a photo of a cat.\nthe dog is on the film.\n\n  good film !\n".to_vec(),
        b"{\"text\": \"a cat\"}\n{\"text\": \"the dog\", \"id\": 2}\n".to_vec(),
        "caf\u{e9} \u{1F600} na\u{ef}ve\r\nsecond line\n"
            .as_bytes()
            .to_vec(),
        b"latin-1 \xe9t\xe9\n".to_vec(),
    ]
}

/// Writes the small tokenizer into `work`; its path as a TOML string.
fn put_small_tokenizer(work: &Path) -> Result<String, String> {
    let tok = put(
        work,
        "tok/tokenizer.json",
        small_tokenizer_json().as_bytes(),
    )?;
    Ok(quoted(&tok))
}

fn run_sentences(work: &Path, input: &[u8]) -> Answer {
    let tok = put_small_tokenizer(work)?;
    let mut answers = Vec::new();
    for name in ["s.txt", "s.jsonl"] {
        put(work, name, input)?;
        let table = format!("path = {name:?}\ntokenizer = {tok}\nmax_length = 8");
        answers.push(data_source("sentences", &table, work, Split::Train));
    }
    any(answers)
}

fn labelled_seeds() -> Vec<Vec<u8>> {
    vec![
        b"__label__neg bad film .\n__label__pos good film .\n".to_vec(),
        b"pos\tgood film\nneg\tbad film\n".to_vec(),
        b"{\"text\": \"a cat\", \"label\": \"animal\"}\n{\"text\": \"x\", \"label\": 3}\n".to_vec(),
    ]
}

fn run_labelled(work: &Path, input: &[u8]) -> Answer {
    use parallax_text::sources::labelled::{class_ids, read_labelled};
    let mut answers = Vec::new();
    for name in ["l.cor", "l.jsonl"] {
        let file = put(work, name, input)?;
        let r = read_labelled(&file).map(|rows| {
            let (names, ids) = class_ids(&rows);
            assert!(ids.iter().all(|&i| (i as usize) < names.len().max(1)));
        });
        answers.push(r.map_err(err));
    }
    any(answers)
}

fn triples_seeds() -> Vec<Vec<u8>> {
    vec![
        b"sent0,sent1,hard_neg\n\"a man, sitting\",a person sits,nobody sits\nx,y,z\n".to_vec(),
        b"{\"sentence\":\"a\",\"entailment\":\"b\",\"contradiction\":\"c\"}\n".to_vec(),
        "\u{feff}hard_neg,sent1,sent0\n\"say \"\"hi\"\"\",b,c\n"
            .as_bytes()
            .to_vec(),
    ]
}

fn run_triples(work: &Path, input: &[u8]) -> Answer {
    use parallax_text::sources::{read_text, triples};
    let file = put(work, "t.csv", input)?;
    let text = read_text(&file).map_err(err)?;
    let csv = triples::parse_csv(&text, "t.csv").map(|_| ());
    let jsonl = triples::parse_jsonl(&text, "t.jsonl").map(|_| ());
    any([csv.map_err(err), jsonl.map_err(err)])
}

// ---------------------------------------------------------------------------
// Multimodal

fn manifest_seeds() -> Vec<Vec<u8>> {
    vec![
        b"{\"image\": \"a.png\", \"caption\": \"a photo of a cat.\", \"label\": \"cat\"}\n{\"image\": \"b.png\", \"caption\": \"the dog\", \"label\": \"dog\"}\n".to_vec(),
        b"image,caption,label\na.png,\"a cat, sitting\",1\nb.png,the dog,0\n".to_vec(),
        b"{\"image\": \"b.png\", \"caption\": \"x\", \"label\": 2}\n".to_vec(),
    ]
}

fn run_image_text(work: &Path, input: &[u8]) -> Answer {
    let seeds = image_seeds();
    put(work, "a.png", &seeds[1])?;
    put(work, "b.png", &seeds[2])?;
    let tok = put_small_tokenizer(work)?;
    let mut answers = Vec::new();
    for name in ["m.jsonl", "m.csv"] {
        put(work, name, input)?;
        let table = format!(
            "manifest = {name:?}\ntest_manifest = {name:?}\nlabel_key = \"label\"\n\
             tokenizer = {tok}\nmax_length = 8\nsize = 6\non_corrupt = \"skip\""
        );
        for split in [Split::Train, Split::Test] {
            answers.push(data_source("image_text", &table, work, split));
        }
    }
    any(answers)
}

const TINY_CLIP: &str = "plugins/multimodal/tests/fixtures/tiny-clip";

/// A tiny BERT in Hugging Face's layout (`config.json`, `model.safetensors`),
/// made once by the `bert` encoder's export.
fn tiny_bert() -> &'static (Vec<u8>, Vec<u8>) {
    use parallax_core::nn::encoder::Encoder;
    use parallax_text::encoder::{BertEncoder, BertEncoderConfig};
    static FILES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    FILES.get_or_init(|| {
        let cfg = BertEncoderConfig {
            vocab_size: Some(24),
            hidden_size: Some(8),
            num_hidden_layers: Some(1),
            num_attention_heads: Some(2),
            intermediate_size: Some(12),
            max_position_embeddings: Some(16),
            ..Default::default()
        };
        let store = VarStore::new(1);
        let vb = store.var_builder(DType::F32, &Device::Cpu).pp("encoder");
        let enc = BertEncoder::build(&cfg, vb, &BuildCtx::new(1, Split::Train)).expect("tiny bert");
        let dir = tempfile::tempdir().expect("temp dir");
        enc.export(dir.path()).expect("export tiny bert");
        let read = |f: &str| std::fs::read(dir.path().join(f)).expect("exported file");
        (read("config.json"), read("model.safetensors"))
    })
}

fn hf_config_seeds() -> Vec<Vec<u8>> {
    vec![
        read(&format!("{TINY_CLIP}/config.json")),
        tiny_bert().0.clone(),
    ]
}

/// Builds the `clip` dual encoder from a folder with `config.json`,
/// `model.safetensors` and `tokenizer.json`.
fn clip_from_folder(dir: &Path) -> Answer {
    use parallax_core::data::DataMeta;
    let table: toml::Table =
        toml::from_str(&format!("pretrained = {}", quoted(dir))).map_err(err)?;
    let params = Params::from_toml("encoder", table).map_err(err)?;
    let meta = DataMeta {
        image_shape: Some([3, 16, 16]),
        vocab_size: Some(64),
        ..DataMeta::default()
    };
    let store = VarStore::new(0);
    let vb = store.var_builder(DType::F32, &Device::Cpu).pp("encoder");
    parallax_multimodal::dual::DualEncoder::build(&params, &meta, vb).map_err(err)?;
    Ok(())
}

/// Builds the `bert` encoder from a folder with `config.json` and
/// `model.safetensors`.
fn bert_from_folder(dir: &Path) -> Answer {
    let cfg = parallax_text::encoder::BertEncoderConfig {
        pretrained: Some(dir.display().to_string()),
        ..Default::default()
    };
    let store = VarStore::new(0);
    let vb = store.var_builder(DType::F32, &Device::Cpu).pp("encoder");
    let ctx = BuildCtx::new(0, Split::Train);
    parallax_text::encoder::BertEncoder::build(&cfg, vb, &ctx).map_err(err)?;
    Ok(())
}

/// A CLIP folder (the tiny-clip fixture) with `file` replaced by `bytes`.
fn clip_folder(work: &Path, file: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let dir = work.join("clip");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        let b = if f == file {
            bytes.to_vec()
        } else {
            read(&format!("{TINY_CLIP}/{f}"))
        };
        put(&dir, f, &b)?;
    }
    Ok(dir)
}

/// A BERT folder (the tiny BERT) with `file` replaced by `bytes`.
fn bert_folder(work: &Path, file: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let dir = work.join("bert");
    let (config, weights) = tiny_bert();
    put(
        &dir,
        "config.json",
        if file == "config.json" { bytes } else { config },
    )?;
    put(
        &dir,
        "model.safetensors",
        if file == "model.safetensors" {
            bytes
        } else {
            weights
        },
    )?;
    Ok(dir)
}

fn run_hf_config(work: &Path, input: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(input);
    let bert = parallax_text::bert::config::BertConfig::from_json(&text, "config.json");
    let clip = parallax_multimodal::hf_config::HfClipConfig::from_json(&text, "config.json");
    let clip = match clip {
        Ok(_) => clip_from_folder(&clip_folder(work, "config.json", input)?),
        Err(e) => Err(err(e)),
    };
    let bert = match bert {
        Ok(_) => bert_from_folder(&bert_folder(work, "config.json", input)?),
        Err(e) => Err(err(e)),
    };
    any([clip, bert])
}

fn hf_weights_seeds() -> Vec<Vec<u8>> {
    vec![
        read(&format!("{TINY_CLIP}/model.safetensors")),
        tiny_bert().1.clone(),
    ]
}

fn run_hf_weights(work: &Path, input: &[u8]) -> Answer {
    let clip = clip_from_folder(&clip_folder(work, "model.safetensors", input)?);
    let bert = bert_from_folder(&bert_folder(work, "model.safetensors", input)?);
    any([clip, bert])
}

// ---------------------------------------------------------------------------
// Saved inputs

/// A short stable name for an input (FNV-1a, hex).
pub fn input_id(input: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in input {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The regression inputs of `target`: every file under
/// `tests/fixtures/fuzz/TARGET/`, sorted (none when the folder is missing).
pub fn regression_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root().join("tests/fixtures/fuzz").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}
