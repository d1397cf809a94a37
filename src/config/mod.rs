//! The resolved, validated configuration of one mount.
//!
//! Inputs are the parsed command line ([`options::MountArgs`]) and its `-o`
//! lists. Resolution happens in three steps:
//! 1. every `-o` item is applied, in order, to an empty copy of the argument structs
//!    (so a later `-o` wins over an earlier one);
//! 2. the command line is overlaid on top: a flag or value given on the command line
//!    always wins over `-o`;
//! 3. the merged values are validated (bucket naming rules, region syntax, conflicting
//!    endpoint or credential choices, part-size limits, …) and defaults are filled in.
//!
//! Nothing here does I/O except making paths absolute: the process may daemonize and
//! `chdir("/")` after this, so relative paths must be fixed first.
//!
//! Secrets: the AccessKey secret and STS token are held as [`Secret`], whose Debug prints
//! `<redacted>`; `-o` refuses them (mount options end up in /proc/mounts and `ps`), and
//! no error message in this module contains a secret value.

mod layer;
pub(crate) mod mount_options;
pub(crate) mod options;
pub(crate) mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::credentials::Secret;
use crate::endpoint::{
    EndpointConfig as EndpointConfigParse, EndpointError, normalize_region, region_from_host,
    validate_bucket_name,
};
pub(crate) use layer::is_known_option;
use layer::{OptionLayer, merge_connection, merge_logging, merge_mount, merge_tuning};
use mount_options::parse_option_lists;
use options::{ConnectionArgs, MountArgs, SignatureVersionArg};
use units::{format_duration, format_size};

/// Default memory block cache.
pub(crate) const DEFAULT_CACHE_SIZE: u64 = 256 << 20;
/// Default multipart part size.
pub(crate) const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// OSS limits on part sizes (every part but the last).
pub(crate) const MIN_PART_SIZE: u64 = 100 << 10;
pub(crate) const MAX_PART_SIZE: u64 = 5 << 30;
pub(crate) const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// Kernel readahead of the mount (see `fuse::raise_readahead` for why it is set via sysfs).
pub(crate) const DEFAULT_READ_AHEAD: u64 = 1 << 20;
pub(crate) const MIN_READ_AHEAD: u64 = 128 << 10;
pub(crate) const MAX_READ_AHEAD: u64 = 256 << 20;
pub(crate) const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(1);
/// Go SDK transport defaults (docs/PROTOCOL.md §5).
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_READWRITE_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_RETRIES: u32 = 3;
pub(crate) const DEFAULT_FILE_MODE: u32 = 0o644;
pub(crate) const DEFAULT_DIR_MODE: u32 = 0o755;

/// Errors found while resolving the configuration. Each message is one line meant for
/// the user, saying what is wrong and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Bucket name, region or endpoint rejected by [`crate::endpoint`].
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("invalid prefix '{prefix}': {reason}")]
    InvalidPrefix { prefix: String, reason: String },
    #[error("invalid value for {option}: {reason}")]
    InvalidValue { option: String, reason: String },
    #[error("unknown mount option '{name}'{hint}")]
    UnknownOption { name: String, hint: String },
    #[error(
        "-o {name} is not allowed: mount options are visible in /proc/mounts and ps; put the credentials in a file and use -o credentials_file=PATH (or the environment)"
    )]
    SecretInOptions { name: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Missing(String),
    #[error("cannot resolve path {path}: {reason}")]
    Path { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVersion {
    V1,
    V4,
}

/// Where and how to reach OSS.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// Region id without the `oss-` prefix (`cn-hangzhou`). None when not given: with a
    /// custom endpoint and V1 signing, or to be detected from the ECS metadata service.
    pub region: Option<String>,
    /// Explicit endpoint as given (host, host:port or URL).
    pub endpoint: Option<String>,
    pub internal: bool,
    pub accelerate: bool,
    pub disable_ssl: bool,
    pub path_style: bool,
    pub cname: bool,
    pub signature_version: SignatureVersion,
    pub connect_timeout: Duration,
    pub readwrite_timeout: Duration,
    /// Attempts per request, first one included.
    pub retries: u32,
    /// Why the region is what it is (`--region`, `inferred from --endpoint`), for `--dry-run`.
    pub region_source: String,
    /// Extra trusted CA certificates (PEM), besides the system store.
    pub ca_cert: Option<PathBuf>,
    /// Mount-wide budget of OSS requests in flight.
    pub max_inflight: usize,
}

/// Explicit credential choices. What is not set here is looked up by the provider chain
/// (environment, config files, ECS metadata).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CredentialsConfig {
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<Secret>,
    pub security_token: Option<Secret>,
    /// Where the explicit keys came from (`--access-key-id`, `environment OSS_ACCESS_KEY_ID`).
    pub keys_source: Option<String>,
    /// The explicit keys were read from `OSS_ACCESS_KEY_*` by clap, not typed as flags.
    pub keys_from_env: bool,
    pub credentials_file: Option<PathBuf>,
    pub ram_role: Option<String>,
    pub anonymous: bool,
}

