//! The `ossmount` command line: errors and usage, dry runs, mount and unmount, status,
//! fstab through mount(8), multipart cleanup. One binary.

#[path = "../common/mod.rs"]
mod common;

mod cleanup;
mod dry_run;
mod errors;
mod fstab;
mod mount;
mod status;
