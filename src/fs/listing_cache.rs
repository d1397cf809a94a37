//! Whole directory listings, reused for one TTL.
//!
//! A readdir that lists a directory to the end records its entries (name, inode, kind,
//! and what the listing said of each: size, mtime, ETag, object type); a readdir of the
//! same directory that starts within `metadata_ttl` of when that listing finished replays
//! them with no request, so `ls -l` twice within the TTL costs nothing the second time
//! (its stats find the attributes cached too, see `attr_fanout`), and with
//! `--metadata-ttl indefinite` a second walk of a tree costs nothing at all.
//!
//! An entry whose node was freed since (the kernel forgot it and nothing else held it,
//! see `inode`) is registered again from what the listing said, exactly as a new LIST
//! would: a walk after the kernel dropped its caches still sends no request.
//!
//! Pitfalls:
//! - A listing must not hide what this mount changed after it was taken: like the probe
//!   pages (`lookup_page`), it is used only while the inode table's change count is what it
//!   was when the listing began. Any local change retires it; the next readdir lists
//!   OSS again. Changes by other clients show up after at most one TTL, the same
//!   staleness as every other cached answer.
//! - Keyed by the directory's key, not its inode: a directory forgotten by the kernel
//!   comes back under a new number, and its listing still applies. A rename changes
//!   keys but is a local change, which retires every kept listing anyway.
//! - Bounded: listings of more than [`MAX_ENTRIES`] entries are not kept, and at most
//!   [`MAX_KEPT`] entries are kept over all directories (the oldest listings go first;
//!   expired ones whenever a listing is kept or [`ListingCache::drop_expired`] runs).
//!   An entry costs its name and ETag bytes plus 40 bytes; with the default TTL of one
//!   second only the listings of the last second are kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::attr::{FileKind, Ino};
use super::lock;
use crate::store::ObjectType;

/// Largest listing kept.
pub(crate) const MAX_ENTRIES: usize = 100_000;
/// Most entries kept over all directories.
pub(crate) const MAX_KEPT: usize = 1_000_000;

/// What a listing said of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed<'a> {
    pub(crate) name: &'a str,
    pub(crate) ino: Ino,
    pub(crate) kind: FileKind,
    pub(crate) size: u64,
    pub(crate) mtime: SystemTime,
    pub(crate) etag: &'a str,
    pub(crate) object_type: ObjectType,
}

#[derive(Debug, Clone)]
struct Item {
    ino: Ino,
    size: u64,
    /// Seconds and nanoseconds after the epoch (clamped at it).
    mtime_s: u64,
    mtime_ns: u32,
    /// Ends of the name and of the ETag in `Listing::text`.
    name_end: u32,
    etag_end: u32,
    kind: FileKind,
    object_type: ObjectType,
}

/// A directory's entries, compactly: names and ETags in one string.
#[derive(Debug, Default, Clone)]
pub(crate) struct Listing {
    text: String,
    items: Vec<Item>,
}

impl Listing {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Adds an entry; false (nothing added) once the listing is too large to keep.
    pub(crate) fn push(&mut self, e: &Listed<'_>) -> bool {
        if self.items.len() >= MAX_ENTRIES
            || self.text.len() + e.name.len() + e.etag.len() > u32::MAX as usize
        {
            return false;
        }
        self.text.push_str(e.name);
        let name_end = self.text.len() as u32;
        self.text.push_str(e.etag);
        let mtime = e.mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.items.push(Item {
            ino: e.ino,
            size: e.size,
            mtime_s: mtime.as_secs(),
            mtime_ns: mtime.subsec_nanos(),
            name_end,
            etag_end: self.text.len() as u32,
            kind: e.kind,
            object_type: e.object_type,
        });
        true
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Listed<'_>> {
        let mut start = 0usize;
        self.items.iter().map(move |it| {
            let (n, t) = (it.name_end as usize, it.etag_end as usize);
            let e = Listed {
                name: self.text.get(start..n).unwrap_or_default(),
                ino: it.ino,
                kind: it.kind,
                size: it.size,
                mtime: UNIX_EPOCH + Duration::new(it.mtime_s, it.mtime_ns),
                etag: self.text.get(n..t).unwrap_or_default(),
                object_type: it.object_type,
            };
            start = t;
            e
        })
    }

    fn shrink(&mut self) {
        self.text.shrink_to_fit();
        self.items.shrink_to_fit();
    }
}

