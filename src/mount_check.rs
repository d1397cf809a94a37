//! Mountpoint checks before mounting, and stale-mount detection and recovery.
//!
//! The kernel only reports a failed FUSE mount late and vaguely, so the binary checks
//! first and says exactly what is wrong: the directory is missing, not a directory, not
//! empty (unless `-o nonempty`), already a mount, or a *stale* FUSE mount.
//!
//! A stale mount is what a FUSE daemon leaves behind when it dies without unmounting: the
//! mount entry stays, and every access fails with `ENOTCONN` ("Transport endpoint is not
//! connected"). `stat(2)` on the mountpoint is enough to detect it. Recovery is a lazy
//! unmount (`umount -l`, i.e. `umount2(MNT_DETACH)`), which we only do on request
//! (`--recover-stale-mount`) and only when the mount table says the dead mount was ours
//! (fstype `fuse.ossmount` or a source starting with `ossmount`), so we never detach
//! someone else's filesystem.
//!
//! The mount table is read from `/proc/self/mountinfo`, whose fields escape space, tab,
//! newline and backslash as octal (`\040`…).

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::MntFlags;

/// One line of `/proc/self/mountinfo`, the parts we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    /// `major:minor` of the mounted filesystem (names its `/sys/class/bdi` entry).
    pub device: String,
}

impl MountEntry {
    /// True when this mount was made by ossmount (by fstype or source name).
    pub fn is_ossmount(&self) -> bool {
        self.fstype == "fuse.ossmount" || self.source.starts_with("ossmount")
    }
}

/// Why a mountpoint cannot be used. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum MountpointError {
    #[error("mountpoint {0} does not exist (create it with: mkdir -p {0})")]
    NotFound(PathBuf),
    #[error("mountpoint {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("mountpoint {0} is not empty (use -o nonempty to mount over its contents)")]
    NotEmpty(PathBuf),
    #[error(
        "mountpoint {path} is already mounted ({source_name}, type {fstype}); unmount it first: umount {path}"
    )]
    AlreadyMounted {
        path: PathBuf,
        source_name: String,
        fstype: String,
    },
    #[error(
        "mountpoint {path} is a stale {what} mount (Transport endpoint is not connected): the process that served it has died; {hint}"
    )]
    Stale {
        path: PathBuf,
        what: String,
        hint: String,
    },
    #[error("lazy unmount of stale mount {path} failed: {reason}")]
    RecoveryFailed { path: PathBuf, reason: String },
    #[error("cannot use mountpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What [`check_mountpoint`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountpointStatus {
    Ready,
    /// A stale ossmount mount was lazily unmounted first.
    RecoveredStale,
}

/// Checks that `path` can be mounted on. With `recover_stale`, a stale ossmount mount is
/// lazily unmounted and the checks run again.
pub fn check_mountpoint(
    path: &Path,
    nonempty: bool,
    recover_stale: bool,
) -> Result<MountpointStatus, MountpointError> {
    match check_once(path, nonempty) {
        Err(MountpointError::Stale { .. }) if recover_stale => {
            let entry = find_mount(path).ok().flatten();
            if !entry.as_ref().is_some_and(MountEntry::is_ossmount) {
                return Err(stale_error(path, entry.as_ref(), false));
            }
            lazy_unmount(path).map_err(|reason| MountpointError::RecoveryFailed {
                path: path.to_path_buf(),
                reason,
            })?;
            tracing::warn!(mountpoint = %path.display(), "lazily unmounted a stale ossmount mount");
            check_once(path, nonempty).map(|_| MountpointStatus::RecoveredStale)
        }
        other => other,
    }
}

fn check_once(path: &Path, nonempty: bool) -> Result<MountpointStatus, MountpointError> {
    let io_err = |source: io::Error| MountpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MountpointError::NotFound(path.to_path_buf()));
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            let entry = find_mount(path).ok().flatten();
            return Err(stale_error(path, entry.as_ref(), true));
        }
        Err(e) => return Err(io_err(e)),
    };
    if !meta.is_dir() {
        return Err(MountpointError::NotADirectory(path.to_path_buf()));
    }
    let canonical = std::fs::canonicalize(path).map_err(io_err)?;
    if let Some(entry) = find_mount(&canonical).map_err(io_err)? {
        // The stat above may have been answered from the kernel's attribute cache of a
        // FUSE mount whose daemon is already dead; statfs is never cached, so it reaches
        // the dead connection and fails with ENOTCONN.
        if entry.fstype.starts_with("fuse")
            && matches!(
                nix::sys::statfs::statfs(path),
                Err(nix::errno::Errno::ENOTCONN)
            )
        {
            return Err(stale_error(path, Some(&entry), true));
        }
        return Err(MountpointError::AlreadyMounted {
            path: path.to_path_buf(),
            source_name: entry.source,
            fstype: entry.fstype,
        });
    }
    if !nonempty {
        let mut entries = std::fs::read_dir(path).map_err(io_err)?;
        if entries.next().is_some() {
            return Err(MountpointError::NotEmpty(path.to_path_buf()));
        }
    }
    Ok(MountpointStatus::Ready)
}

