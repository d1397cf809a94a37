//! The queue of pending files: which inodes have journal records that are not settled
//! yet, and what the uploader and `fsync` need to know about them.
//!
//! # Design
//! The queue is keyed by inode, not by key: a pending file may be renamed (its key
//! changes) and re-written (new records) while it waits, and every record of one file is
//! settled by the upload that follows it. Each [`Entry`] lists the sequence numbers of
//! the file's unsettled journal records (`Put`, `Unlink`, `Rename`, `SetMeta`) in journal
//! order. An upload takes a snapshot of the entry ([`Queue::take_ready`]: the highest
//! sequence number then), uploads the file *as it is at that moment* (under the inode's
//! write side lock, see `crate::fs`), and settles exactly the records up to that
//! snapshot ([`Queue::finish`]): records added during the upload stay for the next one.
//! So at most one upload per file is in flight, and a file's records are applied in
//! journal order.
//!
//! The data lives in the inode's local copy (a store data file); the queue only holds
//! bookkeeping, and a [`tokio::sync::watch`] of [`WriteBackStatus`] updated on every
//! change (for `ossmount sync`, `status`, the drain after umount, metrics).
//!
//! # Errors
//! An upload that fails is retried with exponential backoff (0.5 s doubling to 30 s),
//! forever: the data is durable in the store and nothing else reports it. The failure is
//! kept on the entry (`failing`, `last_error`) so that `fsync` of the file
//! ([`Queue::wait_uploaded`]) returns it when the failed attempt covered the records the
//! fsync waits for.
//!
//! # Pitfalls
//! - Settle only what the upload saw: a close during an upload adds a record that the
//!   finished upload does not cover.
//! - `fsync` must register its wake-up before checking the state (`Notify::notified` +
//!   `enable`), or a change between the check and the wait is missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::WriteBackStore;
use super::status::WriteBackStatus;

/// Inode number (as in `crate::fs`).
pub type Ino = u64;

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One pending file.
#[derive(Debug)]
struct Entry {
    /// The key the file has now (for logs and status).
    key: String,
    /// Bytes of its local copy.
    size: u64,
    /// Unsettled journal records, in journal order.
    seqs: Vec<u64>,
    /// When the oldest unsettled record was queued.
    since: Instant,
    in_flight: bool,
    /// Highest sequence number the running upload covers.
    in_flight_upto: u64,
    /// The last attempt's error, and the highest sequence number it covered.
    failing: Option<(u64, String)>,
    failures: u32,
    retry_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Ino, Entry>,
    uploaded_files: u64,
    uploaded_bytes: u64,
    conflicts: u64,
    last_error: Option<String>,
}

/// What an upload attempt ended with (see [`Queue::finish`]).
#[derive(Debug)]
pub enum Attempt {
    /// The file is on the server as the mount showed it (or nothing was left to upload:
    /// unlinked, superseded). `bytes` uploaded.
    Done { bytes: u64 },
    /// The object changed on the server; the local copy was kept in `conflicts/`.
    Conflict,
    /// Failed; retried after a backoff.
    Failed(String),
}

/// A file the uploader should upload now.
#[derive(Debug, Clone)]
pub struct Ready {
    pub ino: Ino,
    /// The records this upload settles.
    pub upto: u64,
}