#[derive(Debug)]
struct Kept {
    until: Instant,
    changes: u64,
    /// Position in [`Inner::order`].
    seq: u64,
    entries: Arc<Listing>,
}

#[derive(Debug, Default)]
struct Inner {
    dirs: HashMap<String, Kept>,
    /// Kept listings oldest first: sequence number → directory key.
    order: BTreeMap<u64, String>,
    next_seq: u64,
    /// Entries over all kept listings.
    entries: usize,
}

impl Inner {
    fn remove(&mut self, dir: &str) {
        if let Some(k) = self.dirs.remove(dir) {
            self.order.remove(&k.seq);
            self.entries -= k.entries.len();
        }
    }

    /// Drops expired listings from the oldest on, up to the first fresh one (cheap;
    /// with one TTL for all, the oldest expire first).
    fn drop_oldest_expired(&mut self, now: Instant) {
        while let Some((&seq, dir)) = self.order.first_key_value() {
            match self.dirs.get(dir) {
                Some(k) if k.until > now => break,
                Some(_) => {
                    let dir = dir.clone();
                    self.remove(&dir);
                }
                None => {
                    self.order.remove(&seq);
                }
            }
        }
    }

    fn drop_expired(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .dirs
            .iter()
            .filter(|(_, k)| k.until <= now)
            .map(|(d, _)| d.clone())
            .collect();
        for d in expired {
            self.remove(&d);
        }
    }
}

/// Kept listings by directory key.
#[derive(Debug, Default)]
pub(crate) struct ListingCache {
    inner: Mutex<Inner>,
    /// A task drops the expired listings as they expire ([`Self::claim_sweep`]).
    sweep_scheduled: AtomicBool,
}

