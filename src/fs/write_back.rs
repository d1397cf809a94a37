//! The filesystem's side of durable write-back (`--write-back`, see [`crate::write_back`]).
//!
//! # Design
//! Write-back reuses the local store of unflushed data (`local_copy`): with it on, a
//! file's local copy is a data file of the write-back store from its first write (a
//! [`StagingFile::durable`], so nothing is copied at close), and every write goes to it
//! (`Staged`: no streaming upload, no server-side append). A close of a writer then
//! *journals* the file instead of uploading it ([`Filesystem::wb_journal`]): a `Put`
//! record (key, data file, size, the ossfs metadata the upload will carry, and what the
//! mount expects on the server) is appended durably (the store makes the data durable
//! with it), and the inode is *held for the uploader*: the queue counts as one more
//! writer of the inode
//! ([`Filesystem::wb_hold`]: a writer count on the node and on its local-copy entry, and
//! a pin). So, while the upload is pending, everything the mount already does for a file
//! with an open writer applies after the last `close` too: reads come from the local
//! copy, stat shows the written size/mtime/mode (a node with writers keeps its
//! attributes whatever OSS says), a never-uploaded file is listed from the inode table,
//! the node is never forgotten, and a new open for write continues from the local copy.
//!
//! The background uploader (`crate::write_back::uploader`) calls [`Filesystem::wb_upload`]
//! for one inode at a time: under the inode's write side lock (so writes, truncates,
//! renames and unlinks of that file wait for the upload, and the upload sees one state of
//! the file), the conflict check (`crate::write_back::conflict`), then the ordinary
//! commit (`commit`: PUT, or the multipart upload of the file for big ones) under the
//! key the file has *now* and with the metadata it has now. Then the records the upload
//! covered are settled, and the hold is released: the inode becomes an ordinary clean
//! file (ETag of the upload).
//!
//! # Ordering of operations on pending files
//! Each is journaled before it acts, so that recovery (`crate::write_back::recovery`)
//! replays it in order, and waits for an upload of that file in flight (write side lock):
//! - unlink: `Unlink`; a never-uploaded file is dropped (its upload finds it unlinked and
//!   settles); a file already on the server is deleted after the upload in flight;
//! - rename (of the file, or of a directory above pending files): `Rename`; the upload
//!   goes to the new key (a file already on the server is moved as before);
//! - chmod/chown/utime: `SetMeta`; the pending upload carries the new metadata;
//! - truncate, overwrite: a new `Put` (the old one is superseded; its data file is
//!   deleted once settled).
//!
//! # Pitfalls
//! - fsync waits for the file's upload and returns its error: that is how errors after
//!   close reach applications (plus the log, metrics and `ossmount status`).
//! - A re-opened pending file is written in place: after a crash during that rewrite the
//!   recovered upload holds what the copy held then (like a local filesystem after a
//!   crash: unsynced writes may be partly there).
//! - A data file is pinned while it is a local copy, and named by the journal until its
//!   records settled: the store deletes it only when neither holds (dropping the
//!   filesystem, as a crash or a test does, never deletes pending data).

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::write_back::conflict::{self, Check};
use crate::write_back::queue::{Attempt, Ready};
use crate::write_back::{Expect, JournalRecord, SpaceReservation};
use crate::write_back::{Queue, WriteBackQueue, uploader};

use super::attr::Ino;
use super::error::FsError;
use super::inode::Node;
use super::staging_file::StagingFile;
use super::write_state::{WriteSide, WriteState};
use super::{Filesystem, FsResult, lock};

fn journal_error(e: std::io::Error) -> FsError {
    FsError::io("write-back journal", e)
}

/// The store error inside an upload error, if any.
fn store_error(e: &FsError) -> Option<&crate::store::StoreError> {
    match e {
        FsError::Store { source, .. } => Some(source),
        FsError::Write {
            source: crate::write::WriteError::Store(s),
            ..
        } => Some(s),
        FsError::Shared(inner) | FsError::EarlierFailure(inner) => store_error(inner),
        _ => None,
    }
}

impl Filesystem {
    /// The write-back queue, when `--write-back` is on (for the daemon's drain,
    /// `ossmount sync`/`status` and metrics).
    pub fn write_back_queue(&self) -> Option<Arc<dyn WriteBackQueue>> {
        self.write_back
            .clone()
            .map(|q| q as Arc<dyn WriteBackQueue>)
    }