/// How the mount looks locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    /// None = the mounting user's.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub file_mode: u32,
    pub dir_mode: u32,
    /// Attributes from listings and mount defaults, no HEAD per entry (see the README).
    pub readdir_optimize: bool,
    /// With readdir_optimize: listed objects up to this size are HEADed (links?).
    pub readdir_check_size: Option<u64>,
    pub nonempty: bool,
    pub foreground: bool,
    pub recover_stale_mount: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TuningConfig {
    pub cache_size: u64,
    pub cache_dir: Option<PathBuf>,
    pub disk_cache_size: u64,
    pub metadata_ttl: Duration,
    pub part_size: u64,
    pub max_concurrency: usize,
    /// Kernel readahead in bytes.
    pub read_ahead: u64,
    pub direct_io: options::DirectIo,
    /// Durable write-back (`--write-back`, see [`crate::write_back`]).
    pub write_back: bool,
    /// Bound of the write-back store; None: a default from its filesystem's free space.
    pub write_back_max_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoggingConfig {
    pub log_file: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
    pub debug: bool,
}

/// Everything a mount needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub bucket: String,
    /// Empty or ending in `/`, never starting with `/`.
    pub prefix: String,
    /// Absolute.
    pub mountpoint: PathBuf,
    pub endpoint: EndpointConfig,
    pub credentials: CredentialsConfig,
    pub mount: MountConfig,
    pub tuning: TuningConfig,
    pub logging: LoggingConfig,
    pub dry_run: bool,
    /// Generic mount options that were accepted and ignored (for the debug log).
    pub ignored_options: Vec<String>,
}

/// Where the explicit AccessKey came from, as told by clap's value source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyOrigin {
    #[default]
    CommandLine,
    Environment,
}

/// `value` if it lies in `range`, else an error naming `option` ("… is outside {what}A..B").
fn size_in_range(
    option: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
    what: &str,
) -> Result<u64, ConfigError> {
    if range.contains(&value) {
        return Ok(value);
    }
    Err(ConfigError::InvalidValue {
        option: option.into(),
        reason: format!(
            "{} is outside {what}{}..{}",
            format_size(value),
            format_size(*range.start()),
            format_size(*range.end())
        ),
    })
}

