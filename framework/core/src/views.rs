//! View generators: one sample in, several augmented views out.

use crate::batch::Sample;
use crate::error::Result;
use crate::rng::Rng;

/// Turns one sample into the views a method trains on (SimCLR: two draws of
/// one augmentation pipeline; DINO: global and local crops; SimCSE: two
/// identical copies that dropout makes differ). Runs on loader threads with
/// a per-sample RNG derived from the seed, the epoch and the sample index.
pub trait ViewGenerator: Send + Sync {
    /// How many views `generate` returns.
    fn num_views(&self) -> usize;
    /// The views of `sample`.
    fn generate(&self, sample: &Sample, rng: &mut Rng) -> Result<Vec<Sample>>;
}

/// The identity view generator: `n` copies of the sample.
pub struct Copies(pub usize);

impl ViewGenerator for Copies {
    fn num_views(&self) -> usize {
        self.0
    }
    fn generate(&self, sample: &Sample, _rng: &mut Rng) -> Result<Vec<Sample>> {
        Ok(vec![sample.clone(); self.0])
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CopiesConfig {
    #[serde(default = "two")]
    views: usize,
}

fn two() -> usize {
    2
}

crate::register!(
    views,
    "copies",
    "n identical copies of each sample (SimCSE-style: dropout makes them differ)",
    |p, _ctx| {
        let c: CopiesConfig = p.extract()?;
        if c.views == 0 {
            return Err(p.error("views", "must be at least 1"));
        }
        Ok(std::sync::Arc::new(Copies(c.views)))
    }
);
