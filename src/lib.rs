//! ossmount: mount an Alibaba Cloud OSS bucket as a local filesystem.
//!
//! Layers, bottom up:
//! - [`sign`], [`endpoint`], [`crc64`]: pure protocol pieces (no I/O).
//! - [`credentials`]: the provider chain (env, files, ECS RAM role, RRSA).
//! - [`client`]: the HTTP client for OSS (retries, XML, typed errors).
//! - [`store`]: the `ObjectStore` trait the filesystem is written against, with an
//!   in-memory mock and a fault-injecting wrapper (feature `testing`).
//! - [`read`], [`write`](mod@write): prefetching reads + block cache, streaming/staged uploads.
//! - [`fs`]: filesystem semantics (inodes, handles), testable without the kernel.
//! - [`fuse`]: the thin fuser adapter.
//! - [`cli`], [`config`]: command line and resolved configuration; [`logging`];
//!   [`daemon`] (background mode) and [`mount_check`] (mountpoint checks) for the binary.
//!
//! The local OSS emulator the tests run against is the `ossmount-emulator` package
//! (emulator/), a separate crate so the product carries no test server.

pub mod cli;
pub mod client;
pub(crate) mod config;
pub mod control;
pub mod crc64;
pub mod credentials;
pub mod csi;
pub(crate) mod daemon;
pub mod endpoint;
pub mod fs;
pub mod fuse;
pub(crate) mod logging;
pub mod metrics;
pub mod mount_check;
pub mod read;
pub mod sign;
pub mod store;
pub mod write;
pub mod write_back;
