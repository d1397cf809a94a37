//! The command line, declared with clap's derive API.
//!
//! Shape: `ossmount [OPTIONS] BUCKET[:PREFIX/] MOUNTPOINT` mounts; subcommands do the
//! rest (`regions`, `cleanup`, `man`, `completions`, `status`, `csi`). Subcommands and the mount
//! positionals conflict (`args_conflicts_with_subcommands`), so a bucket that happens to
//! be named like a subcommand is written with an explicit empty prefix: `ossmount man: /mnt`.
//!
//! Every mount setting that can also come from `-o` is an `Option` (or a flag that can only
//! turn something on), so [`crate::config`] can tell "not given" from "given" and let the
//! command line win over `-o`.
//!
//! Secrets: `--access-key-secret` and `--security-token` may come from the environment;
//! `hide_env_values` keeps their values out of `--help`, and no parser here ever echoes
//! them (they are plain strings, so clap cannot reject a value and print it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::units::{parse_duration, parse_size};

const ABOUT: &str = "Mount an Alibaba Cloud OSS bucket as a local filesystem (FUSE)";

const LONG_ABOUT: &str = "\
Mount an Alibaba Cloud OSS bucket (or a prefix of it) at MOUNTPOINT so that ordinary \
programs read and write objects as files.

Directories are object-name prefixes ending in '/'. Reads stream ranges from OSS with \
prefetching and a block cache; writes are staged locally and uploaded when the file is \
closed (multipart for large files), with CRC64 checks on every transfer.

Without -f, ossmount detaches after the mount is ready (like mount(8) helpers) and logs to \
--log-file or syslog. Stop it with `umount MOUNTPOINT` or SIGTERM: in-flight uploads are \
finished first. SIGUSR1 writes the metrics (Prometheus text) to the log.

Options may also be given fstab-style with -o, e.g. -o region=cn-hangzhou,internal,ro; \
command-line flags win over -o.";

const EXAMPLES: &str = "\
Examples:
  Mount a bucket read-only, credentials from the environment:
    export OSS_ACCESS_KEY_ID=... OSS_ACCESS_KEY_SECRET=...
    ossmount --region cn-hangzhou --read-only my-bucket /mnt/oss

  Mount a prefix from an ECS instance (internal endpoint, RAM role):
    ossmount --region ap-southeast-1 --internal --ram-role MyRole my-bucket:logs/ /mnt/logs

  Check the setup without mounting (endpoint, credential source, bucket reachable):
    ossmount --region cn-hangzhou --dry-run my-bucket /mnt/oss

  fstab (uses the mount.fuse.ossmount helper, see packaging/):
    my-bucket /mnt/oss fuse.ossmount _netdev,region=cn-hangzhou,internal,allow_other 0 0

  Recover from a crashed mount ('Transport endpoint is not connected'):
    ossmount --recover-stale-mount --region cn-hangzhou my-bucket /mnt/oss

  Abort multipart uploads abandoned for more than a day:
    ossmount cleanup --region cn-hangzhou --older-than 24h my-bucket

Environment:
  OSS_ACCESS_KEY_ID, OSS_ACCESS_KEY_SECRET, OSS_SESSION_TOKEN   credentials
  OSSMOUNT_LOG   log filter (tracing EnvFilter syntax), e.g. info,ossmount::client=debug

Exit status: 0 when mounted (or the subcommand succeeded), 1 on any error, 2 on usage errors.";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "ossmount",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = EXAMPLES,
    override_usage = "ossmount [OPTIONS] BUCKET[:PREFIX/] MOUNTPOINT\n       ossmount --list-regions\n       ossmount <COMMAND>",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub mount: MountArgs,

    /// List regions and their endpoints, like `ossmount regions`.
    #[arg(long)]
    pub list_regions: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List OSS regions and their endpoints (live from OSS, or the built-in table).
    Regions(RegionsArgs),
    /// List abandoned multipart uploads under BUCKET[:PREFIX] and abort them.
    // The doc line is also the --help text, so `[:PREFIX]` stays unescaped.
    #[allow(rustdoc::broken_intra_doc_links)]
    Cleanup(CleanupArgs),
    /// Print the man page (roff) to stdout.
    Man,
    /// Print a shell completion script to stdout.
    Completions {
        /// Shell to generate completions for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Show a running mount's endpoint, credential source, cache, uploads and errors.
    Status(StatusArgs),
    /// Run the CSI node plugin (Kubernetes): serve Identity and Node on a Unix socket.
    Csi(CsiArgs),
}

