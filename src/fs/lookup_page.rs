//! A directory lookup's LIST, kept as the first page of the listing that follows.
//!
//! Lookup proves that `n` is a directory with a LIST of `n/` (delimiter `/`). That LIST
//! asks for a full page (1000 keys, as readdir does), and a non-empty page is kept here
//! for a moment: the opendir + readdir that usually follow a lookup (`ls -l dir`,
//! `find`, a data loader walking a dataset) start from it instead of sending the same
//! request again. N entries then cost ceil(N/1000) LISTs, the lookup's included.
//!
//! Pitfalls:
//! - readdir promises a listing as fresh as a lookup: a page is used only while it is
//!   younger than the metadata TTL (and never older than [`MAX_AGE`]), and only once;
//!   the next opendir lists afresh.
//! - The listing's completeness is dated from when the *lookup* sent its LIST, so a
//!   directory made complete from a kept page expires no later than it should.
//! - A page must not hide what this mount did after it was fetched (a file written and
//!   closed, a rename, an unlink): it is used only if the inode table's change count
//!   (`InodeTable::changes`) is what it was when the LIST was sent. Any local change,
//!   anywhere, retires every kept page; a listing then simply asks OSS again.
//! - A file's probe comes back empty and keeps nothing. What it costs: a directory
//!   lookup transfers up to 1000 entries instead of one.
//! - Bounded: at most [`MAX_PAGES`] pages; stale ones are dropped on every insert.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::ListPage;

use super::attr::Ino;
use super::inode::InodeTable;
use super::lock;

/// Oldest page readdir may start from, whatever the TTL.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(1);
/// Most pages kept at once (a `find` keeps looking up directories it never lists).
const MAX_PAGES: usize = 64;

/// When a probe LIST was sent: the time, and the inode table's local change count then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) at: Instant,
    pub(crate) changes: u64,
}

impl Stamp {
    pub(crate) fn now(inodes: &InodeTable) -> Stamp {
        Stamp {
            at: Instant::now(),
            changes: inodes.changes(),
        }
    }
}

/// Probe pages by directory inode, with when their request was sent.
#[derive(Debug, Default)]
pub(crate) struct ProbedPages {
    pages: Mutex<HashMap<Ino, Kept>>,
}

#[derive(Debug)]
struct Kept {
    sent: Stamp,
    page: ListPage,
}

impl ProbedPages {
    /// Keeps the probe page of directory `ino`, whose LIST was sent at `sent`.
    pub(crate) fn keep(&self, ino: Ino, sent: Stamp, page: &ListPage, max_age: Duration) {
        if page.is_empty() {
            return;
        }
        let max_age = max_age.min(MAX_AGE);
        if max_age.is_zero() {
            return;
        }
        let mut pages = lock(&self.pages);
        pages.retain(|_, k| k.sent.at.elapsed() < max_age);
        if pages.len() >= MAX_PAGES {
            // Still full of fresh pages: drop the oldest.
            if let Some(oldest) = pages.iter().min_by_key(|(_, k)| k.sent.at).map(|(i, _)| *i) {
                pages.remove(&oldest);
            }
        }
        pages.insert(
            ino,
            Kept {
                sent,
                page: page.clone(),
            },
        );
    }

    /// The page kept for `ino` (and when its LIST was sent) if it is still fresh and no
    /// local change happened since (`changes` is the current count); handed out once.
    pub(crate) fn take(
        &self,
        ino: Ino,
        changes: u64,
        max_age: Duration,
    ) -> Option<(Instant, ListPage)> {
        let k = lock(&self.pages).remove(&ino)?;
        (k.sent.at.elapsed() < max_age.min(MAX_AGE) && k.sent.changes == changes)
            .then_some((k.sent.at, k.page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ListEntry;

    fn page(keys: &[&str]) -> ListPage {
        ListPage {
            objects: keys
                .iter()
                .map(|k| ListEntry {
                    key: k.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn pages_are_used_once_while_fresh() {
        let p = ProbedPages::default();
        let ttl = Duration::from_secs(1);
        p.keep(
            2,
            Stamp {
                at: Instant::now(),
                changes: 0,
            },
            &page(&["d/a"]),
            ttl,
        );
        assert_eq!(p.take(2, 0, ttl).unwrap().1.objects[0].key, "d/a");
        assert!(p.take(2, 0, ttl).is_none(), "handed out once");
        // A local change since the LIST was sent retires the page.
        p.keep(
            6,
            Stamp {
                at: Instant::now(),
                changes: 7,
            },
            &page(&["d/a"]),
            ttl,
        );
        assert!(p.take(6, 8, ttl).is_none());
        // Empty probes (files) and a zero TTL keep nothing; stale pages are not used.
        p.keep(
            3,
            Stamp {
                at: Instant::now(),
                changes: 0,
            },
            &page(&[]),
            ttl,
        );
        assert!(p.take(3, 0, ttl).is_none());
        p.keep(
            4,
            Stamp {
                at: Instant::now(),
                changes: 0,
            },
            &page(&["d/a"]),
            Duration::ZERO,
        );
        assert!(p.take(4, 0, ttl).is_none());
        let old = Instant::now() - Duration::from_secs(5);
        p.keep(
            5,
            Stamp {
                at: old,
                changes: 0,
            },
            &page(&["d/a"]),
            ttl,
        );
        assert!(p.take(5, 0, ttl).is_none());
    }

    #[test]
    fn at_most_max_pages_are_kept() {
        let p = ProbedPages::default();
        let ttl = Duration::from_secs(1);
        for ino in 0..(MAX_PAGES as u64 + 10) {
            p.keep(
                ino,
                Stamp {
                    at: Instant::now(),
                    changes: 0,
                },
                &page(&["d/a"]),
                ttl,
            );
        }
        assert_eq!(lock(&p.pages).len(), MAX_PAGES);
        assert!(
            p.take(MAX_PAGES as u64 + 9, 0, ttl).is_some(),
            "the newest stays"
        );
    }
}