impl Config {
    /// Resolves `-o` options and the command line into a validated configuration.
    pub fn resolve(args: &MountArgs, key_origin: KeyOrigin) -> Result<Config, ConfigError> {
        let bucket_spec = args
            .bucket
            .as_deref()
            .ok_or_else(|| ConfigError::Missing("missing BUCKET argument".into()))?;
        let mountpoint = args
            .mountpoint
            .as_deref()
            .ok_or_else(|| ConfigError::Missing("missing MOUNTPOINT argument".into()))?;

        let mut from_options = OptionLayer::default();
        for opt in parse_option_lists(&args.options.options) {
            from_options.apply(&opt)?;
        }
        let conn = merge_connection(&args.connection, &from_options.connection);
        let mount = merge_mount(&args.options, &from_options.mount);
        let tuning = merge_tuning(&args.tuning, &from_options.tuning);
        let logging = merge_logging(&args.logging, &from_options.logging);

        let (bucket, prefix) = parse_bucket_spec(bucket_spec)?;
        let endpoint = resolve_endpoint(&conn)?;
        let credentials = resolve_credentials(&conn, key_origin)?;

        if mount.allow_other && mount.allow_root {
            return Err(ConfigError::Conflict(
                "--allow-other and --allow-root cannot be combined (allow_other already includes root)".into(),
            ));
        }
        if mount.readdir_optimize
            && mount.allow_other
            && (mount.uid.is_none()
                || mount.gid.is_none()
                || mount.file_mode.is_none()
                || mount.dir_mode.is_none())
        {
            return Err(ConfigError::Conflict(
                "--readdir-optimize with --allow-other needs explicit --uid, --gid, --file-mode and --dir-mode: \
                 the kernel enforces those instead of the stored attributes, so they must be chosen, not defaults"
                    .into(),
            ));
        }
        let part_size = size_in_range(
            "--part-size",
            tuning.part_size.unwrap_or(DEFAULT_PART_SIZE),
            MIN_PART_SIZE..=MAX_PART_SIZE,
            "the OSS limits ",
        )?;
        let max_concurrency = tuning.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
        if !(1..=1024).contains(&max_concurrency) {
            return Err(ConfigError::InvalidValue {
                option: "--max-concurrency".into(),
                reason: format!("{max_concurrency} is outside 1..1024"),
            });
        }

        let read_ahead = size_in_range(
            "--read-ahead",
            tuning.read_ahead.unwrap_or(DEFAULT_READ_AHEAD),
            MIN_READ_AHEAD..=MAX_READ_AHEAD,
            "",
        )?;

        Ok(Config {
            bucket,
            prefix,
            mountpoint: absolute(mountpoint)?,
            endpoint,
            credentials,
            mount: MountConfig {
                read_only: mount.read_only,
                allow_other: mount.allow_other,
                allow_root: mount.allow_root,
                uid: mount.uid,
                gid: mount.gid,
                file_mode: mount.file_mode.unwrap_or(DEFAULT_FILE_MODE),
                dir_mode: mount.dir_mode.unwrap_or(DEFAULT_DIR_MODE),
                readdir_optimize: mount.readdir_optimize,
                readdir_check_size: mount.readdir_check_size,
                nonempty: from_options.nonempty,
                foreground: mount.foreground,
                recover_stale_mount: mount.recover_stale_mount,
            },
            tuning: TuningConfig {
                cache_size: tuning.cache_size.unwrap_or(DEFAULT_CACHE_SIZE),
                cache_dir: tuning.cache_dir.as_deref().map(absolute).transpose()?,
                disk_cache_size: tuning.disk_cache_size.unwrap_or(0),
                metadata_ttl: tuning.metadata_ttl.unwrap_or(DEFAULT_METADATA_TTL),
                part_size,
                max_concurrency,
                read_ahead,
                direct_io: tuning.direct_io.unwrap_or_default(),
                write_back: tuning.write_back,
                write_back_max_size: tuning.write_back_max_size,
            },
            logging: LoggingConfig {
                log_file: logging.log_file.as_deref().map(absolute).transpose()?,
                metrics_addr: logging.metrics_addr,
                debug: logging.debug,
            },
            dry_run: args.dry_run,
            ignored_options: from_options.ignored,
        })
    }

