//! The Debian package, end to end: `scripts/package.sh` builds the .deb (from the
//! already-built test binary), `dpkg -i` installs it, an fstab line of type
//! `fuse.ossmount` mounts the emulator's bucket through the *installed* helper, `umount`
//! ends it, `dpkg -r` removes the package and every file it installed.
//!
//! Needs root, dpkg and fuse3 (the package's dependency; `scripts/setup.sh` installs it);
//! skipped with a message otherwise, and also when ossmount is already installed on the
//! machine (the test must not replace or remove someone's installation).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::emulator::Emu;

const BIN: &str = env!("CARGO_BIN_EXE_ossmount");
const BUCKET: &str = "deb-bucket";

/// Unmounts and removes the package on drop, so a failure leaves nothing behind.
struct Cleanup {
    mountpoint: PathBuf,
    installed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        common::mount::unmount_lazily(&self.mountpoint);
        if self.installed {
            let _ = Command::new("dpkg").args(["-r", "ossmount"]).output();
        }
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn skip_reason() -> Option<String> {
    if !succeeds(Command::new("dpkg-deb").arg("--version")) {
        return Some("dpkg-deb not found (not a Debian system)".into());
    }
    if !succeeds(Command::new("dpkg").args(["-s", "fuse3"])) {
        return Some("fuse3 is not installed (scripts/setup.sh installs it)".into());
    }
    if succeeds(Command::new("dpkg").args(["-s", "ossmount"]))
        || Path::new("/usr/bin/ossmount").exists()
        || Path::new("/sbin/mount.fuse.ossmount").exists()
    {
        return Some("ossmount is already installed on this machine; not touching it".into());
    }
    None
}

#[test]
fn deb_installs_mounts_through_fstab_and_removes_cleanly() {
    if !common::require_root("deb_installs_mounts_through_fstab_and_removes_cleanly") {
        return;
    }
    if let Some(reason) = skip_reason() {
        eprintln!("skipping the Debian package test: {reason}");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("i17-deb-")
        .tempdir()
        .unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();

    // Build.
    let out = Command::new("bash")
        .arg("scripts/package.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("OSSMOUNT_BIN", BIN)
        .env("DEB_COMPRESSION", "none")
        .env("DEB_OUT_DIR", root.join("out"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "package.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("ossmount_{}_", env!("CARGO_PKG_VERSION")))
            && name.ends_with(".deb"),
        "{name}"
    );
    let info = Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .arg("Depends")
        .output()
        .unwrap();
    let depends = String::from_utf8_lossy(&info.stdout);
    assert!(
        depends.contains("fuse3")
            && depends.contains("libc6")
            && depends.contains("ca-certificates"),
        "{depends}"
    );

    // Install.
    let mountpoint = root.join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let mut cleanup = Cleanup {
        mountpoint: mountpoint.clone(),
        installed: false,
    };
    let out = Command::new("dpkg").arg("-i").arg(&deb).output().unwrap();
    cleanup.installed = true;
    assert!(
        out.status.success(),
        "dpkg -i failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = Command::new("dpkg")
        .args(["-L", "ossmount"])
        .output()
        .unwrap();
    let files: Vec<PathBuf> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(PathBuf::from)
        // Directories (and /sbin, a symlink to one on merged-/usr systems) are shared.
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| !m.is_dir()))
        .collect();
    for expected in [
        "/usr/bin/ossmount",
        "/sbin/mount.fuse.ossmount",
        "/usr/share/man/man1/ossmount.1.gz",
        "/usr/share/bash-completion/completions/ossmount",
    ] {
        assert!(
            files.contains(&PathBuf::from(expected)),
            "{expected} not installed: {files:?}"
        );
    }
    let man = Command::new("sh")
        .arg("-c")
        .arg("gzip -dc /usr/share/man/man1/ossmount.1.gz | head -c 4000")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH"));
    assert!(succeeds(Command::new("/usr/bin/ossmount").arg("--version")));

    // Mount through fstab with the installed helper, against the emulator.
    let emu = Emu::start(BUCKET, |c| c);
    let passwd = root.join("passwd-ossfs");
    emu.write_passwd_file(&passwd);
    let fstab = root.join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "{BUCKET}:pkg {} fuse.ossmount _netdev,region=cn-hangzhou,endpoint=http://{},credentials_file={},log_file={} 0 0\n",
            mountpoint.display(),
            emu.emu().addr(),
            passwd.display(),
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
    assert!(
        out.status.success(),
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(mountpoint.join("from-deb.txt"), b"installed").unwrap();
    assert_eq!(
        emu.get("pkg/from-deb.txt").as_deref(),
        Some(&b"installed"[..])
    );
    assert!(succeeds(Command::new("umount").arg(&mountpoint)));

    // Remove: nothing the package installed is left.
    let out = Command::new("dpkg")
        .args(["-r", "ossmount"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpkg -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cleanup.installed = false;
    let left: Vec<&PathBuf> = files
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!Path::new("/usr/share/doc/ossmount").exists());
    let status = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "ossmount"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.is_empty() || status.contains("not-installed"),
        "{status}"
    );
}