/// The pending files of one mount (see the module docs).
#[derive(Debug)]
pub struct Queue {
    store: Arc<WriteBackStore>,
    inner: Mutex<Inner>,
    /// Wakes the uploader: work queued, or the queue closes.
    work: Notify,
    /// Wakes `fsync` waiters: any entry changed.
    changed: Notify,
    status: watch::Sender<WriteBackStatus>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Queue {
    pub fn new(store: Arc<WriteBackStore>) -> Arc<Queue> {
        let (status, _) = watch::channel(WriteBackStatus::default());
        let q = Arc::new(Queue {
            store,
            inner: Mutex::new(Inner::default()),
            work: Notify::new(),
            changed: Notify::new(),
            status,
        });
        q.publish(&lock(&q.inner));
        q
    }

    pub fn store(&self) -> &Arc<WriteBackStore> {
        &self.store
    }

    /// Whether `ino` has unsettled records.
    pub fn is_pending(&self, ino: Ino) -> bool {
        lock(&self.inner).entries.contains_key(&ino)
    }

    /// Record `seq` (just appended to the journal) belongs to `ino`, now at `key` with
    /// `size` bytes. True when the file was not pending before (the caller then holds the
    /// inode for the uploader, see `crate::fs`).
    pub fn add(&self, ino: Ino, key: &str, size: u64, seq: u64) -> bool {
        let mut inner = lock(&self.inner);
        let new = !inner.entries.contains_key(&ino);
        let e = inner.entries.entry(ino).or_insert_with(|| Entry {
            key: key.to_string(),
            size,
            seqs: Vec::new(),
            since: Instant::now(),
            in_flight: false,
            in_flight_upto: 0,
            failing: None,
            failures: 0,
            retry_at: None,
        });
        e.key = key.to_string();
        e.size = size;
        e.seqs.push(seq);
        // New work is tried at once, even while a backoff runs.
        e.retry_at = None;
        self.publish(&inner);
        drop(inner);
        self.work.notify_one();
        self.changed.notify_waiters();
        new
    }

    /// A record that concerns every pending file below a directory (a rename of it):
    /// it belongs to every pending entry and is settled with the last of them. False
    /// when nothing is pending (the caller settles it at once).
    pub fn add_shared(&self, seq: u64) -> bool {
        let mut inner = lock(&self.inner);
        if inner.entries.is_empty() {
            return false;
        }
        for e in inner.entries.values_mut() {
            e.seqs.push(seq);
        }
        self.publish(&inner);
        true
    }

    /// Settles `seq`, a record no pending file carries (`add_shared` found none), and
    /// publishes it: without that, the status keeps `settled_seq` below `enqueued_seq`
    /// with nothing pending, and drain waiters (`ossmount sync`) wait for an event that
    /// never comes.
    pub async fn settle_unshared(&self, seq: u64) -> std::io::Result<()> {
        self.store.settle(seq).await?;
        self.refresh();
        Ok(())
    }

    /// The pending files.
    pub fn pending(&self) -> Vec<Ino> {
        lock(&self.inner).entries.keys().copied().collect()
    }

    /// Whether any file is pending.
    pub fn is_empty(&self) -> bool {
        lock(&self.inner).entries.is_empty()
    }

    /// Files to upload now (not in flight, not backing off), at most `max`; each is
    /// marked in flight. Also the earliest instant a backing-off file becomes ready.
    pub fn take_ready(&self, max: usize) -> (Vec<Ready>, Option<Instant>) {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        let mut ready = Vec::new();
        let mut next = None::<Instant>;
        // Oldest first: a steady stream of new files does not starve old ones.
        let mut candidates: Vec<(&Ino, &Entry)> = inner
            .entries
            .iter()
            .filter(|(_, e)| !e.in_flight && !e.seqs.is_empty())
            .collect();
        candidates.sort_by_key(|(_, e)| e.seqs[0]);
        let mut picked = Vec::new();
        for (ino, e) in candidates {
            match e.retry_at {
                Some(t) if t > now => next = Some(next.map_or(t, |n| n.min(t))),
                _ if picked.len() < max => picked.push(*ino),
                _ => {}
            }
        }
        for ino in picked {
            if let Some(e) = inner.entries.get_mut(&ino) {
                let upto = *e.seqs.last().unwrap_or(&0);
                e.in_flight = true;
                e.in_flight_upto = upto;
                ready.push(Ready { ino, upto });
            }
        }
        if !ready.is_empty() {
            self.publish(&inner);
        }
        (ready, next)
    }

    /// The end of an upload of `r`. Returns the records to settle (the caller settles
    /// them in the journal *before* [`Self::settled`]; the store deletes data files no
    /// record names any more).
    pub fn finish(&self, r: &Ready, attempt: Attempt) -> Finished {
        let mut inner = lock(&self.inner);
        let mut out = Finished::default();
        // A shared record (see `add_shared`) is settled by the last entry holding it.
        let others: std::collections::HashSet<u64> = inner
            .entries
            .iter()
            .filter(|(ino, _)| **ino != r.ino)
            .flat_map(|(_, o)| o.seqs.iter().copied())
            .collect();
        let Some(e) = inner.entries.get_mut(&r.ino) else {
            return out;
        };
        match attempt {
            // Still in flight until `settled`: the records are not settled yet, and no
            // second upload of them may start meanwhile.
            Attempt::Done { .. } | Attempt::Conflict => {
                out.settle = e.seqs.iter().copied().filter(|s| *s <= r.upto).collect();
                out.settle.retain(|s| !others.contains(s));
                e.failing = None;
                e.failures = 0;
                e.retry_at = None;
                let key = e.key.clone();
                let size = e.size;
                match attempt {
                    Attempt::Done { bytes } => {
                        inner.uploaded_files += 1;
                        inner.uploaded_bytes += bytes;
                    }
                    _ => {
                        inner.conflicts += 1;
                        tracing::debug!(key, size, "conflict settled");
                    }
                }
            }
            Attempt::Failed(msg) => {
                e.in_flight = false;
                e.failures = e.failures.saturating_add(1);
                let backoff = BACKOFF_MIN
                    .saturating_mul(1 << e.failures.min(8).saturating_sub(1))
                    .min(BACKOFF_MAX);
                e.retry_at = Some(Instant::now() + backoff);
                tracing::warn!(key = %e.key, error = %msg, retry_in = ?backoff, "write-back upload failed; retrying");
                e.failing = Some((r.upto, msg.clone()));
                inner.last_error = Some(msg);
            }
        }
        self.publish(&inner);
        drop(inner);
        self.changed.notify_waiters();
        self.work.notify_one();
        out
    }

    /// The records of `ino` up to `upto` are settled in the journal (or left to another
    /// entry sharing them): they leave the entry. True when the file has nothing pending
    /// any more (the caller releases the inode).
    pub fn settled(&self, ino: Ino, upto: u64) -> bool {
        let mut inner = lock(&self.inner);
        let done = match inner.entries.get_mut(&ino) {
            Some(e) => {
                e.seqs.retain(|s| *s > upto);
                e.in_flight = false;
                if e.seqs.is_empty() {
                    inner.entries.remove(&ino);
                    true
                } else {
                    // What is left was queued during the upload.
                    e.since = Instant::now();
                    false
                }
            }
            None => false,
        };
        self.publish(&inner);
        drop(inner);
        self.changed.notify_waiters();
        done
    }

    /// Waits until every record of `ino` up to `seq` is settled (Ok), or an upload
    /// attempt that covered `seq` failed (its error).
    pub async fn wait_uploaded(&self, ino: Ino, seq: u64) -> Result<(), String> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let inner = lock(&self.inner);
                match inner.entries.get(&ino) {
                    None => return Ok(()),
                    Some(e) if e.seqs.first().is_none_or(|s| *s > seq) => return Ok(()),
                    Some(e) => {
                        if let Some((upto, msg)) = &e.failing
                            && *upto >= seq
                            && !e.in_flight
                        {
                            return Err(msg.clone());
                        }
                    }
                }
            }
            notified.await;
        }
    }

    /// The highest unsettled record of `ino`, if pending.
    pub fn last_seq(&self, ino: Ino) -> Option<u64> {
        lock(&self.inner)
            .entries
            .get(&ino)
            .and_then(|e| e.seqs.last().copied())
    }

    /// Waits for work (or `until`, a backoff's end).
    pub async fn wait_work(&self, until: Option<Instant>) {
        let notified = self.work.notified();
        match until {
            Some(t) => {
                let _ = tokio::time::timeout_at(t.into(), notified).await;
            }
            None => notified.await,
        }
    }

    /// Wakes the uploader (e.g. to let it notice the filesystem is gone).
    pub fn wake(&self) {
        self.work.notify_one();
    }

    fn publish(&self, inner: &Inner) {
        let now = Instant::now();
        let mut s = WriteBackStatus {
            store_dir: self.store.dir().to_path_buf(),
            uploaded_files: inner.uploaded_files,
            uploaded_bytes: inner.uploaded_bytes,
            conflicts: self.store.conflicts_count(),
            last_error: inner.last_error.clone(),
            enqueued_seq: self.store.enqueued_seq(),
            settled_seq: self.store.settled_seq(),
            full: self.store.is_full(),
            ..Default::default()
        };
        for e in inner.entries.values() {
            s.pending_files += 1;
            s.pending_bytes += e.size;
            s.uploading_files += u64::from(e.in_flight);
            s.failing_files += u64::from(e.failing.is_some());
            let age = now.saturating_duration_since(e.since).as_secs();
            s.oldest_pending_secs = Some(s.oldest_pending_secs.map_or(age, |a| a.max(age)));
        }
        self.status.send_replace(s);
    }

    /// Refreshes the published status (store counters that changed outside the queue).
    pub fn refresh(&self) {
        self.publish(&lock(&self.inner));
    }
}

