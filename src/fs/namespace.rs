//! Namespace changes: unlink, rename, symlink/readlink (mknod: `special`).
//!
//! Rename:
//! - a file is CopyObject (multipart copy above 1 GiB, see `copy`) then DeleteObject of
//!   the source; the copy keeps the metadata. A file being written here (see
//!   `local_copy`) stops streaming to the old key (the multipart upload is aborted, the
//!   local copy goes on as a staged file): if it was never uploaded only the inode table
//!   moves, otherwise its whole local content is uploaded under the new name (not the
//!   stale object copied) before the old object is deleted. Nothing is published at the
//!   old name after rename returns, so a file created there afterwards is never touched;
//!   a failure leaves the new name absent or complete, never empty;
//! - a symlink is stored again at the new place from its text (`symlink`: its form and
//!   native target key depend on where it is);
//! - a directory is copied object by object (listing the whole subtree without a
//!   delimiter, 16 copies in flight), and the sources are deleted (DeleteMultipleObjects)
//!   only after every copy succeeded. This is **not atomic**: other clients can see both
//!   trees for a while, and a failure leaves the copies made so far next to the intact
//!   source. Native links inside are re-stored from their text, so relative links keep
//!   pointing where their text says.
//! - `RENAME_NOREPLACE` is honoured; `RENAME_EXCHANGE` is `ENOTSUP`. Replacing a
//!   non-empty directory is `ENOTEMPTY`; moving a directory below itself is `EINVAL`.
//!
//! Unlink of a file with open writers drops their pending upload (the inode is marked
//! unlinked), so a deleted file is not resurrected by a later close.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use futures::{StreamExt, TryStreamExt};

use crate::store::{ListRequest, ObjectType};

use super::attr::{FileKind, Ino, to_user_meta};
use super::error::{FsError, not_found_or};
use super::inode::ROOT_INO;
use super::symlink::MAX_LINK_TEXT;
use super::write_state::{WriteSide, WriteState};
use super::{Attr, Ctx, Filesystem, FsResult, names};
use crate::write_back::JournalRecord;

const DIR_COPY_PARALLELISM: usize = 16;

impl Filesystem {
    /// FUSE unlink.
    pub async fn unlink(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        self.check_writable()?;
        let name = names::name_from_kernel(name)?;
        let (ino, node) = self.lookup_name(parent, name).await?;
        if node.attr.kind == FileKind::Dir {
            return Err(FsError::IsDir);
        }
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        // A pending write-back upload of the file finishes first (see `write_back`): its
        // object must not land after the delete.
        let side = match self.local_copies.get(ino) {
            Some(side) if self.wb_pending(ino) => Some(side.lock_owned().await),
            _ => None,
        };
        let node = match side {
            Some(_) => self.inodes.get(ino).ok_or(FsError::NotFound)?,
            None => node,
        };
        self.wb_record(ino, JournalRecord::Unlink { key: key.clone() })
            .await?;
        if !node.local {
            self.store
                .delete_object(&key)
                .await
                .map_err(|e| FsError::store("DeleteObject", &key, e))?;
        }
        self.inodes.remove_child(parent, name);
        drop(side);
        self.cache.invalidate_key(&key);
        self.dir_entries_changed(parent, 0);
        Ok(())
    }

