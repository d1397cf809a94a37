//! Faithful attributes on a real mount (issue 12's reproductions):
//! - what `stat` shows after a remount is what was stored (mode, owner, mtime to the
//!   nanosecond), also for changes made through an open descriptor before close;
//! - the kernel enforces the stored mode for other users (`--allow-other`): a listing
//!   never hands it the mount's defaults instead;
//! - files and directories belong to the user that made them;
//! - `--readdir-optimize --allow-other` shows and enforces the configured attributes.
//!
//! Another user is `setpriv --reuid=65534 --regid=65534 --clear-groups` (nobody).

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::emulator::Emu;
use common::mount::BinMount;
use common::unique_suffix;
use ossmount::store::ObjectStore;

const NOBODY: u32 = 65534;

/// A mountpoint other users can reach (test temp dirs are 0700).
fn shared_dir(tag: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("ossmount-{tag}-"))
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn mount(emu: &Emu, at: &Path, extra: &[&str]) -> BinMount {
    BinMount::start(emu, at, extra).unwrap_or_else(|e| panic!("mount {extra:?}: {e}"))
}

fn as_nobody(script: &str) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(script)
        .output()
        .expect("setpriv")
}

fn sh(script: &str) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// `stat` of `p` without following links: (mode, uid, gid, mtime secs, mtime nsec).
fn st(p: &Path) -> (u32, u32, u32, i64, i64) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode(), m.uid(), m.gid(), m.mtime(), m.mtime_nsec())
}

