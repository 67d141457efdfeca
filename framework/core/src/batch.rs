//! Samples (CPU-side, before collation) and batches (tensors).

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// One field of a sample: a small dense array on the CPU.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// Float data with a shape (e.g. an image `[C,H,W]`).
    F32 { shape: Vec<usize>, data: Vec<f32> },
    /// Integer data with a shape (token ids, a label `[]`).
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

impl Field {
    /// A scalar integer (e.g. a class label).
    pub fn label(v: i64) -> Self {
        Field::I64 {
            shape: vec![],
            data: vec![v],
        }
    }

    /// The field's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Field::F32 { shape, .. } | Field::I64 { shape, .. } => shape,
        }
    }
}

/// One example as a data source returns it: named fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Fields by name: `image`, `label`, `input_ids`, `audio`, ...
    pub fields: BTreeMap<String, Field>,
}

impl Sample {
    /// A sample with one field.
    pub fn with(name: &str, field: Field) -> Self {
        let mut s = Sample::default();
        s.fields.insert(name.to_string(), field);
        s
    }

    /// Adds a field.
    pub fn insert(&mut self, name: &str, field: Field) {
        self.fields.insert(name.to_string(), field);
    }

    /// The field `name`.
    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields.get(name)
    }
}

/// A batch: named tensors with a common leading dimension.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Tensors by name: `image [B,C,H,W]`, `label [B]`, `input_ids [B,T]`, ...
    pub tensors: BTreeMap<String, Tensor>,
}

impl Batch {
    /// Stacks samples field by field. Every sample must have the same fields
    /// and shapes.
    pub fn collate(samples: &[Sample], device: &Device) -> Result<Batch> {
        let first = samples
            .first()
            .ok_or_else(|| Error::Shape("cannot collate an empty batch".into()))?;
        let mut tensors = BTreeMap::new();
        for (name, field) in &first.fields {
            let mut dims = vec![samples.len()];
            dims.extend_from_slice(field.shape());
            let t = match field {
                Field::F32 { .. } => {
                    let mut all = Vec::with_capacity(dims.iter().product());
                    for s in samples {
                        match s.fields.get(name) {
                            Some(Field::F32 { shape, data }) if shape == field.shape() => {
                                all.extend_from_slice(data)
                            }
                            _ => return Err(mismatch(name)),
                        }
                    }
                    Tensor::from_vec(all, dims, device)?
                }
                Field::I64 { .. } => {
                    let mut all = Vec::with_capacity(dims.iter().product());
                    for s in samples {
                        match s.fields.get(name) {
                            Some(Field::I64 { shape, data }) if shape == field.shape() => {
                                all.extend_from_slice(data)
                            }
                            _ => return Err(mismatch(name)),
                        }
                    }
                    Tensor::from_vec(all, dims, device)?
                }
            };
            tensors.insert(name.clone(), t);
        }
        Ok(Batch { tensors })
    }

    /// The tensor `name`, or an error naming it and the available fields.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| {
            Error::Shape(format!(
                "batch has no field `{name}` (fields: {})",
                self.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.tensors
            .values()
            .next()
            .and_then(|t| t.dims().first().copied())
            .unwrap_or(0)
    }

    /// Whether the batch has no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves every tensor to `device`.
    pub fn to_device(&self, device: &Device) -> Result<Batch> {
        let mut tensors = BTreeMap::new();
        for (k, v) in &self.tensors {
            tensors.insert(k.clone(), v.to_device(device)?);
        }
        Ok(Batch { tensors })
    }
}

fn mismatch(name: &str) -> Error {
    Error::Shape(format!(
        "cannot collate field `{name}`: samples differ in fields, types or shapes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collates_and_rejects_mismatched_shapes() {
        let s = |v: f32| {
            let mut s = Sample::with(
                "image",
                Field::F32 {
                    shape: vec![1, 2],
                    data: vec![v, v],
                },
            );
            s.insert("label", Field::label(v as i64));
            s
        };
        let b = Batch::collate(&[s(1.0), s(2.0)], &Device::Cpu).unwrap();
        assert_eq!(b.get("image").unwrap().dims(), &[2, 1, 2]);
        assert_eq!(
            b.get("label").unwrap().to_vec1::<i64>().unwrap(),
            vec![1, 2]
        );
        assert_eq!(b.len(), 2);
        let mut bad = s(3.0);
        bad.insert(
            "image",
            Field::F32 {
                shape: vec![3],
                data: vec![0.0; 3],
            },
        );
        assert!(Batch::collate(&[s(1.0), bad], &Device::Cpu).is_err());
        assert!(b.get("audio").unwrap_err().to_string().contains("image"));
    }
}
