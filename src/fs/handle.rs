//! Open files: the handle table and the FUSE operations on handles (create, open, read,
//! write, flush, fsync, release, truncate).
//!
//! Each handle has a read side (an [`ObjectReader`] created on the first read, pinned
//! to the inode's ETag, and replaced when the inode's ETag, size or key changes, e.g.
//! after a commit of this mount) and, when writable, the inode's shared write side: the
//! write state machine of `write_state` (what the inode holds that OSS does not have
//! yet, see `local_copy`), uploaded by `commit` at flush, fsync and release.
//!
//! Reads of an inode with pending data (by any handle, read-only ones included) are
//! served from its local copy; otherwise from the object.
//!
//! The table maps a FUSE file handle to an [`OpenFile`]: what is known without waiting
//! (inode, writable) plus the [`FileHandle`] behind an async mutex, held across the
//! store requests of one operation so that operations on one handle run in order.
//!
//! Pitfalls:
//! - Truncate with `O_TRUNC` support (`FUSE_ATOMIC_O_TRUNC`) avoids an extra empty PUT.
//! - A flush by a process that merely inherited the descriptor does not commit (see
//!   `process`).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::read::{ObjectReader, ReadError};

use super::attr::{FileKind, Ino};
use super::error::FsError;
use super::local_copy::SharedSide;
use super::new_entry::requested_perm;
use super::process::Writers;
use super::write_state::WriteState;
use super::{Attr, Ctx, Filesystem, FsResult, lock, names};

/// An entry of the open-file table: what can be known without waiting for the handle.
#[derive(Debug)]
pub(crate) struct OpenFile {
    ino: Ino,
    handle: tokio::sync::Mutex<FileHandle>,
}

/// One open file.
#[derive(Debug)]
pub(crate) struct FileHandle {
    ino: Ino,
    readable: bool,
    writable: bool,
    reader: Option<ObjectReader>,
    /// Opened with `O_APPEND`.
    append: bool,
    /// The inode's shared write side (see `local_copy`), for a writable handle.
    side: Option<SharedSide>,
    /// Whose close commits (see [`super::process`]).
    writers: Writers,
}

fn read_error(key: &str, e: ReadError) -> FsError {
    match e {
        ReadError::Stale { key, .. } => FsError::Stale { key },
        ReadError::Store(s) if s.is_precondition_failed() => FsError::Stale {
            key: key.to_string(),
        },
        ReadError::Store(s) => FsError::store("GetObject", key, s),
        e @ ReadError::CrcMismatch { .. } => {
            tracing::error!(key, error = %e, "data corruption detected while reading");
            FsError::Read {
                key: key.to_string(),
                source: e,
            }
        }
    }
}

impl Filesystem {
    /// Adds `h` to the table; a writable handle is attached to the inode's shared write
    /// side, which `new_content` (O_TRUNC, a file created here) empties.
    async fn register_handle(
        &self,
        mut h: FileHandle,
        pid: u32,
        new_content: bool,
    ) -> FsResult<u64> {
        if h.writable {
            h.writers = Writers::opened_by(pid);
            let (side, created) = self.local_copies.attach(h.ino, new_content);
            if new_content && !created {
                // Another handle holds data: O_TRUNC empties the file for all of them.
                let r = side.lock().await.truncate(self, 0).await;
                if let Err(e) = r {
                    self.detach_side(h.ino).await;
                    return Err(e);
                }
            }
            h.side = Some(side);
        }
        let fh = self.alloc_fh();
        self.inodes.pin(h.ino);
        let entry = OpenFile {
            ino: h.ino,
            handle: tokio::sync::Mutex::new(h),
        };
        lock(&self.files).insert(fh, Arc::new(entry));
        Ok(fh)
    }

    /// A writable handle of `ino` is gone: the last one drops the inode's write side (an
    /// unfinished streaming upload is aborted, the local copy deleted).
    pub(super) async fn detach_side(&self, ino: Ino) {
        if let Some(side) = self.local_copies.detach(ino) {
            side.lock().await.abort_streaming().await;
        }
    }

