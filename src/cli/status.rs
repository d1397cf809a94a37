//! `ossmount status MOUNTPOINT`: what a running mount is doing, for operators.
//!
//! The path must be an ossmount mount in the mount table; the report comes from the
//! mount's control socket ([`crate::control`]), so it works without `--metrics-addr`.
//! Printed: bucket and prefix, endpoint, credential source (never a secret), process,
//! cache use, prefetches and upload parts in flight, OSS and FUSE error counters.
//! `--json` prints the raw report instead (facts plus the Prometheus text).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::units::{format_duration, format_size};
use crate::control::{StatusReport, now_epoch_secs, query_status, socket_path, summarize};
use crate::mount_check::find_mount;

use super::args::StatusArgs;
use super::error::CliError;

pub fn run_status(args: &StatusArgs) -> Result<(), CliError> {
    let path = mount_path(&args.mountpoint)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let report = runtime
        .block_on(query_status(&socket_path(&path)))
        .map_err(|e| CliError::Status(e.to_string()))?;
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Status(format!("cannot encode the report: {e}")))?;
        json.push('\n');
        json
    } else {
        format_report(&report, now_epoch_secs())
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(CliError::Output)
}

/// The canonical mountpoint, checked to be an ossmount mount.
fn mount_path(given: &Path) -> Result<PathBuf, CliError> {
    let path = match std::fs::canonicalize(given) {
        Ok(p) => p,
        // A dead mount cannot be resolved; look it up under its absolute name.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => std::path::absolute(given)
            .map_err(|e| CliError::Status(format!("{}: {e}", given.display())))?,
        Err(e) => return Err(CliError::Status(format!("{}: {e}", given.display()))),
    };
    let entry = find_mount(&path)
        .map_err(|e| CliError::Status(format!("cannot read the mount table: {e}")))?;
    match entry {
        Some(e) if e.is_ossmount() => {}
        Some(e) => {
            return Err(CliError::Status(format!(
                "{} is not an ossmount mount (it is a {} mount of {})",
                path.display(),
                e.fstype,
                e.source
            )));
        }
        None => {
            return Err(CliError::Status(format!(
                "{} is not an ossmount mount (nothing is mounted there)",
                path.display()
            )));
        }
    }
    if let Err(e) = std::fs::metadata(&path)
        && e.raw_os_error() == Some(libc::ENOTCONN)
    {
        return Err(CliError::Status(format!(
            "{} is a stale ossmount mount: its process has died (recover with umount -l {0} and mount again, or --recover-stale-mount)",
            path.display()
        )));
    }
    Ok(path)
}

fn format_report(report: &StatusReport, now: u64) -> String {
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
        };
        let text = format_report(&report, 160);
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
    fn a_plain_directory_is_not_a_mount() {
        let dir = tempfile::tempdir().unwrap();
        let err = mount_path(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not an ossmount mount"), "{err}");
        let err = mount_path(Path::new("/nonexistent-ossmount-test"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent-ossmount-test"), "{err}");
    }
}
