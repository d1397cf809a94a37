//! What the write-back queue says about itself.
//!
//! Progress is counted in journal sequence numbers so that `ossmount sync` can wait for
//! exactly the work queued before it asked ([`WriteBackStatus::settled_seq`] reaching the
//! `enqueued_seq` it saw first), even while writers keep adding files.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A snapshot of the queue. Counts are of files (journal entries that upload an object),
/// bytes of their local copies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteBackStatus {
    /// The store directory (journal, data files, `conflicts/`).
    pub store_dir: PathBuf,
    /// Files closed but not yet on the server (including those uploading now).
    pub pending_files: u64,
    pub pending_bytes: u64,
    /// Files whose upload is running now.
    pub uploading_files: u64,
    /// Age in seconds of the oldest pending file (time since its close), if any.
    pub oldest_pending_secs: Option<u64>,
    /// Uploads completed since the mount started, and their bytes.
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    /// Files kept in `conflicts/` because the object changed on the server (since the
    /// store was created; the directory holds them until an operator removes them).
    pub conflicts: u64,
    /// Pending files whose last upload attempt failed (they are retried).
    pub failing_files: u64,
    /// The last upload error, for `ossmount status` (never a secret).
    pub last_error: Option<String>,
    /// Sequence number the next journal record will get: every record below it is queued.
    pub enqueued_seq: u64,
    /// Every record below this number is settled (uploaded, kept as a conflict, or made
    /// moot by a later unlink/overwrite).
    pub settled_seq: u64,
    /// The store is at `--write-back-max-size`: writers are waiting for uploads.
    pub full: bool,
}

impl WriteBackStatus {
    /// Nothing left to upload.
    pub fn drained(&self) -> bool {
        self.pending_files == 0 && self.settled_seq >= self.enqueued_seq
    }
}

/// The running queue, as the daemon, the control socket and metrics see it.
pub trait WriteBackQueue: Send + Sync + 'static {
    /// The current state.
    fn status(&self) -> WriteBackStatus;
    /// A receiver that sees every change of the state (a file queued, an upload finished
    /// or failed), for drain loops and progress bars that must not poll.
    fn watch(&self) -> tokio::sync::watch::Receiver<WriteBackStatus>;
}
