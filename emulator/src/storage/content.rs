//! The bytes of a committed object: one immutable data file, or several in order.
//!
//! A PUT, copy or append stores one file. CompleteMultipartUpload keeps the part files
//! as they are and records them in part order: completing a 1 GiB upload renames a
//! hundred files instead of copying a gigabyte. A real OSS moves no data at Complete
//! either, and the copy made Complete the slowest and noisiest step of an upload on a
//! small machine (0.8-3.2 s per GiB on tmpfs, depending on how fast the VM hands out
//! fresh pages), which is not what a benchmark of a client should measure.
//!
//! Readers get a [`Content`]: the files opened at lookup time, so a concurrent overwrite
//! (rename of a new sidecar, unlink of the old files) never mixes two versions.
//!
//! Opening a hundred part files for every ranged GET of a 1 GiB object cost more than
//! serving a 4 KiB range, so open files are kept in [`OpenFiles`] (data files never
//! change once committed, so a kept descriptor is always right). A file leaves the cache
//! when it is unlinked; otherwise a deleted object's pages would stay allocated. The
//! cache holds at most a quarter of the descriptor limit.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// One file of a multi-file object, as recorded in the sidecar.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegmentFile {
    /// File name inside `objects/`.
    pub file: String,
    pub size: u64,
}

struct Segment {
    file: Arc<fs::File>,
    /// Offset of the segment's first byte in the object.
    start: u64,
    len: u64,
}

/// The open data files of one object version.
pub struct Content {
    segments: Vec<Segment>,
    len: u64,
}

/// A piece of a read that lies inside one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub segment: usize,
    /// Offset inside that segment's file.
    pub file_offset: u64,
    pub len: usize,
}

impl Content {
    /// Content made of `files` (each with its recorded length), in order.
    pub fn new(files: Vec<(Arc<fs::File>, u64)>) -> Content {
        let mut start = 0;
        let segments = files
            .into_iter()
            .map(|(file, len)| {
                let s = Segment { file, start, len };
                start += len;
                s
            })
            .collect();
        Content {
            segments,
            len: start,
        }
    }

    pub fn single(file: fs::File, len: u64) -> Content {
        Content::new(vec![(Arc::new(file), len)])
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn file(&self, segment: usize) -> &fs::File {
        &self.segments[segment].file
    }

    /// Splits `[offset, offset + len)` into pieces of at most `max` bytes that never
    /// cross a file boundary. The range must lie inside the content.
    pub fn spans(&self, offset: u64, len: u64, max: u64) -> Vec<Span> {
        let end = offset.saturating_add(len).min(self.len);
        let mut out = Vec::new();
        let first = self.segments.partition_point(|s| s.start + s.len <= offset);
        let mut pos = offset;
        for (i, seg) in self.segments.iter().enumerate().skip(first) {
            while pos < end && pos < seg.start + seg.len {
                let n = (seg.start + seg.len)
                    .min(end)
                    .min(pos.saturating_add(max.max(1)))
                    - pos;
                out.push(Span {
                    segment: i,
                    file_offset: pos - seg.start,
                    len: n as usize,
                });
                pos += n;
            }
            if pos >= end {
                break;
            }
        }
        out
    }

    /// Fills `buf` from `offset`, across files as needed.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset + buf.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the object",
            ));
        }
        let mut done = 0;
        for span in self.spans(offset, buf.len() as u64, u64::MAX) {
            self.file(span.segment)
                .read_exact_at(&mut buf[done..done + span.len], span.file_offset)?;
            done += span.len;
        }
        Ok(())
    }
}

/// Most descriptors kept: a quarter of the process's limit (the default soft limit is
/// 1024 on many systems, and connections need descriptors too), at most 2048.
fn max_open_files() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _hard)| soft);
    usize::try_from(soft / 4).unwrap_or(2048).clamp(16, 2048)
}

/// Open data files of one bucket, by file name. Past its capacity the cache starts over
/// (cheap, and rare: one entry per data file read recently).
pub(super) struct OpenFiles {
    files: Mutex<HashMap<String, Arc<fs::File>>>,
    capacity: usize,
}

