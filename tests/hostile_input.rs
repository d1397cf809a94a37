//! Hostile or broken input that `tests/cli_*` does not cover yet: credentials files with
//! loose permissions, expired STS credentials, endpoints that cannot be resolved, and
//! object keys that cannot be file names (or are as long as OSS allows) seen through a
//! real mount, plus names over 255 bytes and keys over 1023 bytes created through it.
//! Every case gets a clear error or errno; nothing panics, hangs or leaks a secret.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use common::emulator::Emu;
use common::mount::{BinMount, ossmount_cmd};
use common::with_timeout;

fn run(mut cmd: std::process::Command) -> (Output, String) {
    let out = with_timeout("ossmount", Duration::from_secs(60), move || {
        cmd.output().expect("run ossmount")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "panic: {text}");
    (out, text)
}

fn dry_run(emu: &Emu) -> std::process::Command {
    let mut cmd = ossmount_cmd(emu.dir.path());
    let mnt = emu.dir.path().join("mnt");
    let _ = std::fs::create_dir(&mnt);
    cmd.args([
        "--dry-run",
        "--region",
        "cn-hangzhou",
        "--retries",
        "1",
        "--endpoint",
    ])
    .arg(emu.endpoint())
    .arg(&emu.bucket)
    .arg(mnt);
    cmd
}

#[test]
fn credentials_file_readable_by_others_is_refused() {
    let emu = Emu::start("creds-file", |c| c);
    let file = emu.dir.path().join("passwd-ossmount");
    std::fs::write(&file, "emulator-ak:emulator-secret\n").unwrap();
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut cmd = dry_run(&emu);
        cmd.arg("--credentials-file").arg(&file);
        let (out, text) = run(cmd);
        assert_eq!(out.status.code(), Some(1), "mode {mode:o}: {text}");
        assert!(
            text.contains("accessible by other users"),
            "mode {mode:o}: {text}"
        );
        assert!(!text.contains("emulator-secret"), "secret leaked: {text}");
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = dry_run(&emu);
    cmd.arg("--credentials-file").arg(&file);
    let (out, text) = run(cmd);
    assert_eq!(
        out.status.code(),
        Some(0),
        "mode 600 must be accepted: {text}"
    );
}

#[test]
fn expired_sts_credentials_are_a_clear_error() {
    let emu = Emu::start("expired-creds", |c| c);
    let creds = emu.emu().issue_sts(Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(1500));
    let secret = creds.access_key_secret.expose().to_string();
    let token = creds
        .security_token
        .as_ref()
        .map(|t| t.expose().to_string())
        .unwrap_or_default();
    let mut cmd = dry_run(&emu);
    cmd.env("OSS_ACCESS_KEY_ID", &creds.access_key_id)
        .env("OSS_ACCESS_KEY_SECRET", &secret)
        .env("OSS_SESSION_TOKEN", &token)
        .env("OSSMOUNT_LOG", "trace");
    let (out, text) = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let lower = text.to_lowercase();
    assert!(lower.contains("expired"), "no mention of expiry: {text}");
    assert!(!text.contains(&secret), "secret leaked: {text}");
    assert!(!text.contains(&token), "token leaked: {text}");

    // A wrong token for otherwise valid temporary keys.
    let fresh = emu.emu().issue_sts(Duration::from_secs(600));
    let mut cmd = dry_run(&emu);
    cmd.env("OSS_ACCESS_KEY_ID", &fresh.access_key_id)
        .env("OSS_ACCESS_KEY_SECRET", fresh.access_key_secret.expose())
        .env("OSS_SESSION_TOKEN", "not-the-token");
    let (out, text) = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!text.contains(fresh.access_key_secret.expose()));
    eprintln!(
        "expired/wrong STS: {}",
        text.lines()
            .find(|l| l.starts_with("ossmount:"))
            .unwrap_or("")
    );
}

#[test]
fn unresolvable_endpoint_fails_fast_and_clearly() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut cmd = ossmount_cmd(home.path());
    cmd.env("OSS_ACCESS_KEY_ID", "ak")
        .env("OSS_ACCESS_KEY_SECRET", "sk-unresolvable-secret")
        .args([
            "--dry-run",
            "--region",
            "cn-hangzhou",
            "--retries",
            "1",
            "--connect-timeout",
            "2s",
            "--endpoint",
            "http://no-such-host.invalid",
            "bkt",
        ])
        .arg(&mnt);
    let (out, text) = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("no-such-host.invalid"), "{text}");
    assert!(!text.contains("sk-unresolvable-secret"));
}

