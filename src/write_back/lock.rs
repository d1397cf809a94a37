//! The store directory: created private (0700), checked when it exists, and locked so that
//! two mounts never share one journal.
//!
//! # Design
//! - The lock is an exclusive `flock(2)` on `<dir>/lock`, taken non-blocking and held (by
//!   keeping the file open) for the store's lifetime; the kernel drops it when the process
//!   dies, so a crash never leaves a stale lock. The file holds the pid of the holder, only
//!   so that the error of a second mount can name it.
//! - `flock` locks belong to the open file description, so a second open in the same
//!   process is refused too (tests rely on it).
//!
//! # Pitfalls
//! - The pid is written *after* the lock is taken (truncate, write), so a reader may see an
//!   empty file for a moment; the error then says the pid is unknown.
//! - An existing directory that group or others can access, or that another user owns, is
//!   refused rather than "fixed": it may be someone else's, and the files in it are the
//!   contents of files written through the mount.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::store::StoreOpenError;

/// Creates `dir` (and its parents) if needed, with mode 0700 for `dir` itself, and checks
/// that it is a private directory of this user.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), StoreOpenError> {
    let io_err = |what: &str, e: io::Error| StoreOpenError::Io {
        what: what.to_string(),
        path: dir.to_path_buf(),
        source: e,
    };
    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)
                    .map_err(|e| io_err("creating the parent of the write-back store", e))?;
            }
            match DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {
                    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                        sync_dir(parent).map_err(|e| io_err("syncing the parent directory", e))?;
                    }
                }
                // Another process created it meanwhile: check it like an existing one.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("creating the write-back store", e)),
            }
        }
        Err(e) => return Err(io_err("reading the write-back store", e)),
    }
    let md = fs::symlink_metadata(dir).map_err(|e| io_err("reading the write-back store", e))?;
    if !md.is_dir() {
        return Err(StoreOpenError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let euid = nix::unistd::geteuid().as_raw();
    if md.uid() != euid {
        return Err(StoreOpenError::NotOwned {
            path: dir.to_path_buf(),
            owner: md.uid(),
            uid: euid,
        });
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(StoreOpenError::Insecure {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Creates the subdirectory `name` of `dir` (0700) if it is missing.
pub(crate) fn ensure_subdir(dir: &Path, name: &str) -> Result<PathBuf, StoreOpenError> {
    let path = dir.join(name);
    match DirBuilder::new().mode(0o700).create(&path) {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let md = fs::symlink_metadata(&path).map_err(|e| StoreOpenError::Io {
                what: "reading".into(),
                path: path.clone(),
                source: e,
            })?;
            if md.is_dir() {
                Ok(path)
            } else {
                Err(StoreOpenError::NotADirectory { path })
            }
        }
        Err(e) => Err(StoreOpenError::Io {
            what: "creating".into(),
            path,
            source: e,
        }),
    }
}

/// The held lock of a store directory (released when dropped).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: Flock<File>,
}

/// Takes the exclusive lock of `dir` (`<dir>/lock`) without waiting, and records this
/// process's pid in it.
pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock, StoreOpenError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| StoreOpenError::Io {
            what: "opening the lock file".into(),
            path: path.clone(),
            source: e,
        })?;
    let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut s = String::new();
            let pid = file
                .read_to_string(&mut s)
                .ok()
                .and_then(|_| s.trim().parse::<u32>().ok());
            return Err(StoreOpenError::Locked {
                dir: dir.to_path_buf(),
                pid,
            });
        }
        Err((_, errno)) => {
            return Err(StoreOpenError::Io {
                what: "locking".into(),
                path,
                source: errno.into(),
            });
        }
    };
    let write_pid = |f: &mut File| -> io::Result<()> {
        f.set_len(0)?;
        f.seek(io::SeekFrom::Start(0))?;
        writeln!(f, "{}", std::process::id())
    };
    write_pid(&mut locked).map_err(|e| StoreOpenError::Io {
        what: "writing the pid into the lock file".into(),
        path,
        source: e,
    })?;
    Ok(DirLock { _file: locked })
}

/// fsync of a directory: makes the entries created, renamed or removed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
