//! Staging files: local copies of files being modified in place or streamed.
//!
//! Random writes, overwrites of existing files and truncates cannot be expressed as OSS
//! requests, so the file is materialised under `cache_dir`; a new file streamed to OSS
//! keeps one too, so that every reader of the inode can read what was written (see
//! `local_copy`). It is a named temporary file (0600, in a 0700 directory), deleted when
//! the inode's last writer goes away (even on panic), modified with positional I/O, and
//! uploaded whole with [`crate::write::upload_file`] at flush/close.
//!
//! Existing content is downloaded on the first write (not at open, so `open(O_RDWR)`
//! followed only by reads costs nothing), pinned to the ETag known at open: if the object
//! changed in between, the write fails with `ESTALE` rather than merging two versions.
//!
//! Positional I/O runs on tokio's blocking pool (`spawn_blocking`), never on the async
//! worker threads.
//!
//! With `--write-back` the file is a data file of the write-back store instead
//! ([`StagingFile::durable`]): it survives the process (a crash must not lose it). The
//! staging file holds a [`DataPin`] on it, so the store keeps it while it is in use;
//! the store deletes it once it is neither pinned nor named by an unsettled journal
//! record.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use tempfile::NamedTempFile;

use crate::store::ObjectStore;
use crate::write_back::DataPin;

use super::FsResult;
use super::error::FsError;

/// Where a staging file's bytes live.
#[derive(Debug)]
enum Backing {
    /// Deleted when dropped.
    Temp(NamedTempFile),
    /// A write-back store data file (see the module docs).
    Durable(DurableFile),
}

#[derive(Debug)]
struct DurableFile {
    file: std::fs::File,
    path: PathBuf,
    /// Keeps the store from deleting the file while it is used (see the module docs).
    pin: DataPin,
}

impl Backing {
    fn as_file(&self) -> &std::fs::File {
        match self {
            Backing::Temp(t) => t.as_file(),
            Backing::Durable(d) => &d.file,
        }
    }
    fn path(&self) -> &Path {
        match self {
            Backing::Temp(t) => t.path(),
            Backing::Durable(d) => &d.path,
        }
    }
}

/// A local file holding the whole content of one open file.
#[derive(Debug)]
pub(crate) struct StagingFile {
    file: Arc<Backing>,
    size: u64,
    /// Writes handed to the blocking pool and not yet known to be done
    /// ([`StagingFile::write_behind`]): their bytes are still read from here.
    behind: std::collections::VecDeque<Behind>,
    behind_bytes: usize,
}

/// One write-behind: the bytes (shared with the caller's buffer, no copy) and its task.
#[derive(Debug)]
struct Behind {
    offset: u64,
    data: bytes::Bytes,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Bytes of write-behinds in flight per file before [`StagingFile::write_behind`] waits.
const BEHIND_MAX: usize = 16 << 20;

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> FsResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| FsError::io(what, e)),
        Err(e) => Err(FsError::io(what, std::io::Error::other(e.to_string()))),
    }
}

impl StagingFile {
    /// An empty staging file in `dir`.
    pub(crate) async fn create(dir: &Path) -> FsResult<StagingFile> {
        let dir = dir.to_path_buf();
        let file = blocking("create staging file", move || {
            // 0700 when made here; the file itself is 0600 (tempfile's default).
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(&dir)?;
            tempfile::Builder::new()
                .prefix(".ossmount-staging-")
                .tempfile_in(&dir)
        })
        .await?;
        Ok(StagingFile {
            file: Arc::new(Backing::Temp(file)),
            size: 0,
            behind: std::collections::VecDeque::new(),
            behind_bytes: 0,
        })
    }

    /// An empty write-back store data file at `path`, open as `file`, pinned by `pin`.
    pub(crate) fn durable(file: std::fs::File, path: PathBuf, pin: DataPin) -> StagingFile {
        StagingFile {
            file: Arc::new(Backing::Durable(DurableFile { file, path, pin })),
            size: 0,
            behind: std::collections::VecDeque::new(),
            behind_bytes: 0,
        }
    }

    /// The write-back data file id, for a durable file.
    pub(crate) fn data_id(&self) -> Option<u64> {
        match &*self.file {
            Backing::Durable(d) => Some(d.pin.data_id()),
            Backing::Temp(_) => None,
        }
    }

    /// A staging file with the content of `key` (exactly `size` bytes, ETag `etag`).
    pub(crate) async fn download(
        dir: &Path,
        store: &dyn ObjectStore,
        key: &str,
        etag: &str,
        size: u64,
    ) -> FsResult<StagingFile> {
        let f = StagingFile::create(dir).await?;
        f.fill_from(store, key, etag, size).await
    }

