//! The compile-time plugin registry.
//!
//! Each component kind has one `inventory` collection. A plugin registers a
//! component with [`register!`](crate::register):
//!
//! ```ignore
//! parallax_core::register!(loss, "my_loss", "one-line description", |params| {
//!     let cfg: MyLossConfig = params.extract()?;
//!     Ok(Box::new(MyLoss::new(cfg)?))
//! });
//! ```
//!
//! Names are unique per kind: [`check`] (called at start-up) fails on a
//! duplicate naming both registrations, and a lookup of an unknown name lists
//! the available ones.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use candle_nn::VarBuilder;

use crate::data::{BuildCtx, DataSource};
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::graph::{Graph, GraphEncoder, GraphEvaluator, GraphMethod, GraphMethodCtx};
use crate::logging::{Logger, RunInfo};
use crate::losses::Loss;
use crate::methods::{Method, MethodCtx};
use crate::nn::encoder::{Encoder, EncoderCtx, Head};
use crate::recipe::Params;
use crate::trainer::TrainingLoop;
use crate::views::ViewGenerator;

/// Builds a data source.
pub type DataSourceCtor = fn(&Params, &BuildCtx) -> Result<Arc<dyn DataSource>>;
/// Builds a view generator.
pub type ViewsCtor = fn(&Params, &BuildCtx) -> Result<Arc<dyn ViewGenerator>>;
/// Builds an encoder.
pub type EncoderCtor = fn(&Params, &EncoderCtx, VarBuilder<'static>) -> Result<Box<dyn Encoder>>;
/// Builds a head on inputs of the given size.
pub type HeadCtor = fn(&Params, usize, VarBuilder<'static>) -> Result<Box<dyn Head>>;
/// Builds a loss.
pub type LossCtor = fn(&Params) -> Result<Box<dyn Loss>>;
/// Builds a method.
pub type MethodCtor = fn(MethodCtx) -> Result<Box<dyn Method>>;
/// Builds an evaluator.
pub type EvaluatorCtor = fn(&Params, &BuildCtx) -> Result<Box<dyn Evaluator>>;
/// Builds a logger.
pub type LoggerCtor = fn(&Params, &RunInfo) -> Result<Box<dyn Logger>>;
/// Builds a training loop (`train.loop`).
pub type LoopCtor = fn() -> Box<dyn TrainingLoop>;
/// Builds a graph (one big sample) from the `[data]` table.
pub type GraphDataCtor = fn(&Params, &BuildCtx) -> Result<Arc<Graph>>;
/// Builds a graph encoder on node features of the given width.
pub type GraphEncoderCtor =
    fn(&Params, usize, VarBuilder<'static>) -> Result<Box<dyn GraphEncoder>>;
/// Builds a graph method.
pub type GraphMethodCtor = fn(GraphMethodCtx) -> Result<Box<dyn GraphMethod>>;
/// Builds a graph evaluator.
pub type GraphEvaluatorCtor = fn(&Params) -> Result<Box<dyn GraphEvaluator>>;

macro_rules! kinds {
    ($( $entry:ident, $ctor:ty, $kind:literal, $lookup:ident; )*) => {
        $(
            #[doc = concat!("A registered ", $kind, ".")]
            pub struct $entry {
                /// The name recipes use.
                pub name: &'static str,
                /// A one-line description.
                pub description: &'static str,
                /// The constructor.
                pub build: $ctor,
                /// Where it was registered (module, file and line).
                pub origin: &'static str,
            }
            inventory::collect!($entry);

            impl Entry for $entry {
                fn name(&self) -> &'static str { self.name }
                fn description(&self) -> &'static str { self.description }
                fn origin(&self) -> &'static str { self.origin }
            }

            #[doc = concat!("The ", $kind, " registered as `name`.")]
            pub fn $lookup(name: &str) -> Result<&'static $entry> {
                static MAP: OnceLock<Result<BTreeMap<&'static str, &'static $entry>, String>> = OnceLock::new();
                let map = MAP
                    .get_or_init(|| index($kind, inventory::iter::<$entry>.into_iter()).map_err(|e| e.to_string()))
                    .as_ref()
                    .map_err(|e| Error::Recipe(e.clone()))?;
                map.get(name).copied().ok_or_else(|| Error::UnknownComponent {
                    kind: $kind,
                    name: name.to_string(),
                    available: map.keys().copied().collect::<Vec<_>>().join(", "),
                })
            }
        )*

        /// Every kind with its entries' (name, description), sorted by name.
        pub fn all() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
            vec![$(
                ($kind, sorted(inventory::iter::<$entry>.into_iter())),
            )*]
        }

        /// Fails on the first duplicate name of any kind, naming both
        /// registrations.
        pub fn check() -> Result<()> {
            $( index($kind, inventory::iter::<$entry>.into_iter())?; )*
            Ok(())
        }

        /// The kinds' names, as `parallax list KIND` accepts them.
        pub const KINDS: &[&str] = &[$($kind),*];
    };
}

kinds! {
    DataSourceEntry, DataSourceCtor, "data source", data_source;
    ViewsEntry, ViewsCtor, "view generator", views;
    EncoderEntry, EncoderCtor, "encoder", encoder;
    HeadEntry, HeadCtor, "head", head;
    LossEntry, LossCtor, "loss", loss;
    MethodEntry, MethodCtor, "method", method;
    EvaluatorEntry, EvaluatorCtor, "evaluator", evaluator;
    LoggerEntry, LoggerCtor, "logger", logger;
    LoopEntry, LoopCtor, "loop", training_loop;
    GraphDataEntry, GraphDataCtor, "graph data", graph_data;
    GraphEncoderEntry, GraphEncoderCtor, "graph encoder", graph_encoder;
    GraphMethodEntry, GraphMethodCtor, "graph method", graph_method;
    GraphEvaluatorEntry, GraphEvaluatorCtor, "graph evaluator", graph_evaluator;
}

/// What every registry entry has.
pub trait Entry: 'static {
    /// The name recipes use.
    fn name(&self) -> &'static str;
    /// A one-line description.
    fn description(&self) -> &'static str;
    /// Where it was registered.
    fn origin(&self) -> &'static str;
}

