//! Directories: readdir(+plus) over paged listings, mkdir and rmdir.
//!
//! A directory handle lists lazily: the first readdir fetches the first ListObjectsV2
//! page (1000 entries, delimiter `/`), later readdirs fetch the next pages as the kernel
//! asks for higher offsets. Every entry is registered in the inode table with the size
//! and mtime of the listing, so the `stat` calls that follow (`ls -l`) are answered from
//! the cache: N entries cost ~N/1000 LIST requests and no HEAD. When the directory's
//! lookup has just listed it, its page is the first page (see `lookup_page`).
//!
//! Offsets are positions in the handle's entry list (`.` = 0, `..` = 1, …); the cookie
//! returned with an entry is its position + 1. The handle keeps only entries the kernel
//! may still ask for; a seek backwards (rewinddir or seekdir) re-lists from the start.
//!
//! Pitfalls:
//! - The marker object `dir/` itself is listed under its own prefix and must be skipped.
//! - A file `x` and a prefix `x/` can both exist and are not adjacent in the listing
//!   (`x-1`, `x.txt` sort between them). The directory wins: a buffered file entry is
//!   turned into the directory; if the file entry was already returned (only possible
//!   across a page boundary) the directory entry is dropped and lookup later says "dir".
//! - Files created here but not uploaded yet are not in OSS; they are appended at the end.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::store::{ListEntry, ListPage, ListRequest, ObjectType};

use super::attr::{FileKind, Ino};
use super::error::FsError;
use super::inode::Observed;
use super::limits::{LIST_PAGE, READ_AHEAD_MAX_ORDER};
use super::listing_cache::{Listed, Listing};
use super::new_entry::requested_perm;
use super::{Attr, Ctx, DirEntry, Filesystem, FsResult, lock, names};

/// Most entries returned by one readdir call (the kernel's buffer holds fewer anyway;
/// returning the whole page each time would copy it over and over).
const BATCH: usize = 512;

/// State of one open directory.
#[derive(Debug)]
pub(crate) struct DirHandle {
    ino: Ino,
    /// Entries from position `base` on.
    entries: Vec<DirEntry>,
    base: usize,
    /// Position of each buffered name (for the file-vs-directory rule).
    index: HashMap<String, usize>,
    token: Option<String>,
    started: bool,
    done: bool,
    /// When the listing from the first page began, and names it returned so far: a
    /// listing that reaches the end makes the directory complete (see `inode`).
    since: Option<Instant>,
    listed: usize,
    /// [`super::inode::InodeTable::free_epoch`] when the listing began.
    epoch: u64,
    /// Small files in listing order, for the sibling read-ahead (see `small_file_readahead`).
    small_files: Vec<String>,
    /// The whole listing so far, kept for the readdirs of one TTL (`listing_cache`);
    /// None once too large, or when this pass replays a kept listing.
    record: Option<Listing>,
    /// The inode table's change count when this pass began.
    changes_at_start: u64,
    /// Subdirectories listed so far (for the directory's link count).
    subdirs: u32,
}

impl DirHandle {
    fn new(ino: Ino) -> Self {
        DirHandle {
            ino,
            entries: Vec::new(),
            base: 0,
            index: HashMap::new(),
            token: None,
            started: false,
            done: false,
            since: None,
            listed: 0,
            epoch: 0,
            small_files: Vec::new(),
            record: Some(Listing::default()),
            changes_at_start: 0,
            subdirs: 0,
        }
    }

    fn end(&self) -> usize {
        self.base + self.entries.len()
    }

    /// Drops the entries before position `offset`: the kernel has consumed them (a
    /// seek back before them re-lists from the start).
    fn forget_before(&mut self, offset: usize) {
        let drop_n = offset.saturating_sub(self.base).min(self.entries.len());
        if drop_n > 0 {
            self.entries.drain(..drop_n);
            self.base += drop_n;
            let base = self.base;
            self.index.retain(|_, p| *p >= base);
        }
    }

    fn push(&mut self, mut e: DirEntry) {
        let pos = self.end();
        e.offset = pos as u64 + 1;
        self.index.insert(e.name.clone(), pos);
        self.entries.push(e);
    }
}

