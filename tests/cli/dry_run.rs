//! `ossmount --dry-run` against the in-process emulator: the whole resolution chain
//! (config → endpoint → credentials → client → bucket probe) without mounting, and the
//! hints printed for the classic first-mount failures.

use std::path::Path;
use std::process::{Command, Output};

use ossmount_emulator::{EmulatorConfig, RunningEmulator, start};

const BIN: &str = env!("CARGO_BIN_EXE_ossmount");
const BUCKET: &str = "dry-run-bucket";

struct Fixture {
    _rt: tokio::runtime::Runtime,
    emulator: RunningEmulator,
    dir: tempfile::TempDir,
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
    Fixture {
        _rt: rt,
        emulator,
        dir,
    }
}

impl Fixture {
    fn mountpoint(&self) -> std::path::PathBuf {
        self.dir.path().join("mnt")
    }

    /// `ossmount --dry-run` with a clean environment and the emulator's keys in the env.
    fn dry_run(&self, secret: &str, extra: &[&str], bucket: &str) -> Command {
        let mut cmd = clean(self.dir.path());
        cmd.env("OSS_ACCESS_KEY_ID", "emulator-ak")
            .env("OSS_ACCESS_KEY_SECRET", secret)
            .args(["--dry-run", "--region", "cn-hangzhou", "--endpoint"])
            .arg(format!("http://{}", self.emulator.addr()))
            .args(extra)
            .arg(bucket)
            .arg(self.mountpoint());
        cmd
    }
}

fn clean(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("OSSMOUNT_ECS_METADATA_ENDPOINT", "http://127.0.0.1:1")
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    cmd
}

fn output(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run ossmount");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out, stdout, stderr)
}

#[test]
fn dry_run_reports_everything_and_does_not_mount() {
    let f = fixture();
    let (out, stdout, stderr) =
        output(&mut f.dry_run("emulator-secret", &["-o", "ro,uid=1000,_netdev"], BUCKET));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    for needle in [
        "dry run",
        &format!("endpoint: http://{}", f.emulator.addr()),
        "--endpoint",
        "region: cn-hangzhou (--region)",
        "credentials: environment OSS_ACCESS_KEY_ID",
        "access: read-only",
        "uid 1000",
        "bucket check: ok",
        "abandoned multipart uploads (>24h): none",
        "ignored mount options: _netdev",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("emulator-secret") && !stderr.contains("emulator-secret"));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(f.mountpoint().to_str().unwrap()));
}

#[test]
fn wrong_secret_is_signature_does_not_match_with_hint() {
    let f = fixture();
    let (out, _, stderr) = output(&mut f.dry_run("not-the-secret", &[], BUCKET));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    assert!(
        stderr.contains("hint: the AccessKey secret does not match"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
}

#[test]
fn unknown_bucket_is_no_such_bucket_with_hint() {
    let f = fixture();
    let (out, _, stderr) = output(&mut f.dry_run("emulator-secret", &[], "no-such-bucket"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NoSuchBucket"), "{stderr}");
    assert!(
        stderr.contains("hint: the bucket does not exist"),
        "{stderr}"
    );
}

#[test]
fn unknown_key_id_is_reported() {
    let f = fixture();
    let (out, _, stderr) = output(
        f.dry_run("emulator-secret", &[], BUCKET)
            .env("OSS_ACCESS_KEY_ID", "someone-else"),
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("InvalidAccessKeyId"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn connection_refused_has_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    // Port 1 on loopback: nothing listens there.
    let (out, _, stderr) = output(
        clean(dir.path())
            .env("OSS_ACCESS_KEY_ID", "a")
            .env("OSS_ACCESS_KEY_SECRET", "b")
            .args([
                "--dry-run",
                "--retries",
                "1",
                "--region",
                "cn-hangzhou",
                "--endpoint",
                "http://127.0.0.1:1",
                "bkt",
            ])
            .arg(&mp),
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("hint: nothing accepts connections"),
        "{stderr}"
    );
}

#[test]
fn credentials_file_is_used_and_named() {
    let f = fixture();
    let passwd = f.dir.path().join("passwd-ossfs");
    std::fs::write(&passwd, format!("{BUCKET}:emulator-ak:emulator-secret\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = clean(f.dir.path());
    cmd.args(["--dry-run", "--region", "cn-hangzhou", "--endpoint"])
        .arg(format!("http://{}", f.emulator.addr()))
        .arg("--credentials-file")
        .arg(&passwd)
        .arg(BUCKET)
        .arg(f.mountpoint());
    let (out, stdout, stderr) = output(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("passwd-ossfs"), "{stdout}");
}
