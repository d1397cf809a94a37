use super::*;
use crate::cli::args::Cli;
use clap::Parser;

fn resolve(argv: &[&str]) -> Result<Config, ConfigError> {
    let mut full = vec!["ossmount"];
    full.extend_from_slice(argv);
    let cli = Cli::try_parse_from(full).expect("test argv parses");
    Config::resolve(&cli.mount, KeyOrigin::CommandLine)
}

#[test]
fn defaults_and_prefix() {
    let c = resolve(&["--region", "cn-hangzhou", "bkt:logs", "/mnt/x"]).unwrap();
    assert_eq!(c.bucket, "bkt");
    assert_eq!(c.prefix, "logs/");
    assert_eq!(c.mountpoint, PathBuf::from("/mnt/x"));
    assert_eq!(c.endpoint.region.as_deref(), Some("cn-hangzhou"));
    assert_eq!(c.endpoint.signature_version, SignatureVersion::V4);
    assert_eq!(c.tuning.cache_size, DEFAULT_CACHE_SIZE);
    assert_eq!(c.tuning.part_size, DEFAULT_PART_SIZE);
    assert_eq!(c.mount.file_mode, 0o644);
    assert_eq!(c.fs_name(), "ossmount:bkt:logs/");
    let c = resolve(&["--region", "cn-hangzhou", "bkt:a,b c", "/mnt/x"]).unwrap();
    assert_eq!(c.fs_name(), "ossmount:bkt:a_b_c/");
}

#[test]
fn options_apply_and_command_line_wins() {
    let c = resolve(&[
        "-o",
        "region=ap-southeast-1,internal,ro,allow_other,uid=1000,_netdev,cache_size=1G",
        "-o",
        "metadata-ttl=500ms,uid=1001,nonempty,x-systemd.automount",
        "--cache-size",
        "64MiB",
        "bkt",
        "mnt",
    ])
    .unwrap();
    assert_eq!(c.endpoint.region.as_deref(), Some("ap-southeast-1"));
    assert!(c.endpoint.internal);
    assert!(c.mount.read_only && c.mount.allow_other && c.mount.nonempty);
    assert_eq!(c.mount.uid, Some(1001), "later -o wins over earlier -o");
    assert_eq!(c.tuning.cache_size, 64 << 20, "flag wins over -o");
    assert_eq!(c.tuning.metadata_ttl, Duration::from_millis(500));
    assert!(c.mountpoint.is_absolute());
    assert_eq!(c.ignored_options, vec!["_netdev", "x_systemd.automount"]);

    let c = resolve(&["-o", "region=a-b", "--region", "cn-beijing", "bkt", "/m"]).unwrap();
    assert_eq!(c.endpoint.region.as_deref(), Some("cn-beijing"));
}

