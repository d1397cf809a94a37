//! The write path: streaming multipart uploads and uploads of staged files.
//!
//! # Design
//! - [`StreamingUpload`] ([`streaming`]) serves a new file written sequentially from
//!   offset 0. It buffers one part at a time and hands full parts to up to
//!   `max_concurrency` upload tasks while the application keeps writing; `write()` waits
//!   when all tasks are busy, so memory stays ≤ `(max_concurrency + 1) × part_size`.
//!   A file that never filled a part becomes a single PutObject at `finish()`.
//! - [`upload_file`] ([`file_upload`]) uploads a finished staging file (random writes,
//!   overwrites): one PutObject when small, otherwise parallel UploadPart requests that
//!   each stream their slice of the file.
//! - Part sizes ([`part_size`]) respect OSS limits: ≤ 10,000 parts, every part but the last
//!   ≥ 100 KiB, ≤ 5 GiB each. Streaming uploads do not know the final size, so their part
//!   size grows with the part number.
//!
//! # Pitfalls
//! - Nothing may become visible unless everything succeeded: any failed part aborts the
//!   multipart upload, and the error is returned from `finish()` (the fs turns it into
//!   `EIO` on close/fsync). A dropped, unfinished upload is aborted in the background.
//! - CompleteMultipartUpload needs the parts in ascending order; tasks finish in any order.
//! - Part bodies are `Bytes`/file slices, never borrowed buffers, so the store can retry
//!   them.

pub mod file_upload;
pub mod part_size;
pub mod streaming;

pub use file_upload::upload_file;
pub use streaming::StreamingUpload;

use crate::store::StoreError;

/// Tuning of the write path.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadConfig {
    /// Size of multipart parts (grows when needed to stay within 10,000 parts).
    pub part_size: u64,
    /// Part uploads in flight per file.
    pub max_concurrency: usize,
    /// Files up to this size are uploaded with one PutObject.
    pub single_put_threshold: u64,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            part_size: 8 * 1024 * 1024,
            max_concurrency: 8,
            single_put_threshold: 8 * 1024 * 1024,
        }
    }
}

/// Errors of the write path.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the staging file failed.
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The object would exceed what OSS (or this upload mode) can store.
    #[error("file too large: {size} bytes exceeds the limit of {max} bytes for this upload")]
    TooLarge { size: u64, max: u64 },
    /// An earlier part of this upload failed (its error was already returned); the
    /// upload cannot succeed any more.
    #[error("upload of {key} failed earlier: {reason}")]
    Failed { key: String, reason: String },
}

/// CompleteMultipartUpload wants ascending part numbers; tasks finish in any order.
pub(crate) fn sort_parts(parts: &mut [crate::store::PartInfo]) {
    parts.sort_by_key(|p| p.part_number);
}

/// Decrements [`crate::metrics::UPLOAD_QUEUE_DEPTH`] when a part task ends (or is aborted).
pub(crate) struct QueueDepthGuard;

impl QueueDepthGuard {
    pub(crate) fn new() -> Self {
        ::metrics::gauge!(crate::metrics::UPLOAD_QUEUE_DEPTH).increment(1.0);
        QueueDepthGuard
    }
}

impl Drop for QueueDepthGuard {
    fn drop(&mut self) {
        ::metrics::gauge!(crate::metrics::UPLOAD_QUEUE_DEPTH).decrement(1.0);
    }
}
