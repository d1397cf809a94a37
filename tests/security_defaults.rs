//! Security defaults and secret hygiene of the real binary:
//! - a mount is private to the mounting user unless `--allow-other` (checked in
//!   /proc/mounts: no `allow_other` by default) and the kernel enforces the shown
//!   permission bits (`default_permissions`) on private and shared mounts alike;
//! - TLS certificates are verified: an https endpoint with a self-signed certificate
//!   fails with a clear error (there is no switch to turn verification off);
//! - with `OSSMOUNT_LOG=trace`, neither the static secret, nor the STS secret and token
//!   handed out by the ECS metadata service, appear in any log or error output — also
//!   when requests fail.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::emulator::Emu;
use common::mount::{BinMount, mount_line, ossmount_cmd};
use common::with_timeout;
use ossmount::credentials::ecs_ram_role::{EcsRamRoleConfig, EcsRamRoleFetcher};
use ossmount::credentials::refresh::CredentialsFetcher;

const STATIC_SECRET: &str = "StAtIc-SeCrEt-4f1d2c3b5a697887";

#[test]
fn mounts_are_private_unless_allow_other() {
    let emu = Emu::start("private-mount", |c| c);
    let dir = tempfile::tempdir().unwrap();
    let private = BinMount::start(&emu, &dir.path().join("private"), &[]).expect("mount");
    let line = mount_line(&private.mnt).expect("mount listed");
    let opts = line.split(' ').nth(3).unwrap_or_default().to_string();
    assert!(line.starts_with("ossmount:private-mount "), "{line}");
    assert!(!opts.contains("allow_other"), "{line}");
    for o in ["nosuid", "nodev", "default_permissions"] {
        assert!(opts.split(',').any(|x| x == o), "{o} missing: {line}");
    }
    drop(private);

    let shared = BinMount::start(&emu, &dir.path().join("shared"), &["--allow-other"])
        .expect("mount --allow-other");
    let line = mount_line(&shared.mnt).expect("mount listed");
    let opts: Vec<&str> = line
        .split(' ')
        .nth(3)
        .unwrap_or_default()
        .split(',')
        .collect();
    assert!(opts.contains(&"allow_other"), "{line}");
    assert!(opts.contains(&"default_permissions"), "{line}");
    eprintln!("mount options: private ok, --allow-other keeps default_permissions: {line}");
}

