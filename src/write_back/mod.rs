//! Durable write-back (`--write-back`, issue 18): close returns once a file is durably in a
//! local store; uploads run in the background, survive a crash and drain after `umount`.
//!
//! This module is the boundary between the queue (the store, its journal and the uploader)
//! and the code that watches it (the daemon's drain after `umount`, `ossmount sync`,
//! `ossmount status`, metrics): [`WriteBackQueue`] and its [`WriteBackStatus`].

mod status;

pub use status::{WriteBackQueue, WriteBackStatus};
