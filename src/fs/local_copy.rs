//! The local store of unflushed data: one write side per inode, shared by every handle.
//!
//! What a file holds that OSS does not have yet belongs to the *inode*, like a page
//! cache, not to the descriptor that wrote it: every handle of the inode (of any process)
//! writes into and reads from the same [`WriteSide`] (state machine in `write_state`), so
//! a read, an mmap fault or a `stat` started after `write(2)` returned sees the written
//! bytes through any descriptor, at any offset, and two writers see each other's writes.
//!
//! The bytes themselves live in one local file per inode under `--cache-dir` (a
//! [`super::staging_file::StagingFile`]: 0600 in a 0700 directory, deleted when the entry
//! goes): a staged file holds the whole content, a new file being streamed to OSS keeps
//! a full local copy next to the part buffers of its upload (write-through: the data is
//! in the local copy before `write(2)` returns and in OSS once the commit at close
//! succeeded; the copy is written behind the stream, its bytes readable from memory until
//! their disk write is done, at most 16 MiB per file). Memory stays bounded by `--cache-size` (only the part buffers of uploads
//! in flight are in memory); reads of unflushed data are served from the local copy.
//! The durable write-back mode (issue 18) is meant to keep this same store and journal
//! it, so there is one store of unflushed data, not two.
//!
//! # Table
//! [`LocalCopies`] maps an inode to its entry: the shared write side (behind an async
//! mutex, held across one operation's store requests so that writes, reads of pending
//! data, truncates and commits of one inode run in order) and the number of writable
//! handles attached. An entry exists while at least one writable handle of the inode is
//! open; read-only handles only look it up.
//!
//! ```text
//!   open/create (writable) ── attach ──► entry (writers += 1)
//!   write / read / truncate / flush ──► lock the entry's WriteSide
//!   release (writable) ── commit, then detach ──► writers -= 1; at 0 the entry goes
//!                                                 (an unfinished streaming upload is aborted)
//! ```
//!
//! Invariants:
//! - At most one entry per inode; every writable handle of the inode uses it.
//! - A handle's close commits the inode's pending data, including bytes another handle
//!   wrote (a flush makes the file's content, not one descriptor's, durable — as
//!   fsync does on a local filesystem). The last writer's release never drops data
//!   another open writer still holds: the entry lives until the last writer detached.
//! - After a commit lands, the inode's ETag is the uploaded object's; readers of every
//!   handle compare their pinned ETag with the inode's and follow it (they never read a
//!   stale version of a commit this mount made, nor get `ESTALE` for it).
//!
//! Pitfalls:
//! - Lock order: a handle's own mutex, then the entry's. Nothing holding an entry's lock
//!   takes a handle's lock.
//! - Detach after the commit (not before): a writer opening meanwhile must find the
//!   pending data, not a fresh `Clean` side.
//! - The table's own lock is a std mutex held only to look up or count, never across an
//!   await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::attr::Ino;
use super::lock;
use super::write_state::WriteSide;

/// The shared write side of one inode.
pub(super) type SharedSide = Arc<tokio::sync::Mutex<WriteSide>>;

#[derive(Debug)]
struct Entry {
    side: SharedSide,
    writers: usize,
}

/// Inode → its pending data (see the module docs).
#[derive(Debug, Default)]
pub(super) struct LocalCopies {
    entries: Mutex<HashMap<Ino, Entry>>,
}

impl LocalCopies {
    /// A writable handle of `ino` opens: its (possibly new) shared side, and whether it
    /// was created by this call (`new_content` applies only then; the caller truncates
    /// an existing side itself).
    pub(super) fn attach(&self, ino: Ino, new_content: bool) -> (SharedSide, bool) {
        let mut map = lock(&self.entries);
        match map.get_mut(&ino) {
            Some(e) => {
                e.writers += 1;
                (e.side.clone(), false)
            }
            None => {
                let side = Arc::new(tokio::sync::Mutex::new(WriteSide::new(ino, new_content)));
                map.insert(
                    ino,
                    Entry {
                        side: side.clone(),
                        writers: 1,
                    },
                );
                (side, true)
            }
        }
    }

    /// The shared side of `ino`, if a writable handle is open.
    pub(super) fn get(&self, ino: Ino) -> Option<SharedSide> {
        lock(&self.entries).get(&ino).map(|e| e.side.clone())
    }

    /// A writable handle of `ino` closed: the side when it was the last one (the entry is
    /// gone; the caller drops what it still holds).
    pub(super) fn detach(&self, ino: Ino) -> Option<SharedSide> {
        let mut map = lock(&self.entries);
        let e = map.get_mut(&ino)?;
        e.writers = e.writers.saturating_sub(1);
        if e.writers == 0 {
            map.remove(&ino).map(|e| e.side)
        } else {
            None
        }
    }
}
