//! The inode table: numbers for (parent, name) pairs, with cached attributes.
//!
//! Design:
//! - An inode is identified by its parent inode and its name, never by its key: a node's
//!   key is rebuilt by walking up the parents ([`InodeTable::key_of`]). Renaming a
//!   directory therefore moves one node, and everything below it follows.
//! - Numbers and lifetime (see Lifecycle below): a node lives while the kernel
//!   holds it (lookup count > 0), a handle holds it, it has pending local state, or a
//!   child node still names it as parent. When the last of these goes, the node and its
//!   cached attributes are freed; the name gets a *new* number if it is seen again (as in
//!   mountpoint-s3). A number is never reused within a mount, so the kernel can never
//!   confuse a freed node with a new one.
//! - Attributes are cached with an expiry (`metadata_ttl`); a negative cache remembers
//!   names that did not exist, with the same expiry. Our own changes update both at once.
//!   A listing never extends the expiry of attributes a HEAD read: it shows no metadata,
//!   and another client's chmod (a CopyObject onto the object) keeps the ETag.
//! - A node with open writers (`writers > 0`) or created locally and not yet uploaded
//!   (`local`) is authoritative: its attributes are never replaced by what OSS says.
//! - A directory whose whole content is known (listed to the end, or created empty here)
//!   is *complete* for one TTL: a name it does not hold is answered "no such file"
//!   without asking OSS, so `create` in it costs no HEAD+LIST. The same staleness as
//!   the negative cache: another client's new file shows up after at most one TTL.
//!
//! All state is behind one `std::sync::Mutex`, held only for short, non-async sections.
//!
//! # Lifecycle
//! - The kernel's lookup count (`lookups`) rises with every lookup, create, mkdir,
//!   symlink and accepted readdirplus entry and falls with `forget`/`batch_forget`. At
//!   zero the node is freed at once unless it is *pinned*: an open handle
//!   (`handles`, see [`InodeTable::pin`]), open writers, a local (not yet uploaded) file,
//!   or child nodes (`kids`: a child's key is built through its parent). The last child
//!   freed frees its parent in turn if nothing else pins it.
//! - Nodes a plain readdir registered and the kernel never looked up have a count of
//!   zero from the start. They stay as a cache for the `stat` that usually follows, in
//!   a FIFO of at most [`IDLE_CAP`] numbers; beyond that, or once their attributes
//!   expired (checked at the front of the FIFO whenever nodes are added or forgotten),
//!   the oldest is freed if still unreferenced. Memory for names the kernel does not
//!   hold is therefore bounded.
//! - What must outlive a forget does: pending writes and local files pin their node;
//!   changes made here are already in OSS (chmod, utimens, rename and writes are
//!   persisted before they return), so a node freed and looked up again reads them back.
//! - Completeness: a directory marked complete answers unknown names "no such file".
//!   Freeing a child drops its parent's completeness, and a listing that saw a child of
//!   its directory freed while it ran does not mark the directory complete
//!   ([`InodeTable::free_epoch`]): a freed name never reads as missing.
//!
//! # Memory per node
//! A walk registers one node per object, so this is the mount's cost per object. The
//! table stores each node packed ([`packed`]: 136 bytes, one 144-byte allocation, for a
//! listed or HEADed object with a name of up to 22 bytes and an MD5 ETag; user metadata of
//! other tools, uncommon content types and ETags, link targets and open handles go in an
//! optional boxed extra), plus a 16-byte slot in the number map and an 8-byte slot in the
//! name index (hash tables: up to twice that with their spare room), and up to one `u64`
//! in the idle FIFO. [`Node`] is the unpacked form the rest of the filesystem reads
//! ([`InodeTable::get`]) and changes ([`InodeTable::update`]); it is built on each call.
//! The kernel's own dentries and inodes are not counted here. Handles and directory
//! handles keep their own state (see `dir` and `handle`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::attr::{Attr, AttrDefaults, FileKind, Ino};
use crate::store::ObjectType;

mod packed;

use packed::{PackContext, Packed};

pub const ROOT_INO: Ino = 1;
/// Bound of the negative cache; it is cleared when it grows past this.
const NEGATIVE_CAP: usize = 100_000;
/// Most nodes kept that the kernel never referenced (see the module docs, Lifecycle).
pub const IDLE_CAP: usize = 16_384;
/// How long past its expiry an unreferenced node is kept anyway: a readdirplus reply
/// takes its kernel reference after the listing registered it, so even with a zero
/// TTL it must still be there then.
const IDLE_GRACE: Duration = Duration::from_secs(5);
/// Most directories whose last child free is remembered individually (see
/// [`InodeTable::free_epoch`]); beyond that every listing older than the reset counts
/// as having seen a free.
const FREED_IN_CAP: usize = 4096;
/// After this many nodes were freed, the maps shrink to fit (when mostly empty) and
/// [`InodeTable::forget_many`] says malloc should be asked to return free memory: a
/// walk the kernel forgot gives its memory back to the system, not only to the
/// allocator.
const TRIM_FREES: u64 = 16_384;

