//! Real FUSE mounts of the filesystem core in this process (`ossmount::fuse::mount`):
//! over the mock store (std::fs and shell tools, request costs, direct I/O, readahead,
//! a slow read not stalling the mount) and over the emulator. One binary;
//! `tests/mount_scale.rs` stays apart (it installs a process-wide metrics recorder).

#[path = "../common/mod.rs"]
mod common;

mod emulator;
mod mock;
