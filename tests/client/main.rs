//! The OSS client against the in-process emulator: operations, credentials, retries under
//! faults, request logs. One binary (shared emulator fixtures in `tests/common`).

#[path = "../common/mod.rs"]
mod common;

mod credentials;
mod faults;
mod logs;
mod ops;
