//! The per-handle read-ahead queue: contiguous chunks of the object, each either a ranged
//! GET running in its own task or data already at hand.
//!
//! The queue always covers one contiguous range `[start, next_fetch)` of block-aligned
//! chunks. Requests are spawned as tokio tasks so several run in parallel and keep running
//! while the application processes earlier data. Each chunk owns a [`BudgetPermit`] for
//! its bytes. A request caches, then publishes, each block as soon as its bytes are in,
//! so a read waits for its own block, not for the end of a large GET (which on a slow
//! connection is most of the GET's time), and a block a reader was served stays cached
//! even if the reader seeks away and so aborts the rest of the GET.
//!
//! A request is one streaming GET whose body is copied once, straight into per-block
//! buffers ([`fetch_blocks`]), hashing each block's CRC-64 on the way (the bytes are in
//! the CPU cache right then; see [`super::block`]); the blocks are shared with the cache
//! without another copy.
//! If the body breaks part-way, the remainder comes from `get_range` (which retries), so
//! a request yields exactly its range or an error.
//!
//! Cancellation: a `JoinHandle` does not stop its task when dropped, so [`FetchTask`]
//! aborts on drop. Clearing the queue (random seek, error, handle closed) therefore
//! cancels every request that would now be wasted.
//!
//! Memory: prefetch reserves with [`BlockCache::try_reserve_prefetch`], which never waits
//! and leaves a quarter of the budget for requests an application is blocked on; only
//! those (`demand` requests) wait for memory. A reader never waits while holding prefetch
//! buffers it could release, so readers cannot deadlock each other.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ReadError;
use super::block::{BlockData, BlockId};
use super::budget::BudgetPermit;
use super::cache::BlockCache;
use super::inflight::{FetchOutcome, Inflight, Registration, follow};
use super::window::block_floor;
use crate::crc64::Crc64Hasher;
use crate::store::{ObjectStore, StoreError};

/// Blocks of a GET in progress with their CRCs, published as each one completes, so a
/// reader can use the first blocks of a large GET before its last bytes arrive.
type Progress = watch::Sender<Vec<(Bytes, u64)>>;

/// A spawned fetch that is aborted when dropped.
pub struct FetchTask {
    task: JoinHandle<Result<BlockData, ReadError>>,
    /// The blocks completed so far (the sender drops when the task ends).
    progress: watch::Receiver<Vec<(Bytes, u64)>>,
}

impl Drop for FetchTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum ChunkState {
    InFlight(FetchTask),
    /// Another reader's GET covers this chunk.
    Follow(watch::Receiver<FetchOutcome>),
    Ready(BlockData),
}

struct Chunk {
    range: Range<u64>,
    state: ChunkState,
    _permit: Option<BudgetPermit>,
}

/// Keeps [`crate::metrics::PREFETCH_IN_FLIGHT`] right even when a task is aborted.
struct InFlightGuard;

impl InFlightGuard {
    fn new() -> Self {
        ::metrics::gauge!(crate::metrics::PREFETCH_IN_FLIGHT).increment(1.0);
        InFlightGuard
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        ::metrics::gauge!(crate::metrics::PREFETCH_IN_FLIGHT).decrement(1.0);
    }
}

/// ETags compared without quotes and weak prefix (some servers drop the quotes).
pub(crate) fn etag_eq(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    norm(a) == norm(b)
}

pub(crate) fn stale(key: &str, etag: &str) -> ReadError {
    ReadError::Stale {
        key: key.to_string(),
        etag: etag.to_string(),
    }
}

/// One ETag-pinned ranged GET, checked for length and version.
pub(crate) async fn fetch_range(
    store: &dyn ObjectStore,
    key: &str,
    etag: &str,
    size: u64,
    range: Range<u64>,
) -> Result<Bytes, ReadError> {
    let want = range.end - range.start;
    let out = match store.get_range(key, range.clone(), Some(etag)).await {
        Ok(out) => out,
        Err(e) if e.is_precondition_failed() => return Err(stale(key, etag)),
        Err(e) => return Err(e.into()),
    };
    if !etag_eq(&out.etag, etag) || out.object_size != size {
        return Err(stale(key, etag));
    }
    if out.data.len() as u64 != want {
        return Err(StoreError::InvalidResponse {
            operation: "GetObject".into(),
            message: format!(
                "range {}-{} of {key}: got {} bytes, expected {want}",
                range.start,
                range.end - 1,
                out.data.len()
            ),
        }
        .into());
    }
    Ok(out.data)
}

