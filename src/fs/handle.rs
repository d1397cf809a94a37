//! Open files: create/open/read/write/flush/fsync/release and truncate.
//!
//! Each handle has a read side (an [`ObjectReader`] created on the first read, pinned
//! to the ETag current at open) and a write state machine:
//!
//! ```text
//!            write@0 on new content            non-sequential write (≤ 8 MiB)
//!   Clean ───────────────────────────► Streaming ─────────────────────────► Staged
//!     │  write on existing content                                            ▲
//!     ├──────────────────────────────────────────────────────────────────────┘
//!     │  O_APPEND write on an Appendable object
//!     ├──────────────────────────────► Appending (AppendObject per write)
//!     │  write at the end of an object ≥ 1 MiB
//!     └──────────────────────────────► ServerAppend (see `append`; → Staged on any
//!                                       earlier write, truncate or read)
//! ```
//! "New content" = created by this mount and not uploaded yet, or opened with `O_TRUNC`
//! (or truncated to 0): the old bytes are not needed, so the data streams to OSS while
//! the application writes ([`StreamingUpload`]), and nothing is visible until flush.
//! Everything else is staged in a local file (see `staging`) and uploaded at flush.
//!
//! flush (every `close` by a writer: the opener or a process that wrote; a child closing
//! a descriptor it merely inherited is not one, see `process`), fsync and release
//! commit: they finish the streaming upload or upload the staging file, and return the
//! upload's error to the application. After a streaming upload failed the handle is
//! `Failed`: later flushes report the error again and nothing (in particular no empty
//! object) is uploaded. A failed staged upload keeps the staging file dirty, so the next
//! flush/release retries it.
//!
//! A new file nobody wrote to is uploaded (empty) at its first flush, so `touch` gets any
//! error. Shells flush a redirected descriptor once before writing through its duplicate,
//! so `echo x > new` costs an empty PUT and then the real one (deferring the empty PUT to
//! release would hide its failure from the application: release errors are not seen).
//!
//! Pitfalls:
//! - A streaming upload cannot seek back: it keeps its first `MIRROR_LIMIT` bytes
//!   readable (the part buffers themselves, no copy) so a program that seeks back early
//!   (rewriting a header) falls back to staging; seeking back further is `ENOTSUP`
//!   (logged).
//! - The key is fixed when a streaming upload starts; if the file is renamed meanwhile,
//!   the finished object is moved to the new name (copy + delete).
//! - An unlinked file's pending data is dropped, never uploaded.
//! - Truncate with `O_TRUNC` support (`FUSE_ATOMIC_O_TRUNC`) avoids an extra empty PUT.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::read::{ObjectReader, ReadError};
use crate::store::{ObjectType, PutOptions, PutResult};
use crate::write::{StreamingUpload, WriteError, upload_file};

use super::append::{PendingAppend, SERVER_APPEND_MIN};
use super::attr::{FileKind, Ino, to_user_meta};
use super::error::FsError;
use super::process::Writers;
use super::staging::StagingFile;
use super::{Attr, Ctx, Filesystem, FsResult, lock, names};

/// Largest prefix of a streamed file kept in memory to allow an early seek back (one
/// default part: free while the first part is unsent).
const MIRROR_LIMIT: u64 = 8 << 20;

#[derive(Debug)]
enum WriteState {
    Clean,
    Streaming {
        upload: Box<StreamingUpload>,
        key: String,
    },
    Staged {
        file: StagingFile,
        dirty: bool,
    },
    Appending {
        position: u64,
        crc: Option<u64>,
    },
    /// New bytes after the end of an existing object, joined server-side at commit.
    ServerAppend(PendingAppend),
    Failed(String),
}

/// An entry of the open-file table: what can be known without waiting for the handle.
#[derive(Debug)]
pub(crate) struct OpenFile {
    ino: Ino,
    writable: bool,
    handle: tokio::sync::Mutex<FileHandle>,
}

/// One open file.
#[derive(Debug)]
pub(crate) struct FileHandle {
    ino: Ino,
    readable: bool,
    writable: bool,
    append: bool,
    /// The old content is discarded (O_TRUNC, truncate to 0): nothing is downloaded.
    new_content: bool,
    reader: Option<ObjectReader>,
    state: WriteState,
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
            FsError::DataPath(e.to_string())
        }
    }
}