/// Everything needed to mount.
#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// Bucket to mount, optionally with a prefix: my-bucket or my-bucket:path/to/dir/
    #[arg(
        value_name = "BUCKET[:PREFIX/]",
        required_unless_present = "list_regions"
    )]
    pub bucket: Option<String>,

    /// Directory to mount on (must exist and be empty unless -o nonempty).
    #[arg(value_name = "MOUNTPOINT", required_unless_present = "list_regions")]
    pub mountpoint: Option<PathBuf>,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub options: MountOptionArgs,

    #[command(flatten)]
    pub tuning: TuningArgs,

    #[command(flatten)]
    pub logging: LoggingArgs,

    /// Resolve endpoint, credentials and options, check that the bucket answers, print
    /// the result and exit without mounting.
    #[arg(long)]
    pub dry_run: bool,
}

/// Where OSS is and who we are. Shared by mounting and the subcommands that talk to OSS.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// Region id, e.g. cn-hangzhou or ap-southeast-1 (also used for V4 signing).
    #[arg(long, value_name = "REGION", help_heading = "Endpoint")]
    pub region: Option<String>,

    /// Endpoint host or URL, e.g. oss-cn-hangzhou.aliyuncs.com or http://127.0.0.1:9000
    /// (default: derived from --region).
    #[arg(long, value_name = "URL", help_heading = "Endpoint")]
    pub endpoint: Option<String>,

    /// Use the region's internal (VPC) endpoint: free traffic from ECS in that region.
    #[arg(long, help_heading = "Endpoint")]
    pub internal: bool,

    /// Use the transfer acceleration endpoint.
    #[arg(long, help_heading = "Endpoint")]
    pub accelerate: bool,

    /// Talk plain HTTP instead of HTTPS.
    #[arg(long, help_heading = "Endpoint")]
    pub disable_ssl: bool,

    /// Path-style URLs (endpoint/bucket/key) instead of virtual-hosted (bucket.endpoint/key).
    #[arg(long, help_heading = "Endpoint")]
    pub path_style: bool,

    /// The endpoint is a custom domain (CNAME) bound to the bucket.
    #[arg(long, help_heading = "Endpoint")]
    pub cname: bool,

    /// Request signature version (default 4).
    #[arg(long, value_enum, value_name = "VERSION", help_heading = "Endpoint")]
    pub signature_version: Option<SignatureVersionArg>,

    /// Take temporary credentials from the ECS instance metadata service for this RAM role.
    #[arg(long, value_name = "NAME", help_heading = "Credentials")]
    pub ram_role: Option<String>,

    /// Send unsigned requests (public-read buckets).
    #[arg(long, help_heading = "Credentials")]
    pub anonymous: bool,

    /// AccessKey id.
    #[arg(
        long,
        env = "OSS_ACCESS_KEY_ID",
        hide_env_values = true,
        value_name = "ID",
        help_heading = "Credentials"
    )]
    pub access_key_id: Option<String>,

    /// AccessKey secret. Prefer the environment or a credentials file: command lines are
    /// visible to other users in ps(1).
    #[arg(
        long,
        env = "OSS_ACCESS_KEY_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        help_heading = "Credentials"
    )]
    pub access_key_secret: Option<String>,

    /// STS security token (with temporary AccessKeys).
    #[arg(
        long,
        env = "OSS_SESSION_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = "Credentials"
    )]
    pub security_token: Option<String>,

    /// ossfs-style passwd file: lines `bucket:id:secret` or `id:secret`; must not be
    /// readable by others.
    #[arg(long, value_name = "PATH", help_heading = "Credentials")]
    pub credentials_file: Option<PathBuf>,

    /// Timeout for establishing a connection (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Network")]
    pub connect_timeout: Option<Duration>,

    /// Timeout for a stalled read or write on a connection (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Network")]
    pub readwrite_timeout: Option<Duration>,

    /// Attempts per request, first one included (default 3).
    #[arg(long, value_name = "N", help_heading = "Network")]
    pub retries: Option<u32>,

    /// Also trust the CA certificate(s) in this PEM file for HTTPS (on top of the system
    /// store, which honours SSL_CERT_FILE and SSL_CERT_DIR).
    #[arg(long, value_name = "FILE", help_heading = "Network")]
    pub ca_cert: Option<PathBuf>,

    /// Most OSS requests in flight for the whole mount, shared by prefetch, listings and
    /// uploads (default 64); halved while OSS throttles, then raised again.
    /// --max-concurrency still bounds each single upload or prefetch stream within it.
    #[arg(long, value_name = "N", help_heading = "Network")]
    pub max_inflight: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignatureVersionArg {
    #[value(name = "1")]
    V1,
    #[value(name = "4")]
    V4,
}

