//! Layering of `-o` options under the command line.
//!
//! Each `-o` item is applied, in order, to an [`OptionLayer`] shaped like the clap argument
//! structs; then `merge_*` overlays the command line, whose values always win. Unknown
//! names get a "did you mean" suggestion (edit distance); secret-bearing names are refused
//! without echoing the value.

use std::net::SocketAddr;

use super::options::{
    ConnectionArgs, LoggingArgs, MountOptionArgs, SignatureVersionArg, TuningArgs, parse_mode,
};

use super::ConfigError;
use super::mount_options::{MountOption, is_ignored_generic};
use super::units::{parse_duration, parse_size};

/// Values collected from `-o`, in the shape of the command-line structs.
#[derive(Debug, Default)]
pub(super) struct OptionLayer {
    pub(super) connection: ConnectionArgs,
    pub(super) mount: MountOptionArgs,
    pub(super) tuning: TuningArgs,
    pub(super) logging: LoggingArgs,
    pub(super) nonempty: bool,
    pub(super) ignored: Vec<String>,
}

/// Every name `-o` understands (besides the ignored generic ones), for suggestions.
const KNOWN_OPTIONS: &[&str] = &[
    "region",
    "endpoint",
    "url",
    "internal",
    "accelerate",
    "disable_ssl",
    "path_style",
    "use_path_request_style",
    "cname",
    "signature_version",
    "sigv1",
    "sigv4",
    "ram_role",
    "anonymous",
    "public_bucket",
    "credentials_file",
    "passwd_file",
    "access_key_id",
    "connect_timeout",
    "readwrite_timeout",
    "retries",
    "ro",
    "read_only",
    "allow_other",
    "allow_root",
    "uid",
    "gid",
    "file_mode",
    "dir_mode",
    "readdir_optimize",
    "readdir_check_size",
    "nonempty",
    "recover_stale_mount",
    "cache_size",
    "cache_dir",
    "disk_cache_size",
    "metadata_ttl",
    "part_size",
    "max_concurrency",
    "read_ahead",
    "direct_io",
    "write_back",
    "write_back_max_size",
    "log_file",
    "metrics_addr",
    "debug",
    "fsname",
    "subtype",
    "ca_cert",
    "max_inflight",
];

