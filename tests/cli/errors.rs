//! The `ossmount` binary's answers to bad input: each case must exit non-zero with a
//! clear one-line message, never panic, and never print a secret.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ossmount");
const SECRET: &str = "sEcReT-VaLuE-1234567890";

/// The binary with a clean environment: no credentials, HOME in `home`, the ECS metadata
/// service pointed at a closed local port so nothing waits for 100.100.100.200.
fn ossmount(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("OSSMOUNT_ECS_METADATA_ENDPOINT", "http://127.0.0.1:1")
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    cmd
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run ossmount");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (out, stdout, stderr)
}

/// Runs and expects failure with `code` and `needle` in stderr.
fn expect_failure(cmd: &mut Command, code: i32, needle: &str) -> String {
    let (out, _, stderr) = run(cmd);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    stderr
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    expect_failure(
        ossmount(home.path()).arg("--no-such-flag"),
        2,
        "unexpected argument '--no-such-flag'",
    );
    expect_failure(
        &mut ossmount(home.path()),
        2,
        "required arguments were not provided",
    );
    expect_failure(
        ossmount(home.path()).args(["--cache-size", "lots", "bkt", "/mnt"]),
        2,
        "invalid size 'lots'",
    );
    expect_failure(
        ossmount(home.path()).args(["--metadata-ttl", "3 days", "bkt", "/mnt"]),
        2,
        "unknown unit 'days'",
    );
    expect_failure(
        ossmount(home.path()).args(["--file-mode", "999", "bkt", "/mnt"]),
        2,
        "octal",
    );
    expect_failure(
        ossmount(home.path()).args(["--signature-version", "3", "bkt", "/mnt"]),
        2,
        "invalid value '3'",
    );
}

#[test]
fn bad_bucket_region_and_options() {
    let home = tempfile::tempdir().unwrap();
    let mp = home.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let mp = mp.to_str().unwrap();
    expect_failure(
        ossmount(home.path()).args(["--region", "cn-hangzhou", "Bad_Bucket", mp]),
        1,
        "invalid bucket name",
    );
    expect_failure(
        ossmount(home.path()).args(["--region", "cn-hangzhou", "ab", mp]),
        1,
        "3 to 63",
    );
    expect_failure(
        ossmount(home.path()).args(["--region", "CN hangzhou!", "bkt", mp]),
        1,
        "invalid region",
    );
    expect_failure(
        ossmount(home.path()).args(["-o", "regoin=cn-hangzhou", "bkt", mp]),
        1,
        "unknown mount option 'regoin' (did you mean 'region'?)",
    );
    expect_failure(
        ossmount(home.path()).args([
            "--region",
            "cn-hangzhou",
            "--internal",
            "--accelerate",
            "bkt",
            mp,
        ]),
        1,
        "--internal and --accelerate",
    );
    let stderr = expect_failure(
        ossmount(home.path()).args([
            "--region",
            "cn-hangzhou",
            "-o",
            &format!("access_key_secret={SECRET}"),
            "bkt",
            mp,
        ]),
        1,
        "credentials_file",
    );
    assert!(!stderr.contains(SECRET));
}

#[test]
fn mountpoint_problems() {
    let home = tempfile::tempdir().unwrap();
    let base = ["--region", "cn-hangzhou", "bkt"];
    let missing = home.path().join("missing");
    expect_failure(
        ossmount(home.path()).args(base).arg(&missing),
        1,
        "does not exist",
    );

    let file = home.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    expect_failure(
        ossmount(home.path()).args(base).arg(&file),
        1,
        "is not a directory",
    );

    // HOME itself is not empty (it holds `file`).
    expect_failure(
        ossmount(home.path()).args(base).arg(home.path()),
        1,
        "-o nonempty",
    );

    expect_failure(
        ossmount(home.path()).args(base).arg("/proc"),
        1,
        "already mounted",
    );
}