/// One inode.
#[derive(Debug, Clone)]
pub struct Node {
    pub parent: Ino,
    pub name: String,
    pub attr: Attr,
    /// Until when `attr` may be served without asking OSS (None = expired).
    pub valid_until: Option<Instant>,
    pub etag: String,
    pub crc64: Option<u64>,
    pub object_type: ObjectType,
    /// Other tools' user metadata, kept when we rewrite the object.
    pub user_meta: BTreeMap<String, String>,
    pub content_type: Option<String>,
    /// A link's text as the program wrote it (any bytes; see `symlink`).
    pub symlink_target: Option<std::ffi::OsString>,
    /// Kernel lookup count (informational; numbers are never reused).
    pub lookups: u64,
    /// Open handles that may write this file.
    pub writers: u32,
    /// Created here and not uploaded yet: OSS does not know it.
    pub local: bool,
    /// Unlinked while open: pending uploads must be dropped.
    pub unlinked: bool,
    /// Open file and directory handles on this node (they pin it).
    pub handles: u32,
    /// Nodes whose parent this is (they pin it: keys are built through parents).
    pub kids: u32,
}

#[derive(Debug)]
struct Inner {
    /// The nodes and the `(parent, name)` bindings.
    nodes: Nodes,
    negative: HashMap<(Ino, String), Instant>,
    /// Directories whose every child is in `children`, until when, and how many entries
    /// their last listing had.
    complete: HashMap<Ino, CompleteDir>,
    /// Inodes that may still be `local` (a superset: entries are checked on use), so
    /// listing them does not scan every inode.
    local_set: HashSet<Ino>,
    next_ino: Ino,
    /// Nodes created unreferenced, oldest first (see the module docs, Lifecycle).
    idle: VecDeque<Ino>,
    /// Nodes freed so far, and per directory the count when its last child was freed
    /// (bounded; `freed_floor` stands for the directories forgotten at the last reset).
    frees: u64,
    /// `frees` when memory was last handed back (see [`TRIM_FREES`]).
    trimmed_at: u64,
    freed_in: HashMap<Ino, u64>,
    freed_floor: u64,
}

/// Gives back a map's room when it is mostly empty (a hash map keeps its peak capacity).
fn shrink_map<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

/// A directory listed to the end (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completeness {
    pub until: Instant,
    /// Entries the listing returned (decides whether a re-list is one page).
    pub entries: usize,
}

#[derive(Debug)]
struct CompleteDir {
    summary: Completeness,
    /// Names a re-list saw but did not register as children (their attributes need a
    /// HEAD): they exist, so they must not be answered "no such file".
    present: HashSet<String>,
}

/// The table of inodes of one mount.
#[derive(Debug)]
pub struct InodeTable {
    inner: Mutex<Inner>,
    prefix: String,
    ttl: Duration,
    defaults: AttrDefaults,
    /// Counts changes made by this mount (not observations of OSS): something fetched
    /// before the count moved may predate one of our own changes (see `lookup_page`).
    changes: AtomicU64,
}

/// What is known about a name after asking OSS (or a listing).
#[derive(Debug, Clone)]
pub struct Observed {
    pub kind: FileKind,
    pub attr_template: Attr,
    pub etag: String,
    pub crc64: Option<u64>,
    pub object_type: ObjectType,
    pub user_meta: Option<BTreeMap<String, String>>,
    pub content_type: Option<String>,
    pub symlink_target: Option<std::ffi::OsString>,
}

impl InodeTable {
    /// `prefix` is "" or ends with `/`.
    pub fn new(prefix: String, ttl: Duration, defaults: AttrDefaults) -> Self {
        let mut nodes = Nodes::default();
        let root_attr = defaults.new_attr(ROOT_INO, FileKind::Dir, 0, SystemTime::now());
        nodes.insert(
            ROOT_INO,
            &Node {
                parent: ROOT_INO,
                name: String::new(),
                attr: root_attr,
                valid_until: None,
                etag: String::new(),
                crc64: None,
                object_type: ObjectType::Normal,
                user_meta: BTreeMap::new(),
                content_type: None,
                symlink_target: None,
                lookups: 1,
                writers: 0,
                local: false,
                unlinked: false,
                handles: 0,
                kids: 0,
            },
        );
        InodeTable {
            inner: Mutex::new(Inner {
                nodes,
                negative: HashMap::new(),
                complete: HashMap::new(),
                local_set: HashSet::new(),
                next_ino: ROOT_INO + 1,
                idle: VecDeque::new(),
                frees: 0,
                trimmed_at: 0,
                freed_in: HashMap::new(),
                freed_floor: 0,
            }),
            prefix,
            ttl,
            defaults,
            changes: AtomicU64::new(0),
        }
    }

    /// The number of local changes so far (creates, writes, attribute changes, unlinks,
    /// renames, invalidations).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn defaults(&self) -> &AttrDefaults {
        &self.defaults
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn expiry(&self) -> Option<Instant> {
        Instant::now().checked_add(self.ttl)
    }

    /// Runs `f` with a test of whether an inode has a node, under one lock.
    pub fn with_presence<R>(&self, f: impl FnOnce(&dyn Fn(Ino) -> bool) -> R) -> R {
        let inner = self.lock();
        f(&|ino| inner.nodes.get(&ino).is_some())
    }

    /// A copy of the node.
    pub fn get(&self, ino: Ino) -> Option<Node> {
        self.lock().nodes.node(ino)
    }