fn stale_error(path: &Path, entry: Option<&MountEntry>, offer_recovery: bool) -> MountpointError {
    let ours = entry.is_some_and(MountEntry::is_ossmount);
    let what = match entry {
        Some(e) => format!("{} ({})", e.fstype, e.source),
        None => "FUSE".to_string(),
    };
    let hint = if ours && offer_recovery {
        format!(
            "run again with --recover-stale-mount, or unmount it yourself: umount -l {}",
            path.display()
        )
    } else {
        format!(
            "it is not an ossmount mount, so it is left alone; unmount it yourself: umount -l {}",
            path.display()
        )
    };
    MountpointError::Stale {
        path: path.to_path_buf(),
        what,
        hint,
    }
}

/// Non-root users may only use `allow_other`/`allow_root` when `/etc/fuse.conf` has
/// `user_allow_other`; the kernel-side failure is cryptic, so check first.
pub fn check_allow_other_permitted(fuse_conf: &str, euid: u32) -> Result<(), String> {
    if euid == 0 {
        return Ok(());
    }
    let permitted = fuse_conf
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .any(|l| l == "user_allow_other");
    if permitted {
        Ok(())
    } else {
        Err("--allow-other/--allow-root need `user_allow_other` in /etc/fuse.conf when not mounting as root".into())
    }
}

/// The mount whose mount point is exactly `path` (the last one when stacked).
pub fn find_mount(path: &Path) -> io::Result<Option<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|e| e.mount_point == path))
}

/// Parses `/proc/self/mountinfo` text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut fields = left.split(' ');
            let device = fields.nth(2)?;
            let mount_point = fields.nth(1)?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let source = right.next()?;
            Some(MountEntry {
                mount_point: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(mount_point))),
                fstype: String::from_utf8_lossy(&unescape(fstype)).into_owned(),
                source: String::from_utf8_lossy(&unescape(source)).into_owned(),
                device: device.to_string(),
            })
        })
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` → space).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            if let Ok(b) = u8::try_from(value) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Lazily detaches the mount at `path`: `umount2(MNT_DETACH)` when we may (root), else
/// `fusermount3 -uz` / `fusermount -uz` (setuid helpers for unprivileged FUSE users).
pub fn lazy_unmount(path: &Path) -> Result<(), String> {
    if path.as_os_str().as_bytes().contains(&0) {
        return Err("path contains a NUL byte".to_string());
    }
    let Err(syscall_error) = nix::mount::umount2(path, MntFlags::MNT_DETACH) else {
        return Ok(());
    };
    for helper in ["fusermount3", "fusermount"] {
        match Command::new(helper).arg("-uz").arg(path).output() {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(_) | Err(_) => continue,
        }
    }
    Err(format!(
        "umount2(MNT_DETACH): {syscall_error}; fusermount -uz also failed"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_with_escapes() {
        let text = "\
36 35 98:0 / / rw,noatime master:1 - ext4 /dev/root rw
41 36 0:45 / /mnt/my\\040dir rw,nosuid,nodev,relatime shared:5 - fuse.ossmount ossmount:bkt rw,user_id=0
garbage line
";
        let entries = parse_mountinfo(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].mount_point, PathBuf::from("/mnt/my dir"));
        assert_eq!(entries[1].fstype, "fuse.ossmount");
        assert_eq!(entries[1].device, "0:45");
        assert!(entries[1].is_ossmount());
        assert!(!entries[0].is_ossmount());
    }

    #[test]
    fn allow_other_needs_fuse_conf_for_users() {
        assert!(check_allow_other_permitted("", 0).is_ok());
        assert!(check_allow_other_permitted("# user_allow_other\n", 1000).is_err());
        assert!(check_allow_other_permitted("mount_max = 1000\nuser_allow_other\n", 1000).is_ok());
    }

    #[test]
    fn unescape_keeps_plain_backslashes() {
        assert_eq!(unescape("a\\134b"), b"a\\b");
        assert_eq!(unescape("a\\x"), b"a\\x");
        assert_eq!(unescape("end\\04"), b"end\\04");
    }

    #[test]
    fn missing_file_nonempty_and_ok() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = check_mountpoint(&missing, false, false).unwrap_err();
        assert!(matches!(e, MountpointError::NotFound(_)));
        assert!(e.to_string().contains("mkdir -p"), "{e}");

        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = check_mountpoint(&file, false, false).unwrap_err();
        assert!(matches!(e, MountpointError::NotADirectory(_)), "{e}");

        let e = check_mountpoint(dir.path(), false, false).unwrap_err();
        assert!(e.to_string().contains("-o nonempty"), "{e}");
        assert_eq!(
            check_mountpoint(dir.path(), true, false).unwrap(),
            MountpointStatus::Ready
        );

        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(
            check_mountpoint(&empty, false, false).unwrap(),
            MountpointStatus::Ready
        );
    }

    #[test]
    fn an_existing_mount_is_reported() {
        // /proc is a mount point on every Linux system.
        let e = check_mountpoint(Path::new("/proc"), true, false).unwrap_err();
        assert!(matches!(e, MountpointError::AlreadyMounted { .. }), "{e}");
        assert!(e.to_string().contains("umount /proc"), "{e}");
    }
}
