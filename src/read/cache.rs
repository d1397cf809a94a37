//! The shared block cache: an LRU of `(key, etag, block index) → Bytes`.
//!
//! Blocks are `block_size` bytes (the last block of an object may be shorter). Each entry
//! holds a [`BudgetPermit`] for its bytes, so the cache and the prefetch buffers share one
//! memory limit; when a reader needs memory for a fetch the cache evicts its least recently
//! used blocks ([`BlockCache::reserve`]). Insertion never waits: if the budget is held by
//! prefetch buffers, the block is simply not cached.
//!
//! Every block is its own allocation ([`BlockData`]: the fetcher streams a GET body
//! straight into per-block buffers; `insert_range` copies): a slice of a shared 8 MiB
//! buffer would keep the whole buffer alive after its neighbours were evicted, and the
//! budget would under-count real memory.
//!
//! The ETag is part of the key, so an overwritten object never hits stale blocks; its old
//! blocks age out, or are dropped at once by [`BlockCache::invalidate_key`].
//!
//! Small entries (random-read pieces, small files) replacing evicted 1 MiB blocks leave
//! free memory that malloc keeps: 2,000 random 4 KiB reads after a 1 GiB read grew RSS by
//! ~40 MiB above the budget, of which `malloc_trim(0)` (called through gdb) returned
//! 23-26 MiB. So after every [`TRIM_EVERY`] bytes of small entries the cache asks malloc
//! to return its free pages. Full blocks never trigger it: a sequential reader reuses
//! the memory of the blocks it evicts at once, and trimming would only make it fault
//! those pages in again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use lru::LruCache;

use super::ReadConfig;
pub use super::block::{BlockData, BlockId};
use super::budget::{BudgetPermit, MemoryBudget};
use super::disk_cache::DiskCache;
use super::inflight::InflightRegistry;

/// Longest wait of a demand read for memory before it proceeds unaccounted.
pub const DEMAND_WAIT: Duration = Duration::from_millis(250);

/// Longest wait of an upload for memory for its next part buffer.
pub const UPLOAD_WAIT: Duration = Duration::from_secs(5);

/// Bytes of small entries cached between two requests to malloc to return free memory.
const TRIM_EVERY: u64 = 16 << 20;

/// Asks malloc to return free pages to the system (glibc; elsewhere nothing), off the
/// async threads: the walk holds the allocator's lock for a few milliseconds.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let trim = || {
            // SAFETY: malloc_trim only releases free memory; it has no preconditions.
            unsafe {
                libc::malloc_trim(0);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(trim)),
            Err(_) => trim(),
        }
    }
}

struct CachedBlock {
    data: Bytes,
    _permit: BudgetPermit,
}

struct Inner {
    lru: LruCache<BlockId, CachedBlock>,
    bytes: u64,
}

/// Block cache shared by all open handles (see the module docs).
pub struct BlockCache {
    block_size: u64,
    budget: Arc<MemoryBudget>,
    inner: Mutex<Inner>,
    disk: Option<DiskCache>,
    inflight: Arc<InflightRegistry>,
    /// Bytes of small entries inserted since malloc was last asked to trim.
    small_since_trim: AtomicU64,
    /// Trims asked for (tests).
    trims: AtomicU64,
    /// Round trip and per-connection rate seen by the GETs (sizes read-ahead).
    link: super::link::LinkEstimate,
    /// CRC-64 fold for one full block, built on first use (readers' CRC checks).
    block_combiner: std::sync::OnceLock<Arc<crate::crc64::Combiner>>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("block_size", &self.block_size)
            .field("used_bytes", &self.used_bytes())
            .field("budget_limit", &self.budget.limit())
            .field("disk", &self.disk.is_some())
            .finish()
    }
}