    /// A new local copy: a write-back data file, or a staging file in `--cache-dir`.
    pub(super) async fn new_local_file(&self) -> FsResult<StagingFile> {
        let Some(q) = &self.write_back else {
            return StagingFile::create(&self.cfg.cache_dir).await;
        };
        let store = q.store().clone();
        let (id, file) = tokio::task::spawn_blocking(move || store.create_data_file())
            .await
            .map_err(|e| FsError::io("create data file", std::io::Error::other(e.to_string())))?
            .map_err(|e| FsError::io("create write-back data file", e))?;
        let pin = q.store().pin_data(id);
        Ok(StagingFile::durable(file, q.store().data_path(id), pin))
    }

    /// What a `Put` of `node` expects on the server (see `write_back::conflict`).
    fn wb_expect(ws: &WriteSide, node: &Node) -> Expect {
        if ws.wb_expect_any || (!node.local && node.etag.is_empty()) {
            Expect::Any
        } else if node.local {
            Expect::Absent
        } else {
            Expect::ETag(node.etag.clone())
        }
    }

    /// Close/fsync with write-back: makes what `ws` holds a durable pending upload (see
    /// the module docs). Returns the sequence number the file's upload must reach, if it
    /// has anything pending. Without write-back, or for states write-back never creates,
    /// it commits (uploads) as before.
    pub(super) async fn wb_journal(&self, ws: &mut WriteSide) -> FsResult<Option<u64>> {
        let Some(q) = self.write_back.clone() else {
            self.commit(ws).await?;
            return Ok(None);
        };
        let ino = ws.ino;
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        if node.unlinked {
            return Ok(None);
        }
        if ws.wb_journaled {
            return Ok(q.last_seq(ino));
        }
        match &ws.state {
            WriteState::Clean if ws.new_content || node.local => {
                // An empty file: a data file too, so that every Put names one.
                let file = self.new_local_file().await?;
                ws.state = WriteState::Staged { file, dirty: true };
            }
            WriteState::Clean | WriteState::Staged { dirty: false, .. } => {
                return Ok(q.last_seq(ino));
            }
            WriteState::Staged { file, dirty: true } if file.data_id().is_some() => {}
            WriteState::Failed(cause) => return Err(FsError::EarlierFailure(cause.clone())),
            // Not made with write-back on: uploaded now, as without it.
            _ => {
                self.commit(ws).await?;
                return Ok(q.last_seq(ino));
            }
        }
        let WriteState::Staged { file, .. } = &mut ws.state else {
            return Err(FsError::BadHandle);
        };
        // Every write is in the file; the store makes it durable with the record.
        file.settle().await?;
        let (data_id, size) = (file.data_id().unwrap_or_default(), file.size());
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        let expect = Self::wb_expect(ws, &node);
        let meta = conflict::meta_of(&self.upload_opts(ino));
        let seq = q
            .store()
            .append(JournalRecord::Put {
                key: key.clone(),
                data_id,
                size,
                meta,
                expect,
            })
            .await
            .map_err(journal_error)?;
        ws.wb_journaled = true;
        // The bytes are charged to the data file now (see `WriteBackStore::reserve`).
        ws.wb_reserved = None;
        if q.add(ino, &key, size, seq) {
            self.wb_hold(ino);
        }
        Ok(Some(seq))
    }

    /// Store space a write ending at `end` into `ws` still needs (see
    /// `WriteBackStore::reserve`): bytes beyond what the local copy (or the object it will
    /// be downloaded from) and earlier reservations cover. 0 without write-back.
    pub(super) fn wb_needed(&self, ws: &WriteSide, end: u64) -> u64 {
        if self.write_back.is_none() {
            return 0;
        }
        let (have, need) = match &ws.state {
            WriteState::Staged { file, .. } => (file.size(), end),
            _ if ws.new_content => (0, end),
            _ => {
                let old = self
                    .inodes
                    .get(ws.ino)
                    .map_or(0, |n| if n.local { 0 } else { n.attr.size });
                (0, end.max(old))
            }
        };
        need.saturating_sub(have + ws.wb_reserved.as_ref().map_or(0, |r| r.bytes()))
    }

    /// Reserves `bytes` of store space for a write into `ino`: waits while the store is
    /// full (backpressure), ENOSPC when they can never fit. Called without the inode's
    /// write side locked: its own pending upload may be what frees the space.
    pub(super) async fn wb_reserve(&self, ino: Ino, bytes: u64) -> FsResult<SpaceReservation> {
        let q = self.write_back.as_ref().ok_or(FsError::BadHandle)?;
        q.store().reserve(bytes).await.map_err(|e| {
            tracing::warn!(ino, error = %e, "write refused: the write-back store is full");
            q.refresh();
            FsError::io(
                "write-back store full",
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            )
        })
    }