    /// Runs `f` on the node, if present. Its parent and name change only by
    /// [`InodeTable::rename`]: changes `f` makes to them are ignored.
    pub fn update<R>(&self, ino: Ino, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        let r = self.lock().nodes.modify(ino, f);
        self.changed();
        r
    }

    /// The object key of a node: `prefix/a/b` for files and symlinks, `prefix/a/b/` for
    /// directories, the prefix itself for the root.
    pub fn key_of(&self, ino: Ino) -> Option<String> {
        let inner = self.lock();
        Self::key_locked(&inner, &self.prefix, ino)
    }

    fn key_locked(inner: &Inner, prefix: &str, ino: Ino) -> Option<String> {
        let mut parts: Vec<&str> = Vec::new();
        let mut cur = ino;
        let mut is_dir = None;
        // Depth bound protects against a corrupted parent chain looping forever.
        for _ in 0..4096 {
            if cur == ROOT_INO {
                let mut key = prefix.to_string();
                for (i, p) in parts.iter().rev().enumerate() {
                    if i > 0 {
                        key.push('/');
                    }
                    key.push_str(p);
                }
                if !parts.is_empty() && is_dir == Some(true) {
                    key.push('/');
                }
                return Some(key);
            }
            let node = inner.nodes.get(&cur)?;
            if is_dir.is_none() {
                is_dir = Some(node.kind() == FileKind::Dir);
            }
            parts.push(node.name.as_str());
            cur = node.parent;
        }
        None
    }

    /// Key a child `name` of directory `parent` would have (without the trailing `/`).
    pub fn child_key(&self, parent: Ino, name: &str) -> Option<String> {
        let dir = self.key_of(parent)?;
        Some(format!("{dir}{name}"))
    }