impl BlockCache {
    /// A cache (and memory budget) sized by `cfg.cache_size`, with the disk tier when
    /// `cfg.disk_cache_dir` is set. A disk directory that cannot be prepared is logged and
    /// the disk tier disabled: the mount still works, only slower.
    pub fn new(cfg: &ReadConfig) -> Arc<Self> {
        let cfg = cfg.normalized();
        let disk = cfg.disk_cache_dir.as_ref().and_then(|dir| {
            match DiskCache::open(dir, cfg.disk_cache_size) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "disk block cache disabled");
                    None
                }
            }
        });
        Arc::new(BlockCache {
            block_size: cfg.block_size,
            budget: MemoryBudget::new(cfg.cache_size),
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            disk,
            inflight: Arc::default(),
            small_since_trim: AtomicU64::new(0),
            trims: AtomicU64::new(0),
            link: Default::default(),
            block_combiner: Default::default(),
        })
    }

    /// Folds the CRC-64 of one full block into a running CRC (shared by all readers, so
    /// its operator is computed once per mount).
    pub fn block_combiner(&self) -> Arc<crate::crc64::Combiner> {
        self.block_combiner
            .get_or_init(|| Arc::new(crate::crc64::Combiner::new(self.block_size)))
            .clone()
    }

    /// The link estimate shared by every reader of this cache (= of the mount).
    pub fn link(&self) -> &super::link::LinkEstimate {
        &self.link
    }

    /// GETs in flight, shared by all readers.
    pub fn inflight(&self) -> &Arc<InflightRegistry> {
        &self.inflight
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// Bytes held by the memory tier.
    pub fn used_bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Bytes held by the disk tier (0 without one).
    pub fn disk_used_bytes(&self) -> u64 {
        self.disk.as_ref().map_or(0, |d| d.used_bytes())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the LRU half-updated in a way that
        // matters (worst case a stale byte count), so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Memory-tier lookup; counts a hit or a miss.
    pub fn get(&self, id: &BlockId) -> Option<Bytes> {
        let hit = self.lock().lru.get(id).map(|b| b.data.clone());
        match hit {
            Some(_) => {
                ::metrics::counter!(crate::metrics::CACHE_HITS, "tier" => "memory").increment(1)
            }
            None => {
                ::metrics::counter!(crate::metrics::CACHE_MISSES, "tier" => "memory").increment(1)
            }
        }
        hit
    }

    /// Lookup in memory, then on disk (a disk hit is promoted to memory).
    pub async fn get_any(&self, id: &BlockId) -> Option<Bytes> {
        if let Some(b) = self.get(id) {
            return Some(b);
        }
        let disk = self.disk.as_ref()?;
        let data = disk.get(id).await?;
        self.insert(id.clone(), data.clone());
        Some(data)
    }

    /// `range` (block-aligned) from the disk tier, only if every block is there; blocks
    /// found are promoted to memory.
    pub async fn get_range_from_disk(
        &self,
        key: &Arc<str>,
        etag: &Arc<str>,
        range: std::ops::Range<u64>,
    ) -> Option<BlockData> {
        let disk = self.disk.as_ref()?;
        let first = range.start / self.block_size;
        let last = range.end.checked_sub(1)? / self.block_size;
        let mut blocks = Vec::new();
        for index in first..=last {
            let id = BlockId {
                key: key.clone(),
                etag: etag.clone(),
                index,
            };
            let data = disk.get(&id).await?;
            self.insert(id, data.clone());
            blocks.push(data);
        }
        let out = BlockData {
            start: range.start,
            block_size: self.block_size,
            blocks: blocks.into(),
            crcs: Arc::from(Vec::new()),
        };
        (out.end() == range.end).then_some(out)
    }

    /// Whether the memory tier holds the block (no LRU promotion, no metrics).
    pub fn contains(&self, id: &BlockId) -> bool {
        self.lock().lru.contains(id)
    }

    /// Reserves `bytes` of the budget, evicting cached blocks if needed; `None` when even
    /// an empty cache leaves too little (prefetch buffers hold the rest).
    pub fn try_reserve(&self, bytes: u64) -> Option<BudgetPermit> {
        loop {
            if let Some(p) = self.budget.try_reserve(bytes) {
                return Some(p);
            }
            if !self.evict_one() {
                return None;
            }
        }
    }

    /// Reservation for read-ahead: like [`BlockCache::try_reserve`], but refused when
    /// buffers outside the cache (prefetch and demand) would exceed 3/4 of the budget, so
    /// idle read-ahead can never starve a reader that is waiting for data.
    pub fn try_reserve_prefetch(&self, bytes: u64) -> Option<BudgetPermit> {
        let outside_cache = self.budget.used().saturating_sub(self.used_bytes());
        if outside_cache + bytes > self.budget.limit() / 4 * 3 {
            return None;
        }
        self.try_reserve(bytes)
    }

    /// Like [`BlockCache::try_reserve`] but waits for buffers to be released. The wait is
    /// bounded by [`DEMAND_WAIT`]: other handles may hold buffers for a long time (an
    /// application that opened a file and went idle), and a blocked read must not hang on
    /// them. After the wait the request proceeds unaccounted (a bounded overshoot of one
    /// request per blocked read), which is logged.
    pub async fn reserve(&self, bytes: u64) -> BudgetPermit {
        self.reserve_waiting(bytes, DEMAND_WAIT, "read").await
    }

    /// Reservation for an upload's part buffer: evicts cached blocks, then waits up to
    /// [`UPLOAD_WAIT`] for readers or other uploads to release memory (back-pressure on
    /// the writer), then proceeds unaccounted (logged) rather than stall a writer behind
    /// an idle handle's buffers.
    pub async fn reserve_for_upload(&self, bytes: u64) -> BudgetPermit {
        self.reserve_waiting(bytes, UPLOAD_WAIT, "upload buffer")
            .await
    }

    /// Evicts, then waits up to `wait` for memory, then goes on unaccounted (logged).
    async fn reserve_waiting(&self, bytes: u64, wait: Duration, what: &str) -> BudgetPermit {
        if let Some(p) = self.try_reserve(bytes) {
            return p;
        }
        match tokio::time::timeout(wait, self.budget.reserve(bytes)).await {
            Ok(p) => p,
            Err(_) => {
                tracing::debug!(bytes, what, "memory budget exhausted; going on unaccounted");
                BudgetPermit::unaccounted()
            }
        }
    }

    fn evict_one(&self) -> bool {
        let evicted = {
            let mut inner = self.lock();
            match inner.lru.pop_lru() {
                Some((id, block)) => {
                    inner.bytes -= block.data.len() as u64;
                    ::metrics::gauge!(crate::metrics::CACHE_BYTES).set(inner.bytes as f64);
                    Some((id, block.data))
                }
                None => None,
            }
        };
        match evicted {
            Some((id, data)) => {
                if let Some(disk) = &self.disk {
                    disk.put(id, data);
                }
                true
            }
            None => false,
        }
    }

    /// Caches one block (shorter than `block_size` only at the end of an object). Never
    /// waits; skipped when the budget cannot be freed.
    pub fn insert(&self, id: BlockId, data: Bytes) {
        if self.lock().lru.promote(&id) {
            return;
        }
        let Some(permit) = self.try_reserve(data.len() as u64) else {
            return;
        };
        let mut inner = self.lock();
        let len = data.len() as u64;
        if let Some(old) = inner.lru.put(
            id,
            CachedBlock {
                data,
                _permit: permit,
            },
        ) {
            // Raced with another insert of the same block.
            inner.bytes -= old.data.len() as u64;
        }
        inner.bytes += len;
        ::metrics::gauge!(crate::metrics::CACHE_BYTES).set(inner.bytes as f64);
        drop(inner);
        if len <= self.block_size / 8 {
            let before = self.small_since_trim.fetch_add(len, Ordering::Relaxed);
            if before + len >= TRIM_EVERY {
                self.small_since_trim.store(0, Ordering::Relaxed);
                self.trims.fetch_add(1, Ordering::Relaxed);
                release_free_memory();
            }
        }
    }

    /// How many times the cache asked malloc to return free memory.
    pub fn trims(&self) -> u64 {
        self.trims.load(Ordering::Relaxed)
    }

    /// Caches the blocks of `data`, which starts at block-aligned `offset` of the object.
    pub fn insert_range(&self, key: &Arc<str>, etag: &Arc<str>, offset: u64, data: &[u8]) {
        debug_assert_eq!(offset % self.block_size, 0);
        let bs = self.block_size as usize;
        for (i, chunk) in data.chunks(bs).enumerate() {
            let id = BlockId {
                key: key.clone(),
                etag: etag.clone(),
                index: offset / self.block_size + i as u64,
            };
            self.insert(id, Bytes::copy_from_slice(chunk));
        }
    }

    /// Drops every block of `key`, whatever its ETag (object overwritten or deleted).
    pub fn invalidate_key(&self, key: &str) {
        {
            let mut inner = self.lock();
            let doomed: Vec<BlockId> = inner
                .lru
                .iter()
                .filter(|(id, _)| &*id.key == key)
                .map(|(id, _)| id.clone())
                .collect();
            for id in doomed {
                if let Some(b) = inner.lru.pop(&id) {
                    inner.bytes -= b.data.len() as u64;
                }
            }
            ::metrics::gauge!(crate::metrics::CACHE_BYTES).set(inner.bytes as f64);
        }
        if let Some(disk) = &self.disk {
            disk.invalidate_key(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(size: u64) -> Arc<BlockCache> {
        BlockCache::new(&ReadConfig {
            block_size: 4096,
            first_request_size: 4096,
            max_request_size: 4096,
            max_window: 4096,
            cache_size: size,
            ..ReadConfig::default()
        })
    }

    fn id(key: &str, index: u64) -> BlockId {
        BlockId {
            key: key.into(),
            etag: "\"e\"".into(),
            index,
        }
    }

    #[test]
    fn lru_eviction_keeps_within_budget() {
        let c = cache(3 * 4096);
        for i in 0..5 {
            c.insert(id("a", i), Bytes::from(vec![i as u8; 4096]));
        }
        assert_eq!(c.used_bytes(), 3 * 4096);
        assert!(c.get(&id("a", 0)).is_none());
        assert!(c.get(&id("a", 1)).is_none());
        assert_eq!(c.get(&id("a", 4)).unwrap()[0], 4);
        assert_eq!(c.budget().used(), 3 * 4096);
    }

    #[test]
    fn reserve_evicts_and_insert_skips_when_budget_is_held() {
        let c = cache(2 * 4096);
        c.insert(id("a", 0), Bytes::from(vec![0; 4096]));
        c.insert(id("a", 1), Bytes::from(vec![1; 4096]));
        let held = c.try_reserve(2 * 4096).unwrap();
        assert_eq!(c.used_bytes(), 0);
        c.insert(id("a", 2), Bytes::from(vec![2; 4096]));
        assert!(!c.contains(&id("a", 2)));
        drop(held);
        c.insert(id("a", 2), Bytes::from(vec![2; 4096]));
        assert!(c.contains(&id("a", 2)));
    }

    #[test]
    fn invalidate_key_drops_all_versions_of_that_key_only() {
        let c = cache(8 * 4096);
        c.insert(id("a", 0), Bytes::from_static(b"x"));
        let mut other_etag = id("a", 1);
        other_etag.etag = "\"f\"".into();
        c.insert(other_etag.clone(), Bytes::from_static(b"y"));
        c.insert(id("b", 0), Bytes::from_static(b"z"));
        c.invalidate_key("a");
        assert!(!c.contains(&id("a", 0)));
        assert!(!c.contains(&other_etag));
        assert!(c.contains(&id("b", 0)));
        assert_eq!(c.used_bytes(), 1);
    }

    #[test]
    fn insert_range_splits_into_blocks() {
        let c = cache(8 * 4096);
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let (k, e): (Arc<str>, Arc<str>) = ("a".into(), "\"e\"".into());
        c.insert_range(&k, &e, 4096, &data);
        assert_eq!(c.get(&id("a", 1)).unwrap(), &data[..4096]);
        assert_eq!(c.get(&id("a", 2)).unwrap(), &data[4096..8192]);
        assert_eq!(c.get(&id("a", 3)).unwrap(), &data[8192..]);
    }

    /// Small entries ask malloc to return free memory every TRIM_EVERY bytes; full
    /// blocks (a sequential reader) never do.
    #[test]
    fn small_entries_trigger_trims_full_blocks_do_not() {
        let c = BlockCache::new(&ReadConfig {
            block_size: 1 << 20,
            cache_size: 256 << 20,
            ..ReadConfig::default()
        });
        for i in 0..64 {
            c.insert(id("big", i), Bytes::from(vec![0u8; 1 << 20]));
        }
        assert_eq!(c.trims(), 0);
        let pieces = TRIM_EVERY / (64 << 10);
        for i in 0..pieces {
            c.insert(id("small", i), Bytes::from(vec![0u8; 64 << 10]));
        }
        assert_eq!(c.trims(), 1);
        for i in pieces..2 * pieces - 1 {
            c.insert(id("small", i), Bytes::from(vec![0u8; 64 << 10]));
        }
        assert_eq!(c.trims(), 1, "not before the next TRIM_EVERY bytes");
    }
}
