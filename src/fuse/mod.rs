//! The FUSE adapter: kernel requests → [`crate::fs::Filesystem`] → replies.
//!
//! Thin on purpose: every handler converts its arguments, runs the core operation and
//! replies. The operation is polled once on the fuser worker thread (inside the tokio
//! runtime's context): most requests — flush and release of readers, reads the
//! prefetcher already holds, cached getattrs — finish there without a thread hand-off.
//! One that must wait moves to the runtime and replies from there, so one slow OSS
//! request never stalls other requests on the mount; fuser runs several worker threads
//! (`n_threads`) each with its own cloned `/dev/fuse` fd (`clone_fd`).
//!
//! Each request gets a `tracing` span (`op`, `ino`) and records
//! [`crate::metrics::FUSE_OPS`] (labels `op`, `result` = `ok` or the errno name) and
//! [`crate::metrics::FUSE_OP_SECONDS`]. Expected failures (ENOENT, EEXIST…) are logged at
//! debug, others at warn with the full error chain (which carries the OSS request id).
//!
//! Kernel settings negotiated at init: max_write 1 MiB, readahead 1 MiB, async reads,
//! readdirplus only with `readdir_optimize` (see `adapter::init`), atomic `O_TRUNC` (so `open(O_TRUNC)` needs no extra empty PUT), parallel
//! directory operations. Mount options: `fsname=ossmount:<bucket>`, `subtype=ossmount`,
//! `max_read=1MiB`, `nodev,nosuid,noatime`, `default_permissions`, `ro` for read-only
//! mounts, `allow_other`/`allow_root`.
//!
//! `default_permissions` is on for every mount, not only shared ones: the kernel checks
//! every access against the mode, owner and group stat shows (the stored ones, see
//! `crate::fs::attr_fanout`), as on a local filesystem and as ossfs 1.x checks them
//! itself. Without it the core, which checks nothing, would let the mount's owner read a
//! 0400 file of another user, write a 0444 file or create files in a 0555 directory. Root
//! keeps its usual override. The cost: a bucket written by another uid (files stored
//! with `x-oss-meta-uid` of someone else) is only as writable for a non-root mount owner
//! as its stored modes say; `--uid`/`--gid`/`--file-mode` only fill in objects without
//! stored attributes.
//!
//! Pitfalls: a reply must be sent exactly once, including when the task fails — every
//! handler in [`adapter`] ends in exactly one `reply.*` call. A `MountHandle` unmounts when dropped,
//! so a panicking test cannot leave a stale mount behind (the session thread is joined).

mod adapter;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{Config, MountOption, SessionACL};

use crate::fs::Filesystem;
use adapter::FuseAdapter;

/// Largest write (and read) request the kernel sends.
pub(crate) const MAX_IO: u32 = 1 << 20;

pub use crate::config::options::{DIRECT_IO_MIN_SIZE, DirectIo};

/// How to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Shown in `mount`/`df` (`ossmount:<bucket>`).
    pub fsname: String,
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    /// Unmount when the process dies (needs allow_other or allow_root, and the
    /// `fusermount3` helper: fuser delegates auto_unmount to it).
    pub auto_unmount: bool,
    /// fuser worker threads.
    pub threads: usize,
    /// Kernel readahead in bytes.
    pub max_readahead: u32,
    /// Page cache bypass for reads.
    pub direct_io: DirectIo,
}

impl MountOptions {
    pub fn for_bucket(bucket: &str) -> Self {
        MountOptions {
            fsname: format!("ossmount:{bucket}"),
            read_only: false,
            allow_other: false,
            allow_root: false,
            auto_unmount: false,
            threads: 4,
            max_readahead: 1 << 20,
            direct_io: DirectIo::Auto,
        }
    }

    fn to_config(&self) -> Config {
        let mut opts = vec![
            MountOption::FSName(self.fsname.clone()),
            MountOption::Subtype("ossmount".into()),
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::NoAtime,
            MountOption::CUSTOM(format!("max_read={MAX_IO}")),
            // Always: the kernel enforces the mode bits stat shows (see the module docs).
            MountOption::DefaultPermissions,
        ];
        if self.read_only {
            opts.push(MountOption::RO);
        }
        if self.auto_unmount {
            opts.push(MountOption::AutoUnmount);
        }
        let mut cfg = Config::default();
        cfg.mount_options = opts;
        cfg.acl = if self.allow_other {
            SessionACL::All
        } else if self.allow_root {
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        };
        cfg.n_threads = Some(self.threads.max(1));
        cfg.clone_fd = true;
        cfg
    }
}

