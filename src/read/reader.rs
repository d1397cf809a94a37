//! [`ObjectReader`]: one per open file handle, driving the read-ahead [`Queue`].
//!
//! Each `read` is classified ([`window::classify`]). A random read resets the window to
//! `first_request_size` and cancels queued requests. A sequential read that continues an
//! earlier one widens the window ([`window::should_grow`]/[`window::grow`]) and tops the
//! queue up to `read end + window`, in block-aligned requests of at most
//! `max_request_size`, at most `max_parallel_requests` in flight — or more, up to the
//! bandwidth-delay product the mount has measured ([`super::link`]), with the window
//! widened to match. On such a far link the window grows 16x per step, and at a round
//! trip of 10 ms or more over slow connections a ramping window is spread over small
//! parallel GETs. Blocks already in the memory cache are queued without a request.
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

use super::block::BlockRef;
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
/// Bytes served from a fetched block whose CRC the fetch computed ([`BlockRef`]) are not
/// hashed again: the tracker notes how far into that very buffer the application has
/// read, and when it has read the whole block it folds the block's CRC into the digest
/// ([`crate::crc64::combine`]). Only a slice of the same buffer counts (pointer
/// identity, [`BlockRef::holds`]): bytes from another copy of the block, a cache hit or
/// a parked piece are hashed, so the check still covers exactly what was handed out.
///
/// Pitfall: parked data must be a copy. A read's `Bytes` is a slice of a 1 MiB cache
/// block and keeps the whole block alive; parking 4 KiB slices of a random reader held
/// 1 MiB each (1.6 GiB RSS after 2,000 random reads with a 256 MiB cache).
struct CrcTracker {
    expected: Option<u64>,
    /// CRC-64 of the first `hashed` bytes.
    digest: u64,
    /// Bytes hashed so far; `None` once verification was given up.
    hashed: Option<u64>,
    /// The block starting at `hashed` that the application is reading, with how far
    /// (object offset) it has been handed out; its CRC is folded in once complete.
    current: Option<(BlockRef, u64)>,
    parked: std::collections::BTreeMap<u64, Bytes>,
    parked_bytes: u64,
    /// Folds a full block's CRC in cheaply (see [`crate::crc64::Combiner`]).
    combiner: Option<Arc<crate::crc64::Combiner>>,
}

/// One piece of a read's reply: object offset, bytes, and the fetched block (with its
/// CRC) the bytes are a slice of, when known.
struct Piece {
    offset: u64,
    data: Bytes,
    block: Option<BlockRef>,
}

/// Size of the pieces small random reads fetch and cache (instead of whole blocks).
const SMALL_BLOCK: u64 = 64 * 1024;
/// Marks a cache index as a [`SMALL_BLOCK`] piece number rather than a block number.
const SMALL_BLOCK_TAG: u64 = 1 << 63;

/// Round trip above which a sequential reader's window grows 4x per step, not 2x.
const FAR_RTT: std::time::Duration = std::time::Duration::from_millis(2);

/// Round trip above which a ramping window is spread over small parallel GETs. Higher
/// than [`FAR_RTT`]: a loaded machine can show a few ms to headers on loopback, where
/// more, smaller GETs would only cost CPU.
const SPLIT_RTT: std::time::Duration = std::time::Duration::from_millis(10);

/// Most out-of-order data kept for the CRC check.
const MAX_PARKED: u64 = 16 * 1024 * 1024;

impl CrcTracker {
    fn new(expected: Option<u64>, combiner: Option<Arc<crate::crc64::Combiner>>) -> Self {
        CrcTracker {
            expected,
            digest: 0,
            hashed: expected.map(|_| 0),
            current: None,
            parked: Default::default(),
            parked_bytes: 0,
            combiner,
        }
    }

    fn give_up(&mut self) {
        self.hashed = None;
        self.current = None;
        self.parked.clear();
        self.parked_bytes = 0;
    }

    /// End of the bytes accounted for: hashed, or handed out from the current block.
    fn frontier(&self, hashed: u64) -> u64 {
        self.current.as_ref().map_or(hashed, |(_, to)| *to)
    }

    /// Feeds the bytes `data` found at `offset`, without a known block; see
    /// [`CrcTracker::observe_piece`].
    #[cfg(test)]
    fn observe(&mut self, offset: u64, data: &Bytes, size: u64) -> Option<(u64, u64)> {
        self.observe_piece(
            &Piece {
                offset,
                data: data.clone(),
                block: None,
            },
            size,
        )
    }