impl OptionLayer {
    pub(super) fn apply(&mut self, opt: &MountOption) -> Result<(), ConfigError> {
        let name = opt.name.as_str();
        let c = &mut self.connection;
        let m = &mut self.mount;
        let t = &mut self.tuning;
        let l = &mut self.logging;
        match name {
            "access_key_secret" | "access_key" | "secret" | "security_token" | "sts_token" => {
                return Err(ConfigError::SecretInOptions { name: name.into() });
            }
            "region" => c.region = Some(value(opt)?),
            "endpoint" | "url" => c.endpoint = Some(value(opt)?),
            "internal" => c.internal = flag(opt)?,
            "accelerate" => c.accelerate = flag(opt)?,
            "disable_ssl" => c.disable_ssl = flag(opt)?,
            "path_style" | "use_path_request_style" => c.path_style = flag(opt)?,
            "cname" => c.cname = flag(opt)?,
            "signature_version" => {
                c.signature_version = Some(match value(opt)?.trim_start_matches(['v', 'V']) {
                    "1" => SignatureVersionArg::V1,
                    "4" => SignatureVersionArg::V4,
                    other => return Err(invalid(opt, format!("'{other}' is not 1 or 4"))),
                })
            }
            "sigv1" => c.signature_version = Some(SignatureVersionArg::V1),
            "sigv4" => c.signature_version = Some(SignatureVersionArg::V4),
            "ram_role" => c.ram_role = Some(value(opt)?),
            "anonymous" | "public_bucket" => c.anonymous = flag(opt)?,
            "credentials_file" | "passwd_file" => c.credentials_file = Some(value(opt)?.into()),
            "access_key_id" => c.access_key_id = Some(value(opt)?),
            "connect_timeout" => c.connect_timeout = Some(parsed(opt, parse_duration)?),
            "readwrite_timeout" => c.readwrite_timeout = Some(parsed(opt, parse_duration)?),
            "retries" => {
                c.retries = Some(parsed(opt, |s| {
                    s.parse::<u32>().map_err(|e| e.to_string())
                })?)
            }
            "ca_cert" => c.ca_cert = Some(value(opt)?.into()),
            "max_inflight" => {
                c.max_inflight = Some(parsed(opt, |s| {
                    s.parse::<usize>().map_err(|e| e.to_string())
                })?)
            }
            "ro" | "read_only" => m.read_only = flag(opt)?,
            "allow_other" => m.allow_other = flag(opt)?,
            "allow_root" => m.allow_root = flag(opt)?,
            "uid" => {
                m.uid = Some(parsed(opt, |s| {
                    s.parse::<u32>().map_err(|e| e.to_string())
                })?)
            }
            "gid" => {
                m.gid = Some(parsed(opt, |s| {
                    s.parse::<u32>().map_err(|e| e.to_string())
                })?)
            }
            "file_mode" => m.file_mode = Some(parsed(opt, parse_mode)?),
            "dir_mode" => m.dir_mode = Some(parsed(opt, parse_mode)?),
            "readdir_optimize" => m.readdir_optimize = flag(opt)?,
            "readdir_check_size" => {
                m.readdir_check_size = Some(parsed(opt, |s| {
                    s.parse::<u64>().map_err(|e| e.to_string())
                })?)
            }
            "recover_stale_mount" => m.recover_stale_mount = flag(opt)?,
            "nonempty" => self.nonempty = flag(opt)?,
            "cache_size" => t.cache_size = Some(parsed(opt, parse_size)?),
            "cache_dir" => t.cache_dir = Some(value(opt)?.into()),
            "disk_cache_size" => t.disk_cache_size = Some(parsed(opt, parse_size)?),
            "metadata_ttl" => t.metadata_ttl = Some(parsed(opt, super::units::parse_ttl)?),
            "part_size" => t.part_size = Some(parsed(opt, parse_size)?),
            "max_concurrency" => {
                t.max_concurrency = Some(parsed(opt, |s| {
                    s.parse::<usize>().map_err(|e| e.to_string())
                })?)
            }
            "read_ahead" => t.read_ahead = Some(parsed(opt, parse_size)?),
            // Bare `direct_io` is the libfuse flag: always.
            "direct_io" => {
                t.direct_io = Some(match opt.value.as_deref() {
                    None => super::options::DirectIo::Always,
                    Some(_) => parsed(opt, str::parse)?,
                })
            }
            "write_back" => t.write_back = flag(opt)?,
            "write_back_max_size" => t.write_back_max_size = Some(parsed(opt, parse_size)?),
            "log_file" => l.log_file = Some(value(opt)?.into()),
            "metrics_addr" => {
                l.metrics_addr = Some(parsed(opt, |s| {
                    s.parse::<SocketAddr>()
                        .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:9100".to_string())
                })?)
            }
            "debug" => l.debug = flag(opt)?,
            // mount.fuse(8) may pass these through; the filesystem sets its own.
            "fsname" | "subtype" => self.ignored.push(opt.display()),
            _ if is_ignored_generic(name) => self.ignored.push(opt.display()),
            _ => {
                return Err(ConfigError::UnknownOption {
                    name: name.to_string(),
                    hint: suggestion(name)
                        .map(|s| format!(" (did you mean '{s}'?)"))
                        .unwrap_or_else(|| {
                            " (see `ossmount --help` for the options -o accepts)".into()
                        }),
                });
            }
        }
        Ok(())
    }
}

fn invalid(opt: &MountOption, reason: String) -> ConfigError {
    ConfigError::InvalidValue {
        option: format!("-o {}", opt.name),
        reason,
    }
}

fn value(opt: &MountOption) -> Result<String, ConfigError> {
    match &opt.value {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(invalid(opt, format!("expected {}=VALUE", opt.name))),
    }
}

fn parsed<T>(
    opt: &MountOption,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    parse(&value(opt)?).map_err(|reason| invalid(opt, reason))
}

/// A flag option: bare (`ro`) or with a boolean value (`ro=1`, `internal=false`).
fn flag(opt: &MountOption) -> Result<bool, ConfigError> {
    match opt.value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(invalid(
            opt,
            format!("'{other}' is not a boolean (use 1/0, true/false)"),
        )),
    }
}

