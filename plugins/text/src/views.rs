//! `[views] name = "triples"`: a (sentence, entailment, contradiction)
//! sample from `sentence_triples` becomes three views — the sentence, the
//! positive and the hard negative — each with plain `input_ids` and
//! `attention_mask`, for supervised SimCSE (`[method] views = 3`).

use std::sync::Arc;

use parallax_core::batch::Sample;
use parallax_core::error::{Error, Result};
use parallax_core::rng::Rng;
use parallax_core::views::ViewGenerator;

/// The prefixes of the three views' fields.
pub const PREFIXES: [&str; 3] = ["", "positive/", "negative/"];

/// Splits prefixed fields into views.
pub struct Triples;

impl ViewGenerator for Triples {
    fn num_views(&self) -> usize {
        3
    }

    fn generate(&self, sample: &Sample, _rng: &mut Rng) -> Result<Vec<Sample>> {
        PREFIXES
            .iter()
            .map(|prefix| {
                let mut view = Sample::default();
                for name in ["input_ids", "attention_mask"] {
                    let key = format!("{prefix}{name}");
                    let field = sample.get(&key).ok_or_else(|| {
                        Error::Data(format!(
                            "the `triples` views need field `{key}` (from the `sentence_triples` source); the sample has: {}",
                            sample.fields.keys().cloned().collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                    view.insert(name, field.clone());
                }
                Ok(view)
            })
            .collect()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TriplesConfig {}

parallax_core::register!(
    views,
    "triples",
    "sentence, entailment and contradiction of a `sentence_triples` sample as three views",
    |p, _ctx| {
        let _: TriplesConfig = p.extract()?;
        Ok(Arc::new(Triples))
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use parallax_core::batch::Field;

    #[test]
    fn splits_prefixed_fields() {
        let mut s = Sample::default();
        for (i, p) in PREFIXES.iter().enumerate() {
            s.insert(&format!("{p}input_ids"), Field::label(i as i64));
            s.insert(&format!("{p}attention_mask"), Field::label(1));
        }
        let v = Triples.generate(&s, &mut Rng::new(0)).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[2].get("input_ids"), Some(&Field::label(2)));
        s.fields.remove("negative/input_ids");
        let e = Triples
            .generate(&s, &mut Rng::new(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("negative/input_ids"), "{e}");
    }
}
