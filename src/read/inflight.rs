//! Registry of ranged GETs in flight, so concurrent readers of one object share them.
//!
//! Without it, two handles reading the same object at the same time (parallel workers,
//! `cp` while `md5sum` runs) would each download every byte: the cache only helps once a
//! request has *finished*. A fetch registers each block it covers; another reader that
//! needs one of those blocks follows the fetch (waits on its [`watch`] channel and slices
//! the result) instead of issuing its own request.
//!
//! Lifetimes: the [`Registration`] lives inside the fetch task. When the task publishes its
//! result, or is aborted and dropped, the registration removes its own entries (matched by
//! generation, so a newer fetch of the same block is never removed by an older one). A
//! follower that sees the channel close without a result falls back to its own request.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::block::{BlockData, BlockId};

/// State of a shared fetch as seen by followers.
#[derive(Debug, Clone)]
pub enum FetchOutcome {
    Pending,
    Done(BlockData),
    Failed,
}

/// How to follow a fetch in flight.
#[derive(Debug, Clone)]
pub struct Inflight {
    generation: u64,
    /// Object range the fetch covers.
    pub range: Range<u64>,
    pub rx: watch::Receiver<FetchOutcome>,
}

/// All fetches in flight, by block (shared through the [`super::BlockCache`]).
#[derive(Debug, Default)]
pub struct InflightRegistry {
    map: Mutex<HashMap<BlockId, Inflight>>,
    next_generation: AtomicU64,
}

/// Held by a fetch task; publishes its outcome and unregisters on drop.
pub struct Registration {
    registry: Arc<InflightRegistry>,
    ids: Vec<BlockId>,
    generation: u64,
    tx: watch::Sender<FetchOutcome>,
}

impl InflightRegistry {
    fn lock(&self) -> MutexGuard<'_, HashMap<BlockId, Inflight>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a fetch of `range` of the object (`key`, `etag`), cut in `block` bytes.
    pub fn register(
        self: &Arc<Self>,
        key: &Arc<str>,
        etag: &Arc<str>,
        range: Range<u64>,
        block: u64,
    ) -> Registration {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(FetchOutcome::Pending);
        let ids: Vec<BlockId> = (range.start / block..range.end.div_ceil(block))
            .map(|index| BlockId {
                key: key.clone(),
                etag: etag.clone(),
                index,
            })
            .collect();
        let entry = Inflight {
            generation,
            range,
            rx,
        };
        let mut map = self.lock();
        for id in &ids {
            map.insert(id.clone(), entry.clone());
        }
        Registration {
            registry: self.clone(),
            ids,
            generation,
            tx,
        }
    }

    /// The fetch in flight that covers block `id`, if any.
    pub fn lookup(&self, id: &BlockId) -> Option<Inflight> {
        self.lock().get(id).cloned()
    }

    pub fn contains(&self, id: &BlockId) -> bool {
        self.lock().contains_key(id)
    }

    /// Number of blocks registered (for tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Registration {
    pub fn publish(&self, outcome: FetchOutcome) {
        // No receivers is fine: nobody followed this fetch.
        let _ = self.tx.send(outcome);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.registry.lock();
        for id in &self.ids {
            if map.get(id).is_some_and(|e| e.generation == self.generation) {
                map.remove(id);
            }
        }
    }
}

/// Waits for a followed fetch; `Some(data of the whole fetched range)` on success, `None`
/// if it failed or was cancelled (the caller then fetches on its own).
pub async fn follow(mut rx: watch::Receiver<FetchOutcome>) -> Option<BlockData> {
    loop {
        match &*rx.borrow_and_update() {
            FetchOutcome::Done(b) => return Some(b.clone()),
            FetchOutcome::Failed => return None,
            FetchOutcome::Pending => {}
        }
        if rx.changed().await.is_err() {
            // Sender gone; it may still have published just before.
            return match &*rx.borrow() {
                FetchOutcome::Done(b) => Some(b.clone()),
                _ => None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(index: u64) -> BlockId {
        BlockId {
            key: "k".into(),
            etag: "e".into(),
            index,
        }
    }

    #[tokio::test]
    async fn followers_get_the_result_and_entries_are_removed() {
        let reg = Arc::new(InflightRegistry::default());
        let r = reg.register(&"k".into(), &"e".into(), 100..350, 100);
        assert_eq!(reg.len(), 3);
        let entry = reg.lookup(&id(2)).unwrap();
        assert_eq!(entry.range, 100..350);
        let waiter = tokio::spawn(follow(entry.rx));
        r.publish(FetchOutcome::Done(BlockData::single(
            100,
            100,
            bytes::Bytes::from_static(b"data"),
        )));
        drop(r);
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.block_at(101).unwrap().1, &b"data"[..]);
        assert!(reg.is_empty());
    }

    #[tokio::test]
    async fn cancelled_fetch_releases_followers() {
        let reg = Arc::new(InflightRegistry::default());
        let r = reg.register(&"k".into(), &"e".into(), 0..100, 100);
        let waiter = tokio::spawn(follow(reg.lookup(&id(0)).unwrap().rx));
        drop(r);
        assert!(waiter.await.unwrap().is_none());
    }

    #[tokio::test]
    async fn older_registration_does_not_remove_newer() {
        let reg = Arc::new(InflightRegistry::default());
        let old = reg.register(&"k".into(), &"e".into(), 0..100, 100);
        let new = reg.register(&"k".into(), &"e".into(), 0..200, 100);
        drop(old);
        assert_eq!(reg.lookup(&id(0)).unwrap().range, 0..200);
        drop(new);
        assert!(reg.is_empty());
    }
}