fn write_error(key: &str, e: WriteError) -> FsError {
    match e {
        WriteError::Store(s) => FsError::store("upload", key, s),
        WriteError::Io(io) => FsError::io("upload from staging file", io),
        e @ WriteError::TooLarge { .. } => FsError::TooLarge(e.to_string()),
        e @ WriteError::Failed { .. } => FsError::DataPath(e.to_string()),
    }
}

impl Filesystem {
    fn register_handle(&self, mut h: FileHandle, pid: u32) -> u64 {
        if h.writable {
            h.writers = Writers::opened_by(pid);
        }
        let fh = self.alloc_fh();
        self.inodes.pin(h.ino);
        let entry = OpenFile {
            ino: h.ino,
            writable: h.writable,
            handle: tokio::sync::Mutex::new(h),
        };
        lock(&self.files).insert(fh, Arc::new(entry));
        fh
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
        Ok(self.register_handle(
            FileHandle {
                ino,
                readable,
                writable,
                append: flags & libc::O_APPEND != 0,
                new_content: trunc,
                reader: None,
                state: WriteState::Clean,
                writers: Writers::default(),
            },
            pid,
        ))
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
        let key = self
            .inodes
            .child_key(parent, name_s)
            .ok_or(FsError::NotFound)?;
        names::check_key_len(&key)?;
        let attr = self.new_owned_attr(
            ctx,
            parent,
            FileKind::File,
            0,
            (mode & !umask & 0o7777) as u16,
        );
        let (ino, node) = self.inodes.insert_local(parent, name_s, attr, true);
        self.dir_entries_changed(parent, 0);
        self.inodes.update(ino, |n| {
            n.writers = 1;
            n.lookups = 1;
        });
        let acc = flags & libc::O_ACCMODE;
        let fh = self.register_handle(
            FileHandle {
                ino,
                readable: acc == libc::O_RDONLY || acc == libc::O_RDWR,
                writable: true,
                append: flags & libc::O_APPEND != 0,
                new_content: true,
                reader: None,
                state: WriteState::Clean,
                writers: Writers::default(),
            },
            ctx.pid,
        );
        Ok((node.attr, fh))
    }

    /// Options (metadata) for uploading the current content of `ino`.
    fn upload_opts(&self, ino: Ino) -> PutOptions {
        match self.inodes.get(ino) {
            Some(n) => PutOptions {
                content_type: n.content_type.clone(),
                user_meta: to_user_meta(&n.attr, &n.user_meta),
                forbid_overwrite: false,
            },
            None => PutOptions::default(),
        }
    }

    /// FUSE read.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let h = self.handle(fh)?;
        let mut h = h.handle.lock().await;
        if !h.readable {
            return Err(FsError::BadHandle);
        }
        let ino = h.ino;
        if matches!(h.state, WriteState::ServerAppend(_)) {
            self.materialize(&mut h).await?;
        }
        match &h.state {
            WriteState::Staged { file, .. } => {
                return Ok(Bytes::from(file.read_at(offset, size).await?));
            }
            WriteState::Streaming { upload, .. } => {
                return upload
                    .read_prefix(offset, size as usize)
                    .ok_or(FsError::NotSupported(
                        "reading back a large file while it is being uploaded",
                    ));
            }
            WriteState::Failed(msg) => return Err(FsError::DataPath(msg.clone())),
            WriteState::Clean | WriteState::Appending { .. } | WriteState::ServerAppend(_) => {}
        }
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        if h.new_content || node.local {
            return Ok(Bytes::new());
        }
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        let needs_new_reader = match &h.reader {
            Some(r) => r.size() != node.attr.size || r.key() != key,
            None => true,
        };
        if needs_new_reader {
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
        let data = reader
            .read(offset, size)
            .await
            .map_err(|e| read_error(&key, e))?;
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
        if !h.writable {
            return Err(FsError::BadHandle);
        }
        h.writers.wrote(pid);
        if let Err(e) = self.write_locked(&mut h, offset, &data).await {
            // All or nothing: once a write was refused, what this handle holds is not what
            // the application meant to write, so no later flush may commit it (it would
            // replace the object's previous content with a partial file). A streaming
            // upload is aborted here.
            if !matches!(h.state, WriteState::Failed(_)) {
                tracing::warn!(ino = h.ino, offset, error = %e, "write failed; the file will not be uploaded");
                let failed = WriteState::Failed(format!("an earlier write failed: {e}"));
                if let WriteState::Streaming { upload, .. } =
                    std::mem::replace(&mut h.state, failed)
                {
                    upload.abort().await;
                }
            }
            return Err(e);
        }
        let end = offset + data.len() as u64;
        let now = SystemTime::now();
        self.inodes.update(h.ino, |n| {
            n.attr.size = n.attr.size.max(end);
            n.attr.mtime = now;
            n.attr.ctime = now;
        });
        ::metrics::counter!(crate::metrics::FUSE_BYTES_WRITTEN).increment(data.len() as u64);
        Ok(data.len() as u32)
    }

