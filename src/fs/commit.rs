//! Commit: the upload of an open file's pending data at flush, fsync and release.
//!
//! flush (every `close` by a writer: the opener or a process that wrote; a child closing
//! a descriptor it merely inherited is not one, see `process`), fsync and release
//! commit: they finish the streaming upload or upload the staging file (see
//! `write_state` for what each state holds), and return the upload's error to the
//! application. After a streaming upload failed the handle is `Failed`: later flushes
//! report the error again and nothing (in particular no empty object) is uploaded. A
//! failed staged or server-side append upload keeps its data, so the next flush/release
//! retries it.
//!
//! A new file nobody wrote to is uploaded (empty) at its first flush, so `touch` gets any
//! error. Shells flush a redirected descriptor once before writing through its duplicate,
//! so `echo x > new` costs an empty PUT and then the real one (deferring the empty PUT to
//! release would hide its failure from the application: release errors are not seen).
//!
//! After a successful commit the inode holds the uploaded object's ETag, CRC and size,
//! and the metadata it carried; a chmod/chown/utimens made while the upload was pending
//! and not carried by it is written by a metadata copy afterwards (see `setattr`).
//!
//! Pitfalls:
//! - The key is fixed when a streaming upload starts; if the file is renamed meanwhile
//!   (rename of the file or of a directory above it), the multipart upload is aborted and
//!   the local copy uploaded under the new key: nothing is ever published at the old name.
//! - The commit uploads the inode's pending data, whichever handle wrote it (see
//!   `local_copy`).
//! - An unlinked file's pending data is dropped, never uploaded.
//! - The ctime is that of the last write, not of the upload landing after close.

use std::time::SystemTime;

use bytes::Bytes;

use crate::store::{ObjectType, PutOptions, PutResult};
use crate::write::upload_file;

use super::attr::{FileKind, Ino, to_user_meta};
use super::error::FsError;
use super::write_state::{WriteSide, WriteState, write_error};
use super::{Filesystem, FsResult, lock};

impl Filesystem {
    /// Options (metadata) for uploading the current content of `ino`.
    pub(super) fn upload_opts(&self, ino: Ino) -> PutOptions {
        match self.inodes.get(ino) {
            Some(n) => PutOptions {
                content_type: n.content_type.clone(),
                user_meta: to_user_meta(&n.attr, &n.user_meta),
                forbid_overwrite: false,
            },
            None => PutOptions::default(),
        }
    }

    /// Uploads what `h` holds (see the module docs); a no-op for an unlinked file or a
    /// state with nothing pending. `Ok(true)` when new content was uploaded (a reader of
    /// the old object is then stale).
    pub(super) async fn commit(&self, h: &mut WriteSide) -> FsResult<bool> {
        self.commit_to(h, None).await
    }

    /// [`Self::commit`] to `target` instead of the file's current key (a rename uploads
    /// the pending data under the new name before deleting the old one).
    pub(super) async fn commit_to(
        &self,
        h: &mut WriteSide,
        target: Option<String>,
    ) -> FsResult<bool> {
        let ino = h.ino;
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        if node.unlinked {
            h.abort_streaming().await;
            return Ok(false);
        }
        let key = match target {
            Some(k) => k,
            None => self.inodes.key_of(ino).ok_or(FsError::NotFound)?,
        };
        let size;
        // chmod/chown/utimens made while this upload was pending (see `setattr`): the
        // metadata the upload carries, when it is not what the attributes say now, is
        // rewritten by a metadata copy once the data is in.
        let explicit_meta = lock(&self.meta_pending).contains(&ino);
        let mut carried: Option<PutOptions> = None;
        let result: PutResult = match std::mem::replace(&mut h.state, WriteState::Clean) {
            WriteState::Clean if h.new_content || node.local => {
                size = 0;
                let mut opts = self.upload_opts(ino);
                opts.forbid_overwrite = h.forbid_overwrite;
                self.store
                    .put_object(&key, Bytes::new().into(), &opts)
                    .await
                    .map_err(|e| FsError::store("PutObject", &key, e))?
            }
            WriteState::Clean => return Ok(false),
            s @ WriteState::Appending { .. } => {
                h.state = s;
                if lock(&self.meta_pending).remove(&ino) {
                    // Appends are written as they come; only the metadata is pending.
                    let attr = self.inodes.get(ino).ok_or(FsError::NotFound)?.attr;
                    self.persist_attr(ino, &attr).await?;
                }
                return Ok(false);
            }
            WriteState::Failed(cause) => {
                h.state = WriteState::Failed(cause.clone());
                return Err(FsError::EarlierFailure(cause));
            }
            WriteState::ServerAppend(p) if p.tail.size() == 0 => {
                h.state = WriteState::ServerAppend(p);
                return Ok(false);
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
                return Ok(false);
            }
            WriteState::Streaming {
                upload,
                key: upload_key,
                copy,
            } if upload_key != key => {
                // Renamed while being written (a directory above it moved): nothing may
                // be published at the old key; the local copy goes to the new one.
                upload.abort().await;
                size = copy.size();
                self.commit_staged(h, &key, copy, ino).await?
            }
            WriteState::Staged { file, dirty: true } => {
                size = file.size();
                self.commit_staged(h, &key, file, ino).await?
            }
            WriteState::Streaming {
                upload,
                key,
                mut copy,
            } => {
                size = upload.bytes_written();
                if let Err(e) = copy.settle().await {
                    // The local copy lacks bytes: the file is not what was written.
                    upload.abort().await;
                    return Err(h.upload_failed(e));
                }
                let mut upload = upload;
                let wanted = self.upload_opts(ino);
                if !upload.set_options(wanted) {
                    carried = Some(upload.options().clone());
                }
                match upload.finish().await {
                    Ok(r) => {
                        // The local copy is what readers read until the last writer
                        // closes; it now equals the object.
                        h.state = WriteState::Staged {
                            file: copy,
                            dirty: false,
                        };
                        r
                    }
                    Err(e) => return Err(h.upload_failed(write_error(&key, e))),
                }
            }
        };
        h.new_content = false;
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
        Ok(true)
    }

    /// Uploads the whole staged `file` to `key`: `Staged { dirty: false }` after, or the
    /// data kept (`dirty`) for the next flush/release to retry.
    async fn commit_staged(
        &self,
        h: &mut WriteSide,
        key: &str,
        mut file: super::staging_file::StagingFile,
        ino: Ino,
    ) -> FsResult<PutResult> {
        if let Err(e) = file.settle().await {
            return Err(h.upload_failed(e));
        }
        let mut opts = self.upload_opts(ino);
        opts.forbid_overwrite = h.forbid_overwrite;
        let r = upload_file(
            self.store.clone(),
            &self.upload_cfg,
            key,
            &file.path(),
            file.size(),
            &opts,
        )
        .await;
        match r {
            Ok(r) => {
                h.state = WriteState::Staged { file, dirty: false };
                Ok(r)
            }
            Err(e) => {
                h.state = WriteState::Staged { file, dirty: true };
                Err(write_error(key, e))
            }
        }
    }

    /// Truncate of a file no handle writes: the object is rewritten now (an empty PUT,
    /// or download, cut and upload).
    pub(super) async fn rewrite_truncated(&self, ino: Ino, size: u64) -> FsResult<()> {
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
}
