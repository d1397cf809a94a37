//! The write state machine of a file being written: what an inode holds that is not in
//! OSS yet. One [`WriteSide`] per inode, shared by all its handles (see `local_copy`).
//!
//! ```text
//!            write@0 on new content            any other write, truncate, rename
//!   Clean ───────────────────────────► Streaming ─────────────────────────► Staged
//!     │  write on existing content                                            ▲
//!     ├──────────────────────────────────────────────────────────────────────┤
//!     │  O_APPEND write on an Appendable object                               │
//!     ├──────────────────────────────► Appending ─── write elsewhere ─────────┤
//!     │  write at the end of an object ≥ 1 MiB                                │
//!     └──────────────────────────────► ServerAppend ─ earlier write, truncate,┘
//!                                                     rename
//!   any state ── a refused write, a failed streaming upload ──► Failed
//! ```
//!
//! States (each keeps these invariants; every transition below preserves them):
//! - [`WriteState::Clean`]: nothing is held. The file's content is the object's, or
//!   empty when `new_content` is set (O_TRUNC, truncate to 0, a file created here): then
//!   the next commit uploads an empty object.
//! - [`WriteState::Streaming`]: a new file written sequentially from offset 0; the bytes go
//!   to OSS as the application writes ([`StreamingUpload`]) under the key fixed at the
//!   first write, and to a full local copy (write-through), from which every reader
//!   reads. Any write that is not at `bytes_written()` (a seek back, a hole), a truncate
//!   or a rename aborts the upload and continues in `Staged` from the local copy.
//! - [`WriteState::Staged`]: the whole file is in a local [`StagingFile`] (downloaded on the
//!   first write when the old content matters); `dirty` says whether it differs from the
//!   object. Any offset may be written.
//! - [`WriteState::Appending`]: an Appendable object extended by AppendObject at each write;
//!   `position` is the object's size (the next write's offset), nothing is pending but
//!   metadata.
//! - [`WriteState::ServerAppend`]: new bytes after the end of an existing object, joined
//!   server-side at commit (see `append`). Only writes at its end are kept so; anything
//!   else materialises the file into `Staged` first. Readers read the object (pinned to
//!   `base_etag`) below `base_size` and the local tail above.
//! - [`WriteState::Failed`]: what the inode holds is not what the application wrote
//!   (a write was refused, or the streaming upload failed). Nothing is ever uploaded from
//!   it; every later read, write, truncate and flush reports the failure again, with the
//!   first failure's errno.
//!
//! Transitions are the methods of [`WriteSide`] below ([`WriteSide::write`],
//! [`WriteSide::truncate`], [`WriteSide::materialize`], [`WriteSide::unstream`],
//! [`WriteSide::fail`]); the commit (upload at flush/fsync/release) is in `commit`. A new
//! state is added by extending [`WriteState`], these methods and `commit`: each `match`
//! is exhaustive.
//!
//! Pitfalls:
//! - A streaming upload cannot seek back and its key cannot change: the local copy is
//!   what makes both possible (abort the multipart upload, nothing was published, and
//!   upload the local copy at commit, under the key the file has then).
//! - The local copy of a streamed file is written behind (`StagingFile::write_behind`):
//!   the bytes are readable from it (from memory until their disk write is done) as soon
//!   as `write(2)` returned, without the stream waiting for the disk; a failed local
//!   write (ENOSPC) fails a later write or the close, and the file (nothing partial is
//!   committed).
//! - A state is taken out of the side (`mem::replace` with `Clean`) while a transition
//!   awaits. Paths that can fail before the transition completes put the old state back
//!   where the data must survive (a failed commit keeps it for the retry); a failed
//!   write moves the side to `Failed` (see [`WriteSide::fail`]), and so does an error
//!   inside [`WriteSide::truncate`] or [`WriteSide::materialize`] that lost unsent bytes
//!   (local I/O on the staging file, the download of a `ServerAppend` base): the close
//!   reports it rather than committing the file without them.

use std::sync::Arc;

use bytes::Bytes;

use crate::store::ObjectType;
use crate::write::{StreamingUpload, WriteError};

use super::append::{PendingAppend, SERVER_APPEND_MIN};
use super::attr::Ino;
use super::error::FsError;
use super::inode::Node;
use super::staging_file::StagingFile;
use super::{Filesystem, FsResult};