/// How the mount looks to local users.
#[derive(Debug, Clone, Default, Args)]
pub struct MountOptionArgs {
    /// Mount read-only (no uploads, deletes or renames).
    #[arg(long, visible_alias = "ro", help_heading = "Mount")]
    pub read_only: bool,

    /// Let users other than the mounting one access the files (needs user_allow_other in
    /// /etc/fuse.conf when not root).
    #[arg(long, help_heading = "Mount")]
    pub allow_other: bool,

    /// Let root access the files too.
    #[arg(long, help_heading = "Mount")]
    pub allow_root: bool,

    /// Owner of all files (default: the mounting user).
    #[arg(long, value_name = "UID", help_heading = "Mount")]
    pub uid: Option<u32>,

    /// Group of all files (default: the mounting user's group).
    #[arg(long, value_name = "GID", help_heading = "Mount")]
    pub gid: Option<u32>,

    /// Permission bits of files, octal (default 0644).
    #[arg(long, value_name = "MODE", value_parser = parse_mode, help_heading = "Mount")]
    pub file_mode: Option<u32>,

    /// Permission bits of directories, octal (default 0755).
    #[arg(long, value_name = "MODE", value_parser = parse_mode, help_heading = "Mount")]
    pub dir_mode: Option<u32>,

    /// Attributes from the listing and the mount defaults, no HEAD per entry (ossfs 1.x's
    /// readdir_optimize): `ls -l` costs one LIST per 1000 entries, but mode, owner and
    /// mtime stored in x-oss-meta-* are NOT shown or enforced. With --allow-other it needs
    /// explicit --uid, --gid, --file-mode and --dir-mode.
    #[arg(long, help_heading = "Mount")]
    pub readdir_optimize: bool,

    /// Stay in the foreground and log to stderr.
    #[arg(short = 'f', long, help_heading = "Mount")]
    pub foreground: bool,

    /// If MOUNTPOINT is a stale ossmount mount (Transport endpoint is not connected),
    /// lazily unmount it (umount -l) before mounting.
    #[arg(long, help_heading = "Mount")]
    pub recover_stale_mount: bool,

    /// Mount options, fstab-style and comma-separated: any option above by name
    /// (region=R, internal, ro, allow_other, uid=N, cache_size=1G, …) plus nonempty;
    /// generic ones such as _netdev, auto, nofail, defaults are ignored.
    #[arg(short = 'o', value_name = "OPTIONS", action = clap::ArgAction::Append, help_heading = "Mount")]
    pub options: Vec<String>,
}

/// Caches, part sizes and concurrency.
#[derive(Debug, Clone, Default, Args)]
pub struct TuningArgs {
    /// Memory for the read block cache, e.g. 512MiB or 1G (default 256MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Tuning")]
    pub cache_size: Option<u64>,

    /// Directory for the on-disk read cache and write staging files.
    #[arg(long, value_name = "DIR", help_heading = "Tuning")]
    pub cache_dir: Option<PathBuf>,

    /// Size limit of the on-disk read cache (default 0 = disabled).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Tuning")]
    pub disk_cache_size: Option<u64>,

    /// How long file and directory metadata is trusted, e.g. 1s, 500ms, 60 (default 1s);
    /// `indefinite` never revalidates (for buckets no one else changes).
    #[arg(long, value_name = "DURATION", value_parser = crate::config::units::parse_ttl, help_heading = "Tuning")]
    pub metadata_ttl: Option<Duration>,

    /// Multipart upload part size, 100KiB..5GiB (default 8MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Tuning")]
    pub part_size: Option<u64>,

    /// Concurrent part uploads per file being written (default 16). All OSS requests of
    /// the mount also share the --max-inflight budget.
    #[arg(long, value_name = "N", help_heading = "Tuning")]
    pub max_concurrency: Option<usize>,