    /// The inode currently bound to `(parent, name)`.
    pub fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.lock().nodes.child(parent, name)
    }

    /// A fresh cached answer for `(parent, name)`: `Some(Some(node))` when known to exist,
    /// `Some(None)` when known not to exist, `None` when OSS must be asked.
    pub fn cached_lookup(&self, parent: Ino, name: &str) -> Option<Option<(Ino, Node)>> {
        let mut inner = self.lock();
        let now = Instant::now();
        let k = (parent, name.to_string());
        if let Some(ino) = inner.nodes.child(parent, name) {
            let now_stored = inner.nodes.cx.expiry(Some(now));
            if let Some(node) = inner.nodes.get(&ino)
                && (node.writers() > 0 || node.local() || node.valid() > now_stored)
            {
                return inner.nodes.node(ino).map(|n| Some((ino, n)));
            }
            return None;
        }
        match inner.negative.get(&k) {
            Some(&t) if t > now => return Some(None),
            Some(_) => {
                inner.negative.remove(&k);
            }
            None => {}
        }
        match inner.complete.get(&parent) {
            Some(c) if c.summary.until > now && !c.present.contains(name) => Some(None),
            _ => None,
        }
    }

    /// Records that `dir` was listed to the end (the listing began at `since` and
    /// returned `entries` names): unknown names in it do not exist until `since + ttl`.
    /// Only for a directory none of whose nodes can have been freed since `since`
    /// (one just made); listings use [`InodeTable::mark_complete_listed`].
    pub fn mark_complete(&self, dir: Ino, since: Instant, entries: usize) {
        self.mark_complete_with(dir, since, entries, HashSet::new());
    }

    /// [`InodeTable::mark_complete`] for a listing that registered its names as
    /// children and began when [`InodeTable::free_epoch`] was `epoch`: nothing happens
    /// if a child of `dir` was freed since.
    pub fn mark_complete_listed(&self, dir: Ino, since: Instant, entries: usize, epoch: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let Some(until) = since.checked_add(self.ttl) else {
            return;
        };
        // Checked and marked under one lock: a free after this drops it again.
        let mut inner = self.lock();
        let last = inner
            .freed_in
            .get(&dir)
            .copied()
            .unwrap_or(0)
            .max(inner.freed_floor);
        if last > epoch {
            return;
        }
        inner.complete.insert(
            dir,
            CompleteDir {
                summary: Completeness { until, entries },
                present: HashSet::new(),
            },
        );
    }

    /// Like [`InodeTable::mark_complete`], for a listing whose names were not registered
    /// as children: `present` are the names that exist.
    pub fn mark_complete_with(
        &self,
        dir: Ino,
        since: Instant,
        entries: usize,
        present: HashSet<String>,
    ) {
        if self.ttl.is_zero() {
            return;
        }
        if let Some(until) = since.checked_add(self.ttl) {
            self.lock().complete.insert(
                dir,
                CompleteDir {
                    summary: Completeness { until, entries },
                    present,
                },
            );
        }
    }

    /// What is known about `dir` being complete (possibly expired).
    pub fn completeness(&self, dir: Ino) -> Option<Completeness> {
        self.lock().complete.get(&dir).map(|c| c.summary)
    }

    /// `dir` holds more than one listing page: not worth re-listing on a miss.
    pub fn mark_too_large(&self, dir: Ino) {
        self.lock().complete.insert(
            dir,
            CompleteDir {
                summary: Completeness {
                    until: Instant::now(),
                    entries: usize::MAX,
                },
                present: HashSet::new(),
            },
        );
    }

    /// Remembers that `(parent, name)` does not exist (and unbinds it).
    pub fn set_negative(&self, parent: Ino, name: &str) {
        let Some(exp) = self.expiry() else { return };
        let mut inner = self.lock();
        let k = (parent, name.to_string());
        if let Some(ino) = inner.nodes.child(parent, name) {
            // A node with local state keeps existing whatever OSS says.
            if inner
                .nodes
                .get(&ino)
                .is_some_and(|n| n.writers() > 0 || n.local())
            {
                return;
            }
            inner.nodes.unbind(parent, name);
        }
        if self.ttl.is_zero() {
            return;
        }
        if inner.negative.len() >= NEGATIVE_CAP {
            inner.negative.clear();
        }
        inner.negative.insert(k, exp);
    }

    /// Binds `(parent, name)` to what was observed, reusing the inode number when the kind
    /// is unchanged. Nodes with local state keep their attributes. Returns the node.
    pub fn observe(&self, parent: Ino, name: &str, obs: Observed) -> (Ino, Node) {
        let exp = self.expiry();
        let mut inner = self.lock();
        let k = (parent, name.to_string());
        inner.negative.remove(&k);
        if let Some(ino) = inner.nodes.child(parent, name)
            && let Some(mut node) = inner.nodes.node(ino)
            && (node.writers > 0 || node.local || node.attr.kind == obs.kind)
        {
            Self::refresh(&mut node, obs, exp);
            inner.nodes.store(ino, &node);
            return (ino, node);
        }
        // New name, or the kind changed behind our back: a new inode number.
        let ino = inner.next_ino;
        inner.next_ino += 1;
        let mut attr = obs.attr_template;
        attr.ino = ino;
        let node = Node {
            parent,
            name: name.to_string(),
            attr,
            valid_until: exp,
            etag: obs.etag,
            crc64: obs.crc64,
            object_type: obs.object_type,
            user_meta: obs.user_meta.unwrap_or_default(),
            content_type: obs.content_type,
            symlink_target: obs.symlink_target,
            lookups: 0,
            writers: 0,
            local: false,
            unlinked: false,
            handles: 0,
            kids: 0,
        };
        Self::add_node(&mut inner, ino, &node);
        Self::trim_idle(&mut inner);
        let n = inner.nodes.len();
        drop(inner);
        publish_count(n);
        (ino, node)
    }

    /// [`InodeTable::observe`] of a name bound to `node` of the same kind (or with local
    /// state, which keeps its attributes).
    fn refresh(node: &mut Node, obs: Observed, exp: Option<Instant>) {
        let ino = node.attr.ino;
        if node.writers > 0 || node.local {
            return;
        }
        if node.attr.kind == obs.kind && obs.kind == FileKind::Dir {
            // A listing knows nothing about a directory's attributes: keep what we
            // know unless this observation read the marker's metadata.
            if obs.attr_template.from_meta {
                // What this mount knows in memory (entry changes, links) stays.
                let old = std::mem::replace(&mut node.attr, obs.attr_template);
                node.attr.ino = ino;
                node.attr.nlink = old.nlink;
                node.attr.mtime = node.attr.mtime.max(old.mtime);
                node.attr.ctime = node.attr.ctime.max(old.ctime);
            }
            node.valid_until = exp;
            return;
        }
        if node.attr.kind == obs.kind {
            let mut attr = obs.attr_template;
            attr.ino = ino;
            let mut exp = exp;
            if !attr.from_meta && node.attr.from_meta && node.etag == obs.etag {
                // A listing of an unchanged object: keep what HEAD told us, until it
                // expires. A listing cannot vouch for it: a CopyObject onto itself
                // (a chmod by another client) changes the metadata and keeps the ETag.
                let (size, mtime) = (attr.size, attr.mtime);
                attr = node.attr.clone();
                attr.merge_listing(size, Some(mtime));
                exp = node.valid_until;
            }
            if node.etag == obs.etag {
                let same_meta = (attr.perm, attr.uid, attr.gid, attr.mtime)
                    == (
                        node.attr.perm,
                        node.attr.uid,
                        node.attr.gid,
                        node.attr.mtime,
                    );
                attr.ctime = if same_meta {
                    // Unchanged object and attributes: the ctime this mount keeps
                    // is the true one. Last-Modified is only when the upload
                    // landed (after close, in whole seconds): it must not move a
                    // ctime that no change of the file moved.
                    node.attr.ctime
                } else {
                    // Attributes changed elsewhere (CopyObject onto itself keeps
                    // the ETag): the change is at least as late as Last-Modified.
                    attr.ctime.max(node.attr.ctime)
                };
            }
            // HEAD of a link reports the *target's* ETag and a listing the
            // link's own, so ETags cannot tell whether a link was re-pointed. A
            // known target is kept until a HEAD-based lookup brings a new one.
            if obs.symlink_target.is_some() || obs.kind != FileKind::Symlink {
                node.symlink_target = obs.symlink_target;
            }
            if let Some(t) = &node.symlink_target {
                // A link's size is its target's length, not the object's.
                attr.size = t.len() as u64;
            }
            node.attr = attr;
            node.valid_until = exp;
            node.etag = obs.etag;
            node.crc64 = obs.crc64;
            node.object_type = obs.object_type;
            if let Some(m) = obs.user_meta {
                node.user_meta = m;
            }
            if obs.content_type.is_some() {
                node.content_type = obs.content_type;
            }
        }
    }

    /// Creates (or replaces) a node for something this mount just created.
    pub fn insert_local(&self, parent: Ino, name: &str, attr: Attr, local: bool) -> (Ino, Node) {
        self.changed();
        let exp = self.expiry();
        let mut inner = self.lock();
        let k = (parent, name.to_string());
        inner.negative.remove(&k);
        if let Some(old) = inner.nodes.child(parent, name)
            && let Some(n) = inner.nodes.get_mut(&old)
        {
            n.set_unlinked(true);
        }
        let ino = inner.next_ino;
        inner.next_ino += 1;
        let mut attr = attr;
        attr.ino = ino;
        attr.from_meta = true;
        let node = Node {
            parent,
            name: name.to_string(),
            attr,
            valid_until: exp,
            etag: String::new(),
            crc64: None,
            object_type: ObjectType::Normal,
            user_meta: BTreeMap::new(),
            content_type: None,
            symlink_target: None,
            lookups: 0,
            writers: 0,
            local,
            unlinked: false,
            handles: 0,
            kids: 0,
        };
        Self::add_node(&mut inner, ino, &node);
        if local {
            inner.local_set.insert(ino);
        }
        Self::trim_idle(&mut inner);
        let n = inner.nodes.len();
        drop(inner);
        publish_count(n);
        (ino, node)
    }

    /// Sets a directory's link count from a listing (an observation, not a local change).
    pub fn set_dir_links(&self, ino: Ino, nlink: u32) {
        if let Some(n) = self.lock().nodes.get_mut(&ino)
            && n.kind() == FileKind::Dir
        {
            n.set_nlink(nlink);
        }
    }

    /// Marks the node's cached attributes fresh again.
    pub fn touch_valid(&self, ino: Ino) {
        let exp = self.expiry();
        let mut inner = self.lock();
        let exp = inner.nodes.cx.expiry(exp);
        if let Some(n) = inner.nodes.get_mut(&ino) {
            n.set_valid(exp);
        }
    }

    /// Forces the next lookup/getattr of this node to ask OSS.
    pub fn invalidate(&self, ino: Ino) {
        if let Some(n) = self.lock().nodes.get_mut(&ino) {
            n.set_valid(0);
        }
        self.changed();
    }

    /// Unbinds `(parent, name)` after an unlink/rmdir; the node is marked unlinked.
    pub fn remove_child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.changed();
        let mut inner = self.lock();
        let ino = inner.nodes.unbind(parent, name)?;
        if let Some(n) = inner.nodes.get_mut(&ino) {
            n.set_unlinked(true);
            n.set_local(false);
        }
        Self::free_if_unreferenced(&mut inner, ino);
        if !self.ttl.is_zero()
            && let Some(exp) = Instant::now().checked_add(self.ttl)
        {
            inner.negative.insert((parent, name.to_string()), exp);
        }
        Some(ino)
    }

    /// Moves a binding (rename). Whatever `(new_parent, new_name)` was bound to is
    /// unlinked. Returns the moved inode.
    pub fn rename(&self, parent: Ino, name: &str, new_parent: Ino, new_name: &str) -> Option<Ino> {
        self.changed();
        let mut inner = self.lock();
        let ino = inner.nodes.unbind(parent, name)?;
        let nk = (new_parent, new_name.to_string());
        let mut old_parent = None;
        if let Some(n) = inner.nodes.get_mut(&ino) {
            old_parent = Some(n.parent);
            n.parent = new_parent;
            n.set_name(new_name);
        }
        if let Some(old) = inner.nodes.bind(ino) {
            if let Some(n) = inner.nodes.get_mut(&old) {
                n.set_unlinked(true);
                n.set_local(false);
            }
            Self::free_if_unreferenced(&mut inner, old);
        }
        inner.negative.remove(&nk);
        if let Some(op) = old_parent.filter(|&op| op != new_parent) {
            if let Some(p) = inner.nodes.get_mut(&new_parent) {
                p.kids += 1;
            }
            if let Some(p) = inner.nodes.get_mut(&op) {
                p.kids = p.kids.saturating_sub(1);
            }
            Self::free_if_unreferenced(&mut inner, op);
        }
        if let Some(exp) = Instant::now().checked_add(self.ttl)
            && !self.ttl.is_zero()
        {
            inner.negative.insert((parent, name.to_string()), exp);
        }
        Some(ino)
    }

    /// Children of `parent` that exist only locally (created, not yet uploaded).
    pub fn local_children(&self, parent: Ino) -> Vec<(String, Ino, Attr)> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let nodes = &inner.nodes;
        // Drop entries that are no longer local while we are here.
        inner
            .local_set
            .retain(|ino| nodes.get(ino).is_some_and(|n| n.local() && !n.unlinked()));
        let mut out: Vec<(String, Ino, Attr)> = inner
            .local_set
            .iter()
            .filter(|ino| nodes.get(ino).is_some_and(|n| n.parent == parent))
            .filter_map(|&ino| nodes.node(ino).map(|n| (n.name, ino, n.attr)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn add_lookup(&self, ino: Ino, n: u64) {
        if let Some(node) = self.lock().nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_add(n);
        }
    }

    /// Kernel `forget`: lowers the lookup count and frees the node when nothing holds
    /// it any more (see the module docs, Lifecycle).
    pub fn forget(&self, ino: Ino, n: u64) {
        self.forget_many(&[(ino, n)]);
    }

    /// Kernel `batch_forget`: [`InodeTable::forget`] for many nodes under one lock.
    /// True when this freed enough that memory should be handed back to the system
    /// (the caller drops the other caches of the walk, then asks malloc; see
    /// [`TRIM_FREES`]).
    pub fn forget_many(&self, list: &[(Ino, u64)]) -> bool {
        let mut inner = self.lock();
        for &(ino, n) in list {
            if let Some(node) = inner.nodes.get_mut(&ino) {
                node.lookups = node.lookups.saturating_sub(n);
                if node.lookups == 0 {
                    Self::free_if_unreferenced(&mut inner, ino);
                }
            }
        }
        Self::trim_idle(&mut inner);
        let n = inner.nodes.len();
        // Also when the table has (nearly) emptied: the last batch of a walk the kernel
        // forgot is returned too.
        let since = inner.frees - inner.trimmed_at;
        let trim = since >= TRIM_FREES || (since >= 1024 && n <= 1024);
        if trim {
            inner.trimmed_at = inner.frees;
            inner.nodes.shrink();
            inner.idle.shrink_to_fit();
            shrink_map(&mut inner.complete);
            shrink_map(&mut inner.freed_in);
            shrink_map(&mut inner.negative);
        }
        drop(inner);
        publish_count(n);
        trim
    }

    /// An open handle holds `ino` until [`InodeTable::unpin`].
    pub fn pin(&self, ino: Ino) {
        if let Some(node) = self.lock().nodes.get_mut(&ino) {
            node.add_handles(1);
        }
    }

    /// A handle on `ino` was released: the node is freed if nothing else holds it.
    pub fn unpin(&self, ino: Ino) {
        let mut inner = self.lock();
        if let Some(node) = inner.nodes.get_mut(&ino) {
            node.add_handles(-1);
            Self::free_if_unreferenced(&mut inner, ino);
        }
        let n = inner.nodes.len();
        drop(inner);
        publish_count(n);
    }

    /// The count of freed nodes; take it when a listing starts and pass it to
    /// [`InodeTable::mark_complete_listed`], which refuses to mark the directory
    /// complete if one of its children was freed meanwhile (the listing registered it,
    /// the table no longer knows it, so completeness would call it missing).
    pub fn free_epoch(&self) -> u64 {
        self.lock().frees
    }

    fn add_node(inner: &mut Inner, ino: Ino, node: &Node) {
        if let Some(p) = inner.nodes.get_mut(&node.parent) {
            p.kids += 1;
        }
        inner.nodes.insert(ino, node);
        if let Some(old) = inner.nodes.bind(ino) {
            // Replaced (the kind changed, or created over): the old node stays while held.
            Self::free_if_unreferenced(inner, old);
        }
        inner.idle.push_back(ino);
    }

    /// Frees the oldest nodes the kernel never referenced beyond [`IDLE_CAP`], and
    /// those at the front whose attributes expired (they are only a cache then).
    fn trim_idle(inner: &mut Inner) {
        let now = inner.nodes.cx.expiry(Some(Instant::now()));
        let grace = IDLE_GRACE.as_nanos() as u64;
        while let Some(&ino) = inner.idle.front() {
            let cached = inner.nodes.get(&ino).is_some_and(|n| {
                n.unreferenced() && n.valid() != 0 && n.valid().saturating_add(grace) > now
            });
            if cached && inner.idle.len() <= IDLE_CAP {
                break;
            }
            inner.idle.pop_front();
            Self::free_if_unreferenced(inner, ino);
        }
    }

    /// Frees `ino` if nothing holds it, then its parent if that was its last hold.
    fn free_if_unreferenced(inner: &mut Inner, ino: Ino) {
        let mut cur = ino;
        while cur != ROOT_INO && inner.nodes.get(&cur).is_some_and(|n| n.unreferenced()) {
            if inner.nodes.unbind_node(cur) {
                // The name still exists: its directory must not answer "no such file".
                if let Some(p) = inner.nodes.get(&cur).map(|n| n.parent) {
                    inner.complete.remove(&p);
                }
            }
            let Some(node) = inner.nodes.remove(&cur) else {
                break;
            };
            inner.complete.remove(&cur);
            inner.local_set.remove(&cur);
            inner.frees += 1;
            if inner.freed_in.len() >= FREED_IN_CAP {
                inner.freed_in.clear();
                inner.freed_floor = inner.frees;
            }
            let frees = inner.frees;
            inner.freed_in.insert(node.parent, frees);
            inner.freed_in.remove(&cur);
            match inner.nodes.get_mut(&node.parent) {
                Some(p) => {
                    p.kids = p.kids.saturating_sub(1);
                    cur = node.parent;
                }
                None => break,
            }
        }
    }

    /// Number of inodes known (for tests, stats and the `ossmount_inodes` gauge).
    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The nodes, packed (see [`packed`]), and the index of their names: `(parent, name)` →
/// number. The index holds only numbers and hashes the node's own parent and name, so
/// each name is stored once.
/// Invariant: every number in `names` is in `map` and sits under its node's current
/// `(parent, name)`: a node is unbound before its name changes or it is removed.
#[derive(Debug)]
struct Nodes {
    /// Boxed: the map's slots stay small (a hash map has up to twice the slots of its
    /// entries, and touches them all), and growing it moves pointers, not nodes.
    map: HashMap<Ino, Box<Packed>>,
    names: hashbrown::HashTable<Ino>,
    hasher: std::collections::hash_map::RandomState,
    cx: PackContext,
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes {
            map: HashMap::new(),
            names: hashbrown::HashTable::new(),
            hasher: Default::default(),
            cx: PackContext::new(),
        }
    }
}