/// Errors of mounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot mount on {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unmounting {path} failed: {source}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("FUSE session on {path} ended with an error: {source}")]
    Session {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A background mount; unmounts on [`MountHandle::unmount`] or drop.
#[derive(Debug)]
pub struct MountHandle {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl MountHandle {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// True once the session thread has stopped: the kernel ended the connection (for a
    /// lazily detached mount, when its last user let go), so no request — no release of
    /// a still-open file either — will arrive any more.
    pub fn session_ended(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    /// Unmounts and waits for the session thread.
    pub fn unmount(mut self) -> Result<(), MountError> {
        match self.session.take() {
            Some(s) => s.umount_and_join().map_err(|source| MountError::Unmount {
                path: self.mountpoint.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Some(s) = self.session.take()
            && let Err(e) = s.umount_and_join()
        {
            tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "unmount on drop failed");
        }
    }
}

/// Mounts `fs` on `mountpoint` and serves it from background threads.
pub fn mount(
    fs: Arc<Filesystem>,
    mountpoint: &Path,
    opts: &MountOptions,
) -> Result<MountHandle, MountError> {
    let adapter = FuseAdapter::new(fs, opts);
    let session = fuser::spawn_mount(adapter, mountpoint, &opts.to_config()).map_err(|source| {
        MountError::Mount {
            path: mountpoint.to_path_buf(),
            source,
        }
    })?;
    tracing::info!(mountpoint = %mountpoint.display(), fsname = %opts.fsname, "mounted");
    raise_readahead(mountpoint, opts.max_readahead);
    Ok(MountHandle {
        session: Some(session),
        mountpoint: mountpoint.to_path_buf(),
    })
}

/// Mounts and serves until the filesystem is unmounted (e.g. by `umount`).
pub fn run_foreground(
    fs: Arc<Filesystem>,
    mountpoint: &Path,
    opts: &MountOptions,
) -> Result<(), MountError> {
    let adapter = FuseAdapter::new(fs, opts);
    let session =
        fuser::Session::new(adapter, mountpoint, &opts.to_config()).map_err(|source| {
            MountError::Mount {
                path: mountpoint.to_path_buf(),
                source,
            }
        })?;
    tracing::info!(mountpoint = %mountpoint.display(), fsname = %opts.fsname, "mounted (foreground)");
    raise_readahead(mountpoint, opts.max_readahead);
    session.run().map_err(|source| MountError::Session {
        path: mountpoint.to_path_buf(),
        source,
    })
}

/// Sets the kernel readahead of the new mount to `bytes`, from a helper thread.
///
/// INIT cannot do it: the kernel offers its backing device's current readahead (the
/// 128 KiB default) as the maximum and only lets the reply lower it, so sequential reads
/// arrive as 128 KiB requests whatever we negotiate. The knob is
/// `/sys/class/bdi/<major>:<minor>/read_ahead_kb` of the mount's device, and it must be
/// written *after* INIT (the INIT reply clamps an earlier value). `statfs` of the mount
/// blocks until INIT is done (`stat` would too, but would leave the root's attributes
/// cached in the kernel, hiding a dead daemon from the next `stat` for a TTL), then the
/// device comes from the mount table. Without root the file is not writable: the mount
/// works, with the smaller readahead (logged).
fn raise_readahead(mountpoint: &Path, bytes: u32) {
    let kib = bytes / 1024;
    if kib <= 128 {
        return;
    }
    let mountpoint = mountpoint.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("readahead".into())
        .spawn(move || {
            if !wait_for_init(&mountpoint) {
                return;
            }
            let Ok(Some(entry)) = crate::mount_check::find_mount(&mountpoint) else {
                return;
            };
            if !entry.is_ossmount() {
                return;
            }
            let knob = format!("/sys/class/bdi/{}/read_ahead_kb", entry.device);
            match std::fs::write(&knob, kib.to_string()) {
                Ok(()) => tracing::debug!(knob, kib, "kernel readahead raised"),
                Err(e) => tracing::info!(
                    knob,
                    error = %e,
                    "cannot raise the kernel readahead (needs root); sequential reads use 128 KiB requests"
                ),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the readahead thread");
    }
}

/// `statfs(path)`: returns once the filesystem answered (so INIT is done).
fn wait_for_init(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok()
}
