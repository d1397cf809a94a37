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

pub mod journal;
mod lock;
mod status;
pub mod store;

pub use journal::{Expect, JournalRecord, PendingMeta};
pub use status::{WriteBackQueue, WriteBackStatus};
pub use store::{
    DataPin, NoSpace, SpaceReservation, StoreOpenError, StoreOptions, WriteBackStore,
    default_max_size,
};
