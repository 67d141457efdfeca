//! Links every plugin crate so that its `register!` calls are collected.
//!
//! A plugin that is only listed in Cargo.toml is silently missing from the
//! registry: each needs a `use` here. [`linked`] names them for `parallax list`.

use parallax_graph as _;
use parallax_multimodal as _;
use parallax_text as _;
use parallax_vision as _;

/// The plugin crates linked into this binary.
pub fn linked() -> &'static [&'static str] {
    &[
        "parallax-core",
        "parallax-graph",
        "parallax-multimodal",
        "parallax-text",
        "parallax-vision",
    ]
}