    /// Feeds one piece handed to the application; returns `(computed, expected)` when
    /// the whole object has been accounted for and the sums differ.
    fn observe_piece(&mut self, piece: &Piece, size: u64) -> Option<(u64, u64)> {
        let hashed = self.hashed?;
        self.expected?;
        let (offset, data) = (piece.offset, &piece.data);
        let frontier = self.frontier(hashed);
        if offset > frontier {
            self.parked_bytes += data.len() as u64;
            if self.parked_bytes > MAX_PARKED || offset - frontier > MAX_PARKED {
                // Too far ahead to be reordering: a reader that skips.
                self.give_up();
            } else if let Some(old) = self.parked.insert(offset, Bytes::copy_from_slice(data)) {
                self.parked_bytes -= old.len() as u64;
            }
            return None;
        }
        self.account(offset, data, piece.block.as_ref());
        loop {
            let frontier = self.frontier(self.hashed?);
            let Some(entry) = self.parked.first_entry() else {
                break;
            };
            if *entry.key() > frontier {
                break;
            }
            let (off, parked) = entry.remove_entry();
            self.parked_bytes -= parked.len() as u64;
            self.account(off, &parked, None);
        }
        self.check_done(size)
    }

    /// Accounts for `data` at `offset` (≤ the frontier): as part of its fetched block
    /// when it is a slice of it, else by hashing what lies beyond the frontier.
    fn account(&mut self, offset: u64, data: &Bytes, block: Option<&BlockRef>) {
        let Some(hashed) = self.hashed else { return };
        let end = offset + data.len() as u64;
        if end <= self.frontier(hashed) {
            return;
        }
        let block = block.filter(|b| b.holds(offset, data));
        match (&mut self.current, block) {
            (Some((cur, to)), Some(b)) if cur.data.as_ptr() == b.data.as_ptr() => *to = end,
            _ => {
                self.hash_current();
                let hashed = self.hashed.unwrap_or(0);
                match block {
                    Some(b) if b.start == hashed => self.current = Some((b.clone(), end)),
                    _ => self.hash_from(offset, data),
                }
            }
        }
        self.fold_complete_block();
    }

    /// The current block, read to its end: fold its CRC in.
    fn fold_complete_block(&mut self) {
        if let Some((cur, to)) = &self.current
            && *to == cur.start + cur.data.len() as u64
        {
            let len = cur.data.len() as u64;
            self.digest = match &self.combiner {
                // The first block: nothing to fold into.
                _ if *to == len => cur.crc,
                Some(c) if c.len2() == len => c.combine(self.digest, cur.crc),
                // A short last block: once per object.
                _ => crate::crc64::combine(self.digest, cur.crc, len),
            };
            self.hashed = Some(*to);
            self.current = None;
        }
    }

    /// Hashes the part of the current block handed out so far (the next bytes come
    /// from elsewhere) and forgets the block.
    fn hash_current(&mut self) {
        if let Some((cur, to)) = self.current.take() {
            let part = cur.data.slice(..(to - cur.start) as usize);
            self.hash_from(cur.start, &part);
        }
    }

    /// Hashes the part of `data` (at `offset` ≤ `hashed`) beyond `hashed`.
    fn hash_from(&mut self, offset: u64, data: &[u8]) {
        let Some(hashed) = self.hashed else { return };
        let end = offset + data.len() as u64;
        if end <= hashed {
            return;
        }
        let mut h = crate::crc64::Crc64Hasher::with_initial(self.digest);
        h.update(&data[(hashed - offset) as usize..]);
        self.digest = h.finish();
        self.hashed = Some(end);
    }

