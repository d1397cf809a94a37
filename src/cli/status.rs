//! `ossmount status MOUNTPOINT`: what a running mount is doing, for operators.
//!
//! The path must be an ossmount mount in the mount table, or the mountpoint of an
//! ossmount process that is still uploading its write-back queue after `umount` (found by
//! its control socket, which is named from the canonical path). The report comes from the
//! mount's control socket ([`crate::control`]), so it works without `--metrics-addr`.
//! Printed: bucket and prefix, endpoint, credential source (never a secret), process,
//! cache use, prefetches and upload parts in flight, OSS and FUSE error counters, and the
//! write-back queue. `--json` prints the raw report instead (facts, the Prometheus text,
//! and `write_back` when the mount has one).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::units::{format_duration, format_size};
use crate::control::{StatusReport, now_epoch_secs, query_status, socket_path, summarize};
use crate::mount_check::find_mount;

use super::args::StatusArgs;
use super::error::CliError;

pub fn run_status(args: &StatusArgs) -> Result<(), CliError> {
    let target = locate(&args.mountpoint).map_err(CliError::Status)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let report = runtime
        .block_on(query_status(&target.socket))
        .map_err(|e| CliError::Status(e.to_string()))?;
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Status(format!("cannot encode the report: {e}")))?;
        json.push('\n');
        json
    } else {
        format_report(&report, target.mounted, now_epoch_secs())
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(CliError::Output)
}

/// A running ossmount process, found from the path given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The canonical mountpoint.
    pub path: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// Still in the mount table; false when the process is draining its write-back
    /// queue after `umount`.
    pub mounted: bool,
}

/// Finds the ossmount process serving (or, after `umount`, draining) `given`.
pub(crate) fn locate(given: &Path) -> Result<Target, String> {
    let path = match std::fs::canonicalize(given) {
        Ok(p) => p,
        // A dead mount cannot be resolved; look it up under its absolute name.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            std::path::absolute(given).map_err(|e| format!("{}: {e}", given.display()))?
        }
        Err(e) => return Err(format!("{}: {e}", given.display())),
    };
    let socket = socket_path(&path);
    let entry = find_mount(&path).map_err(|e| format!("cannot read the mount table: {e}"))?;
    match entry {
        Some(e) if e.is_ossmount() => {}
        Some(e) => {
            return Err(format!(
                "{} is not an ossmount mount (it is a {} mount of {})",
                path.display(),
                e.fstype,
                e.source
            ));
        }
        // Unmounted, but its process is still uploading the write-back queue.
        None if socket.exists() => {
            return Ok(Target {
                path,
                socket,
                mounted: false,
            });
        }
        None => {
            return Err(format!(
                "{} is not an ossmount mount (nothing is mounted there, and no ossmount process is uploading for it)",
                path.display()
            ));
        }
    }
    if let Err(e) = std::fs::metadata(&path)
        && e.raw_os_error() == Some(libc::ENOTCONN)
    {
        return Err(format!(
            "{} is a stale ossmount mount: its process has died (recover with umount -l {0} and mount again, or --recover-stale-mount)",
            path.display()
        ));
    }
    Ok(Target {
        path,
        socket,
        mounted: true,
    })
}

fn format_report(report: &StatusReport, mounted: bool, now: u64) -> String {
    let f = &report.facts;
    let s = summarize(&report.metrics);
    let size = |v: f64| format_size(v.max(0.0) as u64);
    let count = |v: f64| format!("{}", v.max(0.0) as u64);
    let prefix = if f.prefix.is_empty() {
        String::new()
    } else {
        format!(" (prefix {})", f.prefix)
    };
    let uptime = format_duration(Duration::from_secs(now.saturating_sub(f.mounted_at)));
    let mut out = String::new();
    out.push_str(&format!("mountpoint: {}\n", f.mountpoint.display()));
    if !mounted {
        out.push_str("state: unmounted; uploading the write-back queue before exiting\n");
    }
    out.push_str(&format!("bucket: {}{prefix}\n", f.bucket));
    out.push_str(&format!("endpoint: {}\n", f.endpoint));
    out.push_str(&format!("credentials: {}\n", f.credentials));
    out.push_str(&format!(
        "mode: {}\n",
        if f.read_only {
            "read-only"
        } else {
            "read-write"
        }
    ));
    out.push_str(&format!(
        "process: pid {}, ossmount {}, mounted {uptime} ago\n",
        f.pid, f.version
    ));
    out.push_str(&format!(
        "cache: {} in memory, {} hits, {} misses\n",
        size(s.cache_bytes),
        count(s.cache_hits),
        count(s.cache_misses)
    ));
    out.push_str(&format!(
        "in flight: {} prefetch requests, {} upload parts (queued or sending)\n",
        count(s.prefetch_in_flight),
        count(s.upload_parts_in_flight)
    ));
    out.push_str(&format!(
        "oss: {} requests, {} errors (404 not counted), {} retries; {} read, {} written\n",
        count(s.oss_requests),
        count(s.oss_errors),
        count(s.oss_retries),
        size(s.bytes_read_from_oss),
        size(s.bytes_written_to_oss)
    ));
    out.push_str(&format!(
        "fuse: {} operations, {} answered with an error (ENOENT not counted)\n",
        count(s.fuse_ops),
        count(s.fuse_errors)
    ));
    out.push_str(&format!(
        "credential refresh errors: {}\n",
        count(s.credential_refresh_errors)
    ));
    match &report.write_back {
        None => out.push_str("write-back: off (each close waits for its upload)\n"),
        Some(w) => out.push_str(&format_write_back(w)),
    }
    out
}

