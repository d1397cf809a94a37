//! Durable write-back (`--write-back`, issue 18) through real mounts of the `ossmount`
//! binary on the emulator: what the daemon and the commands around it promise.
//!
//! - kill -9 of the daemon with files pending, then a remount with the same store: every
//!   file is exact on the server (`ossmount sync` returns once they are);
//! - `umount` returns at once while uploads are held back; the process keeps running,
//!   `ossmount status` (pending files, the unmounted state) and `ossmount sync` work on
//!   the unmounted path, and the process exits 0 once the queue is drained;
//! - a second SIGTERM during the drain exits with status 3 and leaves the rest in the
//!   store for the next mount;
//! - two mounts cannot share one store.
//!
//! Uploads are held back with an emulator fault rule (every PutObject refused with
//! InternalError, which the uploader retries) and released by clearing it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::emulator::Emu;
use common::mount::{BinMount, ossmount_cmd};
use common::{pattern, require_root, wait_until};
use ossmount_emulator::FaultRule;

const BUCKET: &str = "write-back";
const FILE_SIZE: usize = 16 * 1024;

/// The emulator and a scratch directory for mountpoints and stores.
struct Fixture {
    emu: Emu,
    top: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            emu: Emu::start(BUCKET, |c| c),
            top: tempfile::Builder::new()
                .prefix("write-back-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.top.path().join(name)
    }

    /// A `--write-back` mount at `mnt` whose store is under `cache`.
    fn mount(&self, mnt: &Path, cache: &Path, extra: &[&str]) -> Result<BinMount, String> {
        let mut cmd = ossmount_cmd(self.emu.dir.path());
        cmd.env("OSS_ACCESS_KEY_ID", "emulator-ak")
            .env("OSS_ACCESS_KEY_SECRET", "emulator-secret");
        let mut args = vec!["--write-back"];
        args.extend_from_slice(extra);
        BinMount::start_in(&self.emu, mnt, cache, cmd, &args)
    }

    /// Every PutObject of a file written by [`Fixture::write_files`] under `dir` refused
    /// (retried by the uploader) until [`Fixture::release`]; the directory itself can
    /// still be made.
    fn hold_uploads(&self, dir: &str) {
        let rule = FaultRule::new("PutObject", "InternalError").under(&format!("{dir}/f"));
        self.emu
            .emu()
            .set_fault_rules(vec![rule])
            .expect("fault rules");
    }

    fn release(&self) {
        self.emu.emu().set_fault_rules(vec![]).expect("fault rules");
    }

    /// Writes `n` files of 16 KiB under `dir/` of the mount; returns (key, data) pairs.
    fn write_files(&self, m: &BinMount, dir: &str, n: usize) -> Vec<(String, Vec<u8>)> {
        std::fs::create_dir_all(m.path(dir)).expect("mkdir in the mount");
        (0..n)
            .map(|i| {
                let key = format!("{dir}/f{i:03}");
                let data = pattern(FILE_SIZE, i as u64 + 1);
                std::fs::write(m.path(&key), &data).expect("write through the mount");
                (key, data)
            })
            .collect()
    }

