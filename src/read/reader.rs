//! [`ObjectReader`]: one per open file handle.
//!
//! This first version fetches exactly the blocks a read needs (through the shared cache)
//! and verifies the CRC64 of in-order reads; the prefetcher replaces the fetch strategy.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::cache::{BlockCache, BlockId};
use super::{ReadConfig, ReadError};
use crate::store::{ObjectStore, StoreError};

/// Incremental CRC64 of the bytes handed to the application in order.
struct CrcTracker {
    expected: Option<u64>,
    digest: crc_fast::Digest,
    /// Bytes hashed so far; `None` once the order was broken by a forward jump.
    hashed: Option<u64>,
}

impl CrcTracker {
    fn new(expected: Option<u64>) -> Self {
        CrcTracker {
            expected,
            digest: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Xz),
            hashed: expected.map(|_| 0),
        }
    }

    /// Feeds the bytes `data` found at `offset`; returns `(computed, expected)` when the
    /// whole object has been hashed and the sums differ.
    fn observe(&mut self, offset: u64, data: &[u8], size: u64) -> Option<(u64, u64)> {
        let (Some(expected), Some(hashed)) = (self.expected, self.hashed) else {
            return None;
        };
        if offset > hashed {
            self.hashed = None;
            return None;
        }
        let end = offset + data.len() as u64;
        if end > hashed {
            self.digest.update(&data[(hashed - offset) as usize..]);
            self.hashed = Some(end);
            if end == size {
                let computed = self.digest.finalize();
                // Verified once; re-reads of the tail must not re-hash.
                self.expected = None;
                if computed != expected {
                    return Some((computed, expected));
                }
            }
        }
        None
    }
}

/// Reads one version (ETag) of one object for an open file handle.
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    cache: Arc<BlockCache>,
    key: Arc<str>,
    etag: Arc<str>,
    size: u64,
    block_size: u64,
    crc: CrcTracker,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("key", &self.key)
            .field("etag", &self.etag)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// ETags compared without quotes and weak prefix (some servers drop the quotes).
fn etag_eq(a: &str, b: &str) -> bool {
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
    range: std::ops::Range<u64>,
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

impl ObjectReader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        cache: Arc<BlockCache>,
        _cfg: Arc<ReadConfig>,
        key: String,
        etag: String,
        size: u64,
        crc64: Option<u64>,
    ) -> Self {
        let block_size = cache.block_size();
        ObjectReader {
            store,
            cache,
            key: key.into(),
            etag: etag.into(),
            size,
            block_size,
            crc: CrcTracker::new(crc64),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn block_id(&self, index: u64) -> BlockId {
        BlockId {
            key: self.key.clone(),
            etag: self.etag.clone(),
            index,
        }
    }

    async fn block(&self, index: u64) -> Result<Bytes, ReadError> {
        let id = self.block_id(index);
        if let Some(b) = self.cache.get_any(&id).await {
            return Ok(b);
        }
        let start = index * self.block_size;
        let end = (start + self.block_size).min(self.size);
        let _permit = self.cache.reserve(end - start).await;
        let data = fetch_range(&*self.store, &self.key, &self.etag, self.size, start..end).await?;
        self.cache.insert(id, data.clone());
        Ok(data)
    }

    /// Returns `len` bytes at `offset`, fewer only at the end of the object.
    pub async fn read(&mut self, offset: u64, len: u32) -> Result<Bytes, ReadError> {
        if offset >= self.size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + u64::from(len)).min(self.size);
        let first = offset / self.block_size;
        let last = (end - 1) / self.block_size;
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for index in first..=last {
            let block = self.block(index).await?;
            let block_start = index * self.block_size;
            let from = offset.max(block_start) - block_start;
            let to = end.min(block_start + block.len() as u64) - block_start;
            out.extend_from_slice(&block[from as usize..to as usize]);
        }
        let out = out.freeze();
        self.verify(offset, &out)?;
        Ok(out)
    }

    fn verify(&mut self, offset: u64, data: &[u8]) -> Result<(), ReadError> {
        if let Some((computed, expected)) = self.crc.observe(offset, data, self.size) {
            tracing::error!(key = %self.key, computed, expected, "CRC64 mismatch on read");
            self.cache.invalidate_key(&self.key);
            return Err(ReadError::CrcMismatch {
                key: self.key.to_string(),
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
        crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Xz, data)
    }

    #[test]
    fn crc_tracker_accepts_overlapping_in_order_reads() {
        let data = b"123456789";
        let mut t = CrcTracker::new(Some(crc(data)));
        assert_eq!(crc(data), 0x995DC9BBDF1939FA);
        assert!(t.observe(0, &data[..4], 9).is_none());
        assert!(t.observe(2, &data[2..6], 9).is_none()); // short backward overlap
        assert!(t.observe(6, &data[6..], 9).is_none());
    }

    #[test]
    fn crc_tracker_reports_mismatch_and_ignores_gaps() {
        let mut t = CrcTracker::new(Some(crc(b"123456789")));
        assert!(t.observe(0, b"1234", 9).is_none());
        assert_eq!(
            t.observe(4, b"56780", 9).map(|(_, e)| e),
            Some(crc(b"123456789"))
        );
        let mut gap = CrcTracker::new(Some(1));
        assert!(gap.observe(0, b"12", 9).is_none());
        assert!(gap.observe(5, b"6789", 9).is_none()); // jumped: not verifiable
        assert!(gap.observe(2, b"345", 9).is_none());
    }

    #[test]
    fn etags_compare_without_quotes() {
        assert!(etag_eq("\"ABC\"", "ABC"));
        assert!(!etag_eq("\"ABC\"", "\"ABD\""));
    }
}
