//! lookup and getattr: turning names into inodes by asking OSS, with caching.
//!
//! A name `n` in directory `d/` is resolved with two requests sent concurrently
//! (`tokio::join!`): HEAD `d/n` and LIST prefix `d/n/`, delimiter `/`, max-keys 1000 (a
//! directory's page is kept as the first page of the readdir that follows, see `lookup_page`;
//! a file's comes back empty, at the cost of a one-key page; a *known* directory is
//! revalidated with max-keys 1, so path walks stay cheap). If the
//! LIST finds anything (a marker `d/n/` or any key below), `n` is a directory — even when
//! an object `d/n` exists too ("directory wins", the only way both stay reachable).
//! Otherwise the HEAD decides: a Symlink object (or an ossfs-style link whose mode has
//! `S_IFLNK`) is a link, anything else a regular file. When the LIST shows the
//! directory's own marker object, one more HEAD (of `d/n/`) reads its mode/owner/mtime,
//! so directories made private by ossfs or by chmod here stay private.
//!
//! A name already known as a file is revalidated with its HEAD alone (no LIST): a
//! directory of the same name that another client creates meanwhile shows up at the
//! parent's next listing, or once the object is deleted. A name known as a directory is
//! revalidated with its LIST alone (a non-empty listing decides "directory" whatever a
//! HEAD says); the HEAD follows only when the listing is empty.
//!
//! A known file of at most 128 KiB whose attributes expired is revalidated with a GET of
//! its content rather than a HEAD (same one request; the content goes to the block
//! cache for the read that follows).
//!
//! A name not known in a directory that is complete (see `inode`) costs nothing; once
//! the directory's completeness has expired, a miss in a small directory re-lists it
//! with one LIST, which renews it, so creating many files in a directory costs about
//! one LIST per TTL instead of a HEAD and a LIST per file.
//!
//! Pitfalls:
//! - HEAD on an OSS symlink resolves to the target; a dangling link answers 404
//!   `SymlinkTargetNotExist`, which must not be taken for "no such file". The link's own
//!   size is the length of its target, so links cost one GetSymlink on lookup.
//! - Directories are not re-validated by getattr (they have no object to HEAD); a
//!   directory deleted behind our back disappears at the parent's next lookup/readdir.
//! - Nodes with local state (open writers, not yet uploaded) are answered from memory:
//!   OSS does not know them yet.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use bytes::BytesMut;
use futures::StreamExt;

use crate::store::{ListPage, ListRequest, ObjectMeta, ObjectType, ServiceCode, StoreError};

use super::attr::{Attr, FileKind, Ino, kind_from_meta};
use super::error::{FsError, not_found_or};
use super::inode::{Node, Observed};
use super::limits::{LIST_PAGE, SMALL_FILE};
use super::{Filesystem, FsResult, names};

/// A complete directory with fewer entries than this is re-listed (one page) on a miss.
const RELIST_MAX_ENTRIES: usize = 900;

/// Longest symlink target read from an ossfs-style link object.
const MAX_LINK_OBJECT: u64 = 4096;