/// The write-back section of the report.
fn format_write_back(w: &crate::write_back::WriteBackStatus) -> String {
    let mut out = format!("write-back: store {}\n", w.store_dir.display());
    let oldest = match w.oldest_pending_secs {
        Some(age) => format!(", oldest {} ago", format_duration(Duration::from_secs(age))),
        None => String::new(),
    };
    out.push_str(&format!(
        "  pending: {} files ({}), {} uploading{oldest}{}\n",
        w.pending_files,
        format_size(w.pending_bytes),
        w.uploading_files,
        if w.full {
            "; the store is full: writers wait for uploads"
        } else {
            ""
        }
    ));
    out.push_str(&format!(
        "  uploaded: {} files ({}) since mount\n",
        w.uploaded_files,
        format_size(w.uploaded_bytes)
    ));
    out.push_str(&format!(
        "  conflicts: {} (local copies kept in {})\n",
        w.conflicts,
        w.store_dir.join("conflicts").display()
    ));
    out.push_str(&format!("  failing: {} files", w.failing_files));
    match &w.last_error {
        Some(e) => out.push_str(&format!(", last error: {e}\n")),
        None => out.push('\n'),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::MountFacts;

    #[test]
    fn report_shows_facts_and_figures() {
        let report = StatusReport {
            facts: MountFacts {
                version: "0.1.0".into(),
                pid: 42,
                bucket: "b".into(),
                prefix: "p/".into(),
                mountpoint: "/mnt/x".into(),
                endpoint: "https://oss-cn-hangzhou.aliyuncs.com".into(),
                credentials: "ECS RAM role MyRole".into(),
                read_only: true,
                mounted_at: 100,
            },
            metrics: "ossmount_cache_bytes 2097152\nossmount_upload_queue_depth 3\nossmount_oss_requests_total{op=\"GetObject\",status=\"500\"} 4\n".into(),
            write_back: None,
        };
        let text = format_report(&report, true, 160);
        assert!(text.contains("write-back: off"), "{text}");
        assert!(!text.contains("state:"), "{text}");
        assert!(text.contains("bucket: b (prefix p/)"), "{text}");
        assert!(text.contains("endpoint: https://oss-cn-hangzhou.aliyuncs.com"));
        assert!(text.contains("credentials: ECS RAM role MyRole"));
        assert!(text.contains("mode: read-only"));
        assert!(text.contains("mounted 60s ago"));
        assert!(text.contains("cache: 2MiB in memory"));
        assert!(text.contains("3 upload parts"));
        assert!(text.contains("oss: 4 requests, 4 errors"), "{text}");
    }

    #[test]
    fn report_shows_the_write_back_queue_while_draining() {
        let mut w = crate::cli::write_back::fake::pending(3);
        w.uploading_files = 1;
        w.oldest_pending_secs = Some(90);
        w.uploaded_files = 12;
        w.uploaded_bytes = 12 * 16384;
        w.conflicts = 1;
        w.failing_files = 2;
        w.last_error = Some("PutObject: 503".into());
        w.full = true;
        let report = StatusReport {
            facts: MountFacts {
                version: "0.1.0".into(),
                pid: 42,
                bucket: "b".into(),
                prefix: String::new(),
                mountpoint: "/mnt/x".into(),
                endpoint: "http://127.0.0.1:1".into(),
                credentials: "anonymous".into(),
                read_only: false,
                mounted_at: 100,
            },
            metrics: String::new(),
            write_back: Some(w),
        };
        let text = format_report(&report, false, 160);
        assert!(
            text.contains("state: unmounted; uploading the write-back queue"),
            "{text}"
        );
        assert!(
            text.contains("write-back: store /var/cache/ossmount/test\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "pending: 3 files (48KiB), 1 uploading, oldest 90s ago; the store is full"
            ),
            "{text}"
        );
        assert!(text.contains("uploaded: 12 files (192KiB)"), "{text}");
        assert!(
            text.contains("conflicts: 1 (local copies kept in /var/cache/ossmount/test/conflicts)"),
            "{text}"
        );
        assert!(
            text.contains("failing: 2 files, last error: PutObject: 503"),
            "{text}"
        );
    }

    #[test]
    fn a_plain_directory_is_not_a_mount() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(dir.path()).unwrap_err();
        assert!(err.contains("is not an ossmount mount"), "{err}");
        let err = locate(Path::new("/nonexistent-ossmount-test")).unwrap_err();
        assert!(err.contains("/nonexistent-ossmount-test"), "{err}");
    }

    #[test]
    fn an_unmounted_path_with_a_live_socket_is_a_draining_mount() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap();
        let socket = socket_path(&path);
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let found = locate(dir.path());
        let _ = std::fs::remove_file(&socket);
        assert_eq!(
            found,
            Ok(Target {
                path,
                socket,
                mounted: false
            })
        );
    }
}
