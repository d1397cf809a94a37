//! Durable write-back (`--write-back`, issue 18): close returns once a file is durably in a
//! local store; uploads run in the background, survive a crash and drain after `umount`.
//!
//! This module is the boundary between the queue (the store, its journal and the uploader)
//! and the code that watches it (the daemon's drain after `umount`, `ossmount sync`,
//! `ossmount status`, metrics): [`WriteBackQueue`] and its [`WriteBackStatus`].

pub mod conflict;
pub mod queue;
pub mod recovery;
mod status;
#[path = "store_shim.rs"]
pub mod store;
pub mod uploader;

pub use queue::Queue;
pub use status::{WriteBackQueue, WriteBackStatus};
pub use store::{
    DataPin, Expect, JournalRecord, NoSpace, PendingMeta, SpaceReservation, StoreOpenError,
    WriteBackStore, default_max_size,
};
