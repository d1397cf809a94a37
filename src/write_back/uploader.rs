//! The background uploader: takes ready files from the [`Queue`] and uploads a few at a
//! time, settling their journal records when each upload is done.
//!
//! The upload itself (conflict check, PUT or multipart upload of the local copy, the
//! inode's new ETag) belongs to the filesystem, which knows the inode's write side and
//! metadata: it is behind the [`Upload`] trait, implemented by `crate::fs::Filesystem`.
//! The uploader only schedules: at most `parallel` uploads in flight (each one also
//! takes the mount's request budget, `--max-inflight`, through the client's limiter), at
//! most one per file (see `queue`), oldest files first, failed ones after their backoff.
//!
//! The loop holds a weak reference to the filesystem and ends when the filesystem is
//! dropped (what is not uploaded then stays in the journal for the next mount).

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use tokio::task::JoinSet;

use super::queue::{Attempt, Queue, Ready};

/// Uploads one pending file (see the module docs).
pub trait Upload: Send + Sync + 'static {
    /// Uploads inode `r.ino` as it is now, covering its records up to `r.upto`; then
    /// settles them ([`Queue::finish`], the journal, [`Queue::settled`]).
    fn upload(self: Arc<Self>, r: Ready) -> BoxFuture<'static, ()>;
}

/// Default number of files uploaded at once.
pub const DEFAULT_PARALLEL: usize = 16;

/// Runs until `target` is dropped (spawn it on the mount's runtime).
pub async fn run<U: Upload>(queue: Arc<Queue>, target: Weak<U>, parallel: usize) {
    let parallel = parallel.max(1);
    let mut tasks: JoinSet<()> = JoinSet::new();
    loop {
        let Some(strong) = target.upgrade() else {
            break;
        };
        let room = parallel.saturating_sub(tasks.len());
        let (ready, next) = queue.take_ready(room);
        for r in ready {
            tasks.spawn(strong.clone().upload(r));
        }
        drop(strong);
        if tasks.is_empty() {
            queue.wait_work(next).await;
        } else {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = queue.wait_work(next) => {}
            }
        }
    }
    // The filesystem is gone: uploads in flight finish or are dropped with the runtime;
    // their records stay in the journal until settled.
    while tasks.join_next().await.is_some() {}
}

/// Settles what an attempt covered (see [`Queue::finish`]): journal first, then the
/// queue. True when the file has nothing pending any more.
pub async fn settle(queue: &Queue, r: &Ready, attempt: Attempt) -> bool {
    let failed = matches!(attempt, Attempt::Failed(_));
    let fin = queue.finish(r, attempt);
    if failed {
        return false;
    }
    for seq in &fin.settle {
        if let Err(e) = queue.store().settle(*seq).await {
            // The journal cannot record it: the upload is redone after a restart (it is
            // idempotent); the mount goes on.
            tracing::warn!(seq, error = %e, "cannot settle a write-back journal record");
        }
    }
    queue.settled(r.ino, r.upto)
}
