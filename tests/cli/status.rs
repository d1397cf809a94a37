//! `ossmount status MOUNTPOINT` against a real background mount of the emulator (no
//! `--metrics-addr`): it reports the endpoint, the credential source without the secret,
//! cache and upload figures and error counters; a path that is not a mount gets a clear
//! error. Needs root for the FUSE mount (see `common::require_root`).

use std::path::Path;
use std::process::Command;

use crate::common::mount::MountGuard;
use crate::common::require_root;
use ossmount_emulator::{EmulatorConfig, start};

const BIN: &str = env!("CARGO_BIN_EXE_ossmount");
const BUCKET: &str = "status-bucket";

fn status(path: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("status")
        .args(extra)
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn status_reports_a_running_mount() {
    if !require_root("status_reports_a_running_mount") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("i17-status-")
        .tempdir()
        .unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir(root.join("data")).unwrap();
    let mountpoint = root.join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let emulator = rt
        .block_on(start(EmulatorConfig::new(root.join("data"), BUCKET)))
        .unwrap();

    // Not a mount (yet): a clear error, exit 1.
    let (ok, _, stderr) = status(&mountpoint, &[]);
    assert!(!ok);
    assert!(stderr.contains("is not an ossmount mount"), "{stderr}");

    let out = Command::new(BIN)
        .arg(format!("{BUCKET}:logs/"))
        .arg(&mountpoint)
        .arg("--endpoint")
        .arg(format!("http://{}", emulator.addr()))
        .arg("--region")
        .arg("cn-hangzhou")
        .arg("--log-file")
        .arg(root.join("ossmount.log"))
        .env("OSS_ACCESS_KEY_ID", "emulator-ak")
        .env("OSS_ACCESS_KEY_SECRET", "emulator-secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _guard = MountGuard(mountpoint.clone());
    std::fs::write(mountpoint.join("a.txt"), vec![7u8; 100_000]).unwrap();
    assert_eq!(
        std::fs::read(mountpoint.join("a.txt")).unwrap().len(),
        100_000
    );
    assert!(std::fs::metadata(mountpoint.join("missing")).is_err());
    std::fs::create_dir(mountpoint.join("d")).unwrap();
    std::fs::write(mountpoint.join("d/f"), b"f").unwrap();
    let err = std::fs::remove_dir(mountpoint.join("d")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));

    let (ok, stdout, stderr) = status(&mountpoint, &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("mountpoint: {}", mountpoint.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("bucket: {BUCKET} (prefix logs/)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("endpoint: http://{}", emulator.addr())),
        "{stdout}"
    );
    assert!(
        stdout.contains("credentials: environment OSS_ACCESS_KEY_ID"),
        "{stdout}"
    );
    assert!(stdout.contains("mode: read-write"), "{stdout}");
    assert!(stdout.contains("cache: "), "{stdout}");
    assert!(stdout.contains("upload parts"), "{stdout}");
    assert!(!stdout.contains("emulator-secret"));
    // The write went out as at least one PUT; the lookup of a missing name is a FUSE error.
    let oss_line = stdout.lines().find(|l| l.starts_with("oss: ")).unwrap();
    let requests: u64 = oss_line[5..].split(' ').next().unwrap().parse().unwrap();
    assert!(requests >= 2, "{oss_line}");
    // The failed rmdir (ENOTEMPTY) counts as an error; the ENOENT lookup does not.
    let fuse_line = stdout.lines().find(|l| l.starts_with("fuse: ")).unwrap();
    assert!(
        fuse_line.contains(", 1 answered with an error"),
        "{fuse_line}"
    );

    let (ok, json, _) = status(&mountpoint, &["--json"]);
    assert!(ok);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["bucket"], BUCKET);
    assert!(
        report["metrics"]
            .as_str()
            .unwrap()
            .contains("ossmount_oss_requests_total")
    );

    // The control socket is owner-only and disappears with the mount.
    let socket = ossmount::control::socket_path(&mountpoint);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "socket mode {mode:o}");
    assert!(
        Command::new("umount")
            .arg(&mountpoint)
            .status()
            .unwrap()
            .success()
    );
    let start = std::time::Instant::now();
    while socket.exists() && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !socket.exists(),
        "control socket removed when the mount ends"
    );
    let (ok, _, stderr) = status(&mountpoint, &[]);
    assert!(
        !ok && stderr.contains("is not an ossmount mount"),
        "{stderr}"
    );
}