    fn check_done(&mut self, size: u64) -> Option<(u64, u64)> {
        let expected = self.expected?;
        if self.hashed? != size {
            return None;
        }
        let computed = self.digest;
        // Verified once; re-reads of the tail must not re-hash.
        self.expected = None;
        self.give_up();
        (computed != expected).then_some((computed, expected))
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
        let combiner = cache.block_combiner();
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
            crc: CrcTracker::new(crc64, Some(combiner)),
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
                let piece = Piece {
                    offset,
                    data,
                    block: None,
                };
                self.verify(std::slice::from_ref(&piece))?;
                return Ok(piece.data);
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
            // doubling step costs a round trip: ramp up 16x per step (1 MiB, 16 MiB,
            // then the whole bandwidth-delay product). Only a reader that has read
            // half its first window in order gets here, so a header peek never does.
            if self.far_link(parallel) {
                for _ in 0..3 {
                    self.window = window::grow(self.window, max_window);
                }
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
        let (data, pieces) = result?;
        self.verify(&pieces)?;
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
    /// Whether the measured link needs more requests in flight than the configured
    /// floor and has a round trip worth hiding.
    fn far_link(&self, parallel: usize) -> bool {
        parallel > self.max_parallel && self.src.cache.link().rtt() >= FAR_RTT
    }

    /// Whether one request takes longer to transfer on one connection than a round
    /// trip, on a link of at least [`SPLIT_RTT`]: then parallel small GETs beat a few
    /// large ones. Fast connections (loopback, even with a loaded machine's delays)
    /// never qualify.
    fn slow_connections(&self, request: u64) -> bool {
        let link = self.src.cache.link();
        let (rtt, rate) = (link.rtt(), link.conn_rate());
        rtt >= SPLIT_RTT && rate > 0 && request as f64 / rate as f64 >= rtt.as_secs_f64()
    }

    fn top_up(&mut self) {
        let mut in_flight = self.queue.in_flight();
        let (parallel, mut request) = self.plan_now();
        if self.far_link(parallel)
            && self.slow_connections(request)
            && self.window < self.max_window.max(parallel as u64 * request)
        {
            // While the window ramps up, spread it over the parallel requests: on a far
            // link each GET's first byte comes a round trip late, so 16 MiB is sooner as
            // 16 GETs of 1 MiB than as 2 of 8 MiB (above all when each connection is
            // slow). At full width the link's own request size applies.
            let share = (self.window / parallel as u64) / self.block_size * self.block_size;
            request = request.min(share.max(self.block_size));
        }
        while self.queue.end() < self.target_end {
            if self.queue_shared() {
                continue;
            }
            if in_flight >= parallel {
                break;
            }
            let start = self.queue.end();
            // No dribbling: while GETs are in flight, a gap shorter than one request
            // (not reaching the end of the object) waits until it has grown. Blocks now
            // reach the reader while their GET runs, so the target moves one read at a
            // time, and topping up each time sent one small GET per application read.
            let gap_end = window::block_ceil(self.target_end, self.block_size, self.src.size);
            if in_flight > 0 && gap_end < self.src.size && gap_end - start < request {
                break;
            }
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

    /// The bytes `[offset, end)`, and the pieces they were made of (for the CRC check).
    async fn serve(&mut self, offset: u64, end: u64) -> Result<(Bytes, Vec<Piece>), ReadError> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut pos = offset;
        while pos < end {
            let (start, data, crc) = self.data_at(pos, end).await?;
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
            pieces.push(Piece {
                offset: pos,
                data: data.slice(from..to),
                block: crc.map(|crc| BlockRef { start, data, crc }),
            });
            pos = start + to as u64;
        }
        if let [only] = &pieces[..] {
            return Ok((only.data.clone(), pieces));
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for p in &pieces {
            out.extend_from_slice(&p.data);
        }
        Ok((out.freeze(), pieces))
    }

    /// Some data covering `pos`, with the offset where that data starts and, when it is
    /// a whole fetched block, the block's CRC-64.
    async fn data_at(
        &mut self,
        pos: u64,
        end: u64,
    ) -> Result<(u64, Bytes, Option<u64>), ReadError> {
        if let Some(found) = self.queue.data_at(pos, &self.src).await {
            return found;
        }
        let index = pos / self.block_size;
        let block_start = index * self.block_size;
        if let Some(block) = self.src.cache.get_any(&self.src.block_id(index)).await {
            return Ok((block_start, block, None));
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
            return Ok((block_start, data, None));
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

    fn verify(&mut self, pieces: &[Piece]) -> Result<(), ReadError> {
        let mismatch = pieces
            .iter()
            .find_map(|p| self.crc.observe_piece(p, self.src.size));
        if let Some((computed, expected)) = mismatch {
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
        let mut t = CrcTracker::new(Some(crc(data)), None);
        assert_eq!(crc(data), 0x995DC9BBDF1939FA);
        assert!(t.observe(0, &b(b"1234"), 9).is_none());
        assert!(t.observe(2, &b(b"3456"), 9).is_none()); // short backward overlap
        assert!(t.observe(6, &b(b"789"), 9).is_none());
        assert_eq!(t.hashed, None, "done");
    }

    #[test]
    fn crc_tracker_reports_mismatch() {
        let mut t = CrcTracker::new(Some(crc(b"123456789")), None);
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
        let mut t = CrcTracker::new(Some(1), None);
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

    fn block_ref(start: u64, data: &Bytes) -> BlockRef {
        BlockRef {
            start,
            data: data.clone(),
            crc: crc(data),
        }
    }

    fn piece(offset: u64, data: Bytes, block: Option<&BlockRef>) -> Piece {
        Piece {
            offset,
            data,
            block: block.cloned(),
        }
    }

    /// Reads served from fetched blocks fold the blocks' CRCs, mixed with hashed bytes
    /// (cache hits), overlaps and reordering, and still give the object's CRC.
    #[test]
    fn crc_tracker_folds_block_crcs() {
        let object: Vec<u8> = (0..40u32).map(|i| (i * 7 + 3) as u8).collect();
        let blocks: Vec<Bytes> = object.chunks(10).map(Bytes::copy_from_slice).collect();
        let refs: Vec<BlockRef> = (0..4)
            .map(|i| block_ref(10 * i as u64, &blocks[i]))
            .collect();
        let combiner = Arc::new(crate::crc64::Combiner::new(10));
        let mut t = CrcTracker::new(Some(crc(&object)), Some(combiner));
        // Block 0 in two reads from its buffer: folded, not hashed.
        assert!(
            t.observe_piece(&piece(0, blocks[0].slice(..4), Some(&refs[0])), 40)
                .is_none()
        );
        assert_eq!(t.hashed, Some(0));
        assert!(
            t.observe_piece(&piece(4, blocks[0].slice(4..), Some(&refs[0])), 40)
                .is_none()
        );
        assert_eq!((t.hashed, t.digest), (Some(10), crc(&object[..10])));
        // Block 1: half from its buffer, then the rest as a copy (a cache hit).
        assert!(
            t.observe_piece(&piece(10, blocks[1].slice(..5), Some(&refs[1])), 40)
                .is_none()
        );
        let copy = Bytes::copy_from_slice(&object[13..20]);
        assert!(t.observe_piece(&piece(13, copy, None), 40).is_none());
        assert_eq!((t.hashed, t.digest), (Some(20), crc(&object[..20])));
        // Block 3 arrives before block 2: parked, then hashed once the gap is filled.
        assert!(
            t.observe_piece(&piece(30, blocks[3].clone(), Some(&refs[3])), 40)
                .is_none()
        );
        assert_eq!(t.hashed, Some(20));
        assert!(
            t.observe_piece(&piece(20, blocks[2].clone(), Some(&refs[2])), 40)
                .is_none()
        );
        assert_eq!(t.hashed, None, "verified");
    }

    /// A block claimed with the wrong bytes (another buffer) is hashed, so corruption in
    /// what the application got is caught even when a block CRC is at hand.
    #[test]
    fn crc_tracker_hashes_bytes_not_of_the_block() {
        let object = Bytes::from_static(b"0123456789abcdefghij");
        let good = block_ref(0, &object.slice(..10));
        let bad = Bytes::from_static(b"0123X56789");
        let mut t = CrcTracker::new(Some(crc(&object)), None);
        // The piece claims the good block but is a slice of another buffer.
        assert!(t.observe_piece(&piece(0, bad, Some(&good)), 20).is_none());
        let tail = object.slice(10..);
        let tail_ref = block_ref(10, &tail);
        assert!(
            t.observe_piece(&piece(10, tail.clone(), Some(&tail_ref)), 20)
                .is_some()
        );
    }

    /// A block whose CRC (computed by the fetch) disagrees with the object is caught.
    #[test]
    fn crc_tracker_catches_a_bad_block_crc() {
        let object = Bytes::from_static(b"0123456789");
        let mut r = block_ref(0, &object);
        r.crc ^= 1;
        let mut t = CrcTracker::new(Some(crc(&object)), None);
        assert!(
            t.observe_piece(&piece(0, object.clone(), Some(&r)), 10)
                .is_some()
        );
    }

    #[test]
    fn crc_tracker_reorders_and_gives_up_on_gaps() {
        let mut t = CrcTracker::new(Some(crc(b"123456789")), None);
        assert!(t.observe(6, &b(b"789"), 9).is_none());
        assert!(t.observe(3, &b(b"456"), 9).is_none());
        assert_eq!(t.hashed, Some(0));
        assert!(t.observe(0, &b(b"123"), 9).is_none());
        assert_eq!(t.hashed, None, "verified after reordering");
        // Wrong data delivered out of order is still caught.
        let mut bad = CrcTracker::new(Some(crc(b"123456789")), None);
        assert!(bad.observe(5, &b(b"6789"), 9).is_none());
        assert!(bad.observe(0, &b(b"12X45"), 9).is_some());
        // A reader that never fills the gap is not verified (and never errors).
        let mut gap = CrcTracker::new(Some(1), None);
        assert!(gap.observe(0, &b(b"12"), 9).is_none());
        assert!(gap.observe(5, &b(b"6789"), 9).is_none());
        assert_eq!(gap.hashed, Some(2));
    }
}