impl Nodes {
    fn get(&self, ino: &Ino) -> Option<&Packed> {
        self.map.get(ino).map(|b| &**b)
    }

    fn get_mut(&mut self, ino: &Ino) -> Option<&mut Packed> {
        self.map.get_mut(ino).map(|b| &mut **b)
    }

    /// The node `ino`, unpacked.
    fn node(&self, ino: Ino) -> Option<Node> {
        self.get(&ino).map(|p| p.unpack(ino, &self.cx))
    }

    /// Replaces what node `ino` holds by `node`, except its parent and name (which the
    /// index hashes: only [`InodeTable::rename`] changes them).
    fn store(&mut self, ino: Ino, node: &Node) {
        let Nodes { map, cx, .. } = self;
        if let Some(slot) = map.get_mut(&ino) {
            let mut packed = Packed::pack(node, cx);
            packed.parent = slot.parent;
            std::mem::swap(&mut packed.name, &mut slot.name);
            **slot = packed;
        }
    }

    /// Runs `f` on node `ino` unpacked, then stores it back (see [`Nodes::store`]).
    fn modify<R>(&mut self, ino: Ino, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        let mut node = self.node(ino)?;
        let r = f(&mut node);
        self.store(ino, &node);
        Some(r)
    }

    /// Adds a node without binding its name (see [`Nodes::bind`]).
    fn insert(&mut self, ino: Ino, node: &Node) {
        let packed = Packed::pack(node, &mut self.cx);
        self.map.insert(ino, Box::new(packed));
    }