impl Filesystem {
    /// FUSE lookup: takes a kernel reference on success.
    pub async fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        let name = names::name_from_kernel(name)?;
        let (mut ino, _) = self.lookup_name(parent, name).await?;
        // The kernel enforces what it is given: never a listing's guess (`attr_fanout`).
        let mut node = self.known_attrs(ino).await;
        // Stored attributes that showed another kind (an ossfs-style link listed as a
        // file) bound the name to a new inode: answer with that one.
        if let Some(cur) = self.inodes.child(parent, name).filter(|c| *c != ino) {
            ino = cur;
            node = self.known_attrs(ino).await;
        }
        let node = node?;
        self.inodes.add_lookup(ino, 1);
        Ok(node.attr)
    }

    /// Resolves `name` in `parent` (cache first, then OSS).
    pub(crate) async fn lookup_name(&self, parent: Ino, name: &str) -> FsResult<(Ino, Node)> {
        let pnode = self.inodes.get(parent).ok_or(FsError::NotFound)?;
        if pnode.attr.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        if let Some(cached) = self.inodes.cached_lookup(parent, name) {
            return cached.ok_or(FsError::NotFound);
        }
        // A name we do not know in a directory that was complete and small: one LIST of
        // the directory answers it (and its siblings, for a TTL) instead of HEAD+LIST.
        let relist = self
            .inodes
            .completeness(parent)
            .is_some_and(|c| c.entries < RELIST_MAX_ENTRIES);
        if relist
            && self.inodes.child(parent, name).is_none()
            && self.relist_small_dir(parent).await?
            && let Some(cached) = self.inodes.cached_lookup(parent, name)
        {
            return cached.ok_or(FsError::NotFound);
        }
        let key = self
            .inodes
            .child_key(parent, name)
            .ok_or(FsError::NotFound)?;
        names::check_key_len(&key)?;
        let dir_prefix = format!("{key}/");
        let list_req = ListRequest {
            prefix: dir_prefix.clone(),
            delimiter: Some("/".into()),
            max_keys: LIST_PAGE,
            ..Default::default()
        };
        // A known directory is revalidated with a one-key LIST: a path walk through a
        // large directory (a loader opening `data/train/x`) must not fetch 1000 entries
        // every TTL. A full page is fetched only when the name is new, when an `ls` or
        // `find` of it is likely to follow.
        let revalidate_req = ListRequest {
            max_keys: 1,
            ..list_req.clone()
        };
        let sent = super::lookup_page::Stamp::now(&self.inodes);
        let known = self
            .inodes
            .child(parent, name)
            .and_then(|ino| self.inodes.get(ino));
        // A name known as a file is revalidated by its object alone (one request); only
        // when the object is gone is the directory check (the LIST) needed. A name known
        // as a directory is revalidated by its LIST alone: a non-empty listing makes it a
        // directory whatever a HEAD would say; only when it is gone does the HEAD tell
        // whether a file took its place.
        let known_kind = known.as_ref().map(|n| n.attr.kind);
        let (head, list) = match known
            .as_ref()
            .filter(|n| matches!(n.attr.kind, FileKind::File | FileKind::Special(_)))
        {
            Some(file)
                if matches!(
                    self.revalidate_listed(file.attr.ino, file).await,
                    Some(Ok(()))
                ) =>
            {
                // Listed by a readdir: revalidated with the entries after it.
                let ino = file.attr.ino;
                let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
                return Ok((ino, node));
            }
            Some(file) => match self.head_or_fetch_small(&key, Some(file)).await {
                Ok(meta) => {
                    let obs = self.observed_from_head(&key, &meta).await?;
                    return Ok(self.inodes.observe(parent, name, obs));
                }
                Err(e) if e.is_not_found() => (Err(e), self.store.list_objects(&list_req).await),
                Err(e) => return Err(FsError::store("HeadObject", &key, e)),
            },
            None if known_kind == Some(FileKind::Dir) => {
                // A page listed ahead of a tree walk shows it is still a directory.
                if let Some(ino) = known.as_ref().map(|n| n.attr.ino)
                    && self.walk_proves_dir(&dir_prefix).await
                {
                    self.inodes.touch_valid(ino);
                    if let Some(node) = self.inodes.get(ino) {
                        return Ok((ino, node));
                    }
                }
                let list = self
                    .store
                    .list_objects(&revalidate_req)
                    .await
                    .map_err(|e| FsError::store("ListObjectsV2", &dir_prefix, e))?;
                if !list.is_empty() {
                    return Ok(self
                        .observe_listed_dir(parent, name, &dir_prefix, &list)
                        .await);
                }
                (self.store.head_object(&key).await, Ok(list))
            }
            None => tokio::join!(
                self.store.head_object(&key),
                self.store.list_objects(&list_req)
            ),
        };
        let list = list.map_err(|e| FsError::store("ListObjectsV2", &dir_prefix, e))?;
        if !list.is_empty() {
            return Ok(self
                .observe_probed_dir(parent, name, &dir_prefix, &list, sent)
                .await);
        }
        match head {
            Ok(meta) => {
                let obs = self.observed_from_head(&key, &meta).await?;
                Ok(self.inodes.observe(parent, name, obs))
            }
            Err(e) if e.has_code(&ServiceCode::SymlinkTargetNotExist) => {
                let obs = self.observed_dangling_link(&key).await?;
                Ok(self.inodes.observe(parent, name, obs))
            }
            Err(e) if e.is_not_found() => {
                self.inodes.set_negative(parent, name);
                Err(FsError::NotFound)
            }
            Err(e) => Err(FsError::store("HeadObject", &key, e)),
        }
    }

    /// [`Self::observe_listed_dir`], keeping the page (sent at `sent`) for the readdir
    /// that usually follows.
    async fn observe_probed_dir(
        &self,
        parent: Ino,
        name: &str,
        dir_prefix: &str,
        list: &ListPage,
        sent: super::lookup_page::Stamp,
    ) -> (Ino, Node) {
        let (ino, node) = self
            .observe_listed_dir(parent, name, dir_prefix, list)
            .await;
        self.probed.keep(ino, sent, list, self.cfg.metadata_ttl);
        (ino, node)
    }

    /// Registers `name` as the directory a non-empty LIST of `dir_prefix` proved. When
    /// the listing shows the directory's own marker object, one HEAD of it reads the
    /// mode/owner it may carry (ossfs writes them): a directory meant to be private must
    /// not show the mount's default mode.
    async fn observe_listed_dir(
        &self,
        parent: Ino,
        name: &str,
        dir_prefix: &str,
        list: &ListPage,
    ) -> (Ino, Node) {
        let marker = list.objects.first().filter(|o| o.key == dir_prefix);
        let mtime = marker
            .and_then(|o| o.last_modified)
            .unwrap_or(self.mounted_at);
        let mut obs = self.observed_dir(mtime);
        // No marker (it would sort first): the defaults are what is stored.
        obs.attr_template.from_meta = marker.is_none();
        if marker.is_some() {
            match self.store.head_object(dir_prefix).await {
                Ok(meta) => {
                    obs.attr_template =
                        self.inodes
                            .defaults()
                            .from_object_meta(0, FileKind::Dir, &meta);
                    obs.attr_template.size = 0;
                }
                Err(e) => {
                    tracing::debug!(key = %dir_prefix, error = %e, "HEAD of directory marker failed; using defaults");
                }
            }
        }
        self.inodes.observe(parent, name, obs)
    }

    /// Revalidates `key`: a HEAD, or for a file known to be small a GET of its whole
    /// content, whose headers say all a HEAD says. Same one request, but the content
    /// lands in the block cache, so the read that usually follows a lookup (`cat`,
    /// `cp`, a training loader) costs nothing more.
    pub(crate) async fn head_or_fetch_small(
        &self,
        key: &str,
        known: Option<&Node>,
    ) -> Result<ObjectMeta, StoreError> {
        if !known.is_some_and(super::small_file_readahead::is_small_file) {
            return self.store.head_object(key).await;
        }
        let out = self
            .store
            .get_object(key, Some(0..SMALL_FILE), None)
            .await?;
        let mut data = BytesMut::new();
        let mut body = out.body;
        while let Some(chunk) = body.next().await {
            data.extend_from_slice(&chunk?);
            if data.len() as u64 > SMALL_FILE {
                break; // a server ignoring the range: do not buffer a large object
            }
        }
        let meta = out.meta;
        if data.len() as u64 == meta.size && !meta.etag.is_empty() {
            self.cache
                .insert_range(&Arc::from(key), &Arc::from(meta.etag.as_str()), 0, &data);
        }
        Ok(meta)
    }

    pub(crate) fn observed_dir(&self, mtime: std::time::SystemTime) -> Observed {
        Observed {
            kind: FileKind::Dir,
            attr_template: self.inodes.defaults().new_attr(0, FileKind::Dir, 0, mtime),
            etag: String::new(),
            crc64: None,
            object_type: ObjectType::Normal,
            user_meta: None,
            content_type: None,
            symlink_target: None,
        }
    }

    /// What a HEAD answer says about `key` (fetches a symlink's target).
    pub(crate) async fn observed_from_head(
        &self,
        key: &str,
        meta: &ObjectMeta,
    ) -> FsResult<Observed> {
        let kind = kind_from_meta(meta.object_type, &meta.user_meta);
        if meta.object_type == ObjectType::Symlink {
            // HEAD answered with the target's metadata: the link's own is GetSymlink's.
            let mut obs = self.observed_native_link(key).await?;
            obs.etag = meta.etag.clone();
            obs.crc64 = meta.crc64;
            return Ok(obs);
        }
        let mut attr = self.inodes.defaults().from_object_meta(0, kind, meta);
        let mut target = None;
        if kind == FileKind::Symlink {
            let t = self
                .read_link_target(key, meta.object_type, meta.size)
                .await?;
            attr.size = t.len() as u64;
            target = Some(t);
        }
        Ok(Observed {
            kind,
            attr_template: attr,
            etag: meta.etag.clone(),
            crc64: meta.crc64,
            object_type: meta.object_type,
            user_meta: Some(meta.user_meta.clone()),
            content_type: meta.content_type.clone(),
            symlink_target: target,
        })
    }

    /// A native link as GetSymlink shows it: its text and its own owner/mode/mtime.
    async fn observed_native_link(&self, key: &str) -> FsResult<Observed> {
        let info = self
            .store
            .get_symlink_info(key)
            .await
            .map_err(|e| not_found_or("GetSymlink", key, e))?;
        let text = super::symlink::native_text(&self.cfg.prefix, key, &info);
        let mut attr = self
            .inodes
            .defaults()
            .from_object_meta(0, FileKind::Symlink, &info.meta);
        if info.meta.last_modified.is_none() && !info.meta.user_meta.contains_key("mtime") {
            attr.mtime = self.mounted_at;
            attr.ctime = self.mounted_at;
        }
        attr.size = text.len() as u64;
        Ok(Observed {
            kind: FileKind::Symlink,
            attr_template: attr,
            etag: info.meta.etag.clone(),
            crc64: None,
            object_type: ObjectType::Symlink,
            user_meta: Some(info.meta.user_meta),
            content_type: None,
            symlink_target: Some(text),
        })
    }

    pub(crate) async fn observed_dangling_link(&self, key: &str) -> FsResult<Observed> {
        let mut obs = self.observed_native_link(key).await?;
        obs.etag = String::new();
        Ok(obs)
    }

    /// The target of a link object: GetSymlink for OSS symlinks, the content for
    /// ossfs-style links.
    pub(crate) async fn read_link_target(
        &self,
        key: &str,
        object_type: ObjectType,
        size: u64,
    ) -> FsResult<OsString> {
        if object_type == ObjectType::Symlink {
            let info = self
                .store
                .get_symlink_info(key)
                .await
                .map_err(|e| not_found_or("GetSymlink", key, e))?;
            return Ok(super::symlink::native_text(&self.cfg.prefix, key, &info));
        }
        if size == 0 {
            return Ok(OsString::new());
        }
        if size > MAX_LINK_OBJECT {
            return Err(FsError::InvalidArgument(format!(
                "{key}: link object of {size} bytes is too large"
            )));
        }
        let out = self
            .store
            .get_range(key, 0..size, None)
            .await
            .map_err(|e| not_found_or("GetObject", key, e))?;
        // The body is the text, byte for byte (ossfs 1.x format; any bytes).
        Ok(OsString::from_vec(out.data.to_vec()))
    }

    /// FUSE getattr.
    pub async fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        if node.unlinked {
            // Still open after its unlink: no name links to it any more.
            let mut attr = node.attr;
            attr.nlink = 0;
            return Ok(attr);
        }
        if !self.attrs_known(ino, &node) {
            // A listing replaced what the kernel was told: fetch the stored attributes.
            return Ok(self.known_attrs(ino).await?.attr);
        }
        let fresh = node
            .valid_until
            .is_some_and(|t| t > std::time::Instant::now());
        if fresh || node.writers > 0 || node.local || node.attr.kind == FileKind::Dir {
            if !fresh && node.attr.kind == FileKind::Dir {
                self.inodes.touch_valid(ino);
            }
            return Ok(node.attr);
        }

        // Listed by a readdir (`ls -l` after the TTL): with the entries after it.
        if let Some(done) = self.revalidate_listed(ino, &node).await {
            done?;
            if let Some(n) = self.inodes.get(ino) {
                return Ok(n.attr);
            }
        }
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        match self.head_or_fetch_small(&key, Some(&node)).await {
            Ok(meta) => {
                let obs = self.observed_from_head(&key, &meta).await?;
                if obs.kind != node.attr.kind {
                    // It became something else: this inode is gone.
                    self.inodes.invalidate(ino);
                    return Err(FsError::Stale { key });
                }
                let (_, n) = self.inodes.observe(node.parent, &node.name, obs);
                Ok(n.attr)
            }
            Err(e) if e.has_code(&ServiceCode::SymlinkTargetNotExist) => {
                self.inodes.touch_valid(ino);
                Ok(node.attr)
            }
            Err(e) if e.is_not_found() => {
                self.inodes.set_negative(node.parent, &node.name);
                Err(FsError::NotFound)
            }
            Err(e) => Err(FsError::store("HeadObject", &key, e)),
        }
    }
}
