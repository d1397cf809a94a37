//! Serving a mount until it should stop, then stopping it safely.
//!
//! The process ends in one of two ways:
//! - a signal (SIGINT, SIGTERM): finish in-flight uploads, waiting at most
//!   [`FLUSH_TIMEOUT`], then unmount and exit 0 — data written and closed before the
//!   signal is in OSS when the process exits;
//! - `umount MOUNTPOINT` (or `fusermount -u`): the kernel ends the FUSE session; the
//!   uploads are finished the same way and the process exits 0.
//!
//! SIGUSR1 never stops anything: it writes the current metrics, in Prometheus text
//! format, to the log.
//!
//! The filesystem layer is reached through [`MountedFilesystem`], so this loop is tested
//! without the kernel.

use std::time::Duration;

use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How long a signal-triggered shutdown waits for in-flight uploads.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// A live mount, as the binary sees it.
pub trait MountedFilesystem: Send {
    /// Resolves when the kernel has ended the session (the mountpoint was unmounted).
    fn unmounted(&mut self) -> BoxFuture<'_, ()>;
    /// Finishes in-flight uploads, waiting at most `timeout`; returns how many did not
    /// finish in time.
    fn flush(&mut self, timeout: Duration) -> BoxFuture<'_, usize>;
    /// Unmounts (if still mounted) and stops serving.
    fn unmount(self: Box<Self>) -> Result<(), String>;
}

/// Why serving stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Signal(&'static str),
    Unmounted,
}

/// The signals that stop or inspect a mount. Register them *before* mounting: from the
/// moment the mount exists, a SIGTERM must unmount it rather than kill the process and
/// leave a stale mount behind.
pub struct Signals {
    term: Signal,
    int: Signal,
    usr1: Signal,
}

impl Signals {
    pub fn register() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    /// The next stop signal's name.
    async fn stop(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Serves until a signal or an external unmount, then flushes and unmounts. A second
/// stop signal during the flush stops waiting. Returns the reason, or an error when the
/// unmount itself failed.
pub async fn serve_until_stopped(
    mut fs: Box<dyn MountedFilesystem>,
    mut signals: Signals,
    metrics: Option<PrometheusHandle>,
) -> Result<StopReason, String> {
    let reason = loop {
        tokio::select! {
            _ = signals.term.recv() => break StopReason::Signal("SIGTERM"),
            _ = signals.int.recv() => break StopReason::Signal("SIGINT"),
            _ = signals.usr1.recv() => dump_metrics(metrics.as_ref()),
            _ = fs.unmounted() => break StopReason::Unmounted,
        }
    };
    tracing::info!(?reason, "stopping: finishing in-flight uploads");
    let unfinished = tokio::select! {
        n = fs.flush(FLUSH_TIMEOUT) => n,
        name = signals.stop() => {
            tracing::warn!(signal = name, "second stop signal: not waiting for uploads any longer");
            1
        }
    };
    if unfinished > 0 {
        tracing::error!(
            unfinished,
            timeout_secs = FLUSH_TIMEOUT.as_secs(),
            "uploads still in flight at shutdown were abandoned; those files were not saved"
        );
    }
    fs.unmount()?;
    tracing::info!("unmounted");
    Ok(reason)
}

/// Writes the rendered metrics to the log (SIGUSR1).
pub fn dump_metrics(handle: Option<&PrometheusHandle>) {
    match handle {
        Some(h) => tracing::info!("metrics (SIGUSR1):\n{}", h.render()),
        None => tracing::warn!("SIGUSR1: metrics are not available"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct FakeFs {
        unmount_after: Duration,
        flushed: Arc<AtomicUsize>,
        unmounted: Arc<AtomicUsize>,
    }

    impl MountedFilesystem for FakeFs {
        fn unmounted(&mut self) -> BoxFuture<'_, ()> {
            let d = self.unmount_after;
            Box::pin(tokio::time::sleep(d))
        }
        fn flush(&mut self, _timeout: Duration) -> BoxFuture<'_, usize> {
            self.flushed.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { 0 })
        }
        fn unmount(self: Box<Self>) -> Result<(), String> {
            self.unmounted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn external_unmount_flushes_then_unmounts() {
        let flushed = Arc::new(AtomicUsize::new(0));
        let unmounted = Arc::new(AtomicUsize::new(0));
        let fs = FakeFs {
            unmount_after: Duration::from_millis(20),
            flushed: flushed.clone(),
            unmounted: unmounted.clone(),
        };
        let signals = Signals::register().unwrap();
        let reason = serve_until_stopped(Box::new(fs), signals, None)
            .await
            .unwrap();
        assert_eq!(reason, StopReason::Unmounted);
        assert_eq!(flushed.load(Ordering::SeqCst), 1);
        assert_eq!(unmounted.load(Ordering::SeqCst), 1);
    }
}
