//! Metric names, declared in one place.
//!
//! Instrumentation uses the `metrics` crate facade (`::metrics::counter!(NAME, labels…)`),
//! so recording is a no-op until an exporter is installed. The binary installs the
//! Prometheus exporter when `--metrics-addr` is given (see the cli owner's code), and a
//! SIGUSR1 dumps the rendered text to the log.
//!
//! Label conventions: `op` = OSS operation name (`GetObject`, `PutObject`, …) or FUSE
//! operation (`lookup`, `read`, …); `status` = HTTP status as a string, or `error` for
//! network failures.

/// Counter: OSS requests sent, labels `op`, `status`.
pub const OSS_REQUESTS: &str = "ossmount_oss_requests_total";
/// Histogram (seconds): OSS request latency, label `op`.
pub const OSS_REQUEST_SECONDS: &str = "ossmount_oss_request_duration_seconds";
/// Counter: retries, labels `op`, `reason`.
pub const OSS_RETRIES: &str = "ossmount_oss_retries_total";
/// Counter: attempts refused by OSS throttling (HTTP 429, or 503 with EC 0004-00000302),
/// label `op`. Each also halves the in-flight budget (see `OSS_INFLIGHT_LIMIT`).
pub const OSS_THROTTLED: &str = "ossmount_oss_throttled_total";
/// Gauge: the current mount-wide budget of OSS requests in flight (AIMD).
pub const OSS_INFLIGHT_LIMIT: &str = "ossmount_oss_inflight_limit";
/// Counter: payload bytes received from OSS.
pub const OSS_BYTES_READ: &str = "ossmount_oss_bytes_read_total";
/// Counter: payload bytes sent to OSS.
pub const OSS_BYTES_WRITTEN: &str = "ossmount_oss_bytes_written_total";
/// Counter: block-cache hits / misses.
pub const CACHE_HITS: &str = "ossmount_cache_hits_total";
pub const CACHE_MISSES: &str = "ossmount_cache_misses_total";
/// Gauge: bytes held by the block cache.
pub const CACHE_BYTES: &str = "ossmount_cache_bytes";
/// Gauge: prefetch requests in flight.
pub const PREFETCH_IN_FLIGHT: &str = "ossmount_prefetch_in_flight";
/// Gauge: upload parts queued or in flight.
pub const UPLOAD_QUEUE_DEPTH: &str = "ossmount_upload_queue_depth";
/// Gauge: inodes in the mount's inode table (see `fs::inode`, Lifecycle).
pub const INODES: &str = "ossmount_inodes";
/// Counter: credential refreshes, label `result` (`ok`/`error`).
pub const CREDENTIAL_REFRESHES: &str = "ossmount_credential_refreshes_total";
/// Counter: FUSE operations, labels `op`, `result` (`ok` or errno name).
pub const FUSE_OPS: &str = "ossmount_fuse_ops_total";
/// Histogram (seconds): FUSE operation latency, label `op`.
pub const FUSE_OP_SECONDS: &str = "ossmount_fuse_op_duration_seconds";
/// Counter: bytes returned to applications by read().
pub const FUSE_BYTES_READ: &str = "ossmount_fuse_bytes_read_total";
/// Counter: bytes accepted from applications by write().
pub const FUSE_BYTES_WRITTEN: &str = "ossmount_fuse_bytes_written_total";
/// Counter: write-back upload attempts that failed (each is retried).
pub const WRITE_BACK_UPLOAD_ERRORS: &str = "ossmount_write_back_upload_errors_total";

/// Gauge: files closed under `--write-back` and not yet on the server (issue 18).
pub const WRITE_BACK_PENDING_FILES: &str = "ossmount_write_back_pending_files";
/// Gauge: bytes of those files' local copies in the write-back store.
pub const WRITE_BACK_PENDING_BYTES: &str = "ossmount_write_back_pending_bytes";
/// Gauge: age in seconds of the oldest pending file (0 when none is pending).
pub const WRITE_BACK_OLDEST_PENDING_SECONDS: &str = "ossmount_write_back_oldest_pending_seconds";
/// Counter: files kept in the store's `conflicts/` because the object changed on the
/// server (since the store was created).
pub const WRITE_BACK_CONFLICTS: &str = "ossmount_write_back_conflicts_total";
/// Counter: write-back uploads completed since the mount started.
pub const WRITE_BACK_UPLOADED_FILES: &str = "ossmount_write_back_uploaded_files_total";
/// Gauge: pending files whose last upload attempt failed (they are retried).
pub const WRITE_BACK_FAILING_FILES: &str = "ossmount_write_back_failing_files";

