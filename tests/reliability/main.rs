//! Reliability through the real `ossmount` binary against the emulator: consistency,
//! crashes, credential rotation, faults, load and outages (see docs/RELIABILITY.md; the
//! long versions are `scripts/reliability-*.sh`). One binary.

#[path = "../common/mod.rs"]
mod common;

mod consistency;
mod crash;
mod creds;
mod faults;
mod load;
mod outage;
