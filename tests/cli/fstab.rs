//! fstab integration: `mount` (util-linux) runs our binary as the `mount.fuse.ossmount`
//! helper for an fstab line of type `fuse.ossmount`, with generic options like `_netdev`.
//!
//! To avoid touching the system's helper, the test installs a private helper name
//! `/sbin/mount.fuse.ossmount-test-<pid>` (type `fuse.ossmount-test-<pid>`), uses a private
//! fstab file (`mount -T`), and removes both afterwards. Needs root (mount(8) only runs
//! helpers for root or `user` entries); without root the test reports and returns early.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::emulator::Emu;
use crate::common::require_root;

const BIN: &str = env!("CARGO_BIN_EXE_ossmount");
const BUCKET: &str = "fstab-bucket";

/// Removes the helper symlink and unmounts on drop.
struct Cleanup {
    helper: PathBuf,
    mountpoint: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        crate::common::mount::unmount_lazily(&self.mountpoint);
        let _ = std::fs::remove_file(&self.helper);
    }
}

#[test]
fn fstab_line_mounts_through_the_helper() {
    if !require_root("fstab_line_mounts_through_the_helper") {
        return;
    }
    assert!(
        Path::new("/sbin").is_dir(),
        "needs /sbin for a mount(8) helper"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let mountpoint = root.join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let emu = Emu::start(BUCKET, |c| c);

    let fstype = format!("fuse.ossmount-test-{}", std::process::id());
    let helper = PathBuf::from(format!("/sbin/mount.{fstype}"));
    std::os::unix::fs::symlink(BIN, &helper).unwrap();
    let _cleanup = Cleanup {
        helper: helper.clone(),
        mountpoint: mountpoint.clone(),
    };

    let passwd = root.join("passwd-ossfs");
    emu.write_passwd_file(&passwd);
    let fstab = root.join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# test fstab\n{BUCKET}:docs {} {fstype} _netdev,nofail,region=cn-hangzhou,endpoint=http://{},credentials_file={},cache_dir={},log_file={} 0 0\n",
            mountpoint.display(),
            emu.emu().addr(),
            passwd.display(),
            root.join("cache").display(),
            root.join("ossmount.log").display(),
        ),
    )
    .unwrap();

    let out = Command::new("mount")
        .arg("-T")
        .arg(&fstab)
        .arg(&mountpoint)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mount failed: {stderr}");
    let entry = ossmount::mount_check::find_mount(&mountpoint).unwrap();
    assert!(
        entry.is_some_and(|e| e.source == format!("ossmount:{BUCKET}:docs/")),
        "not mounted"
    );

    std::fs::write(mountpoint.join("note.txt"), b"via fstab").unwrap();
    assert_eq!(emu.get("docs/note.txt").as_deref(), Some(&b"via fstab"[..]));

    assert!(
        Command::new("umount")
            .arg(&mountpoint)
            .status()
            .unwrap()
            .success()
    );

    // A bad option in fstab fails `mount` with our message.
    std::fs::write(
        &fstab,
        format!(
            "{BUCKET} {} {fstype} region=cn-hangzhou,bogus_opt 0 0\n",
            mountpoint.display()
        ),
    )
    .unwrap();
    let out = Command::new("mount")
        .arg("-T")
        .arg(&fstab)
        .arg(&mountpoint)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown mount option 'bogus_opt'"),
        "{stderr}"
    );
}