    /// Kernel readahead of the mount, 128KiB..256MiB (default 1MiB; raising it above
    /// 128KiB needs root).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Tuning")]
    pub read_ahead: Option<u64>,

    /// Bypass the kernel page cache for reads: auto (files of 8 MiB and more), always,
    /// never. Use `never` for programs that read large files in small pieces.
    #[arg(long, value_name = "WHEN", help_heading = "Tuning")]
    pub direct_io: Option<crate::fuse::DirectIo>,
}

/// Logs and metrics.
#[derive(Debug, Clone, Default, Args)]
pub struct LoggingArgs {
    /// Log to this file (appended). Default: stderr with -f, syslog otherwise.
    #[arg(long, value_name = "PATH", help_heading = "Logging and metrics")]
    pub log_file: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "ADDR", help_heading = "Logging and metrics")]
    pub metrics_addr: Option<SocketAddr>,

    /// Debug logging (same as OSSMOUNT_LOG=debug).
    #[arg(short = 'd', long, help_heading = "Logging and metrics")]
    pub debug: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RegionsArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Only print the built-in table; do not ask OSS.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// Bucket, optionally with a prefix: only uploads under it are considered.
    #[arg(value_name = "BUCKET[:PREFIX/]")]
    pub bucket: String,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Only abort uploads initiated longer ago than this (default 24h; 0 = all).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "24h")]
    pub older_than: Duration,

    /// List what would be aborted without aborting.
    #[arg(long)]
    pub dry_run: bool,

    /// Debug logging.
    #[arg(short = 'd', long)]
    pub debug: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The mountpoint of a running ossmount mount.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    /// Print the full report as JSON (facts and the metrics text).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CsiArgs {
    /// gRPC endpoint to serve, e.g. unix:///csi/csi.sock (a Unix socket path).
    #[arg(long, value_name = "ENDPOINT", env = "CSI_ENDPOINT")]
    pub endpoint: String,

    /// This node's id, reported by NodeGetInfo (on Kubernetes: the node name).
    #[arg(long, value_name = "NODE", env = "KUBE_NODE_NAME")]
    pub node_id: String,

    /// Where the plugin keeps the state of published volumes and their logs; must
    /// survive a restart of the plugin (a hostPath on Kubernetes).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/ossmount-csi")]
    pub data_dir: PathBuf,

    /// Debug logging.
    #[arg(short = 'd', long)]
    pub debug: bool,
}

/// Parses an octal permission value such as `644`, `0644` or `0o644`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim().trim_start_matches("0o");
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("invalid mode '{s}': expected octal permission bits such as 0644"))?;
    if mode > 0o7777 {
        return Err(format!("invalid mode '{s}': at most 07777"));
    }
    Ok(mode)
}

/// The clap command, for man pages, completions and tests.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn parses_a_full_mount_line() {
        let cli = Cli::try_parse_from([
            "ossmount",
            "--region",
            "cn-hangzhou",
            "--internal",
            "--cache-size",
            "1G",
            "--metadata-ttl",
            "500ms",
            "--file-mode",
            "0640",
            "-o",
            "allow_other,uid=1000",
            "-o",
            "_netdev",
            "-f",
            "bkt:logs/",
            "/mnt/x",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        let m = cli.mount;
        assert_eq!(m.bucket.as_deref(), Some("bkt:logs/"));
        assert_eq!(m.connection.region.as_deref(), Some("cn-hangzhou"));
        assert!(m.connection.internal);
        assert_eq!(m.tuning.cache_size, Some(1 << 30));
        assert_eq!(m.tuning.metadata_ttl, Some(Duration::from_millis(500)));
        assert_eq!(m.options.file_mode, Some(0o640));
        assert_eq!(m.options.options, vec!["allow_other,uid=1000", "_netdev"]);
        assert!(m.options.foreground);
    }

    #[test]
    fn subcommands_parse_without_positionals() {
        let cli = Cli::try_parse_from(["ossmount", "completions", "bash"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Completions { .. })));
        let cli = Cli::try_parse_from(["ossmount", "cleanup", "--region", "r", "b:p/"]).unwrap();
        match cli.command {
            Some(Command::Cleanup(c)) => {
                assert_eq!(c.bucket, "b:p/");
                assert_eq!(c.older_than, Duration::from_secs(86400));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0o755"), Ok(0o755));
        assert!(parse_mode("999").is_err());
        assert!(parse_mode("17777").is_err());
    }
}