    fn handle(&self, fh: u64) -> FsResult<Arc<OpenFile>> {
        lock(&self.files)
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    /// Open by an unknown process: every flush of the handle commits (see
    /// [`Self::open_as`]).
    pub async fn open(&self, ino: Ino, flags: i32) -> FsResult<u64> {
        self.open_as(0, ino, flags).await
    }

    /// FUSE open by thread `pid`. `flags` are the open(2) flags.
    pub async fn open_as(&self, pid: u32, ino: Ino, flags: i32) -> FsResult<u64> {
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        match node.attr.kind {
            FileKind::Dir => return Err(FsError::IsDir),
            FileKind::Symlink => return Err(FsError::InvalidArgument("open of a symlink".into())),
            FileKind::Special(_) => {
                return Err(FsError::InvalidArgument("open of a special file".into()));
            }
            FileKind::File => {}
        }
        let acc = flags & libc::O_ACCMODE;
        let writable = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        let readable = acc == libc::O_RDONLY || acc == libc::O_RDWR;
        if writable {
            self.check_writable()?;
        }
        // Close-to-open: a stale cached attribute is refreshed so the reader pins the
        // current ETag (within the TTL the cache is trusted).
        if !node.local && node.writers == 0 {
            self.getattr(ino).await?;
        }
        let trunc = writable && flags & libc::O_TRUNC != 0;
        if writable {
            self.inodes.update(ino, |n| {
                n.writers += 1;
                if trunc {
                    n.attr.size = 0;
                    n.attr.mtime = SystemTime::now();
                    n.attr.ctime = n.attr.mtime;
                }
            });
        }
        let r = self
            .register_handle(
                FileHandle {
                    ino,
                    readable,
                    writable,
                    reader: None,
                    append: flags & libc::O_APPEND != 0,
                    side: None,
                    writers: Writers::default(),
                },
                pid,
                trunc,
            )
            .await;
        if r.is_err() && writable {
            self.inodes
                .update(ino, |n| n.writers = n.writers.saturating_sub(1));
        }
        r
    }

    /// FUSE create: the file exists locally until the first flush uploads it.
    pub async fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &std::ffi::OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> FsResult<(Attr, u64)> {
        self.check_writable()?;
        let name_s = names::name_from_kernel(name)?;
        match self.lookup_name(parent, name_s).await {
            Ok((ino, node)) => {
                if flags & libc::O_EXCL != 0 {
                    return Err(FsError::Exists);
                }
                if node.attr.kind == FileKind::Dir {
                    return Err(FsError::IsDir);
                }
                self.known_attrs(ino).await?;
                let fh = self.open_as(ctx.pid, ino, flags).await?;
                self.inodes.add_lookup(ino, 1);
                let attr = self
                    .inodes
                    .get(ino)
                    .map(|n| n.attr)
                    .ok_or(FsError::NotFound)?;
                return Ok((attr, fh));
            }
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let entry = self.prepare_new_entry(
            ctx,
            parent,
            name_s,
            FileKind::File,
            0,
            requested_perm(mode, umask),
        )?;
        // Local until the first flush uploads it (see `commit`).
        let (ino, node) = self.insert_new_entry(entry, None, |n| n.writers = 1);
        let acc = flags & libc::O_ACCMODE;
        let fh = self
            .register_handle(
                FileHandle {
                    ino,
                    readable: acc == libc::O_RDONLY || acc == libc::O_RDWR,
                    writable: true,
                    reader: None,
                    append: flags & libc::O_APPEND != 0,
                    side: None,
                    writers: Writers::default(),
                },
                ctx.pid,
                true,
            )
            .await?;
        Ok((node.attr, fh))
    }

    /// FUSE read: pending data of the inode (written through any handle) from its local
    /// copy, the rest from the object.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let h = self.handle(fh)?;
        let mut h = h.handle.lock().await;
        if !h.readable {
            return Err(FsError::BadHandle);
        }
        let ino = h.ino;
        let side = match &h.side {
            Some(s) => Some(s.clone()),
            None => self.local_copies.get(ino),
        };
        // Held across the object read too: a commit landing meanwhile must not change the
        // object under a reader pinned to the old ETag.
        let mut pending = match &side {
            Some(s) => Some(s.lock().await),
            None => None,
        };
        // AppendObject changes the ETag without telling it: the object is asked again.
        let mut appended = false;
        // New bytes joined server-side at commit: the object's bytes (at its ETag and size
        // before the append), then the local tail.
        let mut base: Option<(String, u64)> = None;
        if let Some(ws) = pending.as_mut() {
            appended = matches!(ws.state, WriteState::Appending { .. });
            match &ws.state {
                WriteState::Staged { file, .. } | WriteState::Streaming { copy: file, .. } => {
                    return Ok(Bytes::from(file.read_at(offset, size).await?));
                }
                WriteState::Failed(cause) => return Err(FsError::EarlierFailure(cause.clone())),
                WriteState::Clean if ws.new_content => return Ok(Bytes::new()),
                WriteState::ServerAppend(p) if offset >= p.base_size => {
                    let at = offset - p.base_size;
                    return Ok(Bytes::from(p.tail.read_at(at, size).await?));
                }
                WriteState::ServerAppend(p) => base = Some((p.base_etag.clone(), p.base_size)),
                WriteState::Clean | WriteState::Appending { .. } => {}
            }
        }
        let mut node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        if node.local {
            return Ok(Bytes::new());
        }
        if let Some((etag, size)) = &base {
            node.etag = etag.clone();
            node.attr.size = *size;
        }
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        let needs_new_reader = match &h.reader {
            Some(r) => r.size() != node.attr.size || r.key() != key || r.etag() != node.etag,
            None => true,
        };
        if needs_new_reader {
            if appended {
                let head = self
                    .store
                    .head_object(&key)
                    .await
                    .map_err(|e| FsError::store("HeadObject", &key, e))?;
                self.inodes.update(ino, |n| n.etag = head.etag.clone());
                node.etag = head.etag;
                node.attr.size = head.size;
                node.crc64 = head.crc64;
            }
            h.reader = Some(ObjectReader::new(
                self.store.clone(),
                self.cache.clone(),
                self.read_cfg.clone(),
                key.clone(),
                node.etag.clone(),
                node.attr.size,
                node.crc64,
            ));
        }
        let reader = h.reader.as_mut().ok_or(FsError::BadHandle)?;
        let mut data = reader
            .read(offset, size)
            .await
            .map_err(|e| read_error(&key, e))?;
        if let (Some((_, base_size)), Some(ws)) = (base, pending.as_ref())
            && let WriteState::ServerAppend(p) = &ws.state
            && offset + (data.len() as u64) == base_size
            && data.len() < size as usize
        {
            let more = p.tail.read_at(0, size - data.len() as u32).await?;
            let mut joined = Vec::with_capacity(data.len() + more.len());
            joined.extend_from_slice(&data);
            joined.extend_from_slice(&more);
            data = Bytes::from(joined);
        }
        drop(pending);
        ::metrics::counter!(crate::metrics::FUSE_BYTES_READ).increment(data.len() as u64);
        Ok(data)
    }

    /// FUSE write: returns the number of bytes accepted (always all of them).
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.write_as(0, fh, offset, Bytes::copy_from_slice(data))
            .await
    }