    async fn write_locked(&self, h: &mut FileHandle, offset: u64, data: &Bytes) -> FsResult<()> {
        let ino = h.ino;
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        if matches!(h.state, WriteState::Clean) {
            // An empty object has no old bytes to keep either: this is the common
            // `cmd > file` case, where the shell's dup+close flushed an empty PUT before
            // the first write. Appendable objects keep their own path.
            let new_content = h.new_content
                || node.local
                || (node.attr.size == 0 && node.object_type != ObjectType::Appendable);
            h.state = if new_content && offset == 0 {
                WriteState::Streaming {
                    upload: Box::new(
                        StreamingUpload::new(
                            self.store.clone(),
                            self.upload_cfg.clone(),
                            key.clone(),
                            self.upload_opts(ino),
                        )
                        .with_memory(self.cache.clone())
                        .retain_prefix(MIRROR_LIMIT),
                    ),
                    key: key.clone(),
                }
            } else if new_content {
                WriteState::Staged {
                    file: StagingFile::create(&self.cfg.cache_dir).await?,
                    dirty: true,
                }
            } else if h.append
                && node.object_type == ObjectType::Appendable
                && offset == node.attr.size
            {
                WriteState::Appending {
                    position: node.attr.size,
                    crc: node.crc64,
                }
            } else if offset == node.attr.size
                && node.attr.size >= SERVER_APPEND_MIN
                && node.object_type != ObjectType::Appendable
                && !node.etag.is_empty()
            {
                WriteState::ServerAppend(PendingAppend {
                    base_size: node.attr.size,
                    base_etag: node.etag.clone(),
                    tail: StagingFile::create(&self.cfg.cache_dir).await?,
                })
            } else {
                WriteState::Staged {
                    file: self.download(&key, &node.etag, node.attr.size).await?,
                    dirty: true,
                }
            };
        }
        match &mut h.state {
            WriteState::Streaming { upload, .. } if offset == upload.bytes_written() => {
                if let Err(e) = upload.write_bytes(data.clone()).await {
                    let err = write_error(&key, e);
                    h.state = WriteState::Failed(err.to_string());
                    return Err(err);
                }
                Ok(())
            }
            WriteState::Streaming { upload, .. } if upload.has_prefix() => {
                // Seek back (or a hole) early in a new file: switch to staging.
                let WriteState::Streaming { upload, .. } =
                    std::mem::replace(&mut h.state, WriteState::Clean)
                else {
                    return Err(FsError::BadHandle);
                };
                let prefix = upload.into_prefix().await.unwrap_or_default();
                let mut file = StagingFile::from_bytes(&self.cfg.cache_dir, prefix).await?;
                file.write_at(offset, data.to_vec()).await?;
                h.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::Streaming { upload, .. } => {
                tracing::warn!(
                    key,
                    offset,
                    streamed = upload.bytes_written(),
                    "non-sequential write after the first part of a new file was uploaded; \
                     write such files sequentially or create them with truncate first"
                );
                Err(FsError::NotSupported(
                    "non-sequential write to a new file after its first 8 MiB",
                ))
            }
            WriteState::Staged { file, dirty } => {
                file.write_at(offset, data.to_vec()).await?;
                *dirty = true;
                Ok(())
            }
            WriteState::Appending { position, crc } if offset == *position => {
                let opts = self.upload_opts(ino);
                let r = self
                    .store
                    .append_object(&key, *position, data.clone(), *crc, &opts)
                    .await
                    .map_err(|e| FsError::store("AppendObject", &key, e))?;
                *position = r.next_position;
                *crc = r.crc64;
                self.inodes.update(ino, |n| {
                    n.crc64 = r.crc64;
                    n.attr.size = r.next_position;
                    // AppendObject changes the ETag; readers must HEAD again.
                    n.valid_until = None;
                });
                self.cache.invalidate_key(&key);
                Ok(())
            }
            WriteState::Appending { .. } => {
                let mut file = self.download(&key, "", node.attr.size).await?;
                file.write_at(offset, data.to_vec()).await?;
                h.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::ServerAppend(p) if offset == p.end() => {
                let at = offset - p.base_size;
                p.tail.write_at(at, data.to_vec()).await
            }
            WriteState::ServerAppend(_) => {
                // A write before the end: continue as an ordinary local file.
                self.materialize(h).await?;
                match &mut h.state {
                    WriteState::Staged { file, dirty } => {
                        file.write_at(offset, data.to_vec()).await?;
                        *dirty = true;
                        Ok(())
                    }
                    _ => Err(FsError::BadHandle),
                }
            }
            WriteState::Failed(msg) => Err(FsError::DataPath(msg.clone())),
            WriteState::Clean => Err(FsError::BadHandle),
        }
    }

    /// Turns a pending server-side append into a full local staging file.
    async fn materialize(&self, h: &mut FileHandle) -> FsResult<()> {
        if let WriteState::ServerAppend(p) = std::mem::replace(&mut h.state, WriteState::Clean) {
            let key = self.inodes.key_of(h.ino).ok_or(FsError::NotFound)?;
            let file = self.materialize_append(&key, p).await?;
            h.state = WriteState::Staged { file, dirty: true };
        }
        Ok(())
    }

    async fn download(&self, key: &str, etag: &str, size: u64) -> FsResult<StagingFile> {
        StagingFile::download(&self.cfg.cache_dir, &*self.store, key, etag, size).await
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
        self.commit(&mut h).await
    }

    /// FUSE fsync: same as flush (data is durable only once in OSS).
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        self.flush(fh).await
    }

    /// FUSE release: commits what is still pending and forgets the handle.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let h = lock(&self.files).remove(&fh).ok_or(FsError::BadHandle)?;
        let mut h = h.handle.lock().await;
        let result = if h.writable {
            self.commit(&mut h).await
        } else {
            Ok(())
        };
        if let WriteState::Streaming { .. } = h.state
            && let WriteState::Streaming { upload, .. } =
                std::mem::replace(&mut h.state, WriteState::Clean)
        {
            upload.abort().await;
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
        result
    }

    async fn commit(&self, h: &mut FileHandle) -> FsResult<()> {
        if !h.writable {
            return Ok(());
        }
        let ino = h.ino;
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        if node.unlinked {
            if let WriteState::Streaming { upload, .. } =
                std::mem::replace(&mut h.state, WriteState::Clean)
            {
                upload.abort().await;
            }
            return Ok(());
        }
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        let size;
        // chmod/chown/utimens made while this upload was pending (see `setattr`): the
        // metadata the upload carries, when it is not what the attributes say now, is
        // rewritten by a metadata copy once the data is in.
        let explicit_meta = lock(&self.meta_pending).contains(&ino);
        let mut carried: Option<PutOptions> = None;
        let result: PutResult = match std::mem::replace(&mut h.state, WriteState::Clean) {
            WriteState::Clean if h.new_content || node.local => {
                size = 0;
                self.store
                    .put_object(&key, Bytes::new().into(), &self.upload_opts(ino))
                    .await
                    .map_err(|e| FsError::store("PutObject", &key, e))?
            }
            WriteState::Clean => return Ok(()),
            s @ WriteState::Appending { .. } => {
                h.state = s;
                if lock(&self.meta_pending).remove(&ino) {
                    // Appends are written as they come; only the metadata is pending.
                    let attr = self.inodes.get(ino).ok_or(FsError::NotFound)?.attr;
                    self.persist_attr(ino, &attr).await?;
                }
                return Ok(());
            }
            WriteState::Failed(msg) => {
                h.state = WriteState::Failed(msg.clone());
                return Err(FsError::DataPath(msg));
            }
            WriteState::ServerAppend(p) if p.tail.size() == 0 => {
                h.state = WriteState::ServerAppend(p);
                return Ok(());
            }
            WriteState::ServerAppend(p) => {
                size = p.end();
                match self.commit_append(&key, &p, &self.upload_opts(ino)).await {
                    Ok(r) => r,
                    Err(e) => {
                        // Keep the new bytes: the next flush/release retries.
                        h.state = WriteState::ServerAppend(p);
                        return Err(e);
                    }
                }
            }
            WriteState::Staged { file, dirty: false } => {
                h.state = WriteState::Staged { file, dirty: false };
                return Ok(());
            }
            WriteState::Staged { file, dirty: true } => {
                size = file.size();
                let opts = self.upload_opts(ino);
                let r = upload_file(
                    self.store.clone(),
                    &self.upload_cfg,
                    &key,
                    &file.path(),
                    size,
                    &opts,
                )
                .await;
                match r {
                    Ok(r) => {
                        h.state = WriteState::Staged { file, dirty: false };
                        r
                    }
                    Err(e) => {
                        // Keep the data: the next flush/release retries.
                        h.state = WriteState::Staged { file, dirty: true };
                        return Err(write_error(&key, e));
                    }
                }
            }
            WriteState::Streaming {
                upload,
                key: upload_key,
                ..
            } => {
                size = upload.bytes_written();
                let mut upload = upload;
                let wanted = self.upload_opts(ino);
                if !upload.set_options(wanted) {
                    carried = Some(upload.options().clone());
                }
                match upload.finish().await {
                    Ok(r) => {
                        if upload_key != key {
                            // Renamed while being written: move the finished object.
                            self.copy_any(&upload_key, &key, size, None).await?;
                            self.store
                                .delete_object(&upload_key)
                                .await
                                .map_err(|e| FsError::store("DeleteObject", &upload_key, e))?;
                        }
                        r
                    }
                    Err(e) => {
                        let err = write_error(&upload_key, e);
                        h.state = WriteState::Failed(err.to_string());
                        return Err(err);
                    }
                }
            }
        };
        h.new_content = false;
        h.reader = None;
        let meta = self.upload_opts(ino).user_meta;
        let stale_meta = explicit_meta && carried.is_some_and(|c| c.user_meta != meta);
        self.inodes.update(ino, |n| {
            n.local = false;
            n.etag = result.etag.clone();
            n.crc64 = result.crc64;
            n.attr.size = size;
            n.attr.from_meta = true;
            // The ctime stays that of the last write or change: the upload landing later
            // (after close) changes nothing a program did. Revalidation keeps it while
            // the ETag and the stored attributes are unchanged (`InodeTable::observe`).
            n.object_type = ObjectType::Normal;
            n.user_meta = meta;
        });
        self.inodes.touch_valid(ino);
        self.cache.invalidate_key(&key);
        if stale_meta {
            let attr = self.inodes.get(ino).ok_or(FsError::NotFound)?.attr;
            self.persist_attr(ino, &attr).await?;
        }
        if explicit_meta {
            lock(&self.meta_pending).remove(&ino);
        }
        Ok(())
    }

    /// Truncate (setattr size): through the open handle when there is one.
    pub(crate) async fn truncate(&self, ino: Ino, size: u64, fh: Option<u64>) -> FsResult<()> {
        self.check_writable()?;
        let handle = match fh.and_then(|f| self.handle(f).ok()) {
            Some(h) => Some(h),
            None => self.writable_handle_of(ino),
        };
        if let Some(h) = handle {
            let mut h = h.handle.lock().await;
            if h.writable {
                self.truncate_handle(&mut h, size).await?;
                let now = SystemTime::now();
                self.inodes.update(ino, |n| {
                    n.attr.size = size;
                    n.attr.mtime = now;
                    n.attr.ctime = now;
                });
                return Ok(());
            }
        }
        // No open writer: rewrite the object now.
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        if node.attr.kind != FileKind::File {
            return Err(FsError::IsDir);
        }
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        let now = SystemTime::now();
        self.inodes.update(ino, |n| {
            n.attr.mtime = now;
            n.attr.ctime = now;
        });
        let opts = self.upload_opts(ino);
        let result = if size == 0 {
            self.store
                .put_object(&key, Bytes::new().into(), &opts)
                .await
                .map_err(|e| FsError::store("PutObject", &key, e))?
        } else {
            let mut file = self.download(&key, &node.etag, node.attr.size).await?;
            file.set_len(size).await?;
            upload_file(
                self.store.clone(),
                &self.upload_cfg,
                &key,
                &file.path(),
                size,
                &opts,
            )
            .await
            .map_err(|e| write_error(&key, e))?
        };
        self.inodes.update(ino, |n| {
            n.etag = result.etag;
            n.crc64 = result.crc64;
            n.attr.size = size;
            n.object_type = ObjectType::Normal;
            n.user_meta = opts.user_meta.clone();
        });
        self.inodes.touch_valid(ino);
        self.cache.invalidate_key(&key);
        Ok(())
    }

    fn writable_handle_of(&self, ino: Ino) -> Option<Arc<OpenFile>> {
        lock(&self.files)
            .values()
            .find(|f| f.ino == ino && f.writable)
            .cloned()
    }

    /// Whether an open handle of `ino` holds data that its next flush will upload (that
    /// upload then carries the current metadata too).
    pub(crate) async fn has_pending_data(&self, ino: Ino) -> bool {
        let files: Vec<Arc<OpenFile>> = lock(&self.files)
            .values()
            .filter(|f| f.ino == ino && f.writable)
            .cloned()
            .collect();
        for f in files {
            let h = f.handle.lock().await;
            let pending = match &h.state {
                WriteState::Clean => h.new_content,
                WriteState::Staged { dirty, .. } => *dirty,
                WriteState::Streaming { .. }
                | WriteState::Appending { .. }
                | WriteState::ServerAppend(_) => true,
                WriteState::Failed(_) => false,
            };
            if pending {
                return true;
            }
        }
        false
    }

    async fn truncate_handle(&self, h: &mut FileHandle, size: u64) -> FsResult<()> {
        let ino = h.ino;
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        match std::mem::replace(&mut h.state, WriteState::Clean) {
            WriteState::Clean if size == 0 => {
                h.new_content = true;
                Ok(())
            }
            WriteState::Clean => {
                let mut file = if h.new_content || node.local {
                    StagingFile::create(&self.cfg.cache_dir).await?
                } else {
                    self.download(&key, &node.etag, node.attr.size).await?
                };
                file.set_len(size).await?;
                h.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::Streaming { upload, key: k } => {
                if size == upload.bytes_written() {
                    h.state = WriteState::Streaming { upload, key: k };
                    return Ok(());
                }
                if size == 0 {
                    upload.abort().await;
                    h.new_content = true;
                    return Ok(());
                }
                if !upload.has_prefix() {
                    h.state = WriteState::Streaming { upload, key: k };
                    return Err(FsError::NotSupported(
                        "truncating a new file after its first 8 MiB were uploaded",
                    ));
                }
                let prefix = upload.into_prefix().await.unwrap_or_default();
                let mut file = StagingFile::from_bytes(&self.cfg.cache_dir, prefix).await?;
                file.set_len(size).await?;
                h.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::Staged { mut file, .. } => {
                file.set_len(size).await?;
                h.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::Appending { .. } => {
                let mut file = self.download(&key, "", node.attr.size).await?;
                file.set_len(size).await?;
                h.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::ServerAppend(p) => {
                let mut file = self.materialize_append(&key, p).await?;
                file.set_len(size).await?;
                h.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::Failed(msg) => {
                h.state = WriteState::Failed(msg.clone());
                Err(FsError::DataPath(msg))
            }
        }
    }
}
