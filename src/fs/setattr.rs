//! setattr: chmod, chown, utimens and truncate.
//!
//! Metadata changes are persisted in the ossfs format (see [`super::attr`]):
//! - files (and FIFOs, sockets, devices): HEAD (to keep content type and foreign
//!   metadata), then CopyObject of the object onto itself with the REPLACE directive (multipart copy above 1 GiB);
//! - symlinks: PutSymlink again with the new metadata;
//! - directories: PUT of the `dir/` marker with the metadata (creating the marker of an
//!   implicit directory); the mount root keeps its attributes in memory only.
//!
//! While an open handle holds data not yet uploaded, the metadata is only updated in
//! memory and goes out with that upload at close, so `touch`/`chmod` during a copy cost no
//! extra request. Otherwise (including the window between `close` and the kernel's
//! asynchronous `release`) it is persisted at once.
//! atime is not stored (OSS has no access time); an atime-only change succeeds as a no-op.

use std::time::SystemTime;

use bytes::Bytes;

use crate::store::PutOptions;

use super::attr::{FileKind, Ino, to_user_meta};
use super::error::{FsError, not_found_or};
use super::inode::ROOT_INO;
use super::{Attr, Filesystem, FsResult, SetAttr, TimeSet, lock};

impl Filesystem {
    /// FUSE setattr.
    pub async fn setattr(&self, ino: Ino, set: SetAttr) -> FsResult<Attr> {
        let meta_change =
            set.mode.is_some() || set.uid.is_some() || set.gid.is_some() || set.mtime.is_some();
        if meta_change || set.size.is_some() {
            self.check_writable()?;
        }
        // What is written back must start from the stored attributes, not a listing's.
        let node = self.known_attrs(ino).await?;
        if let Some(size) = set.size {
            if node.attr.kind == FileKind::Dir {
                return Err(FsError::IsDir);
            }
            self.truncate(ino, size, set.fh).await?;
        }
        if !meta_change {
            return self
                .inodes
                .get(ino)
                .map(|n| n.attr)
                .ok_or(FsError::NotFound);
        }
        let mut attr = self.inodes.get(ino).ok_or(FsError::NotFound)?.attr;
        if let Some(mode) = set.mode {
            attr.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = set.uid {
            attr.uid = uid;
        }
        if let Some(gid) = set.gid {
            attr.gid = gid;
        }
        let now = SystemTime::now();
        match set.mtime {
            Some(TimeSet::Now) => attr.mtime = now,
            Some(TimeSet::At(t)) => attr.mtime = t,
            None => {}
        }
        attr.ctime = now;
        attr.from_meta = true;
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        let deferred = node.local
            || node.unlinked
            || ino == ROOT_INO
            || (node.writers > 0 && self.has_pending_data(ino).await);
        if deferred {
            self.inodes.update(ino, |n| n.attr = attr.clone());
            if node.writers > 0 {
                lock(&self.meta_pending).insert(ino);
            }
            // A pending write-back upload carries it (see `write_back`).
            self.wb_set_meta(ino).await?;
            return Ok(attr);
        }
        self.persist_attr(ino, &attr).await?;
        Ok(attr)
    }

    /// Writes `attr` into the object's metadata (see the module docs).
    pub(crate) async fn persist_attr(&self, ino: Ino, attr: &Attr) -> FsResult<()> {
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        let (etag, crc, user_meta) = match attr.kind {
            FileKind::File | FileKind::Special(_) => {
                let head = self
                    .store
                    .head_object(&key)
                    .await
                    .map_err(|e| not_found_or("HeadObject", &key, e))?;
                let opts = PutOptions {
                    content_type: head.content_type.clone(),
                    user_meta: to_user_meta(attr, &head.user_meta),
                    forbid_overwrite: false,
                };
                let r = self.copy_any(&key, &key, head.size, Some(&opts)).await?;
                (r.etag, r.crc64, opts.user_meta)
            }
            FileKind::Symlink => {
                let target = self.readlink(ino).await?;
                let meta = to_user_meta(attr, &node.user_meta);
                let stored = self.store_link(&key, &target, meta).await?;
                let etag = if stored.etag.is_empty() {
                    node.etag.clone()
                } else {
                    stored.etag
                };
                (etag, node.crc64, stored.user_meta)
            }
            FileKind::Dir => {
                let opts = PutOptions {
                    user_meta: to_user_meta(attr, &node.user_meta),
                    ..Default::default()
                };
                let r = self
                    .store
                    .put_object(&key, Bytes::new().into(), &opts)
                    .await
                    .map_err(|e| FsError::store("PutObject", &key, e))?;
                (r.etag, r.crc64, opts.user_meta)
            }
        };
        self.inodes.update(ino, |n| {
            let size = n.attr.size;
            n.attr = attr.clone();
            n.attr.size = size;
            // Not before the copy's Last-Modified (see `commit`).
            n.attr.ctime = attr.ctime.max(SystemTime::now());
            if matches!(attr.kind, FileKind::File | FileKind::Special(_)) {
                n.etag = etag;
                n.crc64 = crc;
            }
            n.user_meta = user_meta;
        });
        self.inodes.touch_valid(ino);
        self.cache.invalidate_key(&key);
        Ok(())
    }
}