/// Per-block buffers being filled from a GET body, with the CRC-64 of each block
/// computed as its bytes are copied in (hot in the CPU cache).
struct BlockBuilder {
    range: Range<u64>,
    block: u64,
    /// Object offset of the next byte.
    pos: u64,
    blocks: Vec<Bytes>,
    crcs: Vec<u64>,
    /// Blocks already handed to the cache.
    cached: usize,
    current: BytesMut,
    crc: Crc64Hasher,
}

impl BlockBuilder {
    fn new(range: Range<u64>, block: u64) -> Self {
        let n = (range.end - range.start).div_ceil(block) as usize;
        BlockBuilder {
            pos: range.start,
            range,
            block,
            blocks: Vec::with_capacity(n),
            crcs: Vec::with_capacity(n),
            cached: 0,
            current: BytesMut::new(),
            crc: Crc64Hasher::new(),
        }
    }

    /// Appends `data`, the object bytes at `self.pos`.
    fn append(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let block_end = (block_floor(self.pos, self.block) + self.block).min(self.range.end);
            if self.current.is_empty() && self.current.capacity() == 0 {
                self.current.reserve((block_end - self.pos) as usize);
            }
            let take = ((block_end - self.pos) as usize).min(data.len());
            self.current.extend_from_slice(&data[..take]);
            self.crc.update(&data[..take]);
            data = &data[take..];
            self.pos += take as u64;
            if self.pos == block_end {
                self.blocks.push(std::mem::take(&mut self.current).freeze());
                self.crcs.push(std::mem::take(&mut self.crc).finish());
            }
        }
    }

    /// Caches the blocks completed since the last call. Called before they are published:
    /// a reader served a block and then gone elsewhere (a random seek drops its queue and
    /// so aborts this GET) still finds that block in the cache when it comes back.
    fn cache_new(&mut self, src: &Source) {
        let first = self.range.start / self.block;
        for (i, b) in self.blocks.iter().enumerate().skip(self.cached) {
            src.cache.insert(src.block_id(first + i as u64), b.clone());
        }
        self.cached = self.blocks.len();
    }

    /// Publishes the blocks completed since the last call.
    fn publish(&self, progress: Option<&Progress>) {
        let Some(p) = progress else { return };
        let have = p.borrow().len();
        if self.blocks.len() > have {
            let new = self.blocks[have..].iter().cloned();
            p.send_modify(|v| v.extend(new.zip(self.crcs[have..].iter().copied())));
        }
    }

    fn finish(self) -> BlockData {
        BlockData {
            start: self.range.start,
            block_size: self.block,
            blocks: self.blocks.into(),
            crcs: self.crcs.into(),
        }
    }
}

/// One ETag-pinned GET of `range` (block-aligned), streamed straight into per-block
/// buffers (one copy, no reassembly), each block published to `progress` when complete.
/// If the stream breaks, the rest comes from `get_range`, which retries; the result is
/// the exact range or an error.
async fn fetch_blocks(
    src: &Source,
    range: Range<u64>,
    progress: Option<&Progress>,
) -> Result<BlockData, ReadError> {
    let (store, key, etag, size) = (&*src.store, &*src.key, &*src.etag, src.size);
    let (block, link) = (src.cache.block_size(), src.cache.link());
    let sent = std::time::Instant::now();
    let mut out = match store.get_object(key, Some(range.clone()), Some(etag)).await {
        Ok(out) => out,
        Err(e) if e.is_precondition_failed() => return Err(stale(key, etag)),
        Err(e) => return Err(e.into()),
    };
    let headers_at = std::time::Instant::now();
    if !etag_eq(&out.meta.etag, etag) || out.meta.size != size {
        return Err(stale(key, etag));
    }
    let mut out_blocks = BlockBuilder::new(range.clone(), block);
    while let Some(item) = out.body.next().await {
        match item {
            Ok(data) => {
                if data.len() as u64 > range.end - out_blocks.pos {
                    return Err(StoreError::InvalidResponse {
                        operation: "GetObject".into(),
                        message: format!("more data than the requested range of {key}"),
                    }
                    .into());
                }
                out_blocks.append(&data);
                out_blocks.cache_new(src);
                out_blocks.publish(progress);
            }
            Err(e) if e.is_precondition_failed() => return Err(stale(key, etag)),
            Err(e) => {
                tracing::debug!(key, pos = out_blocks.pos, error = %e, "GET body broke; fetching the rest");
                break;
            }
        }
    }
    if out_blocks.pos == range.end {
        link.observe(
            headers_at.duration_since(sent),
            range.end - range.start,
            headers_at.elapsed(),
        );
    }
    if out_blocks.pos < range.end {
        let rest = fetch_range(store, key, etag, size, out_blocks.pos..range.end).await?;
        out_blocks.append(&rest);
        out_blocks.cache_new(src);
        out_blocks.publish(progress);
    }
    Ok(out_blocks.finish())
}