#[test]
fn missing_credentials_say_what_was_tried() {
    let home = tempfile::tempdir().unwrap();
    let mp = home.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    // Foreground: the message comes from the process itself.
    let stderr = expect_failure(
        ossmount(home.path())
            .args(["-f", "--region", "cn-hangzhou", "bkt"])
            .arg(&mp),
        1,
        "no usable credentials",
    );
    assert!(stderr.contains("OSS_ACCESS_KEY_ID"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    // Background: the parent relays the child's error and exits non-zero.
    expect_failure(
        ossmount(home.path())
            .args(["--region", "cn-hangzhou", "bkt"])
            .arg(&mp),
        1,
        "no usable credentials",
    );
}

#[test]
fn credentials_given_by_halves_are_rejected_without_echo() {
    let home = tempfile::tempdir().unwrap();
    let mp = home.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let stderr = expect_failure(
        ossmount(home.path())
            .env("OSS_ACCESS_KEY_SECRET", SECRET)
            .args(["--region", "cn-hangzhou", "bkt"])
            .arg(&mp),
        1,
        "without its id",
    );
    assert!(!stderr.contains(SECRET));
}

#[test]
fn help_never_shows_secret_values() {
    let home = tempfile::tempdir().unwrap();
    for flag in ["--help", "-h"] {
        let (out, stdout, stderr) = run(ossmount(home.path())
            .env("OSS_ACCESS_KEY_ID", "LTAI-visible-id")
            .env("OSS_ACCESS_KEY_SECRET", SECRET)
            .env("OSS_SESSION_TOKEN", SECRET)
            .arg(flag));
        assert!(out.status.success());
        assert!(stdout.contains("--access-key-secret"), "{stdout}");
        assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
        assert!(!stdout.contains("LTAI-visible-id"));
    }
    let (_, stdout, _) = run(ossmount(home.path()).arg("--help"));
    for heading in [
        "Endpoint:",
        "Credentials:",
        "Mount:",
        "Tuning:",
        "Logging and metrics:",
        "Examples:",
    ] {
        assert!(stdout.contains(heading), "missing {heading}");
    }
}

#[test]
fn man_page_and_completions() {
    let home = tempfile::tempdir().unwrap();
    let (out, stdout, _) = run(ossmount(home.path()).arg("man"));
    assert!(out.status.success());
    assert!(
        stdout.starts_with(".ie") || stdout.contains("\n.TH ossmount"),
        "{}",
        &stdout[..200.min(stdout.len())]
    );
    assert!(stdout.contains("access\\-key\\-secret"));
    for shell in ["bash", "zsh", "fish"] {
        let (out, stdout, _) = run(ossmount(home.path()).args(["completions", shell]));
        assert!(out.status.success());
        assert!(
            stdout.contains("ossmount") && stdout.contains("metadata-ttl"),
            "{shell}"
        );
    }
    expect_failure(
        ossmount(home.path()).args(["completions", "cmd.exe"]),
        2,
        "invalid value",
    );
}

#[test]
fn regions_offline_lists_the_table() {
    let home = tempfile::tempdir().unwrap();
    let (out, stdout, _) = run(ossmount(home.path()).args(["regions", "--offline"]));
    assert!(out.status.success());
    assert!(
        stdout.contains("cn-hangzhou") && stdout.contains("oss-cn-hangzhou-internal.aliyuncs.com")
    );
    assert!(stdout.contains("built-in table"));
}

#[cfg(unix)]
#[test]
fn mount_helper_mode_translates_mount8_arguments() {
    let home = tempfile::tempdir().unwrap();
    let helper = home.path().join("mount.fuse.ossmount");
    std::os::unix::fs::symlink(BIN, &helper).unwrap();
    let missing = home.path().join("missing");
    let mut helper_cmd = Command::new(&helper);
    helper_cmd
        .env_clear()
        .env("HOME", home.path())
        .arg("my-bucket")
        .arg(&missing)
        .args(["-n", "-o", "rw,_netdev,region=ap-southeast-1,allow_other"]);
    expect_failure(&mut helper_cmd, 1, "does not exist");

    let mut bad = Command::new(&helper);
    bad.env_clear()
        .arg("my-bucket")
        .arg(&missing)
        .args(["-o", "bogus_option"]);
    expect_failure(&mut bad, 1, "unknown mount option 'bogus_option'");

    let mut ns = Command::new(&helper);
    ns.env_clear().arg("b").arg(&missing).args(["-N", "123"]);
    expect_failure(&mut ns, 1, "-N");
}

#[test]
fn list_regions_flag_needs_no_positionals() {
    let home = tempfile::tempdir().unwrap();
    // No credentials in the clean environment: the live call fails and the table is used.
    let (out, stdout, stderr) = run(ossmount(home.path()).arg("--list-regions"));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("ap-southeast-1") && stdout.contains("built-in table"),
        "{stdout}"
    );
}

#[test]
fn usage_errors_never_echo_a_misplaced_secret() {
    let home = tempfile::tempdir().unwrap();
    // A secret typed where a positional goes, and one given to a misspelled flag.
    let stderr = expect_failure(
        ossmount(home.path()).args(["--access-key-secret", SECRET, "bkt", "/mnt", SECRET]),
        2,
        "<redacted>",
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
    assert!(stderr.contains("<redacted>"), "{stderr}");
    let stderr = expect_failure(
        ossmount(home.path())
            .env("OSS_ACCESS_KEY_SECRET", SECRET)
            .args(["bkt", "/mnt", SECRET]),
        2,
        "<redacted>",
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
}

#[test]
fn bad_log_filter_is_reported_in_both_modes() {
    let home = tempfile::tempdir().unwrap();
    let mp = home.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    for extra in [&["-f"][..], &[][..]] {
        expect_failure(
            ossmount(home.path())
                .env("OSSMOUNT_LOG", "ossmount=loud")
                .args(extra)
                .args(["--region", "cn-hangzhou", "bkt"])
                .arg(&mp),
            1,
            "invalid OSSMOUNT_LOG filter 'ossmount=loud'",
        );
    }
}