/// Reproduction 1: a 0600 file is not readable by another user after a remount with
/// `--allow-other`, also after `ls -l` of its directory.
#[test]
fn private_file_stays_private_after_remount() {
    let emu = Emu::start("private-file", |c| c);
    let top = shared_dir("private");
    let at = top.path().join("m");
    {
        let m = mount(&emu, &at, &["--allow-other"]);
        std::fs::create_dir(m.path("dir")).unwrap();
        std::fs::set_permissions(m.path("dir"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(m.path("dir/f"), "s\n").unwrap();
        std::fs::set_permissions(m.path("dir/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(m.path("dir/open"), "o\n").unwrap();
        let out = as_nobody(&format!("cat {}", m.path("dir/f").display()));
        assert!(!out.status.success(), "readable before the remount");
    }
    let m = mount(&emu, &at, &["--allow-other", "--disk-cache-size", "64MiB"]);
    sh(&format!("ls -l {} >/dev/null", m.path("dir").display()));
    assert_eq!(
        std::fs::read(m.path("dir/f")).unwrap(),
        b"s\n",
        "root reads it"
    );
    // Bucket data kept locally (staging, disk read cache) is private to the mount's user.
    for p in walk(&m.cache) {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
    }
    let out = as_nobody(&format!("cat {}", m.path("dir/f").display()));
    assert!(
        !out.status.success(),
        "another user read a 0600 file: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    assert_eq!(st(&m.path("dir/f")).0 & 0o7777, 0o600);
    let out = as_nobody(&format!("cat {}", m.path("dir/open").display()));
    assert_eq!(out.stdout, b"o\n", "a 0644 file stays readable");
}

/// Reproduction 2: chmod/chown/utimens through the descriptor after the first write and
/// before close are stored (what GNU tar and `cp -a` do), with the nanoseconds.
#[test]
fn attributes_set_before_close_are_stored() {
    let emu = Emu::start("before-close", |c| c);
    let top = shared_dir("close");
    let at = top.path().join("m");
    let when = libc::timespec {
        tv_sec: 1_600_000_000,
        tv_nsec: 123_456_789,
    };
    {
        let m = mount(&emu, &at, &["--allow-other"]);
        for (name, size) in [("small", 1usize), ("big", 20 << 20)] {
            let p = cpath(&m.path(name));
            // SAFETY: plain syscalls on a descriptor this test owns.
            unsafe {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o600);
                assert!(fd >= 0);
                let data = vec![b'x'; size];
                let mut off = 0;
                while off < size {
                    let n = libc::write(fd, data[off..].as_ptr().cast(), size - off);
                    assert!(n > 0);
                    off += n as usize;
                }
                assert_eq!(libc::fchmod(fd, 0o644), 0);
                assert_eq!(libc::fchown(fd, 1234, 5678), 0);
                let times = [when, when];
                assert_eq!(libc::futimens(fd, times.as_ptr()), 0);
                assert_eq!(libc::close(fd), 0);
            }
        }
    }
    let m = mount(&emu, &at, &[]);
    for name in ["small", "big"] {
        assert_eq!(
            st(&m.path(name)),
            (
                libc::S_IFREG | 0o644,
                1234,
                5678,
                1_600_000_000,
                123_456_789
            ),
            "{name}"
        );
    }
}

/// Reproduction 3: with `--allow-other`, what a user creates is theirs: it can append to
/// its file and create files in its directory; the owner survives a remount; only root
/// gives a file away.
#[test]
fn new_entries_belong_to_the_creating_user() {
    let emu = Emu::start("owners", |c| c);
    let top = shared_dir("owners");
    let at = top.path().join("m");
    {
        let m = mount(&emu, &at, &["--allow-other"]);
        std::fs::create_dir(m.path("pub")).unwrap();
        std::fs::set_permissions(m.path("pub"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let d = m.path("pub/mine");
        let out = as_nobody(&format!(
            "umask 027 && mkdir {d} && echo a > {d}/f && echo b >> {d}/f && ln -s f {d}/l && chown 0 {d}/f",
            d = d.display()
        ));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
            "chown by a non-root user must fail: {out:?}"
        );
        assert_eq!(std::fs::read(d.join("f")).unwrap(), b"a\nb\n");
    }
    let m = mount(&emu, &at, &["--allow-other"]);
    let d = m.path("pub/mine");
    assert_eq!(st(&d).0 & 0o7777, 0o750, "umask 027 applied");
    assert_eq!((st(&d).1, st(&d).2), (NOBODY, NOBODY));
    let f = st(&d.join("f"));
    assert_eq!((f.0 & 0o7777, f.1, f.2), (0o640, NOBODY, NOBODY));
    // (A symlink's own owner is not checked: HEAD follows the link, and reading the
    // link's metadata needs GetSymlink's headers, which the store API does not return.)
    assert_eq!(std::fs::read_link(d.join("l")).unwrap(), Path::new("f"));
    // Root gives it away; the new owner is stored.
    sh(&format!("chown 1:1 {}", d.join("f").display()));
    drop(m);
    let m = mount(&emu, &at, &[]);
    let f = st(&m.path("pub/mine/f"));
    assert_eq!((f.1, f.2), (1, 1));
}

/// FIFOs, sockets and devices made through the mount (mkfifo, mknod, bind) work as such
/// (a FIFO carries data between processes), are stored with their type and device
/// number, and show as what they are after a remount in both listing modes. A user
/// without CAP_MKNOD cannot make a device (the kernel's rule) but can make a FIFO, owned
/// by it; a device node never opens a device (`nodev`).
#[test]
fn fifos_sockets_and_devices_survive_remount() {
    use std::os::unix::fs::FileTypeExt;
    let emu = Emu::start("special", |c| c);
    let top = shared_dir("special");
    let at = top.path().join("m");
    {
        let m = mount(&emu, &at, &["--allow-other"]);
        let d = m.path("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        sh(&format!(
            "cd {} && mkfifo -m 640 fifo && mknod -m 600 chr c 4 64 && mknod blk b 8 1 && \
             python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"sock\")'",
            d.display()
        ));
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd {} && (cat fifo & echo through > fifo; wait)",
                d.display()
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "through\n", "{out:?}");
        let out = as_nobody(&format!(
            "cd {} && mkfifo nf && mknod dev c 1 3",
            d.display()
        ));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
            "a device by a user without CAP_MKNOD: {out:?}"
        );
        assert!(!d.join("dev").exists());
        let out = Command::new("head")
            .arg("-c1")
            .arg(d.join("chr"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "nodev: a device node opens nothing");
    }
    // Stored as empty objects with the type in the mode and the device number.
    let client = common::emulator::client_for(emu.emu(), "special");
    let head = emu
        .block_on(client.head_object("d/chr"))
        .expect("HEAD d/chr");
    assert_eq!(head.size, 0);
    assert_eq!(head.user_meta["mode"], (libc::S_IFCHR | 0o600).to_string());
    assert_eq!(head.user_meta["rdev"], ((4 << 8) | 64).to_string());

    let want = |name: &str| -> (u32, u32, u64) {
        match name {
            "fifo" => (libc::S_IFIFO | 0o640, 0, 0),
            "nf" => (libc::S_IFIFO | 0o644, NOBODY, 0),
            "chr" => (libc::S_IFCHR | 0o600, 0, (4 << 8) | 64),
            "blk" => (libc::S_IFBLK | 0o644, 0, (8 << 8) | 1),
            "sock" => (libc::S_IFSOCK, 0, 0),
            _ => unreachable!(),
        }
    };
    for extra in [&[][..], &["--readdir-optimize"][..]] {
        let m = mount(&emu, &at, extra);
        let d = m.path("d");
        if extra.is_empty() {
            // A plain listing cannot tell: `ls -l` stats, then the types are known.
            sh(&format!("ls -l {} >/dev/null", d.display()));
        }
        let out = Command::new("find")
            .arg(&d)
            .args([
                "-type", "p", "-o", "-type", "s", "-o", "-type", "c", "-o", "-type", "b",
            ])
            .output()
            .unwrap();
        let mut found: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.rsplit('/').next().map(str::to_string))
            .collect();
        found.sort();
        assert_eq!(
            found,
            ["blk", "chr", "fifo", "nf", "sock"],
            "find {extra:?}"
        );
        for name in ["fifo", "nf", "chr", "blk", "sock"] {
            let meta = std::fs::symlink_metadata(d.join(name)).unwrap();
            let ft = meta.file_type();
            assert!(
                ft.is_fifo() || ft.is_socket() || ft.is_char_device() || ft.is_block_device(),
                "{name} {extra:?}"
            );
            let mut mode = meta.mode();
            if name == "sock" {
                mode &= !0o7777; // bind's mode is 0777 less the umask of the test runner
            }
            assert_eq!(
                (mode, meta.uid(), meta.rdev()),
                want(name),
                "{name} {extra:?}"
            );
        }
        drop(m);
    }
}

/// `--readdir-optimize --allow-other` with chosen attributes: every file shows and
/// enforces them (the stored ones are not consulted: that is the trade).
#[test]
fn readdir_optimize_shows_and_enforces_the_chosen_mode() {
    let emu = Emu::start("optimize", |c| c);
    let top = shared_dir("optimize");
    let at = top.path().join("m");
    {
        let m = mount(&emu, &at, &[]);
        std::fs::create_dir(m.path("d")).unwrap();
        std::fs::write(m.path("d/f"), "x").unwrap();
        std::fs::set_permissions(m.path("d/f"), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let args = [
        "--readdir-optimize",
        "--allow-other",
        "--uid",
        "0",
        "--gid",
        "0",
        "--file-mode",
        "0640",
        "--dir-mode",
        "0755",
    ];
    let m = mount(&emu, &at, &args);
    sh(&format!("ls -l {} >/dev/null", m.path("d").display()));
    assert_eq!(st(&m.path("d/f")).0 & 0o7777, 0o640);
    let out = as_nobody(&format!("cat {}", m.path("d/f").display()));
    assert!(
        !out.status.success(),
        "0640 root:root is not readable by nobody"
    );
    drop(m);
    // Without the explicit attributes the combination is refused, clearly.
    let r = BinMount::start(
        &emu,
        &top.path().join(format!("n{}", unique_suffix())),
        &["--readdir-optimize", "--allow-other"],
    );
    let e = r.err().expect("refused");
    assert!(
        e.contains("--uid, --gid, --file-mode and --dir-mode"),
        "{e}"
    );
}

/// A tree with modes 0400..0777, several owners, fractional mtimes and private
/// directories, copied in with `cp -a` and with `tar x`, compares equal entry by entry
/// on a fresh mount.
#[test]
fn cp_a_and_tar_round_trip_on_a_fresh_mount() {
    let emu = Emu::start("round-trip", |c| c);
    let top = shared_dir("round");
    let at = top.path().join("m");
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    let mut entries: Vec<PathBuf> = Vec::new();
    std::fs::create_dir(&tree).unwrap();
    for (i, (dmode, owner)) in [(0o700, 0u32), (0o750, 1000), (0o755, NOBODY)]
        .into_iter()
        .enumerate()
    {
        let d = tree.join(format!("d{i}"));
        std::fs::create_dir(&d).unwrap();
        for (j, mode) in [
            0o400, 0o440, 0o600, 0o640, 0o644, 0o700, 0o750, 0o755, 0o777,
        ]
        .into_iter()
        .enumerate()
        {
            let f = d.join(format!("f{mode:o}"));
            std::fs::write(&f, format!("{i}{j}")).unwrap();
            std::os::unix::fs::chown(&f, Some(owner + j as u32), Some(owner + 7)).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            set_mtime(
                &f,
                1_500_000_000 + i as i64 * 100 + j as i64,
                10_000_007 * j as i64 + 1,
            );
            entries.push(f);
        }
        std::os::unix::fs::chown(&d, Some(owner), Some(owner)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(dmode)).unwrap();
        set_mtime(&d, 1_400_000_000 + i as i64, 999_999_999 - i as i64);
        entries.push(d);
    }
    {
        let m = mount(&emu, &at, &["--allow-other"]);
        sh(&format!(
            "cp -a {} {}",
            tree.display(),
            m.path("cp").display()
        ));
        std::fs::create_dir(m.path("tar")).unwrap();
        sh(&format!(
            "tar --format=posix -C {} -cf - . | tar -C {} --same-owner -xpf -",
            tree.display(),
            m.path("tar").display()
        ));
    }
    let m = mount(&emu, &at, &["--allow-other"]);
    let mut mismatches = Vec::new();
    for copy in ["cp", "tar"] {
        for e in &entries {
            let rel = e.strip_prefix(&tree).unwrap();
            let want = st(e);
            let got = st(&m.path(copy).join(rel));
            if want != got {
                mismatches.push(format!(
                    "{copy}/{}: want {want:?} got {got:?}",
                    rel.display()
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: nsec,
    };
    let c = cpath(p);
    // SAFETY: utimensat with a valid path and two timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

/// `dir` and everything below it.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
