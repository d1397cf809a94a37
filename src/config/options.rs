//! The options of a mount, as the command line and `-o` give them.
//!
//! These structs are declared with clap's derive API (the command line in `cli::args`
//! flattens them) and are also the shape `-o` items are collected in (see `layer`), so
//! they live here, beside the code that resolves them into a [`super::Config`]: the
//! configuration does not depend on the command-line module.
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

use clap::{Args, ValueEnum};

use super::units::{parse_duration, parse_size};

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

    /// With --readdir-optimize: listed objects of 0 to N bytes are HEADed while listing,
    /// since one may be an ossfs 1.x-style symlink, or (empty) a FIFO, socket or device
    /// (default 4095, every size a link can have; 0: no HEAD, such objects list as
    /// files). ossfs 1.x's readdir_check_size.
    #[arg(long, value_name = "BYTES", help_heading = "Mount")]
    pub readdir_check_size: Option<u64>,

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
    pub direct_io: Option<DirectIo>,

    /// Durable write-back: close returns once the file is in a local store (data and a
    /// journal record fsync'd), uploads run in the background and resume after a crash
    /// or restart (the next mount with the same store finishes them first). Trades:
    /// upload errors after close are reported by fsync, the log, metrics and `ossmount
    /// status`, not by close; other clients see a file only once it is uploaded. The
    /// store is --cache-dir/write-back when --cache-dir is given, else a directory per
    /// bucket, prefix and endpoint under /var/cache/ossmount.
    #[arg(long, help_heading = "Tuning")]
    pub write_back: bool,

    /// With --write-back: bound of the local store, e.g. 20G (default: from the free space
    /// of its filesystem). Writers wait while it is full; a write that can never fit gets
    /// ENOSPC.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Tuning")]
    pub write_back_max_size: Option<u64>,
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

/// When read-only opens bypass the kernel page cache (`FOPEN_DIRECT_IO`).
///
/// With the page cache every byte is copied twice more (our reply into the cache, the
/// cache into the application) into pages the kernel must allocate first, and a scan
/// of a large dataset evicts everything else the machine had cached; our own block
/// cache serves re-reads either way. Measured with `scripts/bench.sh` (1 GiB sequential
/// read): direct 1.20x of raw HTTP at 0.37 CPU s/GiB, page cache 0.45-0.8x at 0.6-2.3
/// CPU s/GiB. The price is one FUSE round trip per `read(2)`: reading a large file 4 KiB
/// at a time ran at ~100 MB/s direct against ~960 MB/s through the page cache. `Auto`
/// therefore keeps the page cache for small files (read in one or two requests anyway).
/// Write-only opens are direct unless `Never` (each write(2) is one request either way);
/// read-write opens keep the page cache. mmap works either way
/// (`FUSE_DIRECT_IO_ALLOW_MMAP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirectIo {
    /// Direct for files of at least [`DIRECT_IO_MIN_SIZE`].
    #[default]
    Auto,
    Always,
    Never,
}

/// Smallest file `DirectIo::Auto` opens without the page cache.
pub const DIRECT_IO_MIN_SIZE: u64 = 8 << 20;

impl DirectIo {
    /// Whether a read-only open of a file of `size` bytes bypasses the page cache.
    pub fn applies(self, size: u64) -> bool {
        match self {
            DirectIo::Auto => size >= DIRECT_IO_MIN_SIZE,
            DirectIo::Always => true,
            DirectIo::Never => false,
        }
    }
}

impl std::str::FromStr for DirectIo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DirectIo::Auto),
            "always" => Ok(DirectIo::Always),
            "never" => Ok(DirectIo::Never),
            _ => Err(format!("'{s}' is not one of auto, always, never")),
        }
    }
}
