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
use std::os::fd::AsRawFd;

/// A mapped byte range of a file. Unmapped on drop.
pub struct MappedRange {
    ptr: *mut libc::c_void,
    map_len: usize,
    data_off: usize,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value; sharing `&[u8]` views of it
// across threads is as safe as sharing any immutable buffer.
unsafe impl Send for MappedRange {}
// SAFETY: see above; no interior mutability.
unsafe impl Sync for MappedRange {}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

impl MappedRange {
    /// Maps `len` (> 0) bytes of `file` at `offset`, populating the page tables.
    pub fn new(file: &File, offset: u64, len: usize) -> io::Result<MappedRange> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        let page = page_size();
        let aligned = offset - offset % page;
        let data_off = (offset - aligned) as usize;
        let map_len = len + data_off;
        let file_off = libc::off_t::try_from(aligned)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: a fresh read-only shared mapping of a file we hold open; the kernel
        // picks the address. Failure is reported as MAP_FAILED and checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                file_off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedRange {
            ptr,
            map_len,
            data_off,
            len,
        })
    }
}

impl AsRef<[u8]> for MappedRange {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+map_len` is a live mapping owned by self, and
        // `data_off + len == map_len`; the file is not truncated under it (module docs).
        unsafe { std::slice::from_raw_parts((self.ptr as *const u8).add(self.data_off), self.len) }
    }
}

impl Drop for MappedRange {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in `new`, once.
        unsafe {
            libc::munmap(self.ptr, self.map_len);
        }
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
