//! The filesystem core (`ossmount::fs`) over the mock store, without the kernel: request
//! costs of lookups and listings, writes, renames, node lifecycle, walks, store faults,
//! special files.

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod lifecycle;
mod model;
mod operations;
mod read_after_write;
mod special;
mod symlink;
mod walk;
mod write_back;