    /// FUSE rename. `flags` are `RENAME_*` from renameat2.
    pub async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        let name = names::name_from_kernel(name)?;
        let new_name = names::name_from_kernel(new_name)?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(FsError::NotSupported("RENAME_EXCHANGE"));
        }
        let (sino, snode) = self.lookup_name(parent, name).await?;
        let dst = match self.lookup_name(new_parent, new_name).await {
            Ok(d) => Some(d),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if let Some((dino, dnode)) = &dst {
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(FsError::Exists);
            }
            if *dino == sino {
                return Ok(());
            }
            match (
                snode.attr.kind == FileKind::Dir,
                dnode.attr.kind == FileKind::Dir,
            ) {
                (true, true) => {
                    let dkey = self.inodes.key_of(*dino).ok_or(FsError::NotFound)?;
                    if !self.inodes.local_children(*dino).is_empty()
                        || !self.dir_is_empty(&dkey).await?
                    {
                        return Err(FsError::NotEmpty);
                    }
                }
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (false, false) => {}
            }
        }
        if snode.attr.kind == FileKind::Dir && self.is_ancestor(sino, new_parent) {
            return Err(FsError::InvalidArgument(
                "cannot move a directory below itself".into(),
            ));
        }
        let src_key = self.inodes.key_of(sino).ok_or(FsError::NotFound)?;
        let mut dst_key = self
            .inodes
            .child_key(new_parent, new_name)
            .ok_or(FsError::NotFound)?;
        if snode.attr.kind == FileKind::Dir {
            dst_key.push('/');
        }
        names::check_key_len(&dst_key)?;
        // A file being written: its pending data, locked until the rename is done.
        let mut pending = match self.local_copies.get(sino) {
            Some(side) if snode.attr.kind == FileKind::File => Some(side.lock_owned().await),
            _ => None,
        };
        // A write-back upload may have landed while waiting for the lock.
        let snode = match pending {
            Some(_) => self.inodes.get(sino).ok_or(FsError::NotFound)?,
            None => snode,
        };
        // Write-back: pending files below a moved directory wait (their uploads in
        // flight finish first, none starts) until the tree moved.
        let _below = match snode.attr.kind {
            FileKind::Dir => self.wb_lock_below(&src_key).await,
            _ => Vec::new(),
        };
        if snode.attr.kind == FileKind::Dir {
            self.wb_record_dir_rename(&src_key, &dst_key).await?;
        } else if self.wb_pending(sino) {
            self.wb_record(
                sino,
                JournalRecord::Rename {
                    from: src_key.clone(),
                    to: dst_key.clone(),
                },
            )
            .await?;
            if let Some(ws) = pending.as_deref_mut() {
                // Whatever is at the new name is replaced knowingly.
                ws.wb_expect_any = true;
            }
        }
        match snode.attr.kind {
            // A special file is an empty object with no pending data: a copy and a delete.
            FileKind::File | FileKind::Special(_) => {
                self.rename_file(sino, &snode, &src_key, &dst_key, pending.as_deref_mut())
                    .await?
            }
            FileKind::Symlink => {
                let target = self.readlink(sino).await?;
                let meta = to_user_meta(&snode.attr, &snode.user_meta);
                let stored = self.store_link(&dst_key, &target, meta).await?;
                self.delete_after_copy(&src_key).await?;
                self.inodes.update(sino, |n| {
                    n.object_type = stored.object_type;
                    n.user_meta = stored.user_meta;
                });
            }
            FileKind::Dir => self.rename_dir(&src_key, &dst_key).await?,
        }
        self.inodes.rename(parent, name, new_parent, new_name);
        drop(pending.take());
        self.inodes.touch_valid(sino);
        self.cache.invalidate_key(&src_key);
        let now = std::time::SystemTime::now();
        self.inodes.update(sino, |n| n.attr.ctime = now);
        let moved_dir = i32::from(snode.attr.kind == FileKind::Dir);
        let replaced_dir = i32::from(
            dst.as_ref()
                .is_some_and(|(_, d)| d.attr.kind == FileKind::Dir),
        );
        if parent == new_parent {
            self.dir_entries_changed(parent, -replaced_dir);
        } else {
            self.dir_entries_changed(parent, -moved_dir);
            self.dir_entries_changed(new_parent, moved_dir - replaced_dir);
        }
        Ok(())
    }

    /// Moves a file's content from `src_key` to `dst_key`. A file being written (`pending`)
    /// has its streaming upload aborted (nothing is published at the old name) and goes
    /// on from its local copy; when that copy is the whole content, it is uploaded under
    /// the new name instead of copying the stale object, before the old object is
    /// deleted. A failure leaves the new name absent (or as it was) or complete, and the
    /// pending data still to be committed under the old name.
    async fn rename_file(
        &self,
        sino: Ino,
        snode: &super::inode::Node,
        src_key: &str,
        dst_key: &str,
        pending: Option<&mut WriteSide>,
    ) -> FsResult<()> {
        let mut uploaded = None;
        if let Some(ws) = pending {
            ws.unstream().await;
            if matches!(ws.state, WriteState::ServerAppend(_)) {
                ws.materialize(self).await?;
            }
            let whole_content_local = ws.holds_unsent_bytes()
                || (matches!(ws.state, WriteState::Clean) && ws.new_content);
            if !snode.local && whole_content_local {
                self.commit_to(ws, Some(dst_key.to_string())).await?;
                uploaded = Some(ws);
            }
        }
        if snode.local {
            // Never uploaded: only the inode table moves; the commit uses the new key.
            return Ok(());
        }
        if uploaded.is_none() {
            self.copy_any(src_key, dst_key, snode.attr.size, None)
                .await?;
        }
        if let Err(e) = self.delete_after_copy(src_key).await {
            if let Some(ws) = uploaded {
                // The file stays at the old name, whose object lacks the new data: the
                // next commit uploads it there.
                ws.mark_dirty();
                self.inodes.invalidate(sino);
            }
            return Err(e);
        }
        Ok(())
    }

    async fn delete_after_copy(&self, key: &str) -> FsResult<()> {
        self.store
            .delete_object(key)
            .await
            .map_err(|e| FsError::store("DeleteObject", key, e))
    }

    /// Whether `ancestor` is `ino` or one of its parents.
    fn is_ancestor(&self, ancestor: Ino, ino: Ino) -> bool {
        let mut cur = ino;
        for _ in 0..4096 {
            if cur == ancestor {
                return true;
            }
            if cur == ROOT_INO {
                return false;
            }
            match self.inodes.get(cur) {
                Some(n) => cur = n.parent,
                None => return false,
            }
        }
        false
    }

    /// Copies every object under `src` (ends with `/`) to `dst`, then deletes the sources.
    async fn rename_dir(&self, src: &str, dst: &str) -> FsResult<()> {
        let mut entries = Vec::new();
        let mut token = None;
        loop {
            let req = ListRequest {
                prefix: src.to_string(),
                continuation_token: token.take(),
                max_keys: 1000,
                ..Default::default()
            };
            let page = self
                .store
                .list_objects(&req)
                .await
                .map_err(|e| FsError::store("ListObjectsV2", src, e))?;
            entries.extend(page.objects);
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let keys: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
        // Owned entries: borrowing them in the futures trips the higher-ranked
        // lifetime limits of `Send` futures.
        futures::stream::iter(entries)
            .map(|e| async move {
                let rest = e.key.get(src.len()..).unwrap_or_default();
                let to = format!("{dst}{rest}");
                names::check_key_len(&to)?;
                if e.object_type == ObjectType::Symlink {
                    let info = self
                        .store
                        .get_symlink_info(&e.key)
                        .await
                        .map_err(|err| not_found_or("GetSymlink", &e.key, err))?;
                    self.move_native_link(&e.key, &to, info).await?;
                } else {
                    self.copy_any(&e.key, &to, e.size, None).await?;
                }
                Ok::<(), FsError>(())
            })
            .buffer_unordered(DIR_COPY_PARALLELISM)
            .try_collect::<Vec<()>>()
            .await?;
        if !keys.is_empty() {
            self.store
                .delete_objects(&keys)
                .await
                .map_err(|e| FsError::store("DeleteMultipleObjects", src, e))?;
        }
        Ok(())
    }

    /// FUSE symlink: the text is stored as given, in the form `symlink` picks.
    pub async fn symlink(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        target: &Path,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        let name = names::name_from_kernel(name)?;
        let target = target.as_os_str();
        if target.is_empty() || target.len() > MAX_LINK_TEXT {
            return Err(FsError::InvalidArgument("bad symlink target length".into()));
        }
        match self.lookup_name(parent, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let entry = self.prepare_new_entry(
            ctx,
            parent,
            name,
            FileKind::Symlink,
            target.len() as u64,
            0o777,
        )?;
        let opts = entry.put_options();
        let stored = self
            .store_link(&entry.key, target, opts.user_meta.clone())
            .await?;
        let (_, node) = self.insert_new_entry(entry, Some(&opts), |n| {
            n.symlink_target = Some(target.to_os_string());
            n.object_type = stored.object_type;
            n.etag = stored.etag;
            n.user_meta = stored.user_meta;
        });
        Ok(node.attr)
    }

    /// FUSE readlink (the target is cached in the inode).
    pub async fn readlink(&self, ino: Ino) -> FsResult<OsString> {
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        if node.attr.kind != FileKind::Symlink {
            return Err(FsError::InvalidArgument("not a symlink".into()));
        }
        if let Some(t) = node.symlink_target {
            return Ok(t);
        }
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        let t = self
            .read_link_target(&key, node.object_type, node.attr.size)
            .await?;
        self.inodes.update(ino, |n| {
            n.symlink_target = Some(t.clone());
            n.attr.size = t.len() as u64;
        });
        Ok(t)
    }
}