#[test]
fn unknown_option_suggests_a_name() {
    let e = resolve(&["-o", "regoin=x", "bkt", "/m"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown mount option 'regoin' (did you mean 'region'?)"
    );
    let e = resolve(&["-o", "frobnicate", "--region", "r1", "bkt", "/m"]).unwrap_err();
    assert!(
        e.to_string().contains("unknown mount option 'frobnicate'"),
        "{e}"
    );
}

#[test]
fn secrets_are_refused_in_options_without_echoing_them() {
    let e = resolve(&[
        "-o",
        "access_key_secret=TOPSECRET",
        "--region",
        "r1",
        "bkt",
        "/m",
    ])
    .unwrap_err();
    assert!(matches!(e, ConfigError::SecretInOptions { .. }));
    assert!(!e.to_string().contains("TOPSECRET"));
}

#[test]
fn bucket_rules() {
    for (spec, needle) in [
        ("ab", "3 to 63"),
        ("My-Bucket", "did you mean \"my-bucket\""),
        ("-abc", "start or end"),
        ("a_bc:logs/", "'_' is not allowed"),
    ] {
        let e = parse_bucket_spec(spec).unwrap_err().to_string();
        assert!(e.starts_with("invalid bucket name"), "{spec}: {e}");
        assert!(e.contains(needle), "{spec}: {e}");
    }
    assert_eq!(
        parse_bucket_spec("my-bucket-01:a/b").unwrap(),
        ("my-bucket-01".to_string(), "a/b/".to_string())
    );
}

#[test]
fn prefixes() {
    assert_eq!(normalize_prefix("").unwrap(), "");
    assert_eq!(normalize_prefix("/").unwrap(), "");
    assert_eq!(normalize_prefix("/a/b").unwrap(), "a/b/");
    assert_eq!(normalize_prefix("a/b/").unwrap(), "a/b/");
    assert!(normalize_prefix("a//b").is_err());
    assert!(normalize_prefix("a/../b").is_err());
}

#[test]
fn regions_and_endpoints() {
    let c = resolve(&["--region", "oss-cn-hangzhou", "bkt", "/m"]).unwrap();
    assert_eq!(c.endpoint.region.as_deref(), Some("cn-hangzhou"));
    let e = resolve(&["--region", "CN_Hangzhou", "bkt", "/m"]).unwrap_err();
    assert!(e.to_string().starts_with("invalid region"), "{e}");

    let c = resolve(&["--endpoint", "oss-cn-qingdao.aliyuncs.com", "bkt", "/m"]).unwrap();
    assert_eq!(c.endpoint.region.as_deref(), Some("cn-qingdao"));
    assert_eq!(c.endpoint.region_source, "inferred from --endpoint");

    let e = resolve(&["--endpoint", "http://127.0.0.1:9000", "bkt", "/m"]).unwrap_err();
    assert!(e.to_string().contains("add --region"), "{e}");
    let c = resolve(&[
        "--endpoint",
        "http://127.0.0.1:9000",
        "--signature-version",
        "1",
        "bkt",
        "/m",
    ])
    .unwrap();
    assert_eq!(c.endpoint.region, None);

    // No region and no endpoint: left to ECS metadata detection at mount time.
    let c = resolve(&["bkt", "/m"]).unwrap();
    assert_eq!(c.endpoint.region, None);
    assert!(c.endpoint.region_source.contains("ECS metadata"));

    let e = resolve(&["--endpoint", "ftp://x", "--region", "r1", "bkt", "/m"]).unwrap_err();
    assert!(e.to_string().contains("scheme"), "{e}");
}

#[test]
fn conflicts() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--internal", "--accelerate"],
            "--internal and --accelerate",
        ),
        (&["--endpoint", "h", "--internal"], "--endpoint names"),
        (&["--anonymous", "--ram-role", "r"], "--anonymous"),
        (
            &[
                "--ram-role",
                "r",
                "--access-key-id",
                "a",
                "--access-key-secret",
                "s",
            ],
            "--ram-role",
        ),
        (&["--access-key-id", "a"], "without its secret"),
        (&["--access-key-secret", "s3cr3t"], "without its id"),
        (
            &["--allow-other", "--allow-root"],
            "--allow-other and --allow-root",
        ),
        (&["--part-size", "10k"], "outside the OSS limits"),
        (&["--max-concurrency", "0"], "outside 1..1024"),
        (&["--read-ahead", "64k"], "--read-ahead"),
        (&["-o", "read_ahead=1G"], "--read-ahead"),
        (&["--retries", "0"], "outside 1..100"),
        (&["--connect-timeout", "0"], "greater than zero"),
        (&["--cname"], "--cname needs --endpoint"),
    ];
    for (extra, needle) in cases {
        let mut argv = vec!["--region", "cn-hangzhou"];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&["bkt", "/m"]);
        let e = resolve(&argv).unwrap_err().to_string();
        assert!(e.contains(needle), "{extra:?}: {e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}

#[test]
fn explicit_keys_are_redacted_in_debug() {
    let c = resolve(&[
        "--region",
        "r1",
        "--access-key-id",
        "LTAIid",
        "--access-key-secret",
        "s3cr3t",
        "bkt",
        "/m",
    ])
    .unwrap();
    assert_eq!(c.credentials.access_key_id.as_deref(), Some("LTAIid"));
    assert_eq!(
        c.credentials.access_key_secret.as_ref().map(|s| s.expose()),
        Some("s3cr3t")
    );
    let debug = format!("{c:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(c.describe_options().iter().all(|l| !l.contains("s3cr3t")));
}

#[test]
fn option_values_are_validated() {
    let e = resolve(&["-o", "uid=abc", "--region", "r1", "bkt", "/m"]).unwrap_err();
    assert!(e.to_string().starts_with("invalid value for -o uid"), "{e}");
    let e = resolve(&["-o", "cache_size=big", "--region", "r1", "bkt", "/m"]).unwrap_err();
    assert!(e.to_string().contains("invalid size 'big'"), "{e}");
    let e = resolve(&["-o", "region", "bkt", "/m"]).unwrap_err();
    assert!(e.to_string().contains("expected region=VALUE"), "{e}");
    let e = resolve(&["-o", "ro=maybe", "--region", "r1", "bkt", "/m"]).unwrap_err();
    assert!(e.to_string().contains("not a boolean"), "{e}");
    let c = resolve(&[
        "-o",
        "internal=false,sigv1,file_mode=0600",
        "--region",
        "r1",
        "bkt",
        "/m",
    ])
    .unwrap();
    assert!(!c.endpoint.internal);
    assert_eq!(c.endpoint.signature_version, SignatureVersion::V1);
    assert_eq!(c.mount.file_mode, 0o600);
}

#[test]
fn direct_io_and_read_ahead_options() {
    use crate::config::options::DirectIo;
    let base = ["--region", "cn-hangzhou", "bkt", "/m"];
    let c = resolve(&base).unwrap();
    assert_eq!(c.tuning.direct_io, DirectIo::Auto);
    assert_eq!(c.tuning.read_ahead, DEFAULT_READ_AHEAD);
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = extra.to_vec();
        v.extend_from_slice(&base);
        resolve(&v)
    };
    assert_eq!(
        with(&["-o", "direct_io"]).unwrap().tuning.direct_io,
        DirectIo::Always
    );
    assert_eq!(
        with(&["-o", "direct_io=never"]).unwrap().tuning.direct_io,
        DirectIo::Never
    );
    assert_eq!(
        with(&["--direct-io", "always", "-o", "direct_io=never"])
            .unwrap()
            .tuning
            .direct_io,
        DirectIo::Always,
        "the flag wins over -o"
    );
    let e = with(&["-o", "direct_io=sometimes"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("auto, always, never"), "{e}");
    assert_eq!(
        with(&["-o", "read_ahead=4M"]).unwrap().tuning.read_ahead,
        4 << 20
    );
    assert!(DirectIo::Auto.applies(8 << 20) && !DirectIo::Auto.applies((8 << 20) - 1));
}

#[test]
fn readdir_optimize_with_allow_other_needs_chosen_attributes() {
    let base = ["--region", "cn-hangzhou", "bkt", "/m"];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = extra.to_vec();
        v.extend_from_slice(&base);
        resolve(&v)
    };
    assert!(!with(&[]).unwrap().mount.readdir_optimize);
    assert!(
        with(&["-o", "readdir_optimize"])
            .unwrap()
            .mount
            .readdir_optimize
    );
    assert!(
        with(&["--readdir-optimize"])
            .unwrap()
            .mount
            .readdir_optimize
    );
    let e = with(&["--readdir-optimize", "--allow-other", "--uid", "0"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--uid, --gid, --file-mode and --dir-mode"),
        "{e}"
    );
    let c = with(&[
        "-o",
        "readdir_optimize,allow_other,uid=1,gid=2,file_mode=0640,dir_mode=0750",
    ])
    .unwrap();
    assert!(c.mount.readdir_optimize && c.mount.allow_other);
    assert_eq!(c.mount.file_mode, 0o640);
}

#[test]
fn metadata_ttl_indefinite_from_flag_and_option() {
    use super::units::{INDEFINITE_TTL, format_duration};
    let c = resolve(&["--metadata-ttl", "indefinite", "bkt", "/m"]).unwrap();
    assert_eq!(c.tuning.metadata_ttl, INDEFINITE_TTL);
    let c = resolve(&["-o", "metadata_ttl=Indefinite", "bkt", "/m"]).unwrap();
    assert_eq!(c.tuning.metadata_ttl, INDEFINITE_TTL);
    assert_eq!(format_duration(INDEFINITE_TTL), "indefinite");
    let err = resolve(&["-o", "metadata_ttl=forever", "bkt", "/m"]).unwrap_err();
    assert!(err.to_string().contains("indefinite"), "{err}");
}

#[test]
fn readdir_check_size_from_flag_and_option() {
    let base = ["--region", "cn-hangzhou", "bkt", "/m"];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = extra.to_vec();
        v.extend_from_slice(&base);
        resolve(&v)
    };
    assert_eq!(with(&[]).unwrap().mount.readdir_check_size, None);
    let size = |extra: &[&str]| with(extra).unwrap().mount.readdir_check_size;
    assert_eq!(size(&["--readdir-check-size", "0"]), Some(0));
    assert_eq!(
        size(&["-o", "readdir_optimize,readdir_check_size=48"]),
        Some(48)
    );
    assert!(with(&["-o", "readdir_check_size=big"]).is_err());
}

#[test]
fn write_back_from_flag_and_option() {
    let c = resolve(&["--region", "cn-hangzhou", "bkt", "/mnt/x"]).unwrap();
    assert!(!c.tuning.write_back, "off by default");
    assert_eq!(c.tuning.write_back_max_size, None);
    let c = resolve(&[
        "--region",
        "cn-hangzhou",
        "--write-back",
        "--write-back-max-size",
        "2G",
        "bkt",
        "/mnt/x",
    ])
    .unwrap();
    assert!(c.tuning.write_back);
    assert_eq!(c.tuning.write_back_max_size, Some(2 << 30));
    assert!(
        c.describe_options()
            .iter()
            .any(|l| l.starts_with("write-back: on"))
    );
    let c = resolve(&[
        "-o",
        "region=cn-hangzhou,write_back,write_back_max_size=512M",
        "bkt",
        "/mnt/x",
    ])
    .unwrap();
    assert!(c.tuning.write_back);
    assert_eq!(c.tuning.write_back_max_size, Some(512 << 20));
    assert!(
        resolve(&[
            "-o",
            "region=cn-hangzhou,write_back_max_size=lots",
            "bkt",
            "/mnt/x"
        ])
        .is_err()
    );
}