impl Filesystem {
    pub async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        let node = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        if node.attr.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        let fh = self.alloc_fh();
        self.inodes.pin(ino);
        lock(&self.dirs).insert(fh, Arc::new(tokio::sync::Mutex::new(DirHandle::new(ino))));
        Ok(fh)
    }

    pub async fn releasedir(&self, fh: u64) -> FsResult<()> {
        let handle = lock(&self.dirs).remove(&fh);
        if let Some(handle) = handle {
            let ino = handle.lock().await.ino;
            self.inodes.unpin(ino);
        }
        Ok(())
    }

    /// Entries from `offset` on (a batch; call again with the last entry's offset).
    /// An empty result means the end of the directory.
    pub async fn readdir(&self, ino: Ino, fh: u64, offset: u64) -> FsResult<Vec<DirEntry>> {
        let handle = lock(&self.dirs)
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)?;
        let mut h = handle.lock().await;
        if h.ino != ino {
            return Err(FsError::BadHandle);
        }
        let offset =
            usize::try_from(offset).map_err(|_| FsError::InvalidArgument("offset".into()))?;
        if !h.started || offset < h.base {
            *h = DirHandle::new(ino);
            h.started = true;
            h.since = Some(Instant::now());
            h.changes_at_start = self.inodes.changes();
            h.epoch = self.inodes.free_epoch();
            let me = self.inodes.get(ino).ok_or(FsError::NotFound)?;
            let parent = self
                .inodes
                .get(me.parent)
                .map(|n| n.attr)
                .unwrap_or(me.attr.clone());
            h.push(DirEntry {
                ino,
                offset: 0,
                kind: FileKind::Dir,
                name: ".".into(),
                attr: me.attr.clone(),
            });
            h.push(DirEntry {
                ino: parent.ino,
                offset: 0,
                kind: FileKind::Dir,
                name: "..".into(),
                attr: parent,
            });
        }
        while offset >= h.end() && !h.done {
            // Pages before `offset` (a seekdir far ahead) are dropped as they come, so
            // the handle holds about one page whatever the offset.
            h.forget_before(offset);
            self.fetch_page(&mut h).await?;
        }
        h.forget_before(offset);
        Ok(h.entries.iter().take(BATCH).cloned().collect())
    }

    async fn fetch_page(&self, h: &mut DirHandle) -> FsResult<()> {
        let dir_key = self.inodes.key_of(h.ino).ok_or(FsError::NotFound)?;
        if h.token.is_none() && self.replay_listing(h, &dir_key) {
            return Ok(());
        }
        // The first page may be the one the directory's lookup just fetched (`lookup_page`).
        // Or one fetched ahead of a tree walk (`walk`).
        let probed = match h.token {
            None => match self.walk_first_page(&dir_key).await {
                Some(p) => Some(p),
                None => self
                    .probed
                    .take(h.ino, self.inodes.changes(), self.cfg.metadata_ttl),
            },
            Some(_) => None,
        };
        let page = match probed {
            Some((sent_at, page)) => {
                h.since = Some(sent_at);
                page
            }
            None => self.list_page(&dir_key, h.token.clone()).await?,
        };
        if h.token.is_none() {
            self.fanout.restart(h.ino);
        }
        let mut checked = self.check_listed_kinds(&dir_key, &page.objects).await;
        for obj in &page.objects {
            if obj.key == dir_key {
                continue; // the directory's own marker
            }
            let Some(name) = obj.key.strip_prefix(dir_key.as_str()) else {
                continue;
            };
            if !names::is_valid_component(name) {
                names::warn_hidden(&obj.key, name);
                continue;
            }
            if h.index.contains_key(name) {
                continue;
            }
            h.listed += 1;
            let obs = checked
                .remove(name)
                .or_else(|| self.listed_keeps_kind(h.ino, name, obj))
                .unwrap_or_else(|| self.observed_listed(obj));
            let said = (obs.kind, obs.attr_template.size, obs.attr_template.mtime);
            let (ino, node) = self.inodes.observe(h.ino, name, obs);
            if super::small_file_readahead::is_small_file(&node)
                && h.small_files.len() <= READ_AHEAD_MAX_ORDER
            {
                h.small_files.push(name.to_string());
            }
            let listed = Listed {
                name,
                ino,
                kind: said.0,
                size: said.1,
                mtime: said.2,
                etag: &obj.etag,
                object_type: obj.object_type,
            };
            self.note_listed(h, &listed, &node);
            h.push(DirEntry {
                ino,
                offset: 0,
                kind: node.attr.kind,
                name: name.to_string(),
                attr: node.attr,
            });
        }
        for cp in &page.common_prefixes {
            let Some(name) = cp
                .strip_prefix(dir_key.as_str())
                .and_then(|n| n.strip_suffix('/'))
            else {
                continue;
            };
            if !names::is_valid_component(name) {
                names::warn_hidden(cp, name);
                continue;
            }
            h.listed += 1;
            let (ino, node) = self
                .inodes
                .observe(h.ino, name, self.observed_dir(self.mounted_at));
            let listed = Listed {
                name,
                ino,
                kind: FileKind::Dir,
                size: 0,
                mtime: self.mounted_at,
                etag: "",
                object_type: ObjectType::Normal,
            };
            if h.index.contains_key(name) {
                // A file of the same name was listed too: too rare to keep (a replay
                // would have to redo the directory-wins rule).
                h.record = None;
            }
            self.note_listed(h, &listed, &node);
            h.subdirs += 1;
            let entry = DirEntry {
                ino,
                offset: 0,
                kind: FileKind::Dir,
                name: name.to_string(),
                attr: node.attr,
            };
            match h.index.get(name).copied() {
                Some(pos) if pos >= h.base => {
                    // Directory wins over a buffered file of the same name.
                    let i = pos - h.base;
                    let off = h.entries[i].offset;
                    h.entries[i] = DirEntry {
                        offset: off,
                        ..entry
                    };
                }
                Some(_) => {}
                None => h.push(entry),
            }
        }
        self.walk_after_page(&dir_key, &page);
        h.token = page.next_continuation_token;
        if h.token.is_none() {
            h.done = true;
            self.inodes
                .set_dir_links(h.ino, 2u32.saturating_add(h.subdirs));
            if let Some(record) = h.record.take() {
                self.listings
                    .keep(&dir_key, h.changes_at_start, self.cfg.metadata_ttl, record);
            }
            if let Some(since) = h.since {
                self.inodes
                    .mark_complete_listed(h.ino, since, h.listed, h.epoch);
                let small = std::mem::take(&mut h.small_files);
                self.ahead.record_listing(h.ino, small);
            }
            for (name, ino, attr) in self.inodes.local_children(h.ino) {
                if !h.index.contains_key(&name) {
                    h.push(DirEntry {
                        ino,
                        offset: 0,
                        kind: attr.kind,
                        name,
                        attr,
                    });
                }
            }
        }
        Ok(())
    }

    /// Remembers a listed entry: for the listing cache, and (its attributes being
    /// guesses) for the attribute fan-out.
    fn note_listed(&self, h: &mut DirHandle, listed: &Listed<'_>, node: &super::inode::Node) {
        let ino = listed.ino;
        if let Some(record) = h.record.as_mut()
            && !record.push(listed)
        {
            h.record = None;
        }
        if self.worth_noting(ino, node) {
            self.fanout
                .note(h.ino, ino, node.attr.kind == FileKind::Dir);
        }
    }

    /// Fills `h` from a listing kept within the TTL (see `listing_cache`); false when
    /// there is none to replay.
    fn replay_listing(&self, h: &mut DirHandle, dir_key: &str) -> bool {
        let Some(kept) = self.listings.get(dir_key, self.inodes.changes()) else {
            return false;
        };
        let mut entries = Vec::with_capacity(kept.len());
        self.fanout.restart(h.ino);
        for e in kept.iter() {
            if h.index.contains_key(e.name) {
                continue;
            }
            // The node its name is bound to now: the entry's own, or one bound anew
            // since (the directory came back under a new number, an earlier replay
            // registered it again, or a stat showed a kind the listing could not tell,
            // see `special`). A kept entry whose node was freed since (the kernel forgot
            // it, see `inode`) is registered again from what the listing said, as a new
            // LIST would.
            let known = self
                .inodes
                .child(h.ino, e.name)
                .and_then(|ino| Some((ino, self.inodes.get(ino)?)));
            let (ino, node) = match known {
                Some(found) => found,
                None => self.inodes.observe(h.ino, e.name, self.observed_kept(&e)),
            };
            // The stats that follow a replayed `ls -l` batch like a listed one's.
            if self.worth_noting(ino, &node) {
                self.fanout
                    .note(h.ino, ino, node.attr.kind == FileKind::Dir);
            }
            entries.push(DirEntry {
                ino,
                offset: 0,
                kind: node.attr.kind,
                name: e.name.to_string(),
                attr: node.attr,
            });
        }
        h.record = None;
        for e in entries {
            h.push(e);
        }
        h.done = true;
        true
    }

    /// FUSE mkdir: PUTs the `name/` marker.
    pub async fn mkdir(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        let name = names::name_from_kernel(name)?;
        let checked_at = Instant::now();
        match self.lookup_name(parent, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let entry = self.prepare_new_entry(
            ctx,
            parent,
            name,
            FileKind::Dir,
            0,
            requested_perm(mode, umask),
        )?;
        let opts = entry.put_options();
        self.store
            .put_object(&entry.key, Bytes::new().into(), &opts)
            .await
            .map_err(|e| FsError::store("PutObject", &entry.key, e))?;
        let (ino, node) = self.insert_new_entry(entry, Some(&opts), |_| {});
        // Nothing was under `name/` when we looked: the new directory is complete.
        self.inodes.mark_complete(ino, checked_at, 0);
        Ok(node.attr)
    }

    /// One page of the directory `dir_key` (delimiter `/`).
    async fn list_page(&self, dir_key: &str, token: Option<String>) -> FsResult<ListPage> {
        let req = ListRequest {
            prefix: dir_key.to_string(),
            delimiter: Some("/".into()),
            continuation_token: token,
            max_keys: LIST_PAGE,
            ..Default::default()
        };
        self.store
            .list_objects(&req)
            .await
            .map_err(|e| FsError::store("ListObjectsV2", dir_key, e))
    }

    /// What a kept listing entry says (see `listing_cache`).
    fn observed_kept(&self, e: &Listed<'_>) -> super::inode::Observed {
        if e.kind == FileKind::Dir {
            return self.observed_dir(e.mtime);
        }
        Observed {
            kind: e.kind,
            attr_template: self.inodes.defaults().new_attr(0, e.kind, e.size, e.mtime),
            etag: e.etag.to_string(),
            crc64: None,
            object_type: e.object_type,
            user_meta: None,
            content_type: None,
            symlink_target: None,
        }
    }

    /// What a listing entry says about a file (size, mtime, ETag; no user metadata).
    fn observed_listed(&self, obj: &ListEntry) -> Observed {
        let kind = if obj.object_type == ObjectType::Symlink {
            FileKind::Symlink
        } else {
            FileKind::File
        };
        let mtime = obj.last_modified.unwrap_or(self.mounted_at);
        Observed {
            kind,
            attr_template: self.inodes.defaults().new_attr(0, kind, obj.size, mtime),
            etag: obj.etag.clone(),
            crc64: None,
            object_type: obj.object_type,
            user_meta: None,
            content_type: None,
            symlink_target: None,
        }
    }

    /// Re-lists a directory that was complete and small (one page), so a miss in it costs
    /// one LIST for all its names instead of HEAD+LIST per name. Only the *names* are
    /// kept: a listing lacks the user metadata (mode, owner, mtime) and directory marker
    /// attributes that a positive lookup must report, so names that exist still go
    /// through HEAD; names that do not are answered at once. Returns whether the
    /// directory is complete again (false when it has grown past one page).
    pub(crate) async fn relist_small_dir(&self, dir: Ino) -> FsResult<bool> {
        let dir_key = self.inodes.key_of(dir).ok_or(FsError::NotFound)?;
        let since = Instant::now();
        let page = self.list_page(&dir_key, None).await?;
        if page.next_continuation_token.is_some() {
            self.inodes.mark_too_large(dir);
            return Ok(false);
        }
        let files = page
            .objects
            .iter()
            .filter(|o| o.key != dir_key)
            .filter_map(|o| o.key.strip_prefix(dir_key.as_str()));
        let dirs = page
            .common_prefixes
            .iter()
            .filter_map(|cp| cp.strip_prefix(dir_key.as_str())?.strip_suffix('/'));
        let present: std::collections::HashSet<String> = files
            .chain(dirs)
            .filter(|n| names::is_valid_component(n))
            .map(str::to_string)
            .collect();
        self.inodes
            .mark_complete_with(dir, since, present.len(), present);
        Ok(true)
    }

    /// FUSE rmdir: `ENOTEMPTY` unless nothing but the marker is below the prefix.
    pub async fn rmdir(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        self.check_writable()?;
        let name = names::name_from_kernel(name)?;
        let (ino, node) = self.lookup_name(parent, name).await?;
        if node.attr.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        if !self.inodes.local_children(ino).is_empty() {
            return Err(FsError::NotEmpty);
        }
        let key = self.inodes.key_of(ino).ok_or(FsError::NotFound)?;
        if !self.dir_is_empty(&key).await? {
            return Err(FsError::NotEmpty);
        }
        self.store
            .delete_object(&key)
            .await
            .map_err(|e| FsError::store("DeleteObject", &key, e))?;
        self.inodes.remove_child(parent, name);
        self.dir_entries_changed(parent, -1);
        Ok(())
    }

    /// Whether nothing but the marker exists under `dir_key` (which ends with `/`).
    pub(crate) async fn dir_is_empty(&self, dir_key: &str) -> FsResult<bool> {
        let req = ListRequest {
            prefix: dir_key.to_string(),
            max_keys: 2,
            ..Default::default()
        };
        let page = self
            .store
            .list_objects(&req)
            .await
            .map_err(|e| FsError::store("ListObjectsV2", dir_key, e))?;
        Ok(page.objects.iter().all(|o| o.key == dir_key) && page.common_prefixes.is_empty())
    }
}