/// Upper bounds (seconds) of the latency histograms' buckets.
///
/// The latencies are exported as Prometheus histograms (`_bucket{le=…}`, `_sum`,
/// `_count`), not as the exporter's default summaries: a summary keeps, per label set,
/// up to three rolling sketches of up to 32,768 bins (256 KiB each) that grow with the
/// spread of the values seen and stay until that label's next sample a minute later.
/// After a walk of 100,000 objects they held 5.6 MB, more than half of what the mount
/// kept once the kernel had forgotten the walk. A histogram is a fixed array of counts
/// per label set, and histograms of many mounts can be summed (`histogram_quantile`).
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Errors installing the metrics recorder/exporter.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {reason}")]
    Exporter {
        addr: std::net::SocketAddr,
        reason: String,
    },
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
}

/// The exporter as the mount configures it: latencies as histograms ([`LATENCY_BUCKETS`]).
fn builder() -> Result<metrics_exporter_prometheus::PrometheusBuilder, MetricsError> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let mut builder = PrometheusBuilder::new();
    for name in [OSS_REQUEST_SECONDS, FUSE_OP_SECONDS] {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.into()), &LATENCY_BUCKETS)
            .map_err(|e| MetricsError::Recorder(e.to_string()))?;
    }
    Ok(builder)
}

/// Installs the global Prometheus recorder and returns a handle that renders the current
/// values (used for the SIGUSR1 dump). With `addr`, also serves `GET /metrics` there;
/// that needs a running tokio runtime (the listener and the upkeep task are spawned on it).
pub fn install_exporter(
    addr: Option<std::net::SocketAddr>,
) -> Result<metrics_exporter_prometheus::PrometheusHandle, MetricsError> {
    let builder = builder()?;
    let Some(addr) = addr else {
        let handle = builder
            .install_recorder()
            .map_err(|e| MetricsError::Recorder(e.to_string()))?;
        // Histograms keep every sample until upkeep drains them: without it a mount
        // that is never scraped grows by every request it ever sends. (With a listener
        // the exporter runs its own upkeep.)
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .map_err(|e| MetricsError::Recorder(e.to_string()))?;
        return Ok(handle);
    };
    let (recorder, exporter) =
        builder
            .with_http_listener(addr)
            .build()
            .map_err(|e| MetricsError::Exporter {
                addr,
                reason: e.to_string(),
            })?;
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|e| MetricsError::Recorder(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!(%addr, error = ?e, "metrics exporter stopped");
        }
    });
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::metrics::{Key, Label, Recorder};

    /// Latencies render as bucketed histograms, and a label's state stays a fixed array
    /// of counts however widely its values spread (a summary's sketch grew with them).
    #[test]
    fn latencies_are_histograms() {
        let recorder = builder().expect("builder").build_recorder();
        let meta = ::metrics::Metadata::new(module_path!(), ::metrics::Level::INFO, None);
        for name in [OSS_REQUEST_SECONDS, FUSE_OP_SECONDS] {
            let key = Key::from_parts(name, vec![Label::new("op", "lookup")]);
            let h = recorder.register_histogram(&key, &meta);
            for i in 0..10_000u32 {
                h.record(1e-7 * 1.01f64.powi((i % 1500) as i32));
            }
        }
        let text = recorder.handle().render();
        for name in [OSS_REQUEST_SECONDS, FUSE_OP_SECONDS] {
            assert!(
                text.contains(&format!("{name}_bucket{{op=\"lookup\",le=\"0.0001\"}}")),
                "{name} is a histogram:\n{text}"
            );
            assert!(text.contains(&format!("{name}_count{{op=\"lookup\"}} 10000")));
        }
        assert!(!text.contains("quantile"), "no summaries:\n{text}");
    }
}