    /// FUSE write by thread `pid`: returns the number of bytes accepted (always all).
    /// A new file's streamed data keeps `data` itself as part of an upload part (no copy).
    pub async fn write_as(&self, pid: u32, fh: u64, offset: u64, data: Bytes) -> FsResult<u32> {
        self.write_by(pid, 0, fh, offset, data).await
    }

    /// [`Self::write_as`] by a process of user `uid` (set-ID bits drop, see `owner`).
    pub async fn write_by(
        &self,
        pid: u32,
        uid: u32,
        fh: u64,
        offset: u64,
        data: Bytes,
    ) -> FsResult<u32> {
        let h = self.handle(fh)?;
        self.write_drops_privileges(h.ino, uid);
        let mut h = h.handle.lock().await;
        let Some(side) = h.side.clone().filter(|_| h.writable) else {
            return Err(FsError::BadHandle);
        };
        h.writers.wrote(pid);
        let mut ws = side.lock().await;
        // Write-back: room in the store first (waits while it is full, without the side
        // locked; ENOSPC when the write can never fit: nothing is written, the file stays
        // as it was).
        let end = offset + data.len() as u64;
        let need = self.wb_needed(&ws, end);
        if need > 0 {
            drop(ws);
            let r = self.wb_reserve(h.ino, need).await?;
            ws = side.lock().await;
            match &mut ws.wb_reserved {
                Some(held) => held.merge(r),
                None => ws.wb_reserved = Some(r),
            }
        }
        if let Err(e) = ws.write(self, offset, &data, h.append).await {
            // All or nothing (see `WriteSide::fail`).
            return Err(ws.fail(offset, e).await);
        }
        let end = offset + data.len() as u64;
        let now = SystemTime::now();
        // Under the side's lock: a stat after write(2) returned shows the new size.
        self.inodes.update(h.ino, |n| {
            n.attr.size = n.attr.size.max(end);
            n.attr.mtime = now;
            n.attr.ctime = now;
        });
        drop(ws);
        ::metrics::counter!(crate::metrics::FUSE_BYTES_WRITTEN).increment(data.len() as u64);
        Ok(data.len() as u32)
    }