/// What an open file holds that OSS does not have yet (see the module docs).
#[derive(Debug)]
pub(super) enum WriteState {
    Clean,
    Streaming {
        upload: Box<StreamingUpload>,
        /// The key the upload writes to (the file may be renamed meanwhile: the commit
        /// then continues from `copy` under the new key).
        key: String,
        /// Everything written so far (what readers read).
        copy: StagingFile,
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
    /// The first failure; every later operation reports [`FsError::EarlierFailure`].
    Failed(Arc<FsError>),
}

pub(super) fn write_error(key: &str, e: WriteError) -> FsError {
    match e {
        WriteError::Store(s) => FsError::store("upload", key, s),
        WriteError::Io(io) => FsError::io("upload from staging file", io),
        e @ (WriteError::TooLarge { .. } | WriteError::Failed { .. }) => FsError::Write {
            key: key.to_string(),
            source: e,
        },
    }
}

/// The write side of an inode being written: its state and what decides the first
/// transition (shared by the inode's handles, see `local_copy`).
#[derive(Debug)]
pub(super) struct WriteSide {
    pub(super) ino: Ino,
    /// The old content is discarded (O_TRUNC, truncate to 0, created here): nothing is
    /// downloaded, and a commit in `Clean` uploads an empty object.
    pub(super) new_content: bool,
    pub(super) state: WriteState,
    /// Write-back (see `write_back`): what the state holds is journaled (no write or
    /// truncate since the last `Put` record).
    pub(super) wb_journaled: bool,
    /// Write-back: the next upload replaces whatever the server has (a rename onto an
    /// existing name), no conflict check.
    pub(super) wb_expect_any: bool,
    /// Write-back: store space reserved for bytes written since the last `Put` record
    /// (backpressure, see `WriteBackStore::reserve`).
    pub(super) wb_reserved: Option<crate::write_back::SpaceReservation>,
    /// The next commit's upload carries `x-oss-forbid-overwrite` (write-back's check for
    /// a file created here).
    pub(super) forbid_overwrite: bool,
}

impl WriteSide {
    pub(super) fn new(ino: Ino, new_content: bool) -> WriteSide {
        WriteSide {
            ino,
            new_content,
            state: WriteState::Clean,
            wb_journaled: false,
            wb_expect_any: false,
            wb_reserved: None,
            forbid_overwrite: false,
        }
    }

    /// Whether the next commit of this handle uploads something.
    pub(super) fn has_pending_data(&self) -> bool {
        match &self.state {
            WriteState::Clean => self.new_content,
            WriteState::Staged { dirty, .. } => *dirty,
            WriteState::Streaming { .. }
            | WriteState::Appending { .. }
            | WriteState::ServerAppend(_) => true,
            WriteState::Failed(_) => false,
        }
    }

    /// Any state → `Failed` after a refused write (`e`): what this handle holds is not
    /// what the application meant to write, so no later flush may commit it (it would
    /// replace the object's previous content with a partial file). A streaming upload is
    /// aborted. Returns the error to report for this write.
    pub(super) async fn fail(&mut self, offset: u64, e: FsError) -> FsError {
        if matches!(self.state, WriteState::Failed(_)) {
            return e;
        }
        tracing::warn!(ino = self.ino, offset, error = %e, "write failed; the file will not be uploaded");
        let e = Arc::new(e);
        let failed = WriteState::Failed(e.clone());
        if let WriteState::Streaming { upload, .. } = std::mem::replace(&mut self.state, failed) {
            upload.abort().await;
        }
        FsError::Shared(e)
    }

    /// → `Failed` after the streaming upload itself failed (nothing left to abort).
    pub(super) fn upload_failed(&mut self, e: FsError) -> FsError {
        let e = Arc::new(e);
        self.state = WriteState::Failed(e.clone());
        FsError::Shared(e)
    }

    /// Drops a streaming upload without finishing it (release, unlink): → `Clean`.
    pub(super) async fn abort_streaming(&mut self) {
        if let WriteState::Streaming { .. } = self.state
            && let WriteState::Streaming { upload, .. } =
                std::mem::replace(&mut self.state, WriteState::Clean)
        {
            upload.abort().await;
        }
    }

