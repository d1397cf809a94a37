//! A block: the unit the block cache stores and a fetch fills.
//!
//! [`BlockId`] names one block of one version of an object; [`BlockData`] is the data of
//! a block-aligned range, one buffer (and allocation) per block. The cache, the disk
//! cache, the in-flight registry and the prefetcher all speak in these terms, so they
//! live here, below all of them.
//!
//! A fetched range also carries the CRC-64 of each of its blocks, computed by the fetch
//! task while the bytes are still hot in the CPU cache (right after they were copied
//! out of the HTTP body). The reader's whole-object check combines these instead of
//! hashing the bytes again on the path of the application's read ([`BlockRef`]).

use std::sync::Arc;

use bytes::Bytes;

/// Identity of one cached block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockId {
    pub key: Arc<str>,
    pub etag: Arc<str>,
    pub index: u64,
}

/// Fetched data of a block-aligned range, one buffer (and allocation) per block, so blocks
/// can be cached without copying and without keeping a larger buffer alive.
#[derive(Debug, Clone)]
pub struct BlockData {
    /// Object offset of the first block (block-aligned).
    pub start: u64,
    pub block_size: u64,
    pub blocks: Arc<[Bytes]>,
    /// CRC-64 of each block (same order as `blocks`), or empty when not known (data from
    /// the cache or the disk tier).
    pub crcs: Arc<[u64]>,
}

/// A whole block with its CRC-64: lets the reader's CRC check account for bytes served
/// from this very buffer by combining the CRC instead of hashing them.
#[derive(Debug, Clone)]
pub struct BlockRef {
    /// Object offset of the block.
    pub start: u64,
    pub data: Bytes,
    pub crc: u64,
}

impl BlockRef {
    /// Whether `piece`, found at object offset `offset`, is a slice of this very buffer
    /// at the matching position (not merely equal bytes from another copy).
    pub fn holds(&self, offset: u64, piece: &[u8]) -> bool {
        let Some(from) = offset.checked_sub(self.start) else {
            return false;
        };
        let Ok(from) = usize::try_from(from) else {
            return false;
        };
        from.checked_add(piece.len())
            .is_some_and(|end| end <= self.data.len())
            && std::ptr::eq(self.data.as_ptr().wrapping_add(from), piece.as_ptr())
    }
}

impl BlockData {
    pub fn single(start: u64, block_size: u64, block: Bytes) -> Self {
        BlockData {
            start,
            block_size,
            blocks: Arc::from(vec![block]),
            crcs: Arc::from(Vec::new()),
        }
    }

    /// Offset just past the last byte.
    pub fn end(&self) -> u64 {
        let full = self.blocks.len().saturating_sub(1) as u64 * self.block_size;
        self.start + full + self.blocks.last().map_or(0, |b| b.len() as u64)
    }

    /// The block containing `pos`, with its object offset.
    pub fn block_at(&self, pos: u64) -> Option<(u64, Bytes)> {
        let i = pos.checked_sub(self.start)? / self.block_size;
        let block = self.blocks.get(usize::try_from(i).ok()?)?;
        let start = self.start + i * self.block_size;
        (pos < start + block.len() as u64).then(|| (start, block.clone()))
    }

    /// The block containing `pos` with its CRC, when the CRC is known.
    pub fn block_ref_at(&self, pos: u64) -> Option<BlockRef> {
        let i = usize::try_from(pos.checked_sub(self.start)? / self.block_size).ok()?;
        let (data, crc) = (self.blocks.get(i)?, self.crcs.get(i)?);
        let start = self.start + i as u64 * self.block_size;
        (pos < start + data.len() as u64).then(|| BlockRef {
            start,
            data: data.clone(),
            crc: *crc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ref_holds_only_slices_of_its_own_buffer() {
        let block = Bytes::from(vec![5u8; 100]);
        let r = BlockRef {
            start: 1000,
            data: block.clone(),
            crc: crate::crc64::crc64(&block),
        };
        assert!(r.holds(1000, &block));
        assert!(r.holds(1010, &block.slice(10..20)));
        assert!(!r.holds(1011, &block.slice(10..20)), "wrong position");
        assert!(!r.holds(990, &block.slice(..10)));
        let half = BlockRef {
            data: block.slice(..50),
            ..r.clone()
        };
        assert!(!half.holds(1040, &block.slice(40..60)), "beyond its end");
        let copy = Bytes::copy_from_slice(&block);
        assert!(!r.holds(1000, &copy), "equal bytes, other buffer");
    }

    #[test]
    fn block_ref_at_needs_known_crcs() {
        let blocks: Arc<[Bytes]> =
            Arc::from(vec![Bytes::from(vec![1u8; 8]), Bytes::from(vec![2u8; 3])]);
        let mut d = BlockData {
            start: 16,
            block_size: 8,
            blocks,
            crcs: Arc::from(vec![11, 22]),
        };
        let r = d.block_ref_at(25).unwrap();
        assert_eq!((r.start, r.crc, r.data.len()), (24, 22, 3));
        assert!(d.block_ref_at(27).is_none());
        assert!(d.block_ref_at(15).is_none());
        d.crcs = Arc::from(Vec::new());
        assert!(d.block_ref_at(16).is_none());
    }
}
