//! A fixed subset of a data source, and the seeded choice of `k` labelled
//! examples per class used by few-label experiments (the same images for
//! the supervised baseline, the linear probe and fine-tuning).

use std::sync::Arc;

use crate::batch::{Field, Sample};
use crate::data::{DataMeta, DataSource};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// The samples `indices` of another source.
pub struct SubsetSource {
    inner: Arc<dyn DataSource>,
    indices: Vec<usize>,
    what: String,
}

impl SubsetSource {
    /// The subset `indices` of `inner`, described as `what` in logs.
    pub fn new(inner: Arc<dyn DataSource>, indices: Vec<usize>, what: String) -> Self {
        SubsetSource {
            inner,
            indices,
            what,
        }
    }
}

impl DataSource for SubsetSource {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let i = self.indices.get(index).ok_or_else(|| {
            Error::Data(format!("{}: index {index} out of range", self.describe()))
        })?;
        self.inner.get(*i)
    }

    fn meta(&self) -> DataMeta {
        self.inner.meta()
    }

    fn describe(&self) -> String {
        format!("{} of {}", self.what, self.inner.describe())
    }
}

/// The integer label of a sample.
pub fn label_of(sample: &Sample) -> Option<i64> {
    match sample.get("label") {
        Some(Field::I64 { data, .. }) if data.len() == 1 => Some(data[0]),
        _ => None,
    }
}

/// `k` examples of every class of `source`, chosen by `seed` alone (so every
/// run, method and evaluator with the same seed picks the same images);
/// sorted. Fails when the source has no labels or a class has fewer than
/// `k` examples.
pub fn per_class_indices(source: &dyn DataSource, k: usize, seed: u64) -> Result<Vec<usize>> {
    if k == 0 {
        return Err(Error::Data("labels per class must be at least 1".into()));
    }
    let n = source.len();
    let mut by_class: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for i in Rng::derive(seed, "labels_per_class", &[]).permutation(n) {
        let l = label_of(&source.get(i)?).ok_or_else(|| {
            Error::Data(format!(
                "{}: labels per class need samples with an integer `label`",
                source.describe()
            ))
        })?;
        let v = by_class.entry(l).or_default();
        if v.len() < k {
            v.push(i);
        }
    }
    let mut out = Vec::with_capacity(k * by_class.len());
    for (class, v) in &by_class {
        if v.len() < k {
            return Err(Error::Data(format!(
                "{}: class {class} has {} examples, fewer than the {k} asked for",
                source.describe(),
                v.len()
            )));
        }
        out.extend(v);
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{Synthetic, SyntheticConfig};
    use crate::data::Split;

    #[test]
    fn k_per_class_is_balanced_seeded_and_distinct() {
        let src: Arc<dyn DataSource> = Arc::new(
            Synthetic::new(
                SyntheticConfig {
                    shape: [1, 4, 4],
                    len: 300,
                    num_classes: 3,
                },
                0,
                Split::Train,
            )
            .unwrap(),
        );
        let a = per_class_indices(src.as_ref(), 5, 0).unwrap();
        assert_eq!(a, per_class_indices(src.as_ref(), 5, 0).unwrap());
        assert_ne!(a, per_class_indices(src.as_ref(), 5, 1).unwrap());
        assert_eq!(a.len(), 15);
        let mut counts = std::collections::BTreeMap::new();
        for &i in &a {
            *counts
                .entry(label_of(&src.get(i).unwrap()).unwrap())
                .or_insert(0) += 1;
        }
        assert!(counts.values().all(|&c| c == 5), "{counts:?}");
        assert!(per_class_indices(src.as_ref(), 1000, 0).is_err());
        let sub = SubsetSource::new(src.clone(), a.clone(), "15 labelled".into());
        assert_eq!(sub.len(), 15);
        assert!(sub.describe().starts_with("15 labelled of"));
    }
}
