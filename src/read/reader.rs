//! [`ObjectReader`]: one per open file handle, driving the read-ahead [`Queue`].
//!
//! Each `read` is classified ([`window::classify`]). A random read resets the window to
//! `first_request_size` and cancels queued requests. A sequential read that continues an
//! earlier one widens the window ([`window::should_grow`]/[`window::grow`]) and tops the
//! queue up to `read end + window`, in block-aligned requests of at most
//! `max_request_size`, at most `max_parallel_requests` in flight — or more, up to the
//! bandwidth-delay product the mount has measured ([`super::link`]), with the window
//! widened to match. Blocks already in the memory cache are queued without a request.
//!
//! Serving a read takes, for each position: the queued chunk containing it, else the cache
//! (memory, then disk), else a *demand* request (the only kind that waits for memory).
//! The first read after open or a reset prefetches nothing beyond its own request, so a
//! random reader costs one small GET per read.
//!
//! The CRC64 of the object is verified when the application has received every byte in
//! order (overlapping re-reads allowed); see `CrcTracker`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::cache::BlockCache;
use super::prefetch::{Queue, Source, fetch_range};
use super::window::{self, Access};
use super::{ReadConfig, ReadError};
use crate::store::{ObjectStore, StoreError};

/// Incremental CRC64 of the bytes handed to the application in order.
///
/// The kernel may deliver the reads of one handle slightly out of order (parallel FUSE
/// requests, readahead), so data that arrives ahead of the hashed prefix is parked
/// (copied, at most [`MAX_PARKED`] bytes) until the gap is filled. A reader that skips
/// data is simply not verified.
///
/// Pitfall: parked data must be a copy. A read's `Bytes` is a slice of a 1 MiB cache
/// block and keeps the whole block alive; parking 4 KiB slices of a random reader held
/// 1 MiB each (1.6 GiB RSS after 2,000 random reads with a 256 MiB cache).
struct CrcTracker {
    expected: Option<u64>,
    digest: crate::crc64::Crc64Hasher,
    /// Bytes hashed so far; `None` once verification was given up.
    hashed: Option<u64>,
    parked: std::collections::BTreeMap<u64, Bytes>,
    parked_bytes: u64,
}

/// Size of the pieces small random reads fetch and cache (instead of whole blocks).
const SMALL_BLOCK: u64 = 64 * 1024;
/// Marks a cache index as a [`SMALL_BLOCK`] piece number rather than a block number.
const SMALL_BLOCK_TAG: u64 = 1 << 63;

/// Round trip above which a sequential reader's window grows 4x per step, not 2x.
const FAR_RTT: std::time::Duration = std::time::Duration::from_millis(2);

/// Most out-of-order data kept for the CRC check.
const MAX_PARKED: u64 = 16 * 1024 * 1024;

impl CrcTracker {
    fn new(expected: Option<u64>) -> Self {
        CrcTracker {
            expected,
            digest: crate::crc64::Crc64Hasher::new(),
            hashed: expected.map(|_| 0),
            parked: Default::default(),
            parked_bytes: 0,
        }
    }

    fn give_up(&mut self) {
        self.hashed = None;
        self.parked.clear();
        self.parked_bytes = 0;
    }

    /// Feeds the bytes `data` found at `offset`; returns `(computed, expected)` when the
    /// whole object has been hashed and the sums differ.
    fn observe(&mut self, offset: u64, data: &Bytes, size: u64) -> Option<(u64, u64)> {
        let hashed = self.hashed?;
        let expected = self.expected?;
        if offset > hashed {
            self.parked_bytes += data.len() as u64;
            if self.parked_bytes > MAX_PARKED || offset - hashed > MAX_PARKED {
                // Too far ahead to be reordering: a reader that skips.
                self.give_up();
            } else if let Some(old) = self.parked.insert(offset, Bytes::copy_from_slice(data)) {
                self.parked_bytes -= old.len() as u64;
            }
            return None;
        }
        let mut hashed = self.hash_from(hashed, offset, data);
        while let Some(entry) = self.parked.first_entry() {
            if *entry.key() > hashed {
                break;
            }
            let (off, piece) = entry.remove_entry();
            self.parked_bytes -= piece.len() as u64;
            hashed = self.hash_from(hashed, off, &piece);
        }
        self.hashed = Some(hashed);
        if hashed == size {
            let computed = self.digest.finish();
            // Verified once; re-reads of the tail must not re-hash.
            self.expected = None;
            self.give_up();
            if computed != expected {
                return Some((computed, expected));
            }
        }
        None
    }