    /// Keys of `files` that are not on the server with exactly their data.
    fn not_exact(&self, files: &[(String, Vec<u8>)]) -> Vec<String> {
        files
            .iter()
            .filter(|(key, data)| self.emu.get(key).as_ref() != Some(data))
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// `ossmount SUBCOMMAND MOUNTPOINT ...`, failing the test when it runs over 60 s.
fn ossmount(args: &[&str], mnt: &Path) -> Output {
    let mut cmd: Command = ossmount_cmd(Path::new("/"));
    cmd.args(args).arg(mnt);
    common::with_timeout(
        &format!("ossmount {args:?}"),
        Duration::from_secs(60),
        move || cmd.output().expect("run ossmount"),
    )
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ossmount status --json MOUNTPOINT`'s write-back section.
fn write_back_status(mnt: &Path) -> serde_json::Value {
    let out = ossmount(&["status", "--json"], mnt);
    assert!(out.status.success(), "ossmount status: {}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    report["write_back"].clone()
}

#[test]
fn kill_9_then_a_remount_with_the_same_store_uploads_every_file() {
    if !require_root("kill_9_then_a_remount_with_the_same_store_uploads_every_file") {
        return;
    }
    let fx = Fixture::new();
    let (mnt, cache) = (fx.dir("mnt"), fx.dir("cache"));
    fx.hold_uploads("crash");
    let m = fx.mount(&mnt, &cache, &[]).expect("mount");
    let files = fx.write_files(&m, "crash", 20);
    // Closed, durable in the store, none on the server.
    let wb = write_back_status(&mnt);
    assert_eq!(wb["pending_files"], 20, "{wb}");
    assert_eq!(fx.not_exact(&files).len(), 20);
    let _stale = m.kill9();
    fx.release();
    let m = fx
        .mount(&mnt, &cache, &["--recover-stale-mount"])
        .expect("remount with the same store");
    let out = ossmount(&["sync"], &mnt);
    assert!(out.status.success(), "ossmount sync: {}", text(&out));
    assert_eq!(
        fx.not_exact(&files),
        Vec::<String>::new(),
        "{}",
        m.log_text()
    );
    let mut m = m;
    let status = m.unmount().expect("the process exits");
    assert!(status.success(), "{status}: {}", m.log_text());
}

#[test]
fn after_umount_the_daemon_drains_then_exits_0_and_sync_waits_for_it() {
    if !require_root("after_umount_the_daemon_drains_then_exits_0_and_sync_waits_for_it") {
        return;
    }
    let fx = Fixture::new();
    let (mnt, cache) = (fx.dir("mnt"), fx.dir("cache"));
    fx.hold_uploads("drain");
    let mut m = fx.mount(&mnt, &cache, &[]).expect("mount");
    let files = fx.write_files(&m, "drain", 12);

    // umount returns at once although nothing is uploaded; the process stays.
    let umount = Command::new("umount").arg(&mnt).status().expect("umount");
    assert!(umount.success());
    assert!(!common::mount::is_mounted(&mnt));
    assert!(
        m.running(),
        "the daemon exited with files pending: {}",
        m.log_text()
    );

    // status and sync find the process by its socket although nothing is mounted.
    let out = ossmount(&["status"], &mnt);
    assert!(out.status.success(), "ossmount status: {}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("state: unmounted"), "{shown}");
    assert!(shown.contains("pending: 12 files"), "{shown}");

    let mut sync = ossmount_cmd(Path::new("/"))
        .args(["sync", "--timeout", "60s"])
        .arg(&mnt)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ossmount sync");
    // The uploads are refused: sync keeps waiting while an attempt fails.
    wait_until("a refused upload", Duration::from_secs(30), || {
        write_back_status(&mnt)["failing_files"].as_u64() > Some(0)
    });
    assert!(matches!(sync.try_wait(), Ok(None)), "sync returned early");
    fx.release();
    let out = common::with_timeout("ossmount sync", Duration::from_secs(90), move || {
        sync.wait_with_output().expect("sync output")
    });
    assert!(
        out.status.success(),
        "ossmount sync: {}\nmount log:\n{}",
        text(&out),
        m.log_text()
    );
    // sync returned: every file is on the server, whether or not the process is gone.
    assert_eq!(fx.not_exact(&files), Vec::<String>::new());

    let status = m.unmount().expect("the process exits once drained");
    assert!(status.success(), "{status}: {}", m.log_text());
    assert!(
        m.log_text().contains("write-back queue drained"),
        "{}",
        m.log_text()
    );
}

#[test]
fn a_second_sigterm_during_the_drain_leaves_the_rest_in_the_store() {
    if !require_root("a_second_sigterm_during_the_drain_leaves_the_rest_in_the_store") {
        return;
    }
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let fx = Fixture::new();
    let (mnt, cache) = (fx.dir("mnt"), fx.dir("cache"));
    fx.hold_uploads("signal");
    let mut m = fx.mount(&mnt, &cache, &[]).expect("mount");
    let files = fx.write_files(&m, "signal", 5);
    let pid = Pid::from_raw(m.pid().expect("pid") as i32);
    kill(pid, Signal::SIGTERM).expect("first SIGTERM");
    wait_until("the unmount", Duration::from_secs(30), || {
        !common::mount::is_mounted(&mnt)
    });
    assert!(m.running(), "the first SIGTERM must drain, not exit");
    kill(pid, Signal::SIGTERM).expect("second SIGTERM");
    let status = m.unmount().expect("the process exits");
    assert_eq!(status.code(), Some(3), "{}", m.log_text());
    assert!(m.log_text().contains("5 files"), "{}", m.log_text());
    assert_eq!(fx.not_exact(&files).len(), 5);

    // The next mount with the same store uploads them.
    fx.release();
    let mut m = fx.mount(&mnt, &cache, &[]).expect("remount");
    let out = ossmount(&["sync"], &mnt);
    assert!(out.status.success(), "ossmount sync: {}", text(&out));
    assert_eq!(fx.not_exact(&files), Vec::<String>::new());
    assert!(m.unmount().expect("exit").success());
}

#[test]
fn two_mounts_cannot_share_one_store() {
    if !require_root("two_mounts_cannot_share_one_store") {
        return;
    }
    let fx = Fixture::new();
    let cache = fx.dir("cache");
    let mut first = fx.mount(&fx.dir("a"), &cache, &[]).expect("first mount");
    let second = fx.mount(&fx.dir("b"), &cache, &[]);
    let err = match second {
        Ok(_) => panic!("a second mount shared the store {}", cache.display()),
        Err(e) => e,
    };
    assert!(
        err.contains("is in use by another ossmount") && err.contains("two mounts cannot share"),
        "unclear error: {err}"
    );
    assert!(!common::mount::is_mounted(&fx.dir("b")));
    assert!(first.unmount().expect("exit").success());
}