/// Indexes entries by name; a duplicate is an error naming both origins.
pub fn index<'a, E: Entry>(
    kind: &'static str,
    entries: impl Iterator<Item = &'a E>,
) -> Result<BTreeMap<&'static str, &'a E>> {
    let mut map: BTreeMap<&'static str, &'a E> = BTreeMap::new();
    for e in entries {
        if let Some(prev) = map.insert(e.name(), e) {
            let (a, b) = if prev.origin() <= e.origin() {
                (prev.origin(), e.origin())
            } else {
                (e.origin(), prev.origin())
            };
            return Err(Error::DuplicateComponent {
                kind,
                name: e.name().to_string(),
                first: a.to_string(),
                second: b.to_string(),
            });
        }
    }
    Ok(map)
}

fn sorted<'a, E: Entry>(entries: impl Iterator<Item = &'a E>) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = entries.map(|e| (e.name(), e.description())).collect();
    v.sort();
    v
}

/// Registers a component: `register!(KIND, "name", "description", ctor)`,
/// where KIND is one of `data_source`, `views`, `encoder`, `head`, `loss`,
/// `method`, `evaluator`, `logger`, `training_loop`, `graph_data`,
/// `graph_encoder`, `graph_method`, `graph_evaluator` and `ctor` is a function or closure of the
/// kind's constructor type (`DataSourceCtor`, ...).
#[macro_export]
macro_rules! register {
    (data_source, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ DataSourceEntry, $name, $desc, $build);
    };
    (views, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ ViewsEntry, $name, $desc, $build);
    };
    (encoder, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ EncoderEntry, $name, $desc, $build);
    };
    (head, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ HeadEntry, $name, $desc, $build);
    };
    (loss, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ LossEntry, $name, $desc, $build);
    };
    (method, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ MethodEntry, $name, $desc, $build);
    };
    (evaluator, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ EvaluatorEntry, $name, $desc, $build);
    };
    (logger, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ LoggerEntry, $name, $desc, $build);
    };
    (training_loop, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ LoopEntry, $name, $desc, $build);
    };
    (graph_data, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ GraphDataEntry, $name, $desc, $build);
    };
    (graph_encoder, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ GraphEncoderEntry, $name, $desc, $build);
    };
    (graph_method, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ GraphMethodEntry, $name, $desc, $build);
    };
    (graph_evaluator, $name:literal, $desc:literal, $build:expr) => {
        $crate::register!(@ GraphEvaluatorEntry, $name, $desc, $build);
    };
    (@ $entry:ident, $name:literal, $desc:literal, $build:expr) => {
        $crate::inventory::submit! {
            $crate::registry::$entry {
                name: $name,
                description: $desc,
                build: $build,
                origin: concat!(module_path!(), " (", file!(), ":", line!(), ")"),
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(&'static str, &'static str);
    impl Entry for Fake {
        fn name(&self) -> &'static str {
            self.0
        }
        fn description(&self) -> &'static str {
            ""
        }
        fn origin(&self) -> &'static str {
            self.1
        }
    }

    #[test]
    fn duplicates_name_both_origins() {
        let entries = [
            Fake("a", "x.rs:1"),
            Fake("b", "y.rs:2"),
            Fake("a", "z.rs:3"),
        ];
        let err = index("loss", entries.iter()).err().unwrap().to_string();
        assert!(
            err.contains("`a`") && err.contains("x.rs:1") && err.contains("z.rs:3"),
            "{err}"
        );
        assert!(index("loss", entries[..2].iter()).is_ok());
    }

    #[test]
    fn unknown_names_list_the_available_ones() {
        let err = loss("no_such_loss").err().unwrap().to_string();
        assert!(
            err.contains("no_such_loss") && err.contains("nt_xent"),
            "{err}"
        );
    }
}