    /// The name shown as the mount source in /proc/mounts (`ossmount:bucket[:prefix]`);
    /// stale-mount detection and the test suite look for the `ossmount` in it. It travels
    /// inside the comma-separated mount option string, so commas, whitespace and control
    /// characters of the prefix become `_`.
    pub fn fs_name(&self) -> String {
        if self.prefix.is_empty() {
            return format!("ossmount:{}", self.bucket);
        }
        let prefix: String = self
            .prefix
            .chars()
            .map(|c| {
                if c == ',' || c.is_whitespace() || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        format!("ossmount:{}:{prefix}", self.bucket)
    }

    /// Human-readable lines describing the options (for `--dry-run`); no secrets.
    pub fn describe_options(&self) -> Vec<String> {
        let m = &self.mount;
        let t = &self.tuning;
        let owner = |id: Option<u32>| id.map_or("mounting user".to_string(), |v| v.to_string());
        let mut lines = vec![
            format!("bucket: {}", self.bucket),
            format!(
                "prefix: {}",
                if self.prefix.is_empty() {
                    "(whole bucket)"
                } else {
                    &self.prefix
                }
            ),
            format!("mountpoint: {}", self.mountpoint.display()),
            format!(
                "access: {}{}{}",
                if m.read_only {
                    "read-only"
                } else {
                    "read-write"
                },
                if m.allow_other { ", allow_other" } else { "" },
                if m.allow_root { ", allow_root" } else { "" }
            ),
            format!(
                "ownership: uid {}, gid {}, files {:04o}, directories {:04o} (for objects without x-oss-meta-*){}",
                owner(m.uid),
                owner(m.gid),
                m.file_mode,
                m.dir_mode,
                if m.readdir_optimize {
                    "; readdir_optimize: listings show these instead of stored attributes"
                } else {
                    ""
                }
            ),
            format!(
                "cache: memory {}, disk {}{}",
                format_size(t.cache_size),
                format_size(t.disk_cache_size),
                t.cache_dir
                    .as_ref()
                    .map(|d| format!(" in {}", d.display()))
                    .unwrap_or_default()
            ),
            format!(
                "metadata ttl {}, part size {}, max concurrency {}, kernel readahead {}, direct I/O {:?}",
                format_duration(t.metadata_ttl),
                format_size(t.part_size),
                t.max_concurrency,
                format_size(t.read_ahead),
                t.direct_io
            ),
            format!(
                "network: connect timeout {}, read/write timeout {}, {} attempts per request",
                format_duration(self.endpoint.connect_timeout),
                format_duration(self.endpoint.readwrite_timeout),
                self.endpoint.retries
            ),
        ];
        if t.write_back {
            lines.push(format!(
                "write-back: on (close returns before the upload), store max size {}",
                t.write_back_max_size
                    .map(format_size)
                    .unwrap_or_else(|| "from free space".to_string())
            ));
        }
        if !self.ignored_options.is_empty() {
            lines.push(format!(
                "ignored mount options: {}",
                self.ignored_options.join(",")
            ));
        }
        lines
    }
}

/// Splits `bucket[:prefix]` and checks the OSS naming rules.
pub(crate) fn parse_bucket_spec(spec: &str) -> Result<(String, String), ConfigError> {
    let (bucket, prefix) = spec.split_once(':').unwrap_or((spec, ""));
    validate_bucket_name(bucket)?;
    Ok((bucket.to_string(), normalize_prefix(prefix)?))
}

/// `logs` → `logs/`, `/a/b/` → `a/b/`; rejects empty, `.` and `..` segments, which could
/// not be shown as directories.
pub(crate) fn normalize_prefix(prefix: &str) -> Result<String, ConfigError> {
    let trimmed = prefix.trim_start_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let bad = |reason: &str| ConfigError::InvalidPrefix {
        prefix: prefix.to_string(),
        reason: reason.to_string(),
    };
    let body = trimmed.strip_suffix('/').unwrap_or(trimmed);
    for segment in body.split('/') {
        match segment {
            "" => return Err(bad("contains an empty path segment ('//')")),
            "." | ".." => return Err(bad("'.' and '..' segments are not allowed")),
            _ => {}
        }
    }
    if body.contains('\\') || body.chars().any(char::is_control) {
        return Err(bad("must not contain '\\' or control characters"));
    }
    let normalized = format!("{body}/");
    if normalized.len() > 1023 {
        return Err(bad("longer than the 1023-byte OSS key limit"));
    }
    Ok(normalized)
}

/// Endpoint and credential settings alone (for subcommands that talk to OSS but do not
/// mount: `cleanup`, `regions`).
pub(crate) fn resolve_connection(
    conn: &ConnectionArgs,
    origin: KeyOrigin,
) -> Result<(EndpointConfig, CredentialsConfig), ConfigError> {
    Ok((resolve_endpoint(conn)?, resolve_credentials(conn, origin)?))
}

fn resolve_endpoint(conn: &ConnectionArgs) -> Result<EndpointConfig, ConfigError> {
    if conn.internal && conn.accelerate {
        return Err(ConfigError::Conflict(
            "--internal and --accelerate pick different endpoints; use one of them".into(),
        ));
    }
    if conn.endpoint.is_some() && (conn.internal || conn.accelerate) {
        return Err(ConfigError::Conflict(
            "--endpoint names the endpoint explicitly; drop --internal/--accelerate or --endpoint"
                .into(),
        ));
    }
    if conn.cname && conn.path_style {
        return Err(ConfigError::Conflict(
            "--cname and --path-style are different URL styles; use one of them".into(),
        ));
    }
    if conn.cname && conn.endpoint.is_none() {
        return Err(ConfigError::Missing(
            "--cname needs --endpoint set to the custom domain bound to the bucket".into(),
        ));
    }
    let parsed_endpoint = conn
        .endpoint
        .as_deref()
        .map(|ep| EndpointConfigParse::parse(ep, conn.disable_ssl, conn.path_style, conn.cname))
        .transpose()?;
    let signature_version = match conn.signature_version {
        Some(SignatureVersionArg::V1) => SignatureVersion::V1,
        Some(SignatureVersionArg::V4) | None => SignatureVersion::V4,
    };
    let (region, region_source) = match (&conn.region, &parsed_endpoint) {
        (Some(r), _) => (Some(normalize_region(r)?), "--region".to_string()),
        (None, Some(ep)) => match region_from_host(&ep.host) {
            Some(r) => (Some(r), "inferred from --endpoint".to_string()),
            None if signature_version == SignatureVersion::V1 => {
                (None, "none (V1 signing does not need one)".to_string())
            }
            None => {
                return Err(ConfigError::Missing(format!(
                    "cannot tell the region from endpoint '{}'; V4 signing needs it: add --region (or --signature-version 1)",
                    ep.host
                )));
            }
        },
        (None, None) => (
            None,
            "not given: detected from the ECS metadata service if running on Alibaba Cloud"
                .to_string(),
        ),
    };
    let connect_timeout = conn.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let readwrite_timeout = conn.readwrite_timeout.unwrap_or(DEFAULT_READWRITE_TIMEOUT);
    for (name, value) in [
        ("--connect-timeout", connect_timeout),
        ("--readwrite-timeout", readwrite_timeout),
    ] {
        if value.is_zero() {
            return Err(ConfigError::InvalidValue {
                option: name.into(),
                reason: "must be greater than zero".into(),
            });
        }
    }
    let max_inflight = conn
        .max_inflight
        .unwrap_or(crate::client::config::DEFAULT_MAX_INFLIGHT);
    if !(1..=4096).contains(&max_inflight) {
        return Err(ConfigError::InvalidValue {
            option: "--max-inflight".into(),
            reason: format!("{max_inflight} is outside 1..4096"),
        });
    }
    let retries = conn.retries.unwrap_or(DEFAULT_RETRIES);
    if !(1..=100).contains(&retries) {
        return Err(ConfigError::InvalidValue {
            option: "--retries".into(),
            reason: format!(
                "{retries} is outside 1..100 (attempts per request, first one included)"
            ),
        });
    }
    Ok(EndpointConfig {
        region,
        endpoint: conn.endpoint.clone(),
        internal: conn.internal,
        accelerate: conn.accelerate,
        disable_ssl: conn.disable_ssl,
        path_style: conn.path_style,
        cname: conn.cname,
        signature_version,
        connect_timeout,
        readwrite_timeout,
        retries,
        region_source,
        ca_cert: conn.ca_cert.clone(),
        max_inflight,
    })
}

fn resolve_credentials(
    conn: &ConnectionArgs,
    origin: KeyOrigin,
) -> Result<CredentialsConfig, ConfigError> {
    let has_keys = conn.access_key_id.is_some() || conn.access_key_secret.is_some();
    if conn.anonymous && (has_keys || conn.ram_role.is_some() || conn.credentials_file.is_some()) {
        return Err(ConfigError::Conflict(
            "--anonymous sends unsigned requests; it cannot be combined with AccessKeys, --ram-role or --credentials-file".into(),
        ));
    }
    if conn.ram_role.is_some() && has_keys {
        return Err(ConfigError::Conflict(
            "--ram-role takes credentials from the ECS metadata service; it cannot be combined with AccessKeys".into(),
        ));
    }
    let env_hint = match origin {
        KeyOrigin::Environment => " (OSS_ACCESS_KEY_ID / OSS_ACCESS_KEY_SECRET)",
        KeyOrigin::CommandLine => "",
    };
    match (&conn.access_key_id, &conn.access_key_secret) {
        (Some(_), None) => {
            return Err(ConfigError::Missing(format!(
                "an AccessKey id was given without its secret{env_hint}: set --access-key-secret or OSS_ACCESS_KEY_SECRET"
            )));
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing(format!(
                "an AccessKey secret was given without its id{env_hint}: set --access-key-id or OSS_ACCESS_KEY_ID"
            )));
        }
        _ => {}
    }
    if conn.security_token.is_some() && conn.access_key_id.is_none() {
        return Err(ConfigError::Missing(
            "a security token only works with the temporary AccessKey it was issued with: set the AccessKey id and secret too".into(),
        ));
    }
    if let Some(role) = &conn.ram_role
        && (role.is_empty() || role.contains('/'))
    {
        return Err(ConfigError::InvalidValue {
            option: "--ram-role".into(),
            reason: format!("'{role}' is not a RAM role name"),
        });
    }
    let keys_source = conn.access_key_id.as_ref().map(|_| match origin {
        KeyOrigin::CommandLine => "--access-key-id/--access-key-secret".to_string(),
        KeyOrigin::Environment => {
            "environment (OSS_ACCESS_KEY_ID, OSS_ACCESS_KEY_SECRET)".to_string()
        }
    });
    Ok(CredentialsConfig {
        access_key_id: conn.access_key_id.clone(),
        access_key_secret: conn.access_key_secret.clone().map(Secret::new),
        security_token: conn.security_token.clone().map(Secret::new),
        keys_source,
        keys_from_env: origin == KeyOrigin::Environment,
        credentials_file: conn.credentials_file.as_deref().map(absolute).transpose()?,
        ram_role: conn.ram_role.clone(),
        anonymous: conn.anonymous,
    })
}

fn absolute(path: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path).map_err(|e| ConfigError::Path {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
