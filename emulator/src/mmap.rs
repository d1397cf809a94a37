//! Read-only memory maps of object data, so a GET body goes from the page cache to the
//! socket with a single copy (the kernel's, in `writev`): no buffer to zero, no `pread`
//! copy. Each map covers one body chunk and is made with `MAP_POPULATE` on the blocking
//! pool, so page faults never stall the async threads.
//!
//! Safety argument: a mapped file must not shrink below the mapped range while the map
//! lives (reading a page past EOF raises SIGBUS). Committed data files are immutable;
//! they are replaced by rename and unlinked, which keeps the inode alive for maps. The
//! only truncation is an AppendObject that failed half-way, which cuts the file back to
//! the size recorded *before* the append, and no reader maps past its record's size.

use std::fs::File;
use std::io;

use memmap2::{Mmap, MmapOptions};

/// A mapped byte range of a file. Unmapped on drop.
pub struct MappedRange {
    map: Mmap,
}

impl MappedRange {
    /// Maps `len` (> 0) bytes of `file` at `offset`, populating the page tables.
    /// (memmap2 aligns the mapping to a page and hides the alignment.)
    pub fn new(file: &File, offset: u64, len: usize) -> io::Result<MappedRange> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: a read-only shared mapping of a file we hold open; the file is never
        // truncated below the mapped range while the map lives (module docs), so reading
        // the mapped bytes cannot fault.
        let map = unsafe {
            MmapOptions::new()
                .offset(offset)
                .len(len)
                .populate()
                .map(file)?
        };
        Ok(MappedRange { map })
    }
}

impl AsRef<[u8]> for MappedRange {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_unaligned_ranges() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        for (off, len) in [(0usize, 1usize), (1, 4096), (4095, 2), (5000, 15_000)] {
            let m = MappedRange::new(&f, off as u64, len).unwrap();
            assert_eq!(m.as_ref(), &data[off..off + len]);
        }
        assert!(MappedRange::new(&f, 0, 0).is_err());
    }
}