    /// Removes a node; it must have been unbound ([`Nodes::unbind_node`]).
    fn remove(&mut self, ino: &Ino) -> Option<Box<Packed>> {
        self.map.remove(ino)
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// Gives back the room of freed nodes when the maps are mostly empty.
    fn shrink(&mut self) {
        if self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to_fit();
            let Nodes {
                map, names, hasher, ..
            } = self;
            names.shrink_to_fit(|i| {
                map.get(i)
                    .map_or(0, |m| Self::hash(hasher, m.parent, m.name.as_str()))
            });
        }
    }

    fn hash(hasher: &std::collections::hash_map::RandomState, parent: Ino, name: &str) -> u64 {
        use std::hash::BuildHasher;
        hasher.hash_one((parent, name))
    }

    /// The node bound to `(parent, name)`.
    fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        let h = Self::hash(&self.hasher, parent, name);
        let map = &self.map;
        self.names
            .find(h, |i| {
                map.get(i)
                    .is_some_and(|n| n.parent == parent && n.name.as_str() == name)
            })
            .copied()
    }

    /// Binds node `ino` under its own `(parent, name)`; returns the node bound there
    /// before, if another.
    fn bind(&mut self, ino: Ino) -> Option<Ino> {
        let Nodes {
            map, names, hasher, ..
        } = self;
        let n = map.get(&ino)?;
        let (parent, name) = (n.parent, n.name.as_str());
        let h = Self::hash(hasher, parent, name);
        let same = |i: &Ino| {
            map.get(i)
                .is_some_and(|m| m.parent == parent && m.name.as_str() == name)
        };
        if let Some(slot) = names.find_mut(h, same) {
            let old = std::mem::replace(slot, ino);
            return (old != ino).then_some(old);
        }
        names.insert_unique(h, ino, |i| {
            map.get(i)
                .map_or(0, |m| Self::hash(hasher, m.parent, m.name.as_str()))
        });
        None
    }

    /// Removes the binding of `(parent, name)`; returns the node that was bound.
    fn unbind(&mut self, parent: Ino, name: &str) -> Option<Ino> {
        let Nodes {
            map, names, hasher, ..
        } = self;
        let h = Self::hash(hasher, parent, name);
        let same = |i: &Ino| {
            map.get(i)
                .is_some_and(|m| m.parent == parent && m.name.as_str() == name)
        };
        names.find_entry(h, same).ok().map(|e| e.remove().0)
    }

    /// Removes the binding of node `ino` if it is the one bound under its name.
    fn unbind_node(&mut self, ino: Ino) -> bool {
        let Nodes {
            map, names, hasher, ..
        } = self;
        let Some(n) = map.get(&ino) else {
            return false;
        };
        let h = Self::hash(hasher, n.parent, n.name.as_str());
        names
            .find_entry(h, |&i| i == ino)
            .map(|e| e.remove())
            .is_ok()
    }
}

