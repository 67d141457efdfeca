//! Parallax core: the registry, recipes, the trainer, generic losses and
//! methods, evaluation and logging. Plugins (vision, text, ...) register
//! their components here through [`register!`].

pub mod batch;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod external;
pub mod graph;
pub mod logging;
pub mod losses;
pub mod methods;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod recipe;
pub mod registry;
pub mod rng;
pub mod trainer;
pub mod views;

pub use error::{Error, Result};
pub use inventory;
