//! The read path: per-handle prefetching readers over a shared block cache.
//!
//! # Design
//! - [`BlockCache`] ([`cache`]) is one LRU of fixed-size blocks keyed by
//!   `(key, etag, block index)`, shared by every open handle and bounded in bytes. Pinning
//!   the ETag in the key means a changed object can never be served from stale blocks: its
//!   new ETag simply misses. An optional disk tier ([`disk_cache`]) keeps blocks evicted
//!   from memory.
//! - [`MemoryBudget`] ([`budget`]) is one byte-semaphore that covers the memory cache *and*
//!   every prefetch buffer. The cache gives memory back (evicts) when a reader needs it.
//! - [`ObjectReader`] ([`reader`]) is created per open file handle. Its prefetcher starts
//!   with a small first request (a random reader must not over-fetch) and, while the
//!   application keeps reading sequentially, doubles a read-ahead window up to
//!   `max_window`, fetched as several block-aligned ranged GETs in parallel tasks
//!   ([`prefetch`]). The pure access-classification and window-growth rules live in
//!   [`window`]. Readers of the same object share GETs in flight ([`inflight`]).
//! - How many requests a sequential reader keeps in flight follows the measured round
//!   trip and per-connection rate ([`link`], the bandwidth-delay product), so a far or
//!   slow-per-connection endpoint gets more overlap than loopback: `max_parallel_requests`
//!   and `max_window` are the floor, not the ceiling.
//!
//! # Pitfalls
//! - Every GET carries `If-Match: <etag>`; a 412 becomes [`ReadError::Stale`] so the
//!   application never sees bytes mixed from two versions of an object.
//! - Dropping a tokio `JoinHandle` does not cancel the task: in-flight prefetches are
//!   aborted explicitly when the window resets or the handle is dropped.
//! - Prefetch never waits for memory while it holds buffers (that could deadlock readers
//!   against each other); only the request the application is blocked on waits.
//! - The whole-object CRC64 is checked only when the application has read every byte in
//!   order; random readers are not verified (their ranges are still ETag-pinned). The
//!   fetches hash each block as it arrives ([`block`]); the check folds those CRCs for
//!   bytes served from the very same buffers and hashes everything else.

pub mod block;
pub mod budget;
pub mod cache;
pub mod disk_cache;
pub mod inflight;
pub mod link;
pub mod prefetch;
pub mod reader;
pub mod window;

use std::path::PathBuf;

pub use budget::{BudgetPermit, MemoryBudget};
pub use cache::BlockCache;
pub use reader::ObjectReader;

use crate::store::StoreError;

const MIB: u64 = 1024 * 1024;

/// Tuning of the read path. Values are normalised (see [`ReadConfig::normalized`]) before
/// use, so odd user input cannot produce zero-sized blocks or unaligned requests.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadConfig {
    /// Cache granularity; every ranged GET is aligned to it.
    pub block_size: u64,
    /// Size of the first GET after open or after a random seek.
    pub first_request_size: u64,
    /// Largest single ranged GET.
    pub max_request_size: u64,
    /// Largest read-ahead window of a sequential reader.
    pub max_window: u64,
    /// Ranged GETs in flight per handle.
    pub max_parallel_requests: usize,
    /// Memory budget for the block cache plus all prefetch buffers (bytes).
    pub cache_size: u64,
    /// Directory of the optional on-disk block cache.
    pub disk_cache_dir: Option<PathBuf>,
    /// Size limit of the on-disk block cache (bytes).
    pub disk_cache_size: u64,
}

impl Default for ReadConfig {
    fn default() -> Self {
        ReadConfig {
            block_size: MIB,
            first_request_size: MIB,
            max_request_size: 8 * MIB,
            max_window: 64 * MIB,
            max_parallel_requests: 4,
            cache_size: 512 * MIB,
            disk_cache_dir: None,
            disk_cache_size: 10 * 1024 * MIB,
        }
    }
}

impl ReadConfig {
    /// A copy with every size made consistent: block size 4 KiB..=64 MiB, request sizes
    /// whole multiples of the block size, `first ≤ max_request ≤ max_window`, at least one
    /// request per handle, and a memory budget large enough for one request.
    pub fn normalized(&self) -> ReadConfig {
        let block = self.block_size.clamp(4096, 64 * MIB);
        let round = |v: u64| v.max(block).div_ceil(block) * block;
        // Single GETs above 1 GiB would exceed the u32 budget permit granularity and make
        // little sense for latency.
        let max_request = round(self.max_request_size).min(1024 * MIB / block * block);
        let first = round(self.first_request_size).min(max_request);
        let max_window = round(self.max_window).max(max_request);
        ReadConfig {
            block_size: block,
            first_request_size: first,
            max_request_size: max_request,
            max_window,
            max_parallel_requests: self.max_parallel_requests.max(1),
            cache_size: self.cache_size.max(2 * max_request),
            disk_cache_dir: self.disk_cache_dir.clone(),
            disk_cache_size: self.disk_cache_size,
        }
    }
}

/// Errors of the read path. The filesystem maps `Stale` to `ESTALE`, `CrcMismatch` to
/// `EIO` (with an error log), and `Store` by its kind.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The object changed (ETag no longer matches) while the file was open.
    #[error("object {key} changed while open (ETag {etag} no longer current)")]
    Stale { key: String, etag: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bytes read in order do not hash to the object's CRC64.
    #[error("CRC64 mismatch reading {key}: computed {computed}, object has {expected}")]
    CrcMismatch {
        key: String,
        computed: u64,
        expected: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_fixes_inconsistent_sizes() {
        let cfg = ReadConfig {
            block_size: 0,
            first_request_size: 10_000,
            max_request_size: 5000,
            max_window: 0,
            max_parallel_requests: 0,
            cache_size: 0,
            ..ReadConfig::default()
        }
        .normalized();
        assert_eq!(cfg.block_size, 4096);
        assert_eq!(cfg.max_request_size, 8192);
        assert_eq!(cfg.first_request_size, 8192);
        assert_eq!(cfg.max_window, 8192);
        assert_eq!(cfg.max_parallel_requests, 1);
        assert_eq!(cfg.cache_size, 16384);
    }

    #[test]
    fn defaults_are_already_normal() {
        let cfg = ReadConfig::default();
        assert_eq!(cfg.normalized(), cfg);
    }
}
