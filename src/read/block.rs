//! A block: the unit the block cache stores and a fetch fills.
//!
//! [`BlockId`] names one block of one version of an object; [`BlockData`] is the data of
//! a block-aligned range, one buffer (and allocation) per block. The cache, the disk
//! cache, the in-flight registry and the prefetcher all speak in these terms, so they
//! live here, below all of them.

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
}

impl BlockData {
    pub fn single(start: u64, block_size: u64, block: Bytes) -> Self {
        BlockData {
            start,
            block_size,
            blocks: Arc::from(vec![block]),
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
}
