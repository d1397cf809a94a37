//! Whole directory listings, reused for one TTL.
//!
//! A readdir that lists a directory to the end records its entries (name, inode, kind);
//! a readdir of the same directory that starts within `metadata_ttl` of when that listing
//! finished replays them with no request, so `ls -l` twice within the TTL costs nothing
//! the second time (its stats find the attributes cached too, see `attr_fanout`).
//!
//! Pitfalls:
//! - A listing must not hide what this mount changed after it was taken: like the probe
//!   pages (`lookup_page`), it is used only while the inode table's change count is what it
//!   was when the listing began. Any local change retires it; the next readdir lists
//!   OSS again. Changes by other clients show up after at most one TTL, the same
//!   staleness as every other cached answer.
//! - Bounded: listings of more than [`MAX_ENTRIES`] entries are not kept, and at most
//!   [`MAX_DIRS`] directories are (expired ones are dropped first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::attr::{FileKind, Ino};
use super::lock;

/// Largest listing kept.
pub(crate) const MAX_ENTRIES: usize = 100_000;
/// Most directories whose listing is kept.
const MAX_DIRS: usize = 256;

/// One entry of a kept listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedName {
    pub(crate) name: String,
    pub(crate) ino: Ino,
    pub(crate) kind: FileKind,
}

#[derive(Debug)]
struct Kept {
    until: Instant,
    changes: u64,
    entries: Arc<Vec<ListedName>>,
}

/// Kept listings by directory inode.
#[derive(Debug, Default)]
pub(crate) struct ListingCache {
    dirs: Mutex<HashMap<Ino, Kept>>,
}

impl ListingCache {
    /// Keeps the listing of `dir` that began when the change count was `changes` and
    /// finished now, for `ttl`.
    pub(crate) fn keep(&self, dir: Ino, changes: u64, ttl: Duration, entries: Vec<ListedName>) {
        if ttl.is_zero() || entries.len() > MAX_ENTRIES {
            return;
        }
        let Some(until) = Instant::now().checked_add(ttl) else {
            return;
        };
        let mut dirs = lock(&self.dirs);
        let now = Instant::now();
        dirs.retain(|_, k| k.until > now);
        if dirs.len() >= MAX_DIRS
            && let Some(first) = dirs.iter().min_by_key(|(_, k)| k.until).map(|(i, _)| *i)
        {
            dirs.remove(&first);
        }
        dirs.insert(
            dir,
            Kept {
                until,
                changes,
                entries: Arc::new(entries),
            },
        );
    }

    /// The kept listing of `dir`, if it is fresh and nothing changed locally since.
    pub(crate) fn get(&self, dir: Ino, changes_now: u64) -> Option<Arc<Vec<ListedName>>> {
        let mut dirs = lock(&self.dirs);
        let k = dirs.get(&dir)?;
        if k.until > Instant::now() && k.changes == changes_now {
            return Some(k.entries.clone());
        }
        dirs.remove(&dir);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<ListedName> {
        (0..n)
            .map(|i| ListedName {
                name: format!("f{i}"),
                ino: i as Ino + 2,
                kind: FileKind::File,
            })
            .collect()
    }

    #[test]
    fn replays_until_a_local_change_or_the_ttl() {
        let c = ListingCache::default();
        c.keep(5, 7, Duration::from_secs(60), names(3));
        assert_eq!(c.get(5, 7).map(|v| v.len()), Some(3));
        assert!(c.get(6, 7).is_none());
        assert!(c.get(5, 8).is_none(), "a local change retires it");
        assert!(c.get(5, 7).is_none(), "and it stays retired");
        c.keep(5, 7, Duration::ZERO, names(3));
        assert!(c.get(5, 7).is_none(), "a zero TTL keeps nothing");
        c.keep(5, 7, Duration::from_secs(60), names(MAX_ENTRIES + 1));
        assert!(c.get(5, 7).is_none(), "too large to keep");
    }
}
