//! Small-file read-ahead: the small files of a directory read one after another.
//!
//! (Large files are prefetched within the file by `read::prefetch`; this module fetches
//! whole small *sibling* files ahead of the reader.)
//!
//! `cp -r`, `tar`, `rsync`, `cat dir/*` and data loaders walking a directory open its
//! small files one by one, and each costs a GET round trip between open and read, one at
//! a time. Once two small files of a directory have been opened for reading in listing
//! order (the order its last complete listing returned them), the next
//! [`READ_AHEAD_FILES`] small
//! files are fetched into the block cache in parallel, so the reader finds them there.
//! Every file still costs one GET: the read-ahead's GET replaces the reader's, and a
//! reader that arrives while it is in flight follows it (`read::inflight`).
//!
//! Pitfalls:
//! - Only files whose attributes are still fresh (from the listing, within
//!   `--metadata-ttl`) are fetched, pinned to the listed ETag: an expired one is
//!   revalidated by its lookup, which GETs it anyway (small files revalidate by GET), so
//!   fetching it ahead would cost a second request.
//! - Random access never triggers it (two consecutive opens in listing order are
//!   needed), so a reader jumping around a listed directory pays nothing extra; a reader
//!   that stops early leaves at most [`READ_AHEAD_FILES`] files fetched for nothing.
//! - Listing order is byte order; a shell glob sorts by locale and may differ (then this
//!   simply does not trigger).
//! - The fetched blocks live in the block cache, under its memory budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;

use crate::read::prefetch::Source;
use crate::store::ObjectType;

use super::attr::{FileKind, Ino};
use super::inode::Node;
use super::limits::{READ_AHEAD_FILES, READ_AHEAD_MAX_ORDER, SMALL_FILE};
use super::{Filesystem, lock};

/// Most directories whose order is kept (the most recently listed): a tree walk lists
/// many, a reader reads the few it just listed. Memory stays bounded by the walk.
const MAX_DIRS: usize = 32;

/// Whether `node` is a file the read-ahead fetches.
pub(crate) fn is_small_file(node: &Node) -> bool {
    node.attr.kind == FileKind::File
        && node.object_type != ObjectType::Symlink
        && (1..=SMALL_FILE).contains(&node.attr.size)
}

struct DirOrder {
    names: Vec<String>,
    pos: HashMap<String, usize>,
    /// Position of the last small file opened, and how far ahead was fetched.
    last: Option<usize>,
    issued_until: usize,
}

/// Per-directory listing order and reader position (see the module docs).
#[derive(Default)]
pub(crate) struct SiblingAhead {
    dirs: Mutex<HashMap<Ino, DirOrder>>,
    /// Directories in `dirs`, oldest listing first (may hold numbers already removed).
    recent: Mutex<std::collections::VecDeque<Ino>>,
}

impl SiblingAhead {
    /// A complete listing of `dir` returned these small files, in this order.
    pub(crate) fn record_listing(&self, dir: Ino, names: Vec<String>) {
        let mut dirs = lock(&self.dirs);
        if names.len() < 2 || names.len() > READ_AHEAD_MAX_ORDER {
            dirs.remove(&dir);
            return;
        }
        let pos = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        dirs.insert(
            dir,
            DirOrder {
                names,
                pos,
                last: None,
                issued_until: 0,
            },
        );
        let mut recent = lock(&self.recent);
        recent.retain(|&d| d != dir);
        recent.push_back(dir);
        while recent.len() > MAX_DIRS {
            if let Some(old) = recent.pop_front() {
                dirs.remove(&old);
            }
        }
    }

    /// The small file `name` of `dir` was opened for reading: the names to fetch ahead.
    pub(crate) fn opened(&self, dir: Ino, name: &str) -> Vec<String> {
        let mut dirs = lock(&self.dirs);
        let Some(d) = dirs.get_mut(&dir) else {
            return Vec::new();
        };
        let Some(&i) = d.pos.get(name) else {
            return Vec::new();
        };
        let sequential = d.last.is_some_and(|l| l + 1 == i);
        d.last = Some(i);
        if !sequential {
            d.issued_until = 0;
            return Vec::new();
        }
        let from = d.issued_until.max(i + 1);
        let to = (i + 1 + READ_AHEAD_FILES).min(d.names.len());
        if from >= to {
            return Vec::new();
        }
        d.issued_until = to;
        d.names[from..to].to_vec()
    }
}

impl Filesystem {
    /// After an open of `ino` with `flags`: the siblings to fetch ahead, as the
    /// directory and names for [`Self::read_ahead`] (empty unless a sequential reader
    /// of small files was detected).
    pub fn read_ahead_plan(&self, ino: Ino, flags: i32) -> Option<(Ino, Vec<String>)> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return None;
        }
        let node = self.inodes.get(ino)?;
        if !is_small_file(&node) {
            return None;
        }
        let names = self.ahead.opened(node.parent, &node.name);
        (!names.is_empty()).then_some((node.parent, names))
    }

    /// Fetches the small files `names` of `dir` into the block cache, [`READ_AHEAD_FILES`] at a time
    /// (run in the background by the FUSE adapter).
    pub async fn read_ahead(&self, dir: Ino, names: Vec<String>) {
        futures::stream::iter(names)
            .for_each_concurrent(READ_AHEAD_FILES, |name| async move {
                self.fetch_sibling(dir, &name).await
            })
            .await;
    }

    async fn fetch_sibling(&self, dir: Ino, name: &str) {
        let Some(ino) = self.inodes.child(dir, name) else {
            return;
        };
        let Some(node) = self.inodes.get(ino) else {
            return;
        };
        let fresh = node.valid_until.is_some_and(|t| t > Instant::now());
        if !fresh || !is_small_file(&node) || node.etag.is_empty() || node.local {
            return;
        }
        let Some(key) = self.inodes.key_of(ino) else {
            return;
        };
        let src = Source {
            store: self.store.clone(),
            cache: self.cache.clone(),
            key: Arc::from(key),
            etag: Arc::from(node.etag.as_str()),
            size: node.attr.size,
        };
        let first = src.block_id(0);
        if self.cache.contains(&first) || self.cache.inflight().contains(&first) {
            return;
        }
        if let Err(e) = src.warm(0..node.attr.size).await {
            // The reader fetches (and reports) on its own.
            tracing::debug!(key = %src.key, error = %e, "sibling read-ahead failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("f{i:03}")).collect()
    }

    #[test]
    fn two_opens_in_listing_order_start_the_read_ahead() {
        let a = SiblingAhead::default();
        a.record_listing(1, names(20));
        assert!(a.opened(1, "f000").is_empty(), "one open proves nothing");
        assert_eq!(a.opened(1, "f001"), names(10)[2..10].to_vec());
        // Each further open keeps READ_AHEAD_FILES files fetched ahead: one new name.
        assert_eq!(a.opened(1, "f002"), vec!["f010".to_string()]);
        // A jump resets; sequential again from there.
        assert!(a.opened(1, "f015").is_empty());
        assert_eq!(a.opened(1, "f016"), names(20)[17..20].to_vec());
        assert!(a.opened(1, "f017").is_empty(), "end of the directory");
        // Unknown directories and names: nothing.
        assert!(a.opened(2, "f000").is_empty());
        assert!(a.opened(1, "nope").is_empty());
    }

    #[test]
    fn random_order_fetches_nothing() {
        let a = SiblingAhead::default();
        a.record_listing(1, names(50));
        for i in [7, 3, 30, 12, 40, 8, 2, 45] {
            assert!(a.opened(1, &format!("f{i:03}")).is_empty());
        }
    }
}