/// What [`Queue::finish`] leaves to the caller.
#[derive(Debug, Default)]
pub struct Finished {
    pub settle: Vec<u64>,
}

impl super::WriteBackQueue for Queue {
    fn status(&self) -> WriteBackStatus {
        self.status.borrow().clone()
    }
    fn watch(&self) -> watch::Receiver<WriteBackStatus> {
        self.status.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write_back::{JournalRecord, WriteBackQueue};

    #[tokio::test]
    async fn a_record_settled_without_an_upload_shows_in_the_status() {
        let dir = tempfile::tempdir().expect("tmp");
        let (store, live) = WriteBackStore::open(&dir.path().join("wb"), 1 << 20).expect("open");
        assert!(live.is_empty());
        let q = Queue::new(Arc::new(store));
        let seq = q
            .store()
            .append(JournalRecord::Rename {
                from: "d/".to_string(),
                to: "e/".to_string(),
            })
            .await
            .expect("append");
        // In the mount, the last pending upload settles during that append and publishes
        // a status in which the record is live.
        q.refresh();
        assert!(!q.status().drained());
        // Nothing is pending to carry it.
        assert!(!q.add_shared(seq));
        q.settle_unshared(seq).await.expect("settle");
        let status = q.status();
        assert!(status.drained(), "status after the settle: {status:?}");
        let mut rx = q.watch();
        tokio::time::timeout(Duration::from_secs(1), rx.wait_for(|s| s.drained()))
            .await
            .expect("a drain waiter sees it")
            .expect("queue alive");
    }
}