    /// Flush that commits whoever closes (see [`Self::flush_as`]).
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        self.flush_as(0, fh).await
    }

    /// FUSE flush (each close of a descriptor) by thread `pid`: commits pending data,
    /// unless the closer neither opened nor wrote the file, i.e. merely inherited the
    /// descriptor (a child's exec or exit): committing then would publish a half-written
    /// file (see [`super::process`]). A writer's close, fsync or the last release
    /// commits.
    pub async fn flush_as(&self, pid: u32, fh: u64) -> FsResult<()> {
        let file = self.handle(fh)?;
        let mut h = file.handle.lock().await;
        if h.writable && !h.writers.includes(pid) {
            tracing::debug!(
                ino = h.ino,
                pid,
                writers = ?h.writers,
                "flush from a process that neither opened nor wrote the file: not committing"
            );
            return Ok(());
        }
        self.commit_handle(&mut h).await
    }

    /// Commits a writable handle: the inode's pending data, whoever wrote it (see
    /// `commit`). The reader is dropped unless the commit was a no-op: after an upload it
    /// would read the old object.
    async fn commit_handle(&self, h: &mut FileHandle) -> FsResult<()> {
        let Some(side) = h.side.clone().filter(|_| h.writable) else {
            return Ok(());
        };
        if self.write_back.is_some() {
            // Journaled, uploaded in the background (see `write_back`).
            return self.wb_journal(&mut *side.lock().await).await.map(|_| ());
        }
        let result = self.commit(&mut *side.lock().await).await;
        if !matches!(result, Ok(false)) {
            h.reader = None;
        }
        result.map(|_| ())
    }

    /// FUSE fsync: same as flush (data is durable only once in OSS); with write-back it
    /// also waits for the file's upload and returns its error (see `write_back`).
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        if self.write_back.is_none() {
            return self.flush(fh).await;
        }
        let file = self.handle(fh)?;
        let (ino, seq) = {
            let h = file.handle.lock().await;
            let seq = match h.side.clone().filter(|_| h.writable) {
                Some(side) => self.wb_journal(&mut *side.lock().await).await?,
                None => None,
            };
            (h.ino, seq)
        };
        self.wb_wait(ino, seq).await
    }

    /// FUSE release: commits what is still pending and forgets the handle. The handle
    /// stays in the table (counted by [`Filesystem::open_handles`], which the shutdown
    /// waits on) until its upload is over.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let file = self.handle(fh)?;
        let mut h = file.handle.lock().await;
        let result = self.commit_handle(&mut h).await;
        if h.side.take().is_some() {
            self.detach_side(h.ino).await;
        }
        if h.writable {
            let ino = h.ino;
            let failed = result.is_err();
            let orphan = self.inodes.update(ino, |n| {
                n.writers = n.writers.saturating_sub(1);
                // A successful commit left exact attributes (size, ETag of our own
                // upload) that stay fresh for a TTL: the getattr the kernel sends after
                // close need not ask OSS. After a failure, ask.
                if failed {
                    n.valid_until = None;
                }
                (n.writers == 0 && n.local).then(|| (n.parent, n.name.clone()))
            });
            // Created here but never uploaded (the upload failed): it does not exist.
            if let Some(Some((parent, name))) = orphan {
                self.inodes.remove_child(parent, &name);
            }
        }
        self.inodes.unpin(h.ino);
        lock(&self.files).remove(&fh);
        result
    }

    /// Truncate (setattr size): of the inode's pending data when a writer has it open
    /// (whichever handle `_fh` is: the data is the inode's, see `local_copy`), else of
    /// the object.
    pub(crate) async fn truncate(&self, ino: Ino, size: u64, _fh: Option<u64>) -> FsResult<()> {
        self.check_writable()?;
        if let Some(side) = self.local_copies.get(ino) {
            let mut ws = side.lock().await;
            ws.truncate(self, size).await?;
            let now = SystemTime::now();
            self.inodes.update(ino, |n| {
                n.attr.size = size;
                n.attr.mtime = now;
                n.attr.ctime = now;
            });
            if self.wb_pending(ino) {
                // A pending file no handle may close again: its new content is
                // journaled now.
                self.wb_journal(&mut ws).await?;
            }
            return Ok(());
        }
        // No open writer: rewrite the object now.
        self.rewrite_truncated(ino, size).await
    }

    /// Whether an open handle of `ino` holds data that its next flush will upload (that
    /// upload then carries the current metadata too).
    pub(crate) async fn has_pending_data(&self, ino: Ino) -> bool {
        match self.local_copies.get(ino) {
            Some(side) => side.lock().await.has_pending_data(),
            None => false,
        }
    }
}