    /// Journals `rec` for the pending file `ino` (unlink, rename, metadata: see the module
    /// docs). Nothing when write-back is off or the file is not pending.
    pub(super) async fn wb_record(&self, ino: Ino, rec: JournalRecord) -> FsResult<()> {
        let Some(q) = &self.write_back else {
            return Ok(());
        };
        if !q.is_pending(ino) {
            return Ok(());
        }
        let key = self.inodes.key_of(ino).unwrap_or_default();
        let size = self.inodes.get(ino).map_or(0, |n| n.attr.size);
        let seq = q.store().append(rec).await.map_err(journal_error)?;
        if q.add(ino, &key, size, seq) {
            // Settled meanwhile: the record still needs an upload pass to settle it.
            self.wb_hold(ino);
        }
        Ok(())
    }

    /// Journals the rename of directory `from` to `to` (keys ending in `/`) when files are
    /// pending (some may be below it).
    pub(super) async fn wb_record_dir_rename(&self, from: &str, to: &str) -> FsResult<()> {
        let Some(q) = &self.write_back else {
            return Ok(());
        };
        if q.is_empty() {
            return Ok(());
        }
        let seq = q
            .store()
            .append(JournalRecord::Rename {
                from: from.to_string(),
                to: to.to_string(),
            })
            .await
            .map_err(journal_error)?;
        if !q.add_shared(seq) {
            // Every pending file was uploaded while the record was appended.
            q.settle_unshared(seq).await.map_err(journal_error)?;
        }
        Ok(())
    }

    /// The write sides of the pending files below directory `prefix` (ending in `/`),
    /// locked (see the module docs: a directory rename must not race their uploads).
    pub(super) async fn wb_lock_below(
        &self,
        prefix: &str,
    ) -> Vec<tokio::sync::OwnedMutexGuard<WriteSide>> {
        let Some(q) = &self.write_back else {
            return Vec::new();
        };
        let mut inos = q.pending();
        // One order for every such caller.
        inos.sort_unstable();
        let mut out = Vec::new();
        for ino in inos {
            if self
                .inodes
                .key_of(ino)
                .is_some_and(|k| k.starts_with(prefix))
                && let Some(side) = self.local_copies.get(ino)
            {
                out.push(side.lock_owned().await);
            }
        }
        out
    }

    /// The metadata of pending `ino` changed (chmod, chown, utime): journaled.
    pub(super) async fn wb_set_meta(&self, ino: Ino) -> FsResult<()> {
        if self.write_back.is_none() {
            return Ok(());
        }
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        let meta = conflict::meta_of(&self.upload_opts(ino));
        self.wb_record(ino, JournalRecord::SetMeta { key, meta })
            .await
    }

    /// Whether `ino` has an upload pending.
    pub(super) fn wb_pending(&self, ino: Ino) -> bool {
        self.write_back.as_ref().is_some_and(|q| q.is_pending(ino))
    }

    /// The queue holds `ino` like one more writer (see the module docs).
    fn wb_hold(&self, ino: Ino) {
        let _ = self.local_copies.attach(ino, false);
        self.inodes.update(ino, |n| n.writers += 1);
        self.inodes.pin(ino);
    }

    /// The queue lets go of `ino` (its upload settled).
    async fn wb_release(&self, ino: Ino) {
        // The local copy (and its data file, now settled) goes with the last writer.
        self.detach_side(ino).await;
        let orphan = self.inodes.update(ino, |n| {
            n.writers = n.writers.saturating_sub(1);
            (n.writers == 0 && n.local).then(|| (n.parent, n.name.clone()))
        });
        if let Some(Some((parent, name))) = orphan {
            self.inodes.remove_child(parent, &name);
        }
        self.inodes.unpin(ino);
    }

    /// fsync with write-back: waits for the upload of everything `ino` holds up to `seq`
    /// and returns its error.
    pub(super) async fn wb_wait(&self, ino: Ino, seq: Option<u64>) -> FsResult<()> {
        let Some(q) = &self.write_back else {
            return Ok(());
        };
        let Some(seq) = seq.or_else(|| q.last_seq(ino)) else {
            return Ok(());
        };
        q.wait_uploaded(ino, seq).await.map_err(|msg| {
            FsError::io(
                "write-back upload",
                std::io::Error::other(format!("upload failed (retrying): {msg}")),
            )
        })
    }

    /// One upload attempt of pending `ino`, then its records settled (the uploader's
    /// work, see the module docs).
    async fn wb_upload(&self, r: Ready) {
        let Some(q) = self.write_back.clone() else {
            return;
        };
        let attempt = self.wb_attempt(&q, r.ino).await;
        if matches!(attempt, Attempt::Failed(_)) {
            ::metrics::counter!(crate::metrics::WRITE_BACK_UPLOAD_ERRORS).increment(1);
        }
        if uploader::settle(&q, &r, attempt).await {
            self.wb_release(r.ino).await;
        }
    }

