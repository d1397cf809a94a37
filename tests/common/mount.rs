//! Mounts that always go away, and the mount table.
//!
//! - [`BinMount`]: the real `ossmount` binary in the foreground (`-f`) against the
//!   emulator, its stderr captured to a file. Dropping it unmounts (plain `umount`, then
//!   SIGKILL and `umount -l` as fallbacks), so a failing test never leaves a mount behind.
//! - [`InProcessMount`]: the filesystem core mounted by this process; drop unmounts.
//! - [`MountGuard`], [`StaleGuard`], [`unmount_lazily`]: `umount -l` on drop for mounts
//!   made some other way (mount(8), the CSI plugin, a daemonizing `ossmount`, a crash).
//! - [`is_mounted`], [`mount_line`]: the mount table; [`ossmount_cmd`]: the binary with a
//!   clean environment (no ambient credentials).
//!
//! Everything waits with a deadline: a hung mount fails the test instead of hanging CI.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BIN;
use super::emulator::Emu;
use super::unique_suffix;

/// Whether `path` is a mountpoint right now (from /proc/self/mountinfo).
pub(crate) fn is_mounted(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    // A stale mount fails stat (ENOTCONN), so canonicalize falls back to the given path.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let want = path.to_string_lossy().replace(' ', "\\040");
    table
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// The /proc/mounts line of the mount at `path`.
pub(crate) fn mount_line(path: &Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/mounts").ok()?;
    let want = path.to_string_lossy().replace(' ', "\\040");
    table
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(want.as_str()))
        .map(str::to_string)
}

/// `ossmount` with a clean environment: no ambient credentials, the ECS metadata service
/// pointed at a closed port unless a test sets it.
pub(crate) fn ossmount_cmd(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("OSSMOUNT_ECS_METADATA_ENDPOINT", "http://127.0.0.1:1");
    cmd
}

/// The `ossmount` binary serving a mount in the foreground.
pub(crate) struct BinMount {
    child: Option<Child>,
    pub mnt: PathBuf,
    pub log: PathBuf,
    /// The `--cache-dir` given to the process (staging files, disk read cache).
    pub cache: PathBuf,
}

impl BinMount {
    /// Mounts `bucket` of `emu` at `mnt` with the emulator's static keys in the
    /// environment plus `extra` arguments; waits until the mount is live.
    pub(crate) fn start(emu: &Emu, mnt: &Path, extra: &[&str]) -> Result<BinMount, String> {
        let mut cmd = ossmount_cmd(emu.dir.path());
        cmd.env("OSS_ACCESS_KEY_ID", "emulator-ak")
            .env("OSS_ACCESS_KEY_SECRET", "emulator-secret");
        Self::start_with(emu, mnt, cmd, extra)
    }

    /// Like [`BinMount::start`] with a caller-prepared command (credentials, env).
    pub(crate) fn start_with(
        emu: &Emu,
        mnt: &Path,
        cmd: Command,
        extra: &[&str],
    ) -> Result<BinMount, String> {
        let cache = emu.dir.path().join(format!("cache-{}", unique_suffix()));
        Self::start_in(emu, mnt, &cache, cmd, extra)
    }