/// Sets the `ossmount_inodes` gauge.
fn publish_count(n: usize) {
    ::metrics::gauge!(crate::metrics::INODES).set(n as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(prefix: &str) -> InodeTable {
        InodeTable::new(
            prefix.to_string(),
            Duration::from_secs(60),
            AttrDefaults {
                uid: 0,
                gid: 0,
                file_perm: 0o644,
                dir_perm: 0o755,
            },
        )
    }

    fn obs(t: &InodeTable, kind: FileKind, etag: &str) -> Observed {
        Observed {
            kind,
            attr_template: t.defaults().new_attr(0, kind, 1, SystemTime::now()),
            etag: etag.to_string(),
            crc64: None,
            object_type: ObjectType::Normal,
            user_meta: None,
            content_type: None,
            symlink_target: None,
        }
    }

    #[test]
    fn keys_follow_renames_of_parents() {
        let t = table("pre/");
        assert_eq!(t.key_of(ROOT_INO).as_deref(), Some("pre/"));
        let (d, _) = t.observe(ROOT_INO, "d", obs(&t, FileKind::Dir, ""));
        let (f, _) = t.observe(d, "f", obs(&t, FileKind::File, "\"1\""));
        assert_eq!(t.key_of(d).as_deref(), Some("pre/d/"));
        assert_eq!(t.key_of(f).as_deref(), Some("pre/d/f"));
        assert_eq!(t.rename(ROOT_INO, "d", ROOT_INO, "e"), Some(d));
        assert_eq!(t.key_of(f).as_deref(), Some("pre/e/f"));
        assert_eq!(
            t.cached_lookup(ROOT_INO, "d").map(|x| x.is_none()),
            Some(true)
        );
    }

    #[test]
    fn numbers_are_stable_unless_kind_changes() {
        let t = table("");
        let (a, _) = t.observe(ROOT_INO, "a", obs(&t, FileKind::File, "\"1\""));
        let (a2, _) = t.observe(ROOT_INO, "a", obs(&t, FileKind::File, "\"2\""));
        assert_eq!(a, a2);
        // Stable while the kernel holds a reference.
        t.add_lookup(a, 2);
        t.forget(a, 1);
        let (a3, _) = t.observe(ROOT_INO, "a", obs(&t, FileKind::File, "\"2\""));
        assert_eq!(a, a3);
        let (a4, _) = t.observe(ROOT_INO, "a", obs(&t, FileKind::Dir, ""));
        assert_ne!(a, a4);
    }

    #[test]
    fn name_index_survives_growth_renames_and_replacement() {
        let t = table("");
        let (d, _) = t.observe(ROOT_INO, "d", obs(&t, FileKind::Dir, ""));
        t.add_lookup(d, 1);
        let mut inos = Vec::new();
        for i in 0..5000 {
            let (ino, _) = t.observe(d, &format!("f{i}"), obs(&t, FileKind::File, "\"1\""));
            t.add_lookup(ino, 1);
            inos.push(ino);
        }
        for (i, ino) in inos.iter().enumerate() {
            assert_eq!(t.child(d, &format!("f{i}")), Some(*ino));
        }
        assert_eq!(t.rename(d, "f1", ROOT_INO, "moved"), Some(inos[1]));
        assert_eq!(t.child(d, "f1"), None);
        assert_eq!(t.child(ROOT_INO, "moved"), Some(inos[1]));
        // Renamed over an existing name: the old node is unbound (and kept while held).
        assert_eq!(t.rename(d, "f2", d, "f3"), Some(inos[2]));
        assert_eq!(t.child(d, "f3"), Some(inos[2]));
        assert!(t.get(inos[3]).is_some_and(|n| n.unlinked));
        t.forget(inos[3], 1);
        assert!(t.get(inos[3]).is_none());
        assert_eq!(t.child(d, "f3"), Some(inos[2]));
        // A kind change binds a new node; freeing the old one leaves the new binding.
        let (dir4, _) = t.observe(d, "f4", obs(&t, FileKind::Dir, ""));
        assert_ne!(dir4, inos[4]);
        t.forget(inos[4], 1);
        assert_eq!(t.child(d, "f4"), Some(dir4));
        assert_eq!(t.key_of(inos[1]).as_deref(), Some("moved"));
    }

    #[test]
    fn negative_cache_and_local_nodes() {
        let t = table("");
        t.set_negative(ROOT_INO, "x");
        assert!(matches!(t.cached_lookup(ROOT_INO, "x"), Some(None)));
        let a = t
            .defaults()
            .new_attr(0, FileKind::File, 0, SystemTime::now());
        let (x, _) = t.insert_local(ROOT_INO, "x", a, true);
        assert!(matches!(t.cached_lookup(ROOT_INO, "x"), Some(Some((i, _))) if i == x));
        // OSS saying "not found" does not hide a file we are creating.
        t.set_negative(ROOT_INO, "x");
        assert!(matches!(t.cached_lookup(ROOT_INO, "x"), Some(Some(_))));
        assert_eq!(t.local_children(ROOT_INO).len(), 1);
    }
}
