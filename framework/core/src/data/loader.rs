//! The data loader: shuffles, batches and generates views on worker threads.
//!
//! Batch `b` of an epoch is prepared by worker `b % workers`, each worker
//! sending into its own bounded channel; the training thread receives from
//! the channels in turn, so batches arrive in order, at most `prefetch`
//! batches are prepared ahead, and the result does not depend on the number
//! of workers. Each sample's views draw from an RNG derived from the seed,
//! the epoch and the sample's index: the same seed gives the same views.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::Device;

use crate::batch::{Batch, Sample};
use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::views::ViewGenerator;

/// Loader settings.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Drop the last incomplete batch.
    pub drop_last: bool,
    /// Worker threads (0: prepare batches on the calling thread).
    pub workers: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// The run's seed.
    pub seed: u64,
}

/// Produces epochs of multi-view batches.
pub struct Loader {
    source: Arc<dyn DataSource>,
    views: Arc<dyn ViewGenerator>,
    cfg: LoaderConfig,
}

impl Loader {
    /// A loader over `source` with `views`.
    pub fn new(
        source: Arc<dyn DataSource>,
        views: Arc<dyn ViewGenerator>,
        cfg: LoaderConfig,
    ) -> Self {
        Loader { source, views, cfg }
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.source.len();
        let b = self.cfg.batch_size.max(1);
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The sample indices of each batch of `epoch`, in order.
    pub fn epoch_plan(&self, epoch: u64) -> Vec<Vec<usize>> {
        let order = Rng::derive(self.cfg.seed, "order", &[epoch]).permutation(self.source.len());
        order
            .chunks(self.cfg.batch_size.max(1))
            .take(self.batches_per_epoch())
            .map(|c| c.to_vec())
            .collect()
    }

    /// Iterates over the batches of `epoch`, starting at batch `skip`
    /// (to resume mid-epoch). Each item is one batch per view.
    pub fn epoch(&self, epoch: u64, skip: usize) -> EpochIter {
        let plan: Arc<Vec<Vec<usize>>> =
            Arc::new(self.epoch_plan(epoch).into_iter().skip(skip).collect());
        let workers = self.cfg.workers;
        if workers == 0 {
            return EpochIter {
                inline: Some(Inline {
                    source: self.source.clone(),
                    views: self.views.clone(),
                    plan,
                    seed: self.cfg.seed,
                    epoch,
                }),
                receivers: vec![],
                handles: vec![],
                next: 0,
                total: 0,
            };
        }
        let total = plan.len();
        let per_worker = self.cfg.prefetch.div_ceil(workers).max(1);
        let mut receivers = Vec::new();
        let mut handles = Vec::new();
        for w in 0..workers {
            let (tx, rx) = sync_channel::<Result<Vec<Batch>>>(per_worker);
            let (source, views, plan, seed) = (
                self.source.clone(),
                self.views.clone(),
                plan.clone(),
                self.cfg.seed,
            );
            let handle = std::thread::Builder::new()
                .name(format!("parallax-loader-{w}"))
                .spawn(move || {
                    let mut b = w;
                    while b < plan.len() {
                        let item =
                            make_batch(source.as_ref(), views.as_ref(), &plan[b], seed, epoch);
                        let failed = item.is_err();
                        if tx.send(item).is_err() || failed {
                            return;
                        }
                        b += workers;
                    }
                })
                .map_err(|e| Error::Data(format!("cannot start loader thread: {e}")));
            match handle {
                Ok(h) => handles.push(h),
                Err(e) => {
                    let (tx, rx2) = sync_channel(1);
                    let _ = tx.send(Err(e));
                    receivers.push(rx2);
                    continue;
                }
            }
            receivers.push(rx);
        }
        EpochIter {
            inline: None,
            receivers,
            handles,
            next: 0,
            total,
        }
    }
}

/// Builds one multi-view batch from sample indices (on a worker thread).
fn make_batch(
    source: &dyn DataSource,
    views: &dyn ViewGenerator,
    indices: &[usize],
    seed: u64,
    epoch: u64,
) -> Result<Vec<Batch>> {
    let n_views = views.num_views();
    let mut per_view: Vec<Vec<Sample>> = vec![Vec::with_capacity(indices.len()); n_views];
    for &i in indices {
        let sample = source.get(i)?;
        let mut rng = Rng::derive(seed, "views", &[epoch, i as u64]);
        let vs = views.generate(&sample, &mut rng)?;
        if vs.len() != n_views {
            return Err(Error::Shape(format!(
                "view generator returned {} views, declared {n_views}",
                vs.len()
            )));
        }
        for (k, v) in vs.into_iter().enumerate() {
            per_view[k].push(v);
        }
    }
    per_view
        .iter()
        .map(|s| Batch::collate(s, &Device::Cpu))
        .collect()
}

struct Inline {
    source: Arc<dyn DataSource>,
    views: Arc<dyn ViewGenerator>,
    plan: Arc<Vec<Vec<usize>>>,
    seed: u64,
    epoch: u64,
}

/// The batches of one epoch, in order.
pub struct EpochIter {
    inline: Option<Inline>,
    receivers: Vec<Receiver<Result<Vec<Batch>>>>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
    total: usize,
}

impl Iterator for EpochIter {
    type Item = Result<Vec<Batch>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(inl) = &self.inline {
            let idx = inl.plan.get(self.next)?;
            self.next += 1;
            return Some(make_batch(
                inl.source.as_ref(),
                inl.views.as_ref(),
                idx,
                inl.seed,
                inl.epoch,
            ));
        }
        if self.next >= self.total || self.receivers.is_empty() {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        match rx.recv() {
            Ok(item) => Some(item),
            Err(_) => Some(Err(Error::Data(
                "a loader thread stopped unexpectedly".into(),
            ))),
        }
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Closing the channels makes blocked workers return.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Field;
    use crate::data::DataMeta;

    struct Numbers(usize);
    impl DataSource for Numbers {
        fn len(&self) -> usize {
            self.0
        }
        fn get(&self, i: usize) -> Result<Sample> {
            Ok(Sample::with(
                "x",
                Field::F32 {
                    shape: vec![1],
                    data: vec![i as f32],
                },
            ))
        }
        fn meta(&self) -> DataMeta {
            DataMeta::default()
        }
        fn describe(&self) -> String {
            "numbers".into()
        }
    }

    struct Noisy;
    impl ViewGenerator for Noisy {
        fn num_views(&self) -> usize {
            2
        }
        fn generate(&self, s: &Sample, rng: &mut Rng) -> Result<Vec<Sample>> {
            let Some(Field::F32 { data, .. }) = s.get("x") else {
                unreachable!()
            };
            let v = |r: f32| {
                Sample::with(
                    "x",
                    Field::F32 {
                        shape: vec![1],
                        data: vec![data[0] + r],
                    },
                )
            };
            Ok(vec![v(rng.uniform()), v(rng.uniform())])
        }
    }

    fn collect(workers: usize, skip: usize) -> Vec<Vec<f32>> {
        let loader = Loader::new(
            Arc::new(Numbers(23)),
            Arc::new(Noisy),
            LoaderConfig {
                batch_size: 5,
                drop_last: true,
                workers,
                prefetch: 3,
                seed: 9,
            },
        );
        loader
            .epoch(1, skip)
            .map(|b| {
                b.unwrap()[1]
                    .get("x")
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn same_batches_whatever_the_worker_count_and_resumable() {
        let a = collect(0, 0);
        assert_eq!(a.len(), 4);
        assert_eq!(a, collect(1, 0));
        assert_eq!(a, collect(3, 0));
        assert_eq!(a[2..].to_vec(), collect(2, 2));
        // every index appears at most once
        let mut seen: Vec<i32> = a.iter().flatten().map(|v| v.floor() as i32).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 20);
    }

    #[test]
    fn dropping_an_epoch_early_stops_the_workers() {
        let loader = Loader::new(
            Arc::new(Numbers(1000)),
            Arc::new(Noisy),
            LoaderConfig {
                batch_size: 2,
                drop_last: false,
                workers: 2,
                prefetch: 2,
                seed: 0,
            },
        );
        let mut it = loader.epoch(0, 0);
        assert!(it.next().is_some());
        drop(it);
    }
}