    /// `Clean` → the state the first write at `offset` starts (see the diagram).
    async fn begin_write(
        &mut self,
        fs: &Filesystem,
        node: &Node,
        key: &str,
        offset: u64,
        append: bool,
    ) -> FsResult<()> {
        // An empty object has no old bytes to keep either: this is the common
        // `cmd > file` case, where the shell's dup+close flushed an empty PUT before
        // the first write. Appendable objects keep their own path.
        let new_content = self.new_content
            || node.local
            || (node.attr.size == 0 && node.object_type != ObjectType::Appendable);
        if fs.write_back.is_some() {
            // Write-back: always a whole local copy, in the store (see `write_back`).
            let file = fs.new_local_file().await?;
            self.state = WriteState::Staged {
                file: if new_content {
                    file
                } else {
                    file.fill_from(&*fs.store, key, &node.etag, node.attr.size)
                        .await?
                },
                dirty: true,
            };
            return Ok(());
        }
        self.state = if new_content && offset == 0 {
            WriteState::Streaming {
                upload: Box::new(
                    StreamingUpload::new(
                        fs.store.clone(),
                        fs.upload_cfg.clone(),
                        key.to_string(),
                        fs.upload_opts(self.ino),
                    )
                    .with_memory(fs.cache.clone()),
                ),
                key: key.to_string(),
                copy: fs.new_local_file().await?,
            }
        } else if new_content {
            WriteState::Staged {
                file: fs.new_local_file().await?,
                dirty: true,
            }
        } else if append && node.object_type == ObjectType::Appendable && offset == node.attr.size {
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
                tail: fs.new_local_file().await?,
            })
        } else {
            WriteState::Staged {
                file: fs.download(key, &node.etag, node.attr.size).await?,
                dirty: true,
            }
        };
        Ok(())
    }

    /// Takes `data` at `offset` (from a handle opened with `O_APPEND` when `append`),
    /// moving to the state that can hold it.
    pub(super) async fn write(
        &mut self,
        fs: &Filesystem,
        offset: u64,
        data: &Bytes,
        append: bool,
    ) -> FsResult<()> {
        let ino = self.ino;
        let node = fs.inodes.get(ino).ok_or(FsError::NotFound)?;
        let key = fs.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        self.wb_journaled = false;
        if matches!(self.state, WriteState::Clean) {
            self.begin_write(fs, &node, &key, offset, append).await?;
        }
        match &mut self.state {
            WriteState::Streaming { upload, copy, .. } if offset == upload.bytes_written() => {
                // Readable from the local copy as soon as write(2) returns (from memory
                // until its disk write is done: the stream does not wait for the disk).
                copy.write_behind(offset, data.clone()).await?;
                if let Err(e) = upload.write_bytes(data.clone()).await {
                    // → Failed, the multipart upload aborted before the error returns.
                    return Err(self.fail(offset, write_error(&key, e)).await);
                }
                Ok(())
            }
            WriteState::Streaming { .. } => {
                // Seek back (or a hole) in a new file: continue from the local copy.
                self.unstream().await;
                match &mut self.state {
                    WriteState::Staged { file, dirty } => {
                        file.write_at(offset, data.clone()).await?;
                        *dirty = true;
                        Ok(())
                    }
                    _ => Err(FsError::BadHandle),
                }
            }
            WriteState::Staged { file, dirty } => {
                file.write_at(offset, data.clone()).await?;
                *dirty = true;
                Ok(())
            }
            WriteState::Appending { position, crc } if offset == *position => {
                let opts = fs.upload_opts(ino);
                let r = fs
                    .store
                    .append_object(&key, *position, data.clone(), *crc, &opts)
                    .await
                    .map_err(|e| FsError::store("AppendObject", &key, e))?;
                *position = r.next_position;
                *crc = r.crc64;
                fs.inodes.update(ino, |n| {
                    n.crc64 = r.crc64;
                    n.attr.size = r.next_position;
                    // AppendObject changes the ETag; readers must HEAD again.
                    n.valid_until = None;
                });
                fs.cache.invalidate_key(&key);
                Ok(())
            }
            WriteState::Appending { .. } => {
                let mut file = fs.download(&key, "", node.attr.size).await?;
                file.write_at(offset, data.clone()).await?;
                self.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::ServerAppend(p) if offset == p.end() => {
                let at = offset - p.base_size;
                p.tail.write_at(at, data.clone()).await
            }
            WriteState::ServerAppend(_) => {
                // A write before the end: continue as an ordinary local file.
                self.materialize(fs).await?;
                match &mut self.state {
                    WriteState::Staged { file, dirty } => {
                        file.write_at(offset, data.clone()).await?;
                        *dirty = true;
                        Ok(())
                    }
                    _ => Err(FsError::BadHandle),
                }
            }
            WriteState::Failed(cause) => Err(FsError::EarlierFailure(cause.clone())),
            WriteState::Clean => Err(FsError::BadHandle),
        }
    }

    /// `ServerAppend` → `Staged`: the whole file, downloaded and followed by the new
    /// bytes, in a local staging file. Other states are left as they are.
    pub(super) async fn materialize(&mut self, fs: &Filesystem) -> FsResult<()> {
        if let WriteState::ServerAppend(p) = std::mem::replace(&mut self.state, WriteState::Clean) {
            let key = fs.inodes.key_of(self.ino).ok_or(FsError::NotFound)?;
            match fs.materialize_append(&key, p).await {
                Ok(file) => self.state = WriteState::Staged { file, dirty: true },
                // The appended bytes are gone with the failed step: no later commit may
                // publish the object without them.
                Err(e) => return Err(self.pending_lost(e)),
            }
        }
        Ok(())
    }

    /// A `Staged` file whose upload went elsewhere (a rename that failed after it) is
    /// pending again.
    pub(super) fn mark_dirty(&mut self) {
        if let WriteState::Staged { dirty, .. } = &mut self.state {
            *dirty = true;
        }
    }

    /// `Streaming` → `Staged`: the multipart upload is aborted (nothing was published)
    /// and the local copy becomes the staged file, uploaded whole at the next commit
    /// under the key the file has then. Other states are left as they are.
    pub(super) async fn unstream(&mut self) {
        if let WriteState::Streaming { .. } = self.state
            && let WriteState::Streaming { upload, copy, .. } =
                std::mem::replace(&mut self.state, WriteState::Clean)
        {
            upload.abort().await;
            self.state = WriteState::Staged {
                file: copy,
                dirty: true,
            };
        }
    }

    /// → `Failed` after a transition lost data the application wrote and OSS does not
    /// have (a local I/O error while restaging it): every later flush and close reports
    /// it instead of committing the file without that data.
    fn pending_lost(&mut self, e: FsError) -> FsError {
        tracing::warn!(ino = self.ino, error = %e, "unsent data lost; the file will not be uploaded");
        let e = Arc::new(e);
        self.state = WriteState::Failed(e.clone());
        FsError::Shared(e)
    }

    /// Whether the state holds bytes that exist nowhere else (not in OSS, not restorable
    /// from `new_content`).
    pub(super) fn holds_unsent_bytes(&self) -> bool {
        match &self.state {
            WriteState::Staged { dirty, .. } => *dirty,
            WriteState::Streaming { .. } | WriteState::ServerAppend(_) => true,
            WriteState::Clean | WriteState::Appending { .. } | WriteState::Failed(_) => false,
        }
    }

    /// Truncate: to 0 → `Clean` with new (empty) content; to another size → `Staged` (a
    /// streaming upload continues there from its local copy).
    pub(super) async fn truncate(&mut self, fs: &Filesystem, size: u64) -> FsResult<()> {
        self.wb_journaled = false;
        let held = self.holds_unsent_bytes();
        match self.truncate_state(fs, size).await {
            // The step failed after taking the state: what it held is gone.
            Err(e) if held && matches!(self.state, WriteState::Clean) => Err(self.pending_lost(e)),
            r => r,
        }
    }

    async fn truncate_state(&mut self, fs: &Filesystem, size: u64) -> FsResult<()> {
        let ino = self.ino;
        let node = fs.inodes.get(ino).ok_or(FsError::NotFound)?;
        let key = fs.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        match std::mem::replace(&mut self.state, WriteState::Clean) {
            WriteState::Clean if size == 0 => {
                self.new_content = true;
                Ok(())
            }
            WriteState::Clean => {
                let mut file = if self.new_content || node.local {
                    fs.new_local_file().await?
                } else {
                    fs.download(&key, &node.etag, node.attr.size).await?
                };
                file.set_len(size).await?;
                self.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::Streaming {
                upload,
                key: k,
                copy,
            } => {
                if size == upload.bytes_written() {
                    self.state = WriteState::Streaming {
                        upload,
                        key: k,
                        copy,
                    };
                    return Ok(());
                }
                upload.abort().await;
                if size == 0 {
                    self.new_content = true;
                    return Ok(());
                }
                let mut file = copy;
                file.set_len(size).await?;
                self.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::Staged { mut file, .. } => {
                file.set_len(size).await?;
                self.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::Appending { .. } => {
                let mut file = fs.download(&key, "", node.attr.size).await?;
                file.set_len(size).await?;
                self.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::ServerAppend(p) => {
                let mut file = fs.materialize_append(&key, p).await?;
                file.set_len(size).await?;
                self.state = WriteState::Staged { file, dirty: true };
                Ok(())
            }
            WriteState::Failed(cause) => {
                self.state = WriteState::Failed(cause.clone());
                Err(FsError::EarlierFailure(cause))
            }
        }
    }
}

impl Filesystem {
    /// The object `key` (at `etag`, `size` bytes) in a new staging file.
    pub(super) async fn download(&self, key: &str, etag: &str, size: u64) -> FsResult<StagingFile> {
        self.new_local_file()
            .await?
            .fill_from(&*self.store, key, etag, size)
            .await
    }
}
