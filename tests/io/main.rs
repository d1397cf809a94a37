//! The read and write data paths (readers, prefetch, uploads) over the recording mock store,
//! the crate's fault-injecting store, and the emulator over HTTP. One binary.

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod http;
mod read;
mod write;
