//! Shared fixtures of the reliability, model, hostile-input and security tests.
//!
//! - [`Emu`]: the in-process emulator on its own runtime, plus a client with the
//!   emulator's static keys for looking at what the server really holds (bypassing the
//!   mount and its caches).
//! - [`BinMount`]: the real `ossmount` binary in the foreground (`-f`) against the
//!   emulator, its stderr captured to a file. Dropping it unmounts (plain `umount`, then
//!   SIGKILL and `umount -l` as fallbacks), so a failing test never leaves a mount behind.
//!
//! Everything waits with a deadline: a hung mount fails the test instead of hanging CI.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ossmount::client::{ClientConfig, OssClient};
use ossmount::credentials::StaticProvider;
use ossmount::store::{MultipartUploadInfo, ObjectStore, PutOptions};
use ossmount_emulator::{EmulatorConfig, RunningEmulator, start};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_ossmount");

/// The emulator, its runtime and its data directory.
pub(crate) struct Emu {
    pub emu: Option<RunningEmulator>,
    pub client: Arc<OssClient>,
    pub bucket: String,
    pub dir: tempfile::TempDir,
    rt: Option<tokio::runtime::Runtime>,
}

impl Emu {
    /// Starts an emulator serving `bucket`; `tweak` adjusts the config (faults, metadata).
    pub(crate) fn start(bucket: &str, tweak: impl FnOnce(EmulatorConfig) -> EmulatorConfig) -> Emu {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = tweak(EmulatorConfig::new(dir.path().join("emu"), bucket));
        let emu = rt.block_on(start(cfg)).expect("emulator");
        let provider = Arc::new(StaticProvider {
            creds: emu.credentials(),
            source: "test".into(),
        });
        let mut ccfg = ClientConfig::new(emu.endpoint(), bucket, emu.region(), provider);
        ccfg.retry_base_delay = Duration::from_millis(5);
        ccfg.max_attempts = 10;
        let client = Arc::new(OssClient::new(ccfg).expect("client"));
        Emu {
            emu: Some(emu),
            client,
            bucket: bucket.to_string(),
            dir,
            rt: Some(rt),
        }
    }

    /// Stops the emulator (connections refused from now on) until [`Emu::restart`].
    pub(crate) fn stop(&mut self) {
        if let Some(e) = self.emu.take() {
            self.block_on(e.shutdown());
        }
    }

    /// Starts the emulator again on the same address and data directory.
    pub(crate) fn restart(&mut self, addr: std::net::SocketAddr) {
        let mut cfg = EmulatorConfig::new(self.dir.path().join("emu"), &self.bucket);
        cfg.listen = addr;
        let emu = self.block_on(start(cfg)).expect("restart emulator");
        self.emu = Some(emu);
    }

    pub(crate) fn emu(&self) -> &RunningEmulator {
        self.emu.as_ref().expect("emulator running")
    }

    pub(crate) fn endpoint(&self) -> String {
        self.emu().endpoint()
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("runtime").block_on(f)
    }

    /// The object's bytes as the server holds them (None when absent).
    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.block_on(async {
            let meta = self.client.head_object(key).await.ok()?;
            if meta.size == 0 {
                return Some(Vec::new());
            }
            let out = self.client.get_range(key, 0..meta.size, None).await.ok()?;
            Some(out.data.to_vec())
        })
    }

    pub(crate) fn put(&self, key: &str, data: Vec<u8>) {
        self.block_on(
            self.client
                .put_object(key, data.into(), &PutOptions::default()),
        )
        .expect("put");
    }

    /// Open multipart uploads in the whole bucket.
    pub(crate) fn uploads(&self) -> Vec<MultipartUploadInfo> {
        self.block_on(self.client.list_multipart_uploads(""))
            .expect("list uploads")
    }

    /// Directory holding the bucket's object files (for corrupting them behind the
    /// emulator's back).
    pub(crate) fn objects_dir(&self) -> PathBuf {
        self.dir
            .path()
            .join("emu")
            .join(&self.bucket)
            .join("objects")
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        drop(self.emu.take());
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Whether `path` is a mountpoint right now (from /proc/self/mountinfo).
pub(crate) fn is_mounted(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
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
        let cache = emu.dir.path().join(format!("cache-{}", unique_suffix()));
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
            // Mounted and answering (a stale entry on the same path fails stat).
            if is_mounted(&m.mnt) && std::fs::metadata(&m.mnt).is_ok() {
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

pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deterministic pseudo-random bytes (xorshift), so content is checkable without storing
/// a copy and differs at every offset.
pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
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