    /// Like [`BinMount::start_with`] with a given `--cache-dir` (a remount that must find
    /// the same write-back store).
    pub(crate) fn start_in(
        emu: &Emu,
        mnt: &Path,
        cache: &Path,
        mut cmd: Command,
        extra: &[&str],
    ) -> Result<BinMount, String> {
        // A stale mount fails stat with ENOTCONN: neither create nor canonicalize it.
        if let Err(e) = std::fs::create_dir(mnt)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(format!("mkdir {}: {e}", mnt.display()));
        }
        let parent = mnt.parent().ok_or("mountpoint has no parent")?;
        let name = mnt.file_name().ok_or("mountpoint has no name")?;
        let mnt = parent.canonicalize().map_err(|e| e.to_string())?.join(name);
        let log = emu
            .dir
            .path()
            .join(format!("ossmount-{}.log", unique_suffix()));
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let cache = cache.to_path_buf();
        cmd.args(["-f", "--region", "cn-hangzhou", "--endpoint"])
            .arg(emu.endpoint())
            .arg("--cache-dir")
            .arg(&cache)
            .args(extra)
            .arg(&emu.bucket)
            .arg(&mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        let child = cmd.spawn().map_err(|e| format!("spawn ossmount: {e}"))?;
        let mut m = BinMount {
            child: Some(child),
            mnt,
            log,
            cache,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Mounted and answering: a stale entry on the same path fails statfs with
            // ENOTCONN (stat may be answered from the kernel's attribute cache).
            if is_mounted(&m.mnt) && nix::sys::statfs::statfs(&m.mnt).is_ok() {
                return Ok(m);
            }
            if let Some(c) = m.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                m.child = None;
                return Err(format!("ossmount exited with {status}: {}", m.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!("mount did not appear in 30 s: {}", m.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Whether the process is still running (it may outlive its mount, e.g. while it
    /// uploads its write-back queue after `umount`).
    pub(crate) fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process wrote to stderr so far.
    pub(crate) fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// SIGKILL, as a crash; the mount entry stays behind (stale). The returned guard
    /// lazily unmounts it when dropped, in case the test fails before recovering it.
    pub(crate) fn kill9(mut self) -> StaleGuard {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // An empty path disarms our own Drop; the guard owns the leftover now.
        StaleGuard(std::mem::take(&mut self.mnt))
    }

    /// Clean unmount; returns the process's exit status when it ended within 30 s.
    pub(crate) fn unmount(&mut self) -> Option<std::process::ExitStatus> {
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg(&self.mnt).status();
        }
        let mut status = None;
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match c.try_wait() {
                    Ok(Some(s)) => {
                        status = Some(s);
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        status
    }
}

impl Drop for BinMount {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Lazily unmounts a crashed mount's leftover entry on drop (if still there). Declare
/// it before any new mount on the same path, so that mount is dropped first.
pub(crate) struct StaleGuard(pub PathBuf);

impl Drop for StaleGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Lazily unmounts `path` on drop when it is still a mountpoint, so a failing assertion
/// never leaves a mount behind (for mounts made by `mount(8)`, the CSI plugin, or a
/// daemonizing `ossmount`).
pub(crate) struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        unmount_lazily(&self.0);
    }
}

/// `umount -l PATH` when `path` is a mountpoint (for guards' Drop: never fails).
pub(crate) fn unmount_lazily(path: &Path) {
    if is_mounted(path) {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

/// The filesystem core mounted in this process (`ossmount::fuse::mount`) on a fresh temp
/// dir. Dropping it (or [`InProcessMount::unmount`]) unmounts, with `umount -l` as the
/// fallback, so a failing test never leaves the mount behind. Drop it before the runtime
/// the filesystem runs on.
pub(crate) struct InProcessMount {
    handle: Option<ossmount::fuse::MountHandle>,
    pub dir: tempfile::TempDir,
}

impl InProcessMount {
    pub(crate) fn new(
        fs: std::sync::Arc<ossmount::fs::Filesystem>,
        opts: &ossmount::fuse::MountOptions,
    ) -> InProcessMount {
        let dir = tempfile::tempdir().expect("mountpoint");
        let handle = ossmount::fuse::mount(fs, dir.path(), opts).expect("mount");
        InProcessMount {
            handle: Some(handle),
            dir,
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `script` with `sh -c` in the mount; fails the test when it fails.
    pub(crate) fn sh(&self, script: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "`{script}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn unmount(&mut self) {
        if let Some(h) = self.handle.take()
            && h.unmount().is_err()
        {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

impl Drop for InProcessMount {
    fn drop(&mut self) {
        self.unmount();
    }
}