/// What a queue needs to fetch: the object identity and where to get/put the bytes.
#[derive(Clone)]
pub struct Source {
    pub store: Arc<dyn ObjectStore>,
    pub cache: Arc<BlockCache>,
    pub key: Arc<str>,
    pub etag: Arc<str>,
    pub size: u64,
}

impl Source {
    pub fn block_id(&self, index: u64) -> BlockId {
        BlockId {
            key: self.key.clone(),
            etag: self.etag.clone(),
            index,
        }
    }

    /// Spawns the GET of `range` (block-aligned), registered so other readers can follow
    /// it; the task caches what it fetched.
    fn spawn(&self, range: Range<u64>) -> FetchTask {
        let registration = self.register(range.clone());
        let (tx, progress) = watch::channel(Vec::new());
        FetchTask {
            task: tokio::spawn(self.clone().fetch(range, registration, Some(tx))),
            progress,
        }
    }

    /// Fetches `range` (block-aligned) into the cache now, registered so that a reader
    /// needing it meanwhile follows this GET (the sibling read-ahead of small files).
    pub async fn warm(&self, range: Range<u64>) -> Result<(), ReadError> {
        let registration = self.register(range.clone());
        self.clone()
            .fetch(range, registration, None)
            .await
            .map(|_| ())
    }

    fn register(&self, range: Range<u64>) -> Registration {
        self.cache
            .inflight()
            .register(&self.key, &self.etag, range, self.cache.block_size())
    }

    async fn fetch(
        self,
        range: Range<u64>,
        registration: Registration,
        progress: Option<Progress>,
    ) -> Result<BlockData, ReadError> {
        let src = self;
        let _guard = InFlightGuard::new();
        let result = match src
            .cache
            .get_range_from_disk(&src.key, &src.etag, range.clone())
            .await
        {
            Some(data) => Ok(data),
            // Each block is cached as it completes (`BlockBuilder::cache_new`).
            None => fetch_blocks(&src, range.clone(), progress.as_ref()).await,
        };
        registration.publish(match &result {
            Ok(data) => FetchOutcome::Done(data.clone()),
            Err(_) => FetchOutcome::Failed,
        });
        result
    }
}

/// The read-ahead queue of one handle (see the module docs).
pub struct Queue {
    block_size: u64,
    chunks: VecDeque<Chunk>,
    /// End of the queued range; where the next request starts.
    next_fetch: u64,
}

impl Queue {
    pub fn new(block_size: u64) -> Self {
        Queue {
            block_size,
            chunks: VecDeque::new(),
            next_fetch: 0,
        }
    }

    /// Start of the queued range (== `end()` when empty).
    pub fn start(&self) -> u64 {
        self.chunks
            .front()
            .map_or(self.next_fetch, |c| c.range.start)
    }

