//! The command line, declared with clap's derive API.
//!
//! Shape: `ossmount [OPTIONS] BUCKET[:PREFIX/] MOUNTPOINT` mounts; subcommands do the
//! rest (`regions`, `cleanup`, `man`, `completions`, `status`, `sync`, `csi`). Subcommands and the mount
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

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::units::parse_duration;

// The mount's options are configuration data, declared where they are resolved.
pub use crate::config::options::{
    ConnectionArgs, LoggingArgs, MountArgs, MountOptionArgs, SignatureVersionArg, TuningArgs,
    parse_mode,
};
// The plugin's flags are declared by the plugin, which must not depend on the CLI.
pub use crate::csi::CsiArgs;

const ABOUT: &str = "Mount an Alibaba Cloud OSS bucket as a local filesystem (FUSE)";

const LONG_ABOUT: &str = "\
Mount an Alibaba Cloud OSS bucket (or a prefix of it) at MOUNTPOINT so that ordinary \
programs read and write objects as files.

Directories are object-name prefixes ending in '/'. Reads stream ranges from OSS with \
prefetching and a block cache; writes are staged locally and uploaded when the file is \
closed (multipart for large files), with CRC64 checks on every transfer.

Without -f, ossmount detaches after the mount is ready (like mount(8) helpers) and logs to \
--log-file or syslog. Stop it with `umount MOUNTPOINT` or SIGTERM: in-flight uploads are \
finished first; with --write-back the process keeps running after the unmount until its \
write-back queue is uploaded (a second SIGTERM exits at once, leaving the rest in the store). SIGUSR1 writes the metrics (Prometheus text) to the log.

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

  Wait until every file written so far to a --write-back mount is uploaded:
    ossmount sync /mnt/oss

Exit status: 0 when mounted (or the subcommand succeeded), 1 on any error, 2 on usage errors,
3 when a --write-back mount was stopped by a second SIGTERM/SIGINT before its queue drained
(the rest stays in the write-back store; the next mount with the same store uploads it).";

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
    /// Wait until every file closed on a --write-back mount so far is uploaded.
    Sync(SyncArgs),
    /// Run the CSI node plugin (Kubernetes): serve Identity and Node on a Unix socket.
    Csi(CsiArgs),
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
pub struct SyncArgs {
    /// The mountpoint of a running ossmount mount (also while it uploads after umount).
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    /// Give up after this long (exit 1; the uploads go on). Default: wait as long as the
    /// mount keeps answering.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
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