/// The closest known option name, when it is close enough to be a typo.
fn suggestion(name: &str) -> Option<&'static str> {
    KNOWN_OPTIONS
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(super) fn merge_connection(cli: &ConnectionArgs, o: &ConnectionArgs) -> ConnectionArgs {
    ConnectionArgs {
        region: cli.region.clone().or_else(|| o.region.clone()),
        endpoint: cli.endpoint.clone().or_else(|| o.endpoint.clone()),
        internal: cli.internal || o.internal,
        accelerate: cli.accelerate || o.accelerate,
        disable_ssl: cli.disable_ssl || o.disable_ssl,
        path_style: cli.path_style || o.path_style,
        cname: cli.cname || o.cname,
        signature_version: cli.signature_version.or(o.signature_version),
        ram_role: cli.ram_role.clone().or_else(|| o.ram_role.clone()),
        anonymous: cli.anonymous || o.anonymous,
        access_key_id: cli
            .access_key_id
            .clone()
            .or_else(|| o.access_key_id.clone()),
        access_key_secret: cli.access_key_secret.clone(),
        security_token: cli.security_token.clone(),
        credentials_file: cli
            .credentials_file
            .clone()
            .or_else(|| o.credentials_file.clone()),
        connect_timeout: cli.connect_timeout.or(o.connect_timeout),
        readwrite_timeout: cli.readwrite_timeout.or(o.readwrite_timeout),
        retries: cli.retries.or(o.retries),
        ca_cert: cli.ca_cert.clone().or_else(|| o.ca_cert.clone()),
        max_inflight: cli.max_inflight.or(o.max_inflight),
    }
}

pub(super) fn merge_mount(cli: &MountOptionArgs, o: &MountOptionArgs) -> MountOptionArgs {
    MountOptionArgs {
        read_only: cli.read_only || o.read_only,
        allow_other: cli.allow_other || o.allow_other,
        allow_root: cli.allow_root || o.allow_root,
        uid: cli.uid.or(o.uid),
        gid: cli.gid.or(o.gid),
        file_mode: cli.file_mode.or(o.file_mode),
        dir_mode: cli.dir_mode.or(o.dir_mode),
        readdir_optimize: cli.readdir_optimize || o.readdir_optimize,
        readdir_check_size: cli.readdir_check_size.or(o.readdir_check_size),
        foreground: cli.foreground,
        recover_stale_mount: cli.recover_stale_mount || o.recover_stale_mount,
        options: Vec::new(),
    }
}

pub(super) fn merge_tuning(cli: &TuningArgs, o: &TuningArgs) -> TuningArgs {
    TuningArgs {
        cache_size: cli.cache_size.or(o.cache_size),
        cache_dir: cli.cache_dir.clone().or_else(|| o.cache_dir.clone()),
        disk_cache_size: cli.disk_cache_size.or(o.disk_cache_size),
        metadata_ttl: cli.metadata_ttl.or(o.metadata_ttl),
        part_size: cli.part_size.or(o.part_size),
        max_concurrency: cli.max_concurrency.or(o.max_concurrency),
        read_ahead: cli.read_ahead.or(o.read_ahead),
        direct_io: cli.direct_io.or(o.direct_io),
        write_back: cli.write_back || o.write_back,
        write_back_max_size: cli.write_back_max_size.or(o.write_back_max_size),
    }
}

pub(super) fn merge_logging(cli: &LoggingArgs, o: &LoggingArgs) -> LoggingArgs {
    LoggingArgs {
        log_file: cli.log_file.clone().or_else(|| o.log_file.clone()),
        metrics_addr: cli.metrics_addr.or(o.metrics_addr),
        debug: cli.debug || o.debug,
    }
}

/// True when `-o NAME` (normalised) is an option ossmount accepts: one of its own or a
/// generic mount option it ignores. The CSI plugin uses this to drop the ossfs options
/// ossmount does not implement instead of failing the mount.
pub(crate) fn is_known_option(name: &str) -> bool {
    KNOWN_OPTIONS.contains(&name) || is_ignored_generic(name)
}