    /// Hashes the part of `data` (at `offset` ≤ `hashed`) beyond `hashed`.
    fn hash_from(&mut self, hashed: u64, offset: u64, data: &[u8]) -> u64 {
        let end = offset + data.len() as u64;
        if end <= hashed {
            return hashed;
        }
        self.digest.update(&data[(hashed - offset) as usize..]);
        end
    }
}

/// Reads one version (ETag) of one object for an open file handle.
pub struct ObjectReader {
    src: Source,
    block_size: u64,
    first_request: u64,
    max_request: u64,
    max_window: u64,
    max_parallel: usize,
    queue: Queue,
    /// Current read-ahead window.
    window: u64,
    /// The queue is topped up to here (0: no read-ahead wanted).
    target_end: u64,
    /// End of the previous read; `None` after open, a reset or an error.
    last_end: Option<u64>,
    crc: CrcTracker,
    /// Set once the object's CRC64 did not match: every later read of this handle fails
    /// too. The kernel retries a failed readahead page by page, and those re-reads must
    /// not hand out the bytes that were just proven wrong.
    corrupt: Option<(u64, u64)>,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("key", &self.src.key)
            .field("etag", &self.src.etag)
            .field("size", &self.src.size)
            .field("window", &self.window)
            .field("queued", &(self.queue.start()..self.queue.end()))
            .finish_non_exhaustive()
    }
}

