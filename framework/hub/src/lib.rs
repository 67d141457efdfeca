//! Parallax's access to the Hugging Face Hub: model files pulled into the
//! standard Hub cache through `hf-hub`'s blocking client, an offline mode
//! that reads only the cache, and local model folders.
//!
//! ```no_run
//! use parallax_hub::{resolve_model, HubConfig, MODEL_OPTIONAL, MODEL_REQUIRED};
//! let cfg = HubConfig::from_env(); // HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE
//! let m = resolve_model(&cfg, "sentence-transformers/all-MiniLM-L6-v2", None,
//!                       MODEL_REQUIRED, MODEL_OPTIONAL)?;
//! println!("{} at {:?}: {}", m.repo_id, m.commit, m.files["config.json"].display());
//! # Ok::<(), parallax_hub::HubError>(())
//! ```

pub mod config;
pub mod error;
pub mod pull;
pub mod source;

pub use config::{HubConfig, DEFAULT_ENDPOINT};
pub use error::HubError;
pub use pull::{pull, Pulled, MODEL_OPTIONAL, MODEL_REQUIRED};
pub use source::{local_files, resolve_model, Source};