/// An `openssl s_server` with a fresh self-signed certificate on a loopback port.
struct TlsServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    fn start() -> Option<TlsServer> {
        let dir = tempfile::tempdir().ok()?;
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = TlsServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn self_signed_tls_endpoint_is_refused() {
    let Some(server) = TlsServer::start() else {
        panic!("openssl is needed to run a self-signed TLS server for this test");
    };
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut cmd = ossmount_cmd(home.path());
    cmd.env("OSS_ACCESS_KEY_ID", "ak")
        .env("OSS_ACCESS_KEY_SECRET", STATIC_SECRET)
        .args(["--dry-run", "--region", "cn-hangzhou", "--retries", "1"])
        .arg("--endpoint")
        .arg(format!("https://127.0.0.1:{}", server.port))
        .arg("bkt")
        .arg(&mnt);
    let out = with_timeout("ossmount https", Duration::from_secs(60), move || {
        cmd.output().expect("run")
    });
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(!text.contains(STATIC_SECRET), "{text}");
    let lower = text.to_lowercase();
    assert!(
        lower.contains("certificate") || lower.contains("tls"),
        "no mention of the certificate problem: {text}"
    );
    eprintln!(
        "self-signed TLS: {}",
        text.lines()
            .find(|l| l.starts_with("ossmount:"))
            .unwrap_or("")
    );
}

#[test]
fn trace_logs_never_contain_secrets_or_tokens() {
    let emu = Emu::start("secret-hygiene", |mut c| {
        c.access_key_secret = ossmount::credentials::Secret::new(STATIC_SECRET);
        c.with_metadata()
    });
    let meta = emu.emu().metadata_addr().expect("metadata listener");
    // The set the metadata service hands out now (it keeps handing out the same one for
    // half its lifetime, i.e. for this whole test).
    let sts = emu
        .block_on(async {
            let f = EcsRamRoleFetcher::new(EcsRamRoleConfig {
                endpoint: format!("http://{meta}"),
                ..Default::default()
            })?;
            f.fetch().await
        })
        .expect("fetch STS credentials");
    let sts_secret = sts.access_key_secret.expose().to_string();
    let sts_token = sts
        .security_token
        .as_ref()
        .map(|t| t.expose().to_string())
        .expect("STS token");
    let secrets = [STATIC_SECRET.to_string(), sts_secret, sts_token];

    emu.put("hello.txt", b"hello".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let mut logs = Vec::new();

    // 1. RAM role (STS token from the metadata service).
    let mut cmd = ossmount_cmd(emu.dir.path());
    cmd.env("OSSMOUNT_ECS_METADATA_ENDPOINT", format!("http://{meta}"))
        .env("OSSMOUNT_LOG", "trace");
    let mut mnt = BinMount::start_with(
        &emu,
        &dir.path().join("role"),
        cmd,
        &["--ram-role", ossmount_emulator::ROLE_NAME],
    )
    .expect("mount with --ram-role");
    exercise(&mnt);
    mnt.unmount();
    logs.push(("ram-role mount", mnt.log_text()));
    drop(mnt);

    // 2. Static keys in the environment, including failing requests (faults on).
    let mut cmd = ossmount_cmd(emu.dir.path());
    cmd.env("OSS_ACCESS_KEY_ID", "emulator-ak")
        .env("OSS_ACCESS_KEY_SECRET", STATIC_SECRET)
        .env("OSSMOUNT_LOG", "trace");
    let mut mnt = BinMount::start_with(&emu, &dir.path().join("static"), cmd, &[]).expect("mount");
    emu.emu().set_faults(ossmount_emulator::FaultUpdate {
        fail_rate: Some(0.3),
        ..Default::default()
    });
    exercise(&mnt);
    emu.emu().set_faults(ossmount_emulator::FaultUpdate {
        fail_rate: Some(0.0),
        ..Default::default()
    });
    mnt.unmount();
    logs.push(("static-key mount", mnt.log_text()));
    drop(mnt);

    // 3. Wrong secret and a token for the wrong keys: errors on the terminal.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (what, secret, token) in [
        ("wrong secret", format!("{STATIC_SECRET}-wrong"), None),
        (
            "token for wrong keys",
            STATIC_SECRET.to_string(),
            Some(secrets[2].clone()),
        ),
    ] {
        let mut cmd = ossmount_cmd(emu.dir.path());
        cmd.env("OSS_ACCESS_KEY_ID", "emulator-ak")
            .env("OSS_ACCESS_KEY_SECRET", &secret)
            .env("OSSMOUNT_LOG", "trace")
            .args(["--dry-run", "--region", "cn-hangzhou", "--retries", "1"])
            .arg("--endpoint")
            .arg(emu.endpoint())
            .arg(&emu.bucket)
            .arg(&empty);
        if let Some(t) = token {
            cmd.env("OSS_SESSION_TOKEN", t);
        }
        let out = with_timeout("dry run", Duration::from_secs(60), move || {
            cmd.output().expect("run")
        });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        logs.push((what, text));
    }

    let mut bytes = 0;
    for (what, log) in &logs {
        assert!(!log.contains("panicked"), "{what}: {log}");
        assert!(log.len() > 200, "{what}: suspiciously little output: {log}");
        for s in &secrets {
            assert!(
                !log.contains(s.as_str()),
                "{what}: a secret ({} chars) appears in the log",
                s.len()
            );
        }
        bytes += log.len();
    }
    eprintln!(
        "secret hygiene: {} runs, {bytes} bytes of trace output, none contains the static secret, the STS secret or the STS token",
        logs.len()
    );
}

/// Some reads, writes and failures through a mount.
fn exercise(mnt: &BinMount) {
    let _ = std::fs::read(mnt.path("hello.txt"));
    let _ = std::fs::read(mnt.path("missing.txt"));
    let _ = std::fs::write(mnt.path("new.txt"), b"new content");
    let _ = std::fs::create_dir(mnt.path("sub"));
    let _ = std::fs::rename(mnt.path("new.txt"), mnt.path("sub/moved.txt"));
    let _ = std::fs::read_dir(mnt.path("sub")).map(|d| d.count());
    let _ = std::fs::remove_file(mnt.path("sub/moved.txt"));
}