impl ObjectReader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        cache: Arc<BlockCache>,
        cfg: Arc<ReadConfig>,
        key: String,
        etag: String,
        size: u64,
        crc64: Option<u64>,
    ) -> Self {
        // The cache decides the block size: every reader must cut blocks the same way.
        let cfg = ReadConfig {
            block_size: cache.block_size(),
            ..(*cfg).clone()
        }
        .normalized();
        ObjectReader {
            src: Source {
                store,
                cache,
                key: key.into(),
                etag: etag.into(),
                size,
            },
            block_size: cfg.block_size,
            first_request: cfg.first_request_size,
            max_request: cfg.max_request_size,
            max_window: cfg.max_window,
            max_parallel: cfg.max_parallel_requests,
            queue: Queue::new(cfg.block_size),
            window: cfg.first_request_size,
            target_end: 0,
            last_end: None,
            crc: CrcTracker::new(crc64),
            corrupt: None,
        }
    }

    pub fn key(&self) -> &str {
        &self.src.key
    }

    pub fn etag(&self) -> &str {
        &self.src.etag
    }

    pub fn size(&self) -> u64 {
        self.src.size
    }

    /// Current read-ahead window (for tests and debugging).
    pub fn window(&self) -> u64 {
        self.window
    }

    fn reset(&mut self, offset: u64) {
        self.queue.reset_to(offset, self.block_size);
        self.window = self.first_request;
        self.target_end = 0;
    }

    /// Returns `len` bytes at `offset`, fewer only at the end of the object.
    pub async fn read(&mut self, offset: u64, len: u32) -> Result<Bytes, ReadError> {
        if let Some((computed, expected)) = self.corrupt {
            return Err(ReadError::CrcMismatch {
                key: self.src.key.to_string(),
                computed,
                expected,
            });
        }
        let size = self.src.size;
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + u64::from(len)).min(size);
        let access = window::classify(self.last_end, offset, self.window, 2 * self.block_size);
        let continuing = access == Access::Sequential && self.last_end.is_some();
        if access == Access::Random {
            self.reset(offset);
            if let Some(data) = self.read_small_random(offset, end).await? {
                self.last_end = Some(end);
                self.verify(offset, &data)?;
                return Ok(data);
            }
        }
        // Reading beyond the queue (a skip, or the cache served us past it): restart the
        // queue at this read instead of fetching bytes behind the reader.
        if self.queue.is_empty() || offset >= self.queue.end() {
            self.queue.reset_to(offset, self.block_size);
        }
        if continuing && window::should_grow(end, self.queue.end(), self.window) {
            // The window may outgrow `max_window` when the link needs more bytes in
            // flight than that to hide its round trip.
            let (parallel, request) = self.plan_now();
            let max_window = self.max_window.max(parallel as u64 * request);
            self.window = window::grow(self.window, max_window);
            // When the link needs more in flight than the configured floor, every
            // doubling step costs a round trip: ramp up twice as fast.
            if parallel > self.max_parallel && self.src.cache.link().rtt() >= FAR_RTT {
                self.window = window::grow(self.window, max_window);
            }
            self.target_end = self.target_end.max(end + self.window).min(size);
        }
        self.top_up();
        let result = self.serve(offset, end).await;
        match &result {
            Ok(_) => {
                self.last_end = Some(end);
                self.queue.trim_before(end);
                self.top_up();
            }
            Err(_) => {
                self.last_end = None;
                self.reset(offset);
            }
        }
        let data = result?;
        self.verify(offset, &data)?;
        Ok(data)
    }

    /// A small read at a random position: served from (or fetched as) one
    /// [`SMALL_BLOCK`]-sized piece cached on its own, unless its 1 MiB block is cached or
    /// being fetched already. `None` when the read is not small or crosses a piece.
    ///
    /// Why: a random reader touching N places would otherwise hold N whole 1 MiB blocks
    /// in the cache (2,000 random 4 KiB reads = 2 GiB of blocks against a 256 MiB cache,
    /// so a second pass missed again); 64 KiB pieces keep 16 times more places cached,
    /// and a miss fetches 64 KiB instead of 1 MiB.
    async fn read_small_random(
        &mut self,
        offset: u64,
        end: u64,
    ) -> Result<Option<Bytes>, ReadError> {
        let piece = offset / SMALL_BLOCK;
        if (end - 1) / SMALL_BLOCK != piece {
            return Ok(None);
        }
        let block = self.src.block_id(offset / self.block_size);
        if self.src.cache.inflight().contains(&block) {
            return Ok(None);
        }
        if let Some(data) = self.src.cache.get_any(&block).await {
            let block_start = (offset / self.block_size) * self.block_size;
            let from = (offset - block_start) as usize;
            let to = ((end - block_start) as usize).min(data.len());
            return Ok(Some(data.slice(from.min(to)..to)));
        }
        let id = self.src.block_id(SMALL_BLOCK_TAG | piece);
        let start = piece * SMALL_BLOCK;
        let data = match self.src.cache.get(&id) {
            Some(data) => data,
            None => {
                let piece_end = (start + SMALL_BLOCK).min(self.src.size);
                let _permit = self.src.cache.reserve(piece_end - start).await;
                let src = &self.src;
                let data =
                    fetch_range(&*src.store, &src.key, &src.etag, src.size, start..piece_end)
                        .await?;
                src.cache.insert(id, data.clone());
                data
            }
        };
        let from = (offset - start) as usize;
        let to = ((end - start) as usize).min(data.len());
        Ok(Some(data.slice(from..to)))
    }

    /// Queues what needs no request at `queue.end()`: a cached block, or another
    /// reader's GET in flight. Returns false when a request of our own is needed.
    fn queue_shared(&mut self) -> bool {
        let id = self.src.block_id(self.queue.end() / self.block_size);
        if self.src.cache.contains(&id)
            && let Some(block) = self.src.cache.get(&id)
        {
            self.queue.push_ready(block);
            return true;
        }
        if let Some(leader) = self.src.cache.inflight().lookup(&id) {
            self.queue.push_follow(leader, self.src.size);
            return true;
        }
        false
    }

    /// (requests in flight, request size) for read-ahead now: the configured floor, or
    /// what the measured link needs to hide its round trip ([`super::link`]).
    fn plan_now(&self) -> (usize, u64) {
        self.src
            .cache
            .link()
            .plan(self.max_request, self.block_size, self.max_parallel)
    }

    /// Queues read-ahead up to `target_end` without waiting for memory.
    fn top_up(&mut self) {
        let mut in_flight = self.queue.in_flight();
        let (parallel, request) = self.plan_now();
        while self.queue.end() < self.target_end {
            if self.queue_shared() {
                continue;
            }
            if in_flight >= parallel {
                break;
            }
            let start = self.queue.end();
            let len = self.request_len(start, self.target_end, request);
            let Some(permit) = self.src.cache.try_reserve_prefetch(len) else {
                break;
            };
            self.queue.push_fetch(&self.src, len, permit);
            in_flight += 1;
        }
    }

    /// Length of a request starting at block-aligned `start` that covers up to `to`
    /// (rounded up to a block), at most `max` bytes, stopping before a block that is
    /// cached or being fetched already.
    fn request_len(&self, start: u64, to: u64, max: u64) -> u64 {
        let end = window::block_ceil(to, self.block_size, self.src.size).min(start + max);
        let mut stop = (start + self.block_size).min(self.src.size);
        while stop < end {
            let id = self.src.block_id(stop / self.block_size);
            if self.src.cache.contains(&id) || self.src.cache.inflight().contains(&id) {
                break;
            }
            stop = (stop + self.block_size).min(end);
        }
        stop - start
    }

    async fn serve(&mut self, offset: u64, end: u64) -> Result<Bytes, ReadError> {
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut pos = offset;
        while pos < end {
            let (start, data) = self.data_at(pos, end).await?;
            let from = (pos - start) as usize;
            let to = ((end - start) as usize).min(data.len());
            if to <= from {
                // Cannot happen with consistent sizes; refuse rather than loop forever.
                return Err(StoreError::InvalidResponse {
                    operation: "GetObject".into(),
                    message: format!("no data for offset {pos} of {}", self.src.key),
                }
                .into());
            }
            pieces.push(data.slice(from..to));
            pos = start + to as u64;
        }
        if pieces.len() == 1
            && let Some(only) = pieces.pop()
        {
            return Ok(only);
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for p in &pieces {
            out.extend_from_slice(p);
        }
        Ok(out.freeze())
    }

    /// Some data covering `pos`, with the offset where that data starts.
    async fn data_at(&mut self, pos: u64, end: u64) -> Result<(u64, Bytes), ReadError> {
        if let Some(found) = self.queue.data_at(pos, &self.src).await {
            return found;
        }
        let index = pos / self.block_size;
        let block_start = index * self.block_size;
        if let Some(block) = self.src.cache.get_any(&self.src.block_id(index)).await {
            return Ok((block_start, block));
        }
        if !self.queue.is_empty() && pos < self.queue.start() {
            // Short backward re-read of data already trimmed and evicted: fetch just that
            // block, leaving the read-ahead alone.
            let block_end = (block_start + self.block_size).min(self.src.size);
            let _permit = self.src.cache.reserve(block_end - block_start).await;
            let src = &self.src;
            let data = fetch_range(
                &*src.store,
                &src.key,
                &src.etag,
                src.size,
                block_start..block_end,
            )
            .await?;
            src.cache
                .insert_range(&src.key, &src.etag, block_start, &data);
            return Ok((block_start, data));
        }
        // Demand request at the queue end: the application is waiting for it.
        if block_start != self.queue.end() {
            self.queue.reset_to(pos, self.block_size);
        }
        if !self.queue_shared() {
            let want = end.max(block_start + self.first_request);
            let len = self.request_len(block_start, want, self.max_request.max(self.first_request));
            let permit = self.src.cache.reserve(len).await;
            self.queue.push_fetch(&self.src, len, permit);
        }
        // A read larger than one request: start the rest now, in parallel, with whatever
        // memory is free (anything not started here becomes a demand request later).
        let read_end = window::block_ceil(end, self.block_size, self.src.size);
        while self.queue.end() < read_end {
            if self.queue_shared() {
                continue;
            }
            let start = self.queue.end();
            let len = self.request_len(start, read_end, self.max_request);
            let Some(permit) = self.src.cache.try_reserve(len) else {
                break;
            };
            self.queue.push_fetch(&self.src, len, permit);
        }
        match self.queue.data_at(pos, &self.src).await {
            Some(found) => found,
            None => Err(StoreError::InvalidResponse {
                operation: "GetObject".into(),
                message: format!("no data queued for offset {pos} of {}", self.src.key),
            }
            .into()),
        }
    }

    fn verify(&mut self, offset: u64, data: &Bytes) -> Result<(), ReadError> {
        if let Some((computed, expected)) = self.crc.observe(offset, data, self.src.size) {
            tracing::error!(key = %self.src.key, computed, expected, "CRC64 mismatch on read");
            self.src.cache.invalidate_key(&self.src.key);
            self.corrupt = Some((computed, expected));
            return Err(ReadError::CrcMismatch {
                key: self.src.key.to_string(),
                computed,
                expected,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc(data: &[u8]) -> u64 {
        crate::crc64::crc64(data)
    }

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn crc_tracker_accepts_overlapping_in_order_reads() {
        let data = b"123456789";
        let mut t = CrcTracker::new(Some(crc(data)));
        assert_eq!(crc(data), 0x995DC9BBDF1939FA);
        assert!(t.observe(0, &b(b"1234"), 9).is_none());
        assert!(t.observe(2, &b(b"3456"), 9).is_none()); // short backward overlap
        assert!(t.observe(6, &b(b"789"), 9).is_none());
        assert_eq!(t.hashed, None, "done");
    }

    #[test]
    fn crc_tracker_reports_mismatch() {
        let mut t = CrcTracker::new(Some(crc(b"123456789")));
        assert!(t.observe(0, &b(b"1234"), 9).is_none());
        assert_eq!(
            t.observe(4, &b(b"56780"), 9).map(|(_, e)| e),
            Some(crc(b"123456789"))
        );
    }

    /// Parked data is a copy: the slice handed to the application must not keep its 1 MiB
    /// cache block alive.
    #[test]
    fn crc_tracker_parks_copies_and_gives_up_on_far_jumps() {
        let block = Bytes::from(vec![7u8; 1 << 20]);
        let mut t = CrcTracker::new(Some(1));
        assert!(t.observe(4096, &block.slice(4096..8192), 1 << 30).is_none());
        assert_eq!(t.parked_bytes, 4096);
        assert!(
            block.is_unique(),
            "the parked piece still references the block"
        );
        // A read far beyond the hashed prefix is a skip, not reordering.
        assert!(
            t.observe(MAX_PARKED + 1, &block.slice(..10), 1 << 30)
                .is_none()
        );
        assert!(t.hashed.is_none() && t.parked.is_empty());
    }

    #[test]
    fn crc_tracker_reorders_and_gives_up_on_gaps() {
        let mut t = CrcTracker::new(Some(crc(b"123456789")));
        assert!(t.observe(6, &b(b"789"), 9).is_none());
        assert!(t.observe(3, &b(b"456"), 9).is_none());
        assert_eq!(t.hashed, Some(0));
        assert!(t.observe(0, &b(b"123"), 9).is_none());
        assert_eq!(t.hashed, None, "verified after reordering");
        // Wrong data delivered out of order is still caught.
        let mut bad = CrcTracker::new(Some(crc(b"123456789")));
        assert!(bad.observe(5, &b(b"6789"), 9).is_none());
        assert!(bad.observe(0, &b(b"12X45"), 9).is_some());
        // A reader that never fills the gap is not verified (and never errors).
        let mut gap = CrcTracker::new(Some(1));
        assert!(gap.observe(0, &b(b"12"), 9).is_none());
        assert!(gap.observe(5, &b(b"6789"), 9).is_none());
        assert_eq!(gap.hashed, Some(2));
    }
}