    /// Downloads `key` (exactly `size` bytes, ETag `etag`) into this empty file.
    pub(crate) async fn fill_from(
        self,
        store: &dyn ObjectStore,
        key: &str,
        etag: &str,
        size: u64,
    ) -> FsResult<StagingFile> {
        let mut f = self;
        if size == 0 {
            return Ok(f);
        }
        let if_match = (!etag.is_empty()).then_some(etag);
        let out = store.get_object(key, None, if_match).await.map_err(|e| {
            if e.is_precondition_failed() {
                FsError::Stale {
                    key: key.to_string(),
                }
            } else {
                FsError::store("GetObject", key, e)
            }
        })?;
        let mut body = out.body;
        let mut pos = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| FsError::store("GetObject", key, e))?;
            let n = chunk.len() as u64;
            f.write_at(pos, chunk.to_vec()).await?;
            pos += n;
        }
        if pos != out.meta.size {
            return Err(FsError::io(
                "download to staging file",
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{key} ended after {pos} of {} bytes", out.meta.size),
                ),
            ));
        }
        Ok(f)
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }

    pub(crate) async fn write_at(
        &mut self,
        offset: u64,
        data: impl AsRef<[u8]> + Send + 'static,
    ) -> FsResult<()> {
        self.settle().await?;
        let file = self.file.clone();
        let end = offset + data.as_ref().len() as u64;
        blocking("write staging file", move || {
            file.as_file().write_all_at(data.as_ref(), offset)
        })
        .await?;
        self.size = self.size.max(end);
        Ok(())
    }

    /// Writes `data` at `offset` without waiting for the disk (the write of a streamed
    /// file's local copy must not slow the stream): the bytes stay readable from memory
    /// until the write is done, and at most `BEHIND_MAX` bytes wait so. An earlier
    /// write-behind's error is returned here (or by the next read or [`Self::settle`]).
    pub(crate) async fn write_behind(&mut self, offset: u64, data: bytes::Bytes) -> FsResult<()> {
        self.reap(false).await?;
        while self.behind_bytes > BEHIND_MAX {
            self.reap_one().await?;
        }
        let file = self.file.clone();
        let chunk = data.clone();
        let task = tokio::task::spawn_blocking(move || file.as_file().write_all_at(&chunk, offset));
        self.size = self.size.max(offset + data.len() as u64);
        self.behind_bytes += data.len();
        self.behind.push_back(Behind { offset, data, task });
        Ok(())
    }

    /// Waits for every write-behind; their first error, if any.
    pub(crate) async fn settle(&mut self) -> FsResult<()> {
        self.reap(true).await
    }

    /// Drops finished write-behinds (all of them, waiting, with `wait`).
    async fn reap(&mut self, wait: bool) -> FsResult<()> {
        while let Some(b) = self.behind.front() {
            if !wait && !b.task.is_finished() {
                break;
            }
            self.reap_one().await?;
        }
        Ok(())
    }

    async fn reap_one(&mut self) -> FsResult<()> {
        let Some(b) = self.behind.pop_front() else {
            return Ok(());
        };
        self.behind_bytes -= b.data.len();
        let what = "write local copy";
        match b.task.await {
            Ok(r) => r.map_err(|e| FsError::io(what, e)),
            Err(e) => Err(FsError::io(what, std::io::Error::other(e.to_string()))),
        }
    }

    /// Up to `len` bytes at `offset` (short at the end of the file).
    pub(crate) async fn read_at(&self, offset: u64, len: u32) -> FsResult<Vec<u8>> {
        if offset >= self.size {
            return Ok(Vec::new());
        }
        let n = u64::from(len).min(self.size - offset) as usize;
        let file = self.file.clone();
        // Write-behinds still in flight are taken from memory: listed before the file is
        // read, so a write finishing meanwhile is in one or the other.
        let overlay: Vec<(u64, bytes::Bytes)> = self
            .behind
            .iter()
            .filter(|b| b.offset < offset + n as u64 && b.offset + b.data.len() as u64 > offset)
            .map(|b| (b.offset, b.data.clone()))
            .collect();
        let mut buf = blocking("read staging file", move || {
            let mut buf = vec![0u8; n];
            let mut got = 0;
            while got < n {
                match file
                    .as_file()
                    .read_at(&mut buf[got..], offset + got as u64)?
                {
                    0 => break,
                    k => got += k,
                }
            }
            Ok(buf)
        })
        .await?;
        for (at, data) in overlay {
            let lo = at.max(offset);
            let hi = (at + data.len() as u64).min(offset + n as u64);
            buf[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&data[(lo - at) as usize..(hi - at) as usize]);
        }
        Ok(buf)
    }

    pub(crate) async fn set_len(&mut self, size: u64) -> FsResult<()> {
        self.settle().await?;
        let file = self.file.clone();
        blocking("truncate staging file", move || {
            file.as_file().set_len(size)
        })
        .await?;
        self.size = size;
        Ok(())
    }
}
