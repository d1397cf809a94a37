//! The inode table: numbers for (parent, name) pairs, with cached attributes.
//!
//! Design:
//! - An inode is identified by its parent inode and its name, never by its key: a node's
//!   key is rebuilt by walking up the parents ([`InodeTable::key_of`]). Renaming a
//!   directory therefore moves one node, and everything below it follows.
//! - Numbers are stable while mounted: a node stays in the table (and keeps its number)
//!   until the name is unlinked, renamed over, or found to have changed kind. `forget`
//!   only lowers the kernel's lookup count; it never frees the number, so a file seen
//!   again gets the number it had. The cost is memory proportional to the names seen.
//! - Attributes are cached with an expiry (`metadata_ttl`); a negative cache remembers
//!   names that did not exist, with the same expiry. Our own changes update both at once.
//! - A node with open writers (`writers > 0`) or created locally and not yet uploaded
//!   (`local`) is authoritative: its attributes are never replaced by what OSS says.
//! - A directory whose whole content is known (listed to the end, or created empty here)
//!   is *complete* for one TTL: a name it does not hold is answered "no such file"
//!   without asking OSS, so `create` in it costs no HEAD+LIST. The same staleness as
//!   the negative cache: another client's new file shows up after at most one TTL.
//!
//! All state is behind one `std::sync::Mutex`, held only for short, non-async sections.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::attr::{Attr, AttrDefaults, FileKind, Ino};
use crate::store::ObjectType;

pub const ROOT_INO: Ino = 1;
/// Bound of the negative cache; it is cleared when it grows past this.
const NEGATIVE_CAP: usize = 100_000;

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
    pub symlink_target: Option<String>,
    /// Kernel lookup count (informational; numbers are never reused).
    pub lookups: u64,
    /// Open handles that may write this file.
    pub writers: u32,
    /// Created here and not uploaded yet: OSS does not know it.
    pub local: bool,
    /// Unlinked while open: pending uploads must be dropped.
    pub unlinked: bool,
}

#[derive(Debug)]
struct Inner {
    nodes: HashMap<Ino, Node>,
    children: HashMap<(Ino, String), Ino>,
    negative: HashMap<(Ino, String), Instant>,
    /// Directories whose every child is in `children`, until when, and how many entries
    /// their last listing had.
    complete: HashMap<Ino, CompleteDir>,
    /// Inodes that may still be `local` (a superset: entries are checked on use), so
    /// listing them does not scan every inode.
    local_set: HashSet<Ino>,
    next_ino: Ino,
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
    /// before the count moved may predate one of our own changes (see `probe`).
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
    pub symlink_target: Option<String>,
}