impl ListingCache {
    /// Keeps the listing of the directory `dir` (its key) that began when the change
    /// count was `changes` and finished now, for `ttl`.
    pub(crate) fn keep(&self, dir: &str, changes: u64, ttl: Duration, mut entries: Listing) {
        if ttl.is_zero() || entries.len() > MAX_ENTRIES {
            return;
        }
        let Some(until) = Instant::now().checked_add(ttl) else {
            return;
        };
        entries.shrink();
        let mut inner = lock(&self.inner);
        inner.remove(dir);
        inner.drop_oldest_expired(Instant::now());
        if inner.entries + entries.len() > MAX_KEPT {
            inner.drop_expired(Instant::now());
        }
        while inner.entries + entries.len() > MAX_KEPT {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(k) = inner.dirs.remove(&oldest) {
                inner.entries -= k.entries.len();
            }
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.order.insert(seq, dir.to_string());
        inner.entries += entries.len();
        inner.dirs.insert(
            dir.to_string(),
            Kept {
                until,
                changes,
                seq,
                entries: Arc::new(entries),
            },
        );
    }

    /// The kept listing of `dir`, if it is fresh and nothing changed locally since.
    pub(crate) fn get(&self, dir: &str, changes_now: u64) -> Option<Arc<Listing>> {
        let mut inner = lock(&self.inner);
        let k = inner.dirs.get(dir)?;
        if k.until > Instant::now() && k.changes == changes_now {
            return Some(k.entries.clone());
        }
        inner.remove(dir);
        None
    }

    /// Drops the expired listings (they are otherwise dropped only when the next
    /// listing is kept), so a walk that ended gives their memory back. Returns how many
    /// entries went.
    pub(crate) fn drop_expired(&self) -> usize {
        let mut inner = lock(&self.inner);
        let before = inner.entries;
        inner.drop_expired(Instant::now());
        if inner.dirs.len() < inner.dirs.capacity() / 4 {
            inner.dirs.shrink_to_fit();
        }
        before - inner.entries
    }

    /// When the newest kept listing expires (then all kept now have).
    pub(crate) fn newest_expiry(&self) -> Option<Instant> {
        let inner = lock(&self.inner);
        let (_, dir) = inner.order.last_key_value()?;
        inner.dirs.get(dir).map(|k| k.until)
    }

    /// Whether a sweep is scheduled (a cheap check before [`Self::newest_expiry`], which
    /// locks, on every forget).
    pub(crate) fn sweep_scheduled(&self) -> bool {
        self.sweep_scheduled.load(Ordering::Acquire)
    }

    /// Whether the caller is the one to schedule the sweep of expired listings (false
    /// while one runs); the sweep calls [`Self::sweep_done`] when it ends.
    pub(crate) fn claim_sweep(&self) -> bool {
        !self.sweep_scheduled.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn sweep_done(&self) {
        self.sweep_scheduled.store(false, Ordering::Release);
    }

    /// Drops the listings that expired, oldest first (cheap: it stops at the first fresh
    /// one), and gives the map's memory back once it has mostly emptied. Called on every
    /// forget, so the listings of a walk the kernel forgot go one TTL after the walk
    /// whatever the size of the forget batches.
    pub(crate) fn drop_oldest_expired(&self) {
        let mut inner = lock(&self.inner);
        inner.drop_oldest_expired(Instant::now());
        if inner.dirs.len() < inner.dirs.capacity() / 4 {
            inner.dirs.shrink_to_fit();
        }
    }

    /// Entries kept over all listings.
    #[cfg(test)]
    fn kept_entries(&self) -> usize {
        lock(&self.inner).entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Listing {
        let mut l = Listing::default();
        for i in 0..n {
            let name = format!("f{i}");
            l.push(&Listed {
                name: &name,
                ino: i as Ino + 2,
                kind: FileKind::File,
                size: i as u64,
                mtime: UNIX_EPOCH + Duration::new(1_700_000_000 + i as u64, 7),
                etag: if i % 2 == 0 { "\"E\"" } else { "" },
                object_type: ObjectType::Normal,
            });
        }
        l
    }

    #[test]
    fn entries_read_back_as_pushed() {
        let l = names(3);
        let v: Vec<Listed<'_>> = l.iter().collect();
        assert_eq!(v.len(), 3);
        assert_eq!(
            (v[1].name, v[1].ino, v[1].size, v[1].etag),
            ("f1", 3, 1, "")
        );
        assert_eq!((v[2].name, v[2].etag), ("f2", "\"E\""));
        assert_eq!(v[2].mtime, UNIX_EPOCH + Duration::new(1_700_000_002, 7));
    }

    #[test]
    fn replays_until_a_local_change_or_the_ttl() {
        let c = ListingCache::default();
        c.keep("d/", 7, Duration::from_secs(60), names(3));
        assert_eq!(c.get("d/", 7).map(|v| v.len()), Some(3));
        assert!(c.get("e/", 7).is_none());
        assert!(c.get("d/", 8).is_none(), "a local change retires it");
        assert!(c.get("d/", 7).is_none(), "and it stays retired");
        c.keep("d/", 7, Duration::ZERO, names(3));
        assert!(c.get("d/", 7).is_none(), "a zero TTL keeps nothing");
        let mut big = names(MAX_ENTRIES);
        let one_more = Listed {
            name: "x",
            ino: 1,
            kind: FileKind::Dir,
            size: 0,
            mtime: UNIX_EPOCH,
            etag: "",
            object_type: ObjectType::Normal,
        };
        assert!(!big.push(&one_more), "too large to keep");
    }

    #[test]
    fn bounded_by_entries_over_all_directories() {
        let c = ListingCache::default();
        let per = MAX_ENTRIES;
        let dirs = MAX_KEPT / per + 2;
        for d in 0..dirs {
            c.keep(&format!("d{d}/"), 1, Duration::from_secs(3600), names(per));
        }
        assert!(c.kept_entries() <= MAX_KEPT);
        assert!(c.get("d0/", 1).is_none(), "the oldest went first");
        assert!(c.get(&format!("d{}/", dirs - 1), 1).is_some());
        c.keep("short/", 1, Duration::from_nanos(1), names(5));
        std::thread::sleep(Duration::from_millis(2));
        let before = c.kept_entries();
        c.drop_expired();
        assert_eq!(c.kept_entries(), before - 5);
    }

    #[test]
    fn expired_listings_go_oldest_first_and_fresh_ones_stay() {
        let c = ListingCache::default();
        for d in 0..100 {
            c.keep(&format!("old{d}/"), 1, Duration::from_millis(20), names(10));
        }
        c.keep("fresh/", 1, Duration::from_secs(3600), names(4));
        c.drop_oldest_expired();
        assert_eq!(c.kept_entries(), 1004, "nothing has expired yet");
        std::thread::sleep(Duration::from_millis(40));
        c.drop_oldest_expired();
        assert_eq!(
            c.kept_entries(),
            4,
            "all expired ones went, the fresh one stayed"
        );
        assert!(c.get("fresh/", 1).is_some());
        let inner = lock(&c.inner);
        assert!(inner.dirs.capacity() < 100, "the map gave its room back");
        assert_eq!(inner.order.len(), 1);
    }
}