#[test]
fn odd_keys_and_long_names_through_the_mount() {
    let emu = Emu::start("odd-keys", |c| c);
    let long_component = "c".repeat(256);
    // Four components of 250 bytes + separators + file name = exactly 1023 bytes.
    let deep_dirs: Vec<String> = (0..4).map(|i| format!("{i}{}", "d".repeat(249))).collect();
    let prefix = deep_dirs.join("/") + "/";
    let file_name = "f".repeat(1023 - prefix.len());
    let longest_key = format!("{prefix}{file_name}");
    assert_eq!(longest_key.len(), 1023);
    let hidden = [
        "odd/a//b".to_string(),
        "odd/dir/../escape".to_string(),
        "odd/./dot".to_string(),
        format!("odd/{long_component}"),
        format!("odd/{long_component}/below"),
    ];
    let visible = [
        "odd/new\nline".to_string(),
        "odd/tab\there".to_string(),
        "odd/back\\slash".to_string(),
        "odd/ünïcödé €".to_string(),
        "odd/ spaces ".to_string(),
        "odd/%2F".to_string(),
        "odd/-rf".to_string(),
    ];
    for k in hidden.iter().chain(visible.iter()) {
        emu.put(k, k.as_bytes().to_vec());
    }
    emu.put(&longest_key, b"deep".to_vec());
    // A file and a directory of the same name: the directory wins (documented).
    emu.put("clash", b"file".to_vec());
    emu.put("clash/inner", b"inner".to_vec());

    let dir = tempfile::tempdir().unwrap();
    let mnt = BinMount::start(&emu, &dir.path().join("mnt"), &[]).expect("mount");
    let mut names: Vec<String> = std::fs::read_dir(mnt.path("odd"))
        .expect("readdir odd")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = visible
        .iter()
        .map(|k| k.trim_start_matches("odd/").to_string())
        .collect();
    // `odd/a//b` and `odd/dir/../escape` still make `a` and `dir` directories.
    want.extend(["a".to_string(), "dir".to_string()]);
    want.sort();
    assert_eq!(names, want);
    for k in &visible {
        assert_eq!(
            std::fs::read(mnt.path(k)).unwrap_or_else(|e| panic!("{k:?}: {e}")),
            k.as_bytes()
        );
    }
    assert_eq!(
        std::fs::read(mnt.path(&longest_key)).expect("1023-byte key"),
        b"deep"
    );

    assert!(mnt.path("clash").is_dir(), "directory should win over file");
    assert_eq!(
        std::fs::read(mnt.path("clash/inner")).expect("clash/inner"),
        b"inner"
    );

    // Creating names over 255 bytes: ENAMETOOLONG from the kernel or from us.
    let too_long = mnt.path(&format!("odd/{long_component}"));
    let err = std::fs::write(&too_long, b"x").expect_err("256-byte name");
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG), "{err}");
    // A key over 1023 bytes: refused with a clear errno, nothing uploaded.
    let over = mnt.path(&format!("{prefix}{file_name}g"));
    let err = std::fs::write(&over, b"x").expect_err("1024-byte key");
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG), "{err}");
    let over_dir = mnt.path(&format!("{prefix}{file_name}"));
    let err = std::fs::create_dir(over_dir.with_extension("dd")).expect_err("1024+ byte dir");
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG), "{err}");
    let log = mnt.log_text();
    assert!(!log.contains("panicked"), "{log}");
    eprintln!(
        "odd keys: {} hidden, {} visible, a 1023-byte key read, >255-byte name and >1023-byte key refused",
        hidden.len(),
        visible.len()
    );
}

