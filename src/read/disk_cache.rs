//! Optional on-disk tier of the block cache: one file per block, LRU-evicted by size.
//!
//! Blocks land here when the memory tier evicts them (write-behind on a blocking thread,
//! so eviction never stalls a reader). Each file is the block followed by the CRC64 of the
//! block, checked on every read: a torn or corrupted file is a miss and is deleted, never
//! wrong data.
//!
//! The index lives in memory only. Each process uses its own subdirectory
//! `blocks-<pid>`; at start the subdirectories of processes that no longer run are removed,
//! so a crash leaks disk space only until the next mount.
//!
//! File names are a SHA-256 of `key \0 etag` plus the block index: keys can be 1023 bytes
//! of arbitrary UTF-8, far too long and too hostile for file names.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use lru::LruCache;
use sha2::{Digest, Sha256};

use super::block::BlockId;

const TRAILER: usize = 8;

struct Index {
    lru: LruCache<BlockId, u64>,
    bytes: u64,
}

struct Shared {
    dir: PathBuf,
    limit: u64,
    index: Mutex<Index>,
    /// Bytes handed to background writes and not yet written.
    pending: AtomicU64,
}

/// Most evicted bytes waiting to be written. Evicted blocks are no longer counted by the
/// memory budget, so a disk slower than the network must not let them pile up: beyond
/// this, blocks are dropped instead of written.
const MAX_PENDING: u64 = 64 * 1024 * 1024;

/// The disk tier (see the module docs).
pub struct DiskCache {
    shared: Arc<Shared>,
}

fn crc64(data: &[u8]) -> u64 {
    crate::crc64::crc64(data)
}

fn file_name(id: &BlockId) -> String {
    let mut h = Sha256::new();
    h.update(id.key.as_bytes());
    h.update([0u8]);
    h.update(id.etag.as_bytes());
    format!("{}-{}.blk", hex::encode(h.finalize()), id.index)
}

fn pid_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: &BlockId) -> PathBuf {
        self.dir.join(file_name(id))
    }

    fn write_block(&self, id: BlockId, data: &[u8]) {
        let len = data.len() as u64;
        if len > self.limit {
            return;
        }
        let path = self.path(&id);
        let tmp = path.with_extension("tmp");
        let result = (|| -> std::io::Result<()> {
            // Bucket data: readable by the mount's user only (a private object must not
            // become readable through the cache directory).
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(data)?;
            f.write_all(&crc64(data).to_le_bytes())?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            tracing::debug!(error = %e, "disk cache write failed");
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        let mut doomed = Vec::new();
        {
            let mut idx = self.lock();
            if let Some(old) = idx.lru.put(id, len) {
                idx.bytes -= old;
            }
            idx.bytes += len;
            while idx.bytes > self.limit {
                match idx.lru.pop_lru() {
                    Some((old_id, old_len)) => {
                        idx.bytes -= old_len;
                        doomed.push(self.path(&old_id));
                    }
                    None => break,
                }
            }
        }
        for p in doomed {
            let _ = std::fs::remove_file(p);
        }
    }

    fn read_block(&self, id: &BlockId) -> Option<Bytes> {
        let path = self.path(id);
        let valid = std::fs::read(&path).ok().and_then(|mut buf| {
            let split = buf.len().checked_sub(TRAILER)?;
            let stored = u64::from_le_bytes(buf[split..].try_into().ok()?);
            buf.truncate(split);
            (crc64(&buf) == stored).then(|| Bytes::from(buf))
        });
        if valid.is_none() {
            tracing::debug!(path = %path.display(), "disk cache block missing or corrupt");
            self.forget(id);
            let _ = std::fs::remove_file(&path);
        }
        valid
    }

    fn forget(&self, id: &BlockId) {
        let mut idx = self.lock();
        if let Some(len) = idx.lru.pop(id) {
            idx.bytes -= len;
        }
    }
}

/// Runs blocking file work off the async threads when a runtime is present.
fn run_blocking(f: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn_blocking(f);
        }
        Err(_) => f(),
    }
}

