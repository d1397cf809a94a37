//! Sizes and bounds shared by lookup, listing and the small-file read-ahead.
//!
//! One place for the numbers several modules must agree on, so that none of them
//! imports another only for a constant: what a listing page holds, and what counts as a
//! small file (fetched whole by lookup's revalidation and by the read-ahead).

/// Keys per ListObjectsV2 page.
pub(crate) const LIST_PAGE: u32 = 1000;

/// Files up to this size are revalidated with a GET instead of a HEAD, and are the ones
/// the small-file read-ahead fetches (larger ones are left to the reader's own
/// prefetching).
pub(crate) const SMALL_FILE: u64 = 128 * 1024;

/// Small files fetched ahead of a sequential reader (and GETs in flight for it).
pub(crate) const READ_AHEAD_FILES: usize = 8;

/// Directories with more small files than this keep no read-ahead order.
pub(crate) const READ_AHEAD_MAX_ORDER: usize = 100_000;
