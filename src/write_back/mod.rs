//! Durable write-back (`--write-back`, issue 18): close returns once a file is durably in a
//! local store; uploads run in the background, survive a crash and drain after `umount`.
//!
//! This module is the boundary between the queue (the store, its journal and the uploader)
//! and the code that watches it (the daemon's drain after `umount`, `ossmount sync`,
//! `ossmount status`, metrics): [`WriteBackQueue`] and its [`WriteBackStatus`].
//!
//! - [`store`]: the store directory (lock, data files, conflicts) and its durable journal
//!   ([`WriteBackStore`]), with space accounting for `--write-back-max-size`.
//! - [`journal`]: the on-disk record format and its replay.
//! - [`queue`]: the pending files of a running mount, their unsettled records, and the
//!   status the watchers see ([`Queue`] implements [`WriteBackQueue`]).
//! - [`uploader`]: the background task that uploads pending files a few at a time.
//! - [`conflict`]: the check against what the mount saw before an upload, and the
//!   metadata a record carries.
//! - [`recovery`]: at mount, finishing what a previous mount left in the journal.
//!
//! The filesystem side (what close, fsync, unlink, rename, setattr and writes do with
//! write-back on) is `crate::fs`'s `write_back` module.

pub mod conflict;
pub mod journal;
mod lock;
pub mod queue;
pub mod recovery;
mod status;
pub mod store;
pub mod uploader;

pub use journal::{Expect, JournalRecord, PendingMeta};
pub use queue::Queue;
pub use status::{WriteBackQueue, WriteBackStatus};
pub use store::{
    DataPin, NoSpace, SpaceReservation, StoreOpenError, StoreOptions, WriteBackStore,
    default_max_size,
};