/// Creates `dir` (and missing parents) with mode 0700; an existing one is left as it is.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl DiskCache {
    /// Prepares `dir/blocks-<pid>` (fresh) and removes directories of dead processes.
    pub fn open(dir: &Path, limit: u64) -> std::io::Result<DiskCache> {
        private_dir(dir)?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("blocks-")) else {
                continue;
            };
            if pid != std::process::id().to_string() && !pid_alive(pid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let own = dir.join(format!("blocks-{}", std::process::id()));
        if own.exists() {
            std::fs::remove_dir_all(&own)?;
        }
        private_dir(&own)?;
        Ok(DiskCache {
            shared: Arc::new(Shared {
                dir: own,
                limit,
                index: Mutex::new(Index {
                    lru: LruCache::unbounded(),
                    bytes: 0,
                }),
                pending: AtomicU64::new(0),
            }),
        })
    }

    pub fn used_bytes(&self) -> u64 {
        self.shared.lock().bytes
    }

    /// Stores a block in the background (dropped if too many writes are pending).
    pub fn put(&self, id: BlockId, data: Bytes) {
        let len = data.len() as u64;
        let pending = self.shared.pending.fetch_add(len, Ordering::AcqRel) + len;
        if pending > MAX_PENDING {
            self.shared.pending.fetch_sub(len, Ordering::AcqRel);
            tracing::trace!("disk cache busy; evicted block not kept");
            return;
        }
        let shared = self.shared.clone();
        run_blocking(move || {
            shared.write_block(id, &data);
            shared.pending.fetch_sub(len, Ordering::AcqRel);
        });
    }

    /// Reads and verifies a block; counts a disk hit or miss.
    pub async fn get(&self, id: &BlockId) -> Option<Bytes> {
        let known = self.shared.lock().lru.get(id).is_some();
        let found = if known {
            let shared = self.shared.clone();
            let id = id.clone();
            tokio::task::spawn_blocking(move || shared.read_block(&id))
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        match found {
            Some(_) => {
                ::metrics::counter!(crate::metrics::CACHE_HITS, "tier" => "disk").increment(1)
            }
            None => {
                ::metrics::counter!(crate::metrics::CACHE_MISSES, "tier" => "disk").increment(1)
            }
        }
        found
    }

    /// Forgets and deletes every block of `key`.
    pub fn invalidate_key(&self, key: &str) {
        let doomed: Vec<PathBuf> = {
            let mut idx = self.shared.lock();
            let ids: Vec<BlockId> = idx
                .lru
                .iter()
                .filter(|(id, _)| &*id.key == key)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .map(|id| {
                    if let Some(len) = idx.lru.pop(&id) {
                        idx.bytes -= len;
                    }
                    self.shared.path(&id)
                })
                .collect()
        };
        if !doomed.is_empty() {
            run_blocking(move || {
                for p in doomed {
                    let _ = std::fs::remove_file(p);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(index: u64) -> BlockId {
        BlockId {
            key: "dir/k".into(),
            etag: "\"e\"".into(),
            index,
        }
    }

    #[tokio::test]
    async fn blocks_round_trip_and_corruption_is_a_miss() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = DiskCache::open(tmp.path(), 1 << 20).unwrap();
        disk.shared.write_block(id(0), b"hello");
        assert_eq!(disk.get(&id(0)).await.unwrap(), &b"hello"[..]);
        let path = disk.shared.path(&id(0));
        let mut raw = std::fs::read(&path).unwrap();
        raw[0] ^= 1;
        std::fs::write(&path, raw).unwrap();
        assert!(disk.get(&id(0)).await.is_none());
        assert!(!path.exists());
        assert_eq!(disk.used_bytes(), 0);
    }

    #[test]
    fn cached_bucket_data_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("read-cache");
        let disk = DiskCache::open(&dir, 1 << 20).unwrap();
        disk.shared.write_block(id(0), b"secret");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&disk.shared.path(&id(0))), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&disk.shared.dir), 0o700);
    }

    #[test]
    fn pending_writes_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = DiskCache::open(tmp.path(), 1 << 30).unwrap();
        // Simulate a stalled disk: pending bytes at the limit.
        disk.shared.pending.store(MAX_PENDING, Ordering::SeqCst);
        disk.put(id(0), Bytes::from_static(b"dropped"));
        assert_eq!(disk.used_bytes(), 0);
        assert_eq!(disk.shared.pending.load(Ordering::SeqCst), MAX_PENDING);
        disk.shared.pending.store(0, Ordering::SeqCst);
        // Without a runtime the write happens inline.
        disk.put(id(0), Bytes::from_static(b"kept"));
        assert_eq!(disk.used_bytes(), 4);
        assert_eq!(disk.shared.pending.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn size_limit_evicts_least_recent_files() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = DiskCache::open(tmp.path(), 10).unwrap();
        disk.shared.write_block(id(0), b"aaaa");
        disk.shared.write_block(id(1), b"bbbb");
        assert!(disk.get(&id(0)).await.is_some()); // 0 becomes most recent
        disk.shared.write_block(id(2), b"cccc");
        assert!(disk.get(&id(1)).await.is_none());
        assert!(!disk.shared.path(&id(1)).exists());
        assert!(disk.get(&id(0)).await.is_some());
        assert!(disk.get(&id(2)).await.is_some());
        assert_eq!(disk.used_bytes(), 8);
        disk.invalidate_key("dir/k");
        assert_eq!(disk.used_bytes(), 0);
    }
}