impl InodeTable {
    /// `prefix` is "" or ends with `/`.
    pub fn new(prefix: String, ttl: Duration, defaults: AttrDefaults) -> Self {
        let mut nodes = HashMap::new();
        let root_attr = defaults.new_attr(ROOT_INO, FileKind::Dir, 0, SystemTime::now());
        nodes.insert(
            ROOT_INO,
            Node {
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
            },
        );
        InodeTable {
            inner: Mutex::new(Inner {
                nodes,
                children: HashMap::new(),
                negative: HashMap::new(),
                complete: HashMap::new(),
                local_set: HashSet::new(),
                next_ino: ROOT_INO + 1,
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

    /// A copy of the node.
    pub fn get(&self, ino: Ino) -> Option<Node> {
        self.lock().nodes.get(&ino).cloned()
    }

    /// Runs `f` on the node, if present.
    pub fn update<R>(&self, ino: Ino, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        let r = self.lock().nodes.get_mut(&ino).map(f);
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
                is_dir = Some(node.attr.kind == FileKind::Dir);
            }
            parts.push(&node.name);
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
        self.lock()
            .children
            .get(&(parent, name.to_string()))
            .copied()
    }

    /// A fresh cached answer for `(parent, name)`: `Some(Some(node))` when known to exist,
    /// `Some(None)` when known not to exist, `None` when OSS must be asked.
    pub fn cached_lookup(&self, parent: Ino, name: &str) -> Option<Option<(Ino, Node)>> {
        let mut inner = self.lock();
        let now = Instant::now();
        let k = (parent, name.to_string());
        if let Some(&ino) = inner.children.get(&k) {
            if let Some(node) = inner.nodes.get(&ino) {
                if node.writers > 0 || node.local || node.valid_until.is_some_and(|t| t > now) {
                    return Some(Some((ino, node.clone())));
                }
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
    pub fn mark_complete(&self, dir: Ino, since: Instant, entries: usize) {
        self.mark_complete_with(dir, since, entries, HashSet::new());
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
        if let Some(ino) = inner.children.get(&k).copied() {
            // A node with local state keeps existing whatever OSS says.
            if inner
                .nodes
                .get(&ino)
                .is_some_and(|n| n.writers > 0 || n.local)
            {
                return;
            }
            inner.children.remove(&k);
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
        if let Some(&ino) = inner.children.get(&k) {
            if let Some(node) = inner.nodes.get_mut(&ino) {
                if node.writers > 0 || node.local {
                    return (ino, node.clone());
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
                    return (ino, node.clone());
                }
                if node.attr.kind == obs.kind {
                    let mut attr = obs.attr_template;
                    attr.ino = ino;
                    if !attr.from_meta && node.attr.from_meta && node.etag == obs.etag {
                        // A listing of an unchanged object: keep what HEAD told us.
                        let (size, mtime) = (attr.size, attr.mtime);
                        attr = node.attr.clone();
                        attr.merge_listing(size, Some(mtime));
                    }
                    if node.etag == obs.etag {
                        // Unchanged object: a ctime moved in memory does not go back.
                        attr.ctime = attr.ctime.max(node.attr.ctime);
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
                    return (ino, node.clone());
                }
            }
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
        };
        inner.nodes.insert(ino, node.clone());
        inner.children.insert(k, ino);
        (ino, node)
    }

    /// Creates (or replaces) a node for something this mount just created.
    pub fn insert_local(&self, parent: Ino, name: &str, attr: Attr, local: bool) -> (Ino, Node) {
        self.changed();
        let exp = self.expiry();
        let mut inner = self.lock();
        let k = (parent, name.to_string());
        inner.negative.remove(&k);
        if let Some(old) = inner.children.get(&k).copied() {
            if let Some(n) = inner.nodes.get_mut(&old) {
                n.unlinked = true;
            }
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
        };
        inner.nodes.insert(ino, node.clone());
        inner.children.insert(k, ino);
        if local {
            inner.local_set.insert(ino);
        }
        (ino, node)
    }

    /// Sets a directory's link count from a listing (an observation, not a local change).
    pub fn set_dir_links(&self, ino: Ino, nlink: u32) {
        if let Some(n) = self.lock().nodes.get_mut(&ino) {
            if n.attr.kind == FileKind::Dir {
                n.attr.nlink = nlink;
            }
        }
    }

    /// Marks the node's cached attributes fresh again.
    pub fn touch_valid(&self, ino: Ino) {
        let exp = self.expiry();
        if let Some(n) = self.lock().nodes.get_mut(&ino) {
            n.valid_until = exp;
        }
    }

    /// Forces the next lookup/getattr of this node to ask OSS.
    pub fn invalidate(&self, ino: Ino) {
        if let Some(n) = self.lock().nodes.get_mut(&ino) {
            n.valid_until = None;
        }
        self.changed();
    }

    /// Unbinds `(parent, name)` after an unlink/rmdir; the node is marked unlinked.
    pub fn remove_child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.changed();
        let mut inner = self.lock();
        let ino = inner.children.remove(&(parent, name.to_string()))?;
        if let Some(n) = inner.nodes.get_mut(&ino) {
            n.unlinked = true;
            n.local = false;
        }
        if !self.ttl.is_zero() {
            if let Some(exp) = Instant::now().checked_add(self.ttl) {
                inner.negative.insert((parent, name.to_string()), exp);
            }
        }
        Some(ino)
    }

    /// Moves a binding (rename). Whatever `(new_parent, new_name)` was bound to is
    /// unlinked. Returns the moved inode.
    pub fn rename(&self, parent: Ino, name: &str, new_parent: Ino, new_name: &str) -> Option<Ino> {
        self.changed();
        let mut inner = self.lock();
        let ino = inner.children.remove(&(parent, name.to_string()))?;
        let nk = (new_parent, new_name.to_string());
        if let Some(old) = inner.children.insert(nk.clone(), ino) {
            if old != ino {
                if let Some(n) = inner.nodes.get_mut(&old) {
                    n.unlinked = true;
                    n.local = false;
                }
            }
        }
        inner.negative.remove(&nk);
        if let Some(n) = inner.nodes.get_mut(&ino) {
            n.parent = new_parent;
            n.name = new_name.to_string();
        }
        if let Some(exp) = Instant::now().checked_add(self.ttl) {
            if !self.ttl.is_zero() {
                inner.negative.insert((parent, name.to_string()), exp);
            }
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
            .retain(|ino| nodes.get(ino).is_some_and(|n| n.local && !n.unlinked));
        let mut out: Vec<(String, Ino, Attr)> = inner
            .local_set
            .iter()
            .filter_map(|ino| {
                let n = nodes.get(ino)?;
                (n.parent == parent).then(|| (n.name.clone(), *ino, n.attr.clone()))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn add_lookup(&self, ino: Ino, n: u64) {
        if let Some(node) = self.lock().nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_add(n);
        }
    }

    /// Kernel `forget`: only the count changes (numbers are never reused).
    pub fn forget(&self, ino: Ino, n: u64) {
        if let Some(node) = self.lock().nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
    }

    /// Number of inodes known (for tests and stats).
    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
        t.forget(a, 1);
        let (a3, _) = t.observe(ROOT_INO, "a", obs(&t, FileKind::File, "\"2\""));
        assert_eq!(a, a3);
        let (a4, _) = t.observe(ROOT_INO, "a", obs(&t, FileKind::Dir, ""));
        assert_ne!(a, a4);
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
