//! Fixtures shared by every integration test binary (`mod common;`, or
//! `#[path = "../common/mod.rs"] mod common;` from a `tests/<name>/main.rs` binary).
//!
//! - [`emulator`]: the in-process OSS emulator — [`emulator::Emu`] on its own runtime
//!   (synchronous tests) and [`emulator::start_emulator`] (async tests), each with a
//!   client holding the emulator's static keys.
//! - [`mock`]: a recording in-memory `ObjectStore` for the read/write path tests.
//! - [`mount`]: mounts that always go away — [`mount::BinMount`] (the `ossmount` binary in
//!   the foreground), [`mount::MountGuard`] / [`mount::StaleGuard`] (lazy unmount on drop),
//!   mount-table queries, and [`mount::ossmount_cmd`] (the binary with a clean environment).
//! - Here: deterministic data, checked close, deadlines, temp names and the root check.
//!
//! Pitfalls: everything waits with a deadline, so a hung mount fails a test instead of
//! hanging CI; a guard must be declared *before* anything that uses the mount, so it drops
//! last. Tests that need root call [`require_root`], which fails loudly without root unless
//! `OSSMOUNT_TESTS_WITHOUT_ROOT=skip` is set.

#![allow(dead_code)] // Each test binary uses a different subset.

pub(crate) mod core;
pub(crate) mod emulator;
pub(crate) mod mock;
pub(crate) mod mount;

use std::time::{Duration, Instant};

/// The `ossmount` binary of this build.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_ossmount");

/// Environment variable that lets tests needing root skip (value `skip`) instead of fail.
pub(crate) const WITHOUT_ROOT_VAR: &str = "OSSMOUNT_TESTS_WITHOUT_ROOT";

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// For tests that need root (mount(2), /etc/fstab, dpkg): true when root. Without root the
/// test fails with a message naming the way out, unless `OSSMOUNT_TESTS_WITHOUT_ROOT=skip`
/// asks to skip it (then this prints why and returns false).
pub(crate) fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var(WITHOUT_ROOT_VAR).as_deref() == Ok("skip") {
        eprintln!("SKIPPED {test}: needs root ({WITHOUT_ROOT_VAR}=skip)");
        return false;
    }
    panic!("{test} needs root; run as root or set {WITHOUT_ROOT_VAR}=skip to skip it");
}

/// Deterministic pseudo-random bytes (xorshift): content is checkable without storing a
/// copy, differs at every offset and between seeds, and `pattern(n, s)` is a prefix of
/// `pattern(m, s)` for n < m.
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// SHA-256 hex of `data`.
pub(crate) fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Closes `file` explicitly and returns close(2)'s error: dropping a `File` ignores it,
/// and close is where FUSE reports a failed upload.
pub(crate) fn close_checked(file: std::fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just released by `into_raw_fd`, so we own it and close it once.
    let rc = unsafe { libc::close(fd) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs `f` on a thread and fails the test if it does not finish within `limit`.
pub(crate) fn with_timeout<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// Polls `cond` every 50 ms; fails the test when it is not true within `timeout`.
pub(crate) fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A suffix unique within this machine's test runs (process id and a counter), for
/// mountpoints, logs and cache directories.
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