    pub fn end(&self) -> u64 {
        self.next_fetch
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Requests still running.
    pub fn in_flight(&self) -> usize {
        self.chunks
            .iter()
            .filter(|c| matches!(&c.state, ChunkState::InFlight(t) if !t.task.is_finished()))
            .count()
    }

    /// Drops (and cancels) everything; the next request will start at the block of `pos`.
    pub fn reset_to(&mut self, pos: u64, block: u64) {
        self.chunks.clear();
        self.next_fetch = block_floor(pos, block);
    }

    /// Drops chunks that end at or before `pos`.
    pub fn trim_before(&mut self, pos: u64) {
        while self.chunks.front().is_some_and(|c| c.range.end <= pos) {
            self.chunks.pop_front();
        }
    }

    /// Appends a request for `[end(), end() + len)`.
    pub fn push_fetch(&mut self, src: &Source, len: u64, permit: BudgetPermit) {
        let range = self.next_fetch..self.next_fetch + len;
        self.next_fetch = range.end;
        let task = src.spawn(range.clone());
        self.chunks.push_back(Chunk {
            range,
            state: ChunkState::InFlight(task),
            _permit: Some(permit),
        });
    }

    /// Appends a chunk served by another reader's GET, from `end()` to the end of that
    /// GET but not beyond `limit`.
    pub fn push_follow(&mut self, leader: Inflight, limit: u64) {
        let range = self.next_fetch..leader.range.end.min(limit).max(self.next_fetch);
        self.next_fetch = range.end;
        self.chunks.push_back(Chunk {
            range,
            state: ChunkState::Follow(leader.rx),
            _permit: None,
        });
    }

    /// Appends a cached block at `end()` (which must be that block's start).
    pub fn push_ready(&mut self, block: Bytes) {
        let range = self.next_fetch..self.next_fetch + block.len() as u64;
        self.next_fetch = range.end;
        self.chunks.push_back(Chunk {
            state: ChunkState::Ready(BlockData::single(range.start, self.block_size, block)),
            range,
            _permit: None,
        });
    }

    /// The block containing `pos` (its start, its data and its CRC-64 when the fetch
    /// computed it), waiting for its request if needed. `None` if `pos` is not queued. A
    /// failed request clears the queue and returns its error.
    pub async fn data_at(
        &mut self,
        pos: u64,
        src: &Source,
    ) -> Option<Result<(u64, Bytes, Option<u64>), ReadError>> {
        let i = self
            .chunks
            .iter()
            .position(|c| c.range.start <= pos && pos < c.range.end)?;
        let range = self.chunks[i].range.clone();
        if let ChunkState::Follow(rx) = &self.chunks[i].state {
            self.chunks[i].state = match follow(rx.clone()).await {
                Some(data) => ChunkState::Ready(data),
                // The other reader's GET failed or was cancelled: fetch it ourselves.
                None => ChunkState::InFlight(src.spawn(range.clone())),
            };
        }
        if let ChunkState::InFlight(task) = &mut self.chunks[i].state {
            // A block the GET has completed already serves the read now.
            let index = ((pos - range.start) / self.block_size) as usize;
            loop {
                let done = task.progress.borrow_and_update().get(index).cloned();
                if let Some((data, crc)) = done {
                    let start = range.start + index as u64 * self.block_size;
                    return Some(Ok((start, data, Some(crc))));
                }
                if task.task.is_finished() || task.progress.changed().await.is_err() {
                    break;
                }
            }
            let res = match (&mut task.task).await {
                Ok(r) => r,
                Err(join) => Err(ReadError::Store(StoreError::Io(std::io::Error::other(
                    format!("prefetch task failed: {join}"),
                )))),
            };
            match res {
                Ok(b) => self.chunks[i].state = ChunkState::Ready(b),
                Err(e) => {
                    self.chunks.clear();
                    return Some(Err(e));
                }
            }
        }
        match &self.chunks[i].state {
            ChunkState::Ready(data) => match data.block_ref_at(pos) {
                Some(r) => Some(Ok((r.start, r.data, Some(r.crc)))),
                None => data.block_at(pos).map(|(start, b)| Ok((start, b, None))),
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_without_quotes() {
        assert!(etag_eq("\"ABC\"", "ABC"));
        assert!(etag_eq("W/\"ABC\"", "\"ABC\""));
        assert!(!etag_eq("\"ABC\"", "\"ABD\""));
    }

    #[test]
    fn queue_tracks_its_range() {
        let mut q = Queue::new(4096);
        q.reset_to(5000, 4096);
        assert_eq!((q.start(), q.end()), (4096, 4096));
        q.push_ready(Bytes::from(vec![1; 4096]));
        q.push_ready(Bytes::from(vec![2; 100]));
        assert_eq!((q.start(), q.end()), (4096, 8292));
        q.trim_before(8192);
        assert_eq!((q.start(), q.end()), (8192, 8292));
        assert_eq!(q.in_flight(), 0);
    }
}