    async fn wb_attempt(&self, q: &Queue, ino: Ino) -> Attempt {
        let Some(side) = self.local_copies.get(ino) else {
            return Attempt::Done { bytes: 0 };
        };
        let mut ws = side.lock().await;
        let Some(node) = self.inodes.get(ino) else {
            return Attempt::Done { bytes: 0 };
        };
        if node.unlinked {
            // Dropped: nothing may be published.
            return Attempt::Done { bytes: 0 };
        }
        let Some(key) = self.inodes.key_of(ino) else {
            return Attempt::Done { bytes: 0 };
        };
        if !ws.has_pending_data() {
            // Uploaded meanwhile (a rename moved it); metadata changed since?
            if lock(&self.meta_pending).remove(&ino) {
                let attr = node.attr.clone();
                if let Err(e) = self.persist_attr(ino, &attr).await {
                    lock(&self.meta_pending).insert(ino);
                    return Attempt::Failed(e.to_string());
                }
            }
            return Attempt::Done { bytes: 0 };
        }
        let expect = Self::wb_expect(&ws, &node);
        match conflict::check(&*self.store, &key, &expect).await {
            Ok(Check::Proceed { forbid_overwrite }) => ws.forbid_overwrite = forbid_overwrite,
            Ok(Check::Conflict(why)) => return self.wb_conflict(q, &mut ws, &key, &why).await,
            Err(e) => return Attempt::Failed(FsError::store("HeadObject", &key, e).to_string()),
        }
        let size = match &ws.state {
            WriteState::Staged { file, .. } => file.size(),
            _ => node.attr.size,
        };
        let r = self.commit(&mut ws).await;
        ws.forbid_overwrite = false;
        match r {
            Ok(_) => {
                // Later writes replace what this mount uploaded.
                ws.wb_expect_any = false;
                tracing::debug!(key, size, "write-back upload done");
                Attempt::Done { bytes: size }
            }
            Err(e) if store_error(&e).is_some_and(conflict::is_conflict) => {
                self.wb_conflict(
                    q,
                    &mut ws,
                    &key,
                    "created on the server by someone else meanwhile",
                )
                .await
            }
            Err(e) => {
                // The side keeps its data (`commit` puts it back): retried.
                ws.mark_dirty();
                Attempt::Failed(e.to_string())
            }
        }
    }

    /// The object is not what the mount saw: unless it is exactly our content (an
    /// earlier attempt of this upload landed, see `conflict::holds_content`), the local
    /// copy goes to `conflicts/` and the mount shows the server's object (see
    /// `write_back::conflict`).
    async fn wb_conflict(&self, q: &Queue, ws: &mut WriteSide, key: &str, why: &str) -> Attempt {
        let ino = ws.ino;
        if let WriteState::Staged { file, .. } = &ws.state {
            match conflict::holds_content(&*self.store, key, &file.path(), file.size()).await {
                Ok(Some(etag)) => {
                    let size = file.size();
                    let file = match std::mem::replace(&mut ws.state, WriteState::Clean) {
                        WriteState::Staged { file, .. } => file,
                        _ => return Attempt::Done { bytes: 0 },
                    };
                    ws.state = WriteState::Staged { file, dirty: false };
                    ws.new_content = false;
                    self.inodes.update(ino, |n| {
                        n.local = false;
                        n.etag = etag;
                        n.attr.size = size;
                        n.valid_until = None;
                    });
                    return Attempt::Done { bytes: size };
                }
                Ok(None) => {}
                Err(e) => return Attempt::Failed(FsError::store("HeadObject", key, e).to_string()),
            }
        }
        let kept = match &ws.state {
            WriteState::Staged { file, .. } => {
                file.data_id().map(|id| q.store().keep_conflict(id, key))
            }
            _ => None,
        };
        match &kept {
            Some(Ok(path)) => tracing::warn!(
                key,
                reason = why,
                kept = %path.display(),
                "write-back conflict: the object changed on the server; the local copy is kept, the mount shows the server's object"
            ),
            Some(Err(e)) => {
                tracing::error!(key, reason = why, error = %e, "write-back conflict: cannot keep the local copy")
            }
            None => tracing::warn!(
                key,
                reason = why,
                "write-back conflict: the mount shows the server's object"
            ),
        }
        ws.state = WriteState::Clean;
        ws.new_content = false;
        ws.wb_journaled = false;
        self.inodes.update(ino, |n| {
            n.local = false;
            n.etag.clear();
            n.valid_until = None;
        });
        self.cache.invalidate_key(key);
        q.refresh();
        Attempt::Conflict
    }
}

impl uploader::Upload for Filesystem {
    fn upload(self: Arc<Self>, r: Ready) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.wb_upload(r).await })
    }
}
