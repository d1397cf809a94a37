//! The filesystem core ([`Filesystem`]) over the crate's mock store, without the kernel:
//! the environment and the calls every core test makes (whole listings, whole reads,
//! create-write-close).
//!
//! Must be used inside a tokio runtime (`#[tokio::test]`): the core spawns on the current
//! runtime's handle.

use std::ffi::OsStr;
use std::sync::Arc;

use ossmount::fs::{Ctx, DirEntry, Filesystem, FsConfig};
use ossmount::store::mock::MockStore;

/// A filesystem core over a fresh mock store, with its staging directory.
pub(crate) struct CoreEnv {
    pub store: Arc<MockStore>,
    pub fs: Filesystem,
    pub staging: tempfile::TempDir,
}

/// A core over bucket `bkt` of a new mock store; `tweak` adjusts the default config
/// (whose `cache_dir` is a fresh temp dir).
pub(crate) fn core_env(tweak: impl FnOnce(&mut FsConfig)) -> CoreEnv {
    let store = Arc::new(MockStore::new("bkt"));
    let staging = tempfile::tempdir().expect("tempdir");
    let mut cfg = FsConfig {
        cache_dir: staging.path().to_path_buf(),
        ..FsConfig::default()
    };
    tweak(&mut cfg);
    let fs = Filesystem::new(store.clone(), cfg, tokio::runtime::Handle::current());
    CoreEnv { store, fs, staging }
}

/// A name as the FUSE adapter passes it.
pub(crate) fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Requests made by root (pid 1).
pub(crate) const CTX: Ctx = Ctx {
    uid: 0,
    gid: 0,
    pid: 1,
};

/// Requests made by an ordinary user (uid 1234, gid 5678), for ownership checks.
pub(crate) const USER_CTX: Ctx = Ctx {
    uid: 1234,
    gid: 5678,
    pid: 1,
};

/// Reads the whole directory through one handle, `.` and `..` included.
pub(crate) async fn readdir_all(fs: &Filesystem, ino: u64) -> Vec<DirEntry> {
    let fh = fs.opendir(ino).await.expect("opendir");
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let batch = fs.readdir(ino, fh, off).await.expect("readdir");
        let Some(last) = batch.last() else { break };
        off = last.offset;
        out.extend(batch);
    }
    fs.releasedir(fh).await.expect("releasedir");
    out
}

/// The whole content of `ino`, read through one handle in 256 KiB requests.
pub(crate) async fn read_all(fs: &Filesystem, ino: u64) -> Vec<u8> {
    let fh = fs.open(ino, libc::O_RDONLY).await.expect("open");
    let mut out = Vec::new();
    loop {
        let b = fs
            .read(fh, out.len() as u64, 256 * 1024)
            .await
            .expect("read");
        if b.is_empty() {
            break;
        }
        out.extend_from_slice(&b);
    }
    fs.release(fh).await.expect("release");
    out
}

/// Creates `name` in `parent` as root, writes `data` in 128 KiB pieces, flushes and
/// releases (the upload commits); returns the new inode number.
pub(crate) async fn write_file(fs: &Filesystem, parent: u64, name: &str, data: &[u8]) -> u64 {
    let (attr, fh) = fs
        .create(&CTX, parent, n(name), 0o100644, 0o022, libc::O_WRONLY)
        .await
        .expect("create");
    let mut off = 0;
    for chunk in data.chunks(128 * 1024) {
        fs.write(fh, off, chunk).await.expect("write");
        off += chunk.len() as u64;
    }
    fs.flush(fh).await.expect("flush");
    fs.release(fh).await.expect("release");
    attr.ino
}