#[test]
fn self_referencing_and_chained_symlinks_are_links_not_eio() {
    let emu = Emu::start("odd-links", |c| c);
    let dir = tempfile::tempdir().unwrap();
    // No metadata caching: every lstat asks the server (HEAD follows the link there).
    let mnt =
        BinMount::start(&emu, &dir.path().join("mnt"), &["--metadata-ttl", "0"]).expect("mount");
    // `loop` names itself (as a key, too); `a` -> `b` -> `missing`.
    std::os::unix::fs::symlink("loop", mnt.path("loop")).expect("ln -s loop loop");
    std::os::unix::fs::symlink("b", mnt.path("a")).expect("ln -s b a");
    std::os::unix::fs::symlink("missing", mnt.path("b")).expect("ln -s missing b");
    for (name, target) in [("loop", "loop"), ("a", "b"), ("b", "missing")] {
        let meta = std::fs::symlink_metadata(mnt.path(name))
            .unwrap_or_else(|e| panic!("lstat {name}: {e}\n{}", mnt.log_text()));
        assert!(meta.file_type().is_symlink(), "{name}");
        assert_eq!(
            std::fs::read_link(mnt.path(name)).expect("readlink"),
            std::path::PathBuf::from(target)
        );
    }
    let err = std::fs::read(mnt.path("loop")).expect_err("loop");
    assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
    let err = std::fs::read(mnt.path("a")).expect_err("dangling chain");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
    let names: Vec<_> = std::fs::read_dir(&mnt.mnt)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

/// Odd option values: each must be refused with a message (exit 1 or 2) or accepted —
/// never a panic or a hang. Accepted ones must then mount and serve a read and a write.
#[test]
fn odd_option_values_are_refused_or_work() {
    let emu = Emu::start("odd-options", |c| c);
    emu.put("probe.txt", b"probe".to_vec());
    let cases: &[&[&str]] = &[
        &["--part-size", "0"],
        &["--part-size", "1"],
        &["--part-size", "6GiB"],
        &["--part-size", "99999999999999999999"],
        &["--max-concurrency", "0"],
        &["--max-concurrency", "100000"],
        &["--retries", "0"],
        &["--retries", "4294967295"],
        &["--cache-size", "0"],
        &["--cache-size", "-1"],
        &["--cache-size", "1"],
        &["--disk-cache-size", "1"],
        &["--metadata-ttl", "-5"],
        &["--metadata-ttl", "99999999999999s"],
        &["--connect-timeout", "0"],
        &["--readwrite-timeout", "0"],
        &["--uid", "-1"],
        &["--file-mode", "7777"],
        &["--dir-mode", "0"],
        &["-o", "uid=abc"],
        &["-o", ",,,"],
        &["-o", "part_size="],
        &["-o", "cache_size=1Q"],
        &["--endpoint", "ftp://127.0.0.1:21"],
        &["--endpoint", "http://[::1"],
        &["--endpoint", "http://127.0.0.1:99999"],
        &["--endpoint", ""],
        &["--region", ""],
        &["--metrics-addr", "127.0.0.1:99999"],
        &["--log-file", "/proc/nonexistent/x.log"],
    ];
    let mut refused = 0;
    let mut accepted = 0;
    for extra in cases {
        let mut cmd = ossmount_cmd(emu.dir.path());
        let mnt = emu.dir.path().join(format!("mnt-{}", refused + accepted));
        std::fs::create_dir(&mnt).unwrap();
        cmd.env("OSS_ACCESS_KEY_ID", "emulator-ak")
            .env("OSS_ACCESS_KEY_SECRET", "emulator-secret")
            .arg("--dry-run");
        if !extra.contains(&"--region") {
            cmd.args(["--region", "cn-hangzhou"]);
        }
        if !extra.contains(&"--endpoint") {
            cmd.arg("--endpoint").arg(emu.endpoint());
        }
        cmd.args(*extra).arg(&emu.bucket).arg(&mnt);
        let (out, text) = run(cmd);
        match out.status.code() {
            Some(0) => {
                accepted += 1;
                // Accepted: it must also mount and work.
                // (The dry run does not open the log file; the mount may still refuse,
                // but only with a clear message.)
                let m = match BinMount::start(&emu, &mnt, extra) {
                    Ok(m) => m,
                    Err(e) => {
                        assert!(!e.contains("panicked"), "{extra:?}: {e}");
                        assert!(e.contains("ossmount: "), "{extra:?}: unclear failure: {e}");
                        eprintln!("{extra:?}: dry run ok, mount refused: {}", e.trim());
                        accepted -= 1;
                        refused += 1;
                        continue;
                    }
                };
                let probe = m.path("probe.txt");
                let got = with_timeout("read probe", Duration::from_secs(30), move || {
                    std::fs::read(probe)
                });
                assert_eq!(got.expect("read probe").as_slice(), b"probe", "{extra:?}");
                let big = m.path("written.bin");
                let data = common::pattern(3 << 20, 5);
                let expected = data.clone();
                with_timeout("write", Duration::from_secs(60), move || {
                    std::fs::write(&big, &data)?;
                    std::fs::read(&big)
                })
                .map(|back| assert!(back == expected, "{extra:?}: read back differs"))
                .unwrap_or_else(|e| panic!("{extra:?}: write: {e}"));
            }
            Some(1) | Some(2) => {
                assert!(
                    text.contains("ossmount:") || text.contains("error:"),
                    "{extra:?}: no error message: {text}"
                );
                refused += 1;
            }
            other => panic!("{extra:?}: exit {other:?}: {text}"),
        }
        eprintln!(
            "{extra:?}: exit {:?}: {}",
            out.status.code(),
            text.lines()
                .find(|l| l.starts_with("ossmount:") || l.starts_with("error:"))
                .unwrap_or("ok")
        );
    }
    eprintln!(
        "odd option values: {} cases, {refused} refused, {accepted} accepted",
        cases.len()
    );
}

#[test]
fn mounting_twice_on_the_same_directory_is_refused() {
    let emu = Emu::start("twice", |c| c);
    let dir = tempfile::tempdir().unwrap();
    let mnt = BinMount::start(&emu, &dir.path().join("mnt"), &[]).expect("mount");
    let mut cmd = ossmount_cmd(emu.dir.path());
    cmd.env("OSS_ACCESS_KEY_ID", "emulator-ak")
        .env("OSS_ACCESS_KEY_SECRET", "emulator-secret")
        .args(["-f", "--region", "cn-hangzhou", "--endpoint"])
        .arg(emu.endpoint())
        .arg(&emu.bucket)
        .arg(&mnt.mnt);
    let (out, text) = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("already mounted"), "{text}");
    assert!(
        text.contains("ossmount:twice"),
        "should name the mount: {text}"
    );
    // The first mount is unaffected.
    std::fs::write(mnt.path("still.txt"), b"fine").expect("first mount still works");
}
