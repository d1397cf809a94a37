//! The real binary mounting the in-process emulator: background mode returns only when the
//! mount is ready, `umount` ends the process, SIGTERM finishes uploads and unmounts, and a
//! stale mount left by a killed process is detected and recovered.
//!
//! Every test unmounts through [`MountGuard`] even when it fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::mount::{MountGuard, is_mounted};
use crate::common::wait_until;
use ossmount::store::ObjectStore;
use ossmount_emulator::{EmulatorConfig, RunningEmulator, start};

const BIN: &str = env!("CARGO_BIN_EXE_ossmount");
const BUCKET: &str = "mount-bucket";

struct Fixture {
    rt: tokio::runtime::Runtime,
    emulator: RunningEmulator,
    dir: tempfile::TempDir,
}

/// Kills a foreground ossmount on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::create_dir(dir.path().join("mnt")).unwrap();
    let emulator = rt
        .block_on(start(EmulatorConfig::new(dir.path().join("data"), BUCKET)))
        .unwrap();
    Fixture { rt, emulator, dir }
}

impl Fixture {
    fn mountpoint(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn ossmount(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("OSSMOUNT_ECS_METADATA_ENDPOINT", "http://127.0.0.1:1")
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .env("OSS_ACCESS_KEY_ID", "emulator-ak")
            .env("OSS_ACCESS_KEY_SECRET", "emulator-secret")
            .args(["--region", "cn-hangzhou", "--endpoint"])
            .arg(format!("http://{}", self.emulator.addr()))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(extra)
            .arg(BUCKET)
            .arg(self.mountpoint());
        cmd
    }

    fn object(&self, key: &str) -> Option<Vec<u8>> {
        let client = crate::common::emulator::client_for(&self.emulator, BUCKET);
        self.rt.block_on(async {
            let meta = client.head_object(key).await.ok()?;
            if meta.size == 0 {
                return Some(Vec::new());
            }
            client
                .get_range(key, 0..meta.size, None)
                .await
                .ok()
                .map(|o| o.data.to_vec())
        })
    }
}

#[test]
fn background_mount_is_ready_on_exit_and_umount_ends_it() {
    let f = fixture();
    let mp = f.mountpoint();
    let _guard = MountGuard(mp.clone());
    let log = f.dir.path().join("ossmount.log");
    let out = f
        .ossmount(&["--log-file", log.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Ready means ready: no waiting needed.
    assert!(is_mounted(&mp), "not mounted after exit 0");
    std::fs::write(mp.join("hello.txt"), b"hello from the cli test\n").unwrap();
    assert_eq!(
        f.object("hello.txt").as_deref(),
        Some(&b"hello from the cli test\n"[..])
    );
    assert_eq!(
        std::fs::read(mp.join("hello.txt")).unwrap(),
        b"hello from the cli test\n"
    );

    // Mounting again on the same mountpoint is refused with a clear message.
    let again = f.ossmount(&["-o", "nonempty"]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already mounted"));

    assert!(Command::new("umount").arg(&mp).status().unwrap().success());
    wait_until("ossmount to log its exit", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("ossmount exiting"))
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("reason=Unmounted"), "{text}");
    assert!(!text.contains("emulator-secret"));
}

#[test]
fn sigterm_unmounts_and_exits_zero() {
    let f = fixture();
    let mp = f.mountpoint();
    let _guard = MountGuard(mp.clone());
    let child = f
        .ossmount(&["-f"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    wait_until("the mount", Duration::from_secs(20), || is_mounted(&mp));
    std::fs::write(mp.join("before-term.txt"), b"written before SIGTERM").unwrap();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "ossmount did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(!is_mounted(&mp));
    assert_eq!(
        f.object("before-term.txt").as_deref(),
        Some(&b"written before SIGTERM"[..])
    );
}

#[test]
fn stale_mount_is_detected_and_recovered() {
    let f = fixture();
    let mp = f.mountpoint();
    let _guard = MountGuard(mp.clone());
    let child = f
        .ossmount(&["-f"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    wait_until("the mount", Duration::from_secs(20), || is_mounted(&mp));
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // The kernel keeps the dead mount: stat fails with ENOTCONN.
    let err = std::fs::metadata(&mp).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");

    let out = f.ossmount(&["-f"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stale"), "{stderr}");
    assert!(stderr.contains("--recover-stale-mount"), "{stderr}");
    assert!(!stderr.contains("panicked"));

    let out = f.ossmount(&["--recover-stale-mount"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(&mp).unwrap().is_dir());
    assert!(Command::new("umount").arg(&mp).status().unwrap().success());
}

#[test]
fn metrics_are_served_and_dumped_on_sigusr1() {
    use std::io::{Read, Write};
    let f = fixture();
    let mp = f.mountpoint();
    let _guard = MountGuard(mp.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let log = f.dir.path().join("metrics.log");
    let child = f
        .ossmount(&[
            "-f",
            "--metrics-addr",
            &addr,
            "--log-file",
            log.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    wait_until("the mount", Duration::from_secs(20), || is_mounted(&mp));
    std::fs::write(mp.join("m.txt"), b"metrics").unwrap();
    assert_eq!(std::fs::read(mp.join("m.txt")).unwrap(), b"metrics");

    let mut body = String::new();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    stream.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains(ossmount::metrics::OSS_REQUESTS), "{body}");
    assert!(body.contains(ossmount::metrics::FUSE_OPS), "{body}");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGUSR1) };
    wait_until("the SIGUSR1 dump", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| {
            l.contains("metrics (SIGUSR1)") && l.contains(ossmount::metrics::OSS_REQUESTS)
        })
    });
    // SAFETY: kill(2) takes no pointers; the pid is our own child process.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