impl Default for OpenFiles {
    fn default() -> Self {
        OpenFiles {
            files: Mutex::new(HashMap::new()),
            capacity: max_open_files(),
        }
    }
}

impl OpenFiles {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<fs::File>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open file `name` of `dir`, opening it if needed. The open happens under the
    /// lock: [`Self::remove`] unlinks before it takes the lock, so a descriptor opened
    /// before the unlink is always inserted before it is removed, never after. Out of
    /// descriptors (EMFILE), the cache lets go of its own and tries once more.
    pub(super) fn open(&self, dir: &Path, name: &str) -> io::Result<Arc<fs::File>> {
        let mut files = self.lock();
        if let Some(f) = files.get(name) {
            return Ok(f.clone());
        }
        let path = dir.join(name);
        let f = match fs::File::open(&path) {
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                files.clear();
                fs::File::open(&path)?
            }
            other => other?,
        };
        let f = Arc::new(f);
        if files.len() >= self.capacity {
            files.clear();
        }
        files.insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// Unlinks `name` from `dir` and drops its descriptor: the file's space is freed once
    /// the readers still holding it finish.
    pub(super) fn remove(&self, dir: &Path, name: &str) {
        let _ = fs::remove_file(dir.join(name));
        self.lock().remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> fs::File {
        let path = dir.path().join(name);
        fs::File::create(&path).unwrap().write_all(data).unwrap();
        fs::File::open(&path).unwrap()
    }

    #[test]
    fn reads_and_spans_cross_file_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 3] = [b"hello ", b"multipart ", b"world"];
        let c = Content::new(
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| (Arc::new(file_with(&dir, &i.to_string(), p)), p.len() as u64))
                .collect(),
        );
        let whole: Vec<u8> = parts.concat();
        assert_eq!(c.len(), whole.len() as u64);
        for off in 0..whole.len() {
            for len in 0..=whole.len() - off {
                let mut buf = vec![0; len];
                c.read_exact_at(&mut buf, off as u64).unwrap();
                assert_eq!(buf, &whole[off..off + len], "off {off} len {len}");
            }
        }
        // Pieces never cross a file and respect the size limit.
        let spans = c.spans(3, 15, 4);
        assert_eq!(
            spans,
            vec![
                Span {
                    segment: 0,
                    file_offset: 3,
                    len: 3
                },
                Span {
                    segment: 1,
                    file_offset: 0,
                    len: 4
                },
                Span {
                    segment: 1,
                    file_offset: 4,
                    len: 4
                },
                Span {
                    segment: 1,
                    file_offset: 8,
                    len: 2
                },
                Span {
                    segment: 2,
                    file_offset: 0,
                    len: 2
                },
            ]
        );
        let mut past = [0u8; 2];
        assert!(c.read_exact_at(&mut past, whole.len() as u64 - 1).is_err());
    }

    #[test]
    fn empty_parts_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let c = Content::new(vec![
            (Arc::new(file_with(&dir, "a", b"")), 0),
            (Arc::new(file_with(&dir, "b", b"xy")), 2),
        ]);
        assert_eq!(c.spans(0, 2, 8).len(), 1);
        let mut buf = [0u8; 2];
        c.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"xy");
    }

    #[test]
    fn open_files_are_reused_bounded_and_dropped_on_unlink() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["a", "b", "c"] {
            file_with(&dir, n, n.as_bytes());
        }
        let cache = OpenFiles {
            files: Mutex::new(HashMap::new()),
            capacity: 2,
        };
        let a = cache.open(dir.path(), "a").unwrap();
        assert!(Arc::ptr_eq(&a, &cache.open(dir.path(), "a").unwrap()));
        cache.open(dir.path(), "b").unwrap();
        cache.open(dir.path(), "c").unwrap();
        assert_eq!(cache.lock().len(), 1, "full: started over");
        // Unlinked and forgotten; a reader holding it still reads the old bytes.
        cache.remove(dir.path(), "c");
        assert!(!dir.path().join("c").exists());
        assert!(cache.lock().is_empty());
        assert!(cache.open(dir.path(), "c").is_err());
        let mut buf = [0u8; 1];
        a.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"a");
        assert!((16..=2048).contains(&max_open_files()));
    }
}
