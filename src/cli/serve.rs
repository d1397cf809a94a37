//! Serving a mount until it should stop, then stopping it safely.
//!
//! The process ends in one of two ways:
//! - a signal (SIGINT, SIGTERM): finish in-flight uploads, waiting at most
//!   [`FLUSH_TIMEOUT`], then unmount and exit 0 — data written and closed before the
//!   signal is in OSS when the process exits;
//! - `umount MOUNTPOINT` (or `fusermount -u`): the kernel ends the FUSE session; the
//!   uploads are finished the same way and the process exits 0.
//!
//! With `--write-back` ([`MountedFilesystem::write_back`]) closed files may still be
//! waiting in the write-back store when the kernel side is gone. The process then keeps
//! running, with its control socket (`ossmount status`, `ossmount sync`), until the queue
//! is drained ([`super::write_back::drain`]), and exits 0 only then. Stop signals are
//! counted from the start of the shutdown: the first one (or `umount`) unmounts and
//! drains, the next one stops waiting. What is left stays in the store's journal, the
//! next mount with the same store uploads it, and the process exits with
//! [`EXIT_WRITE_BACK_LEFT`]. Pitfall: systemd runs `ExecStop=umount` and then sends
//! SIGTERM to the process at once; that SIGTERM is the first stop signal, so the drain
//! continues until `TimeoutStopSec` ends it with SIGKILL (which loses nothing either).
//!
//! SIGUSR1 never stops anything: it writes the current metrics, in Prometheus text
//! format, to the log.
//!
//! The filesystem layer is reached through [`MountedFilesystem`], so this loop is tested
//! without the kernel.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::write_back::{DrainOutcome, drain};
use crate::write_back::{WriteBackQueue, WriteBackStatus};

/// How long a signal-triggered shutdown waits for in-flight uploads.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// The exit status of a daemon stopped (by a second stop signal) before its write-back
/// queue drained: nothing is lost, the rest is uploaded by the next mount with the store.
pub const EXIT_WRITE_BACK_LEFT: u8 = 3;

/// A live mount, as the binary sees it.
pub trait MountedFilesystem: Send {
    /// Resolves when the kernel has ended the session (the mountpoint was unmounted).
    fn unmounted(&mut self) -> BoxFuture<'_, ()>;
    /// Finishes in-flight uploads, waiting at most `timeout`; returns how many did not
    /// finish in time.
    fn flush(&mut self, timeout: Duration) -> BoxFuture<'_, usize>;
    /// Unmounts (if still mounted) and stops serving.
    fn unmount(self: Box<Self>) -> Result<(), String>;
    /// The write-back queue, when the mount has one (`--write-back`); it outlives the
    /// unmount, so the caller can drain it afterwards.
    fn write_back(&self) -> Option<Arc<dyn WriteBackQueue>> {
        None
    }
}

/// Why serving stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Signal(&'static str),
    Unmounted,
}

/// How serving ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Stopped {
    pub reason: StopReason,
    /// What a stop signal left in the write-back store before the queue drained.
    pub write_back_left: Option<WriteBackStatus>,
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

/// Serves until a signal or an external unmount, then flushes, unmounts and drains the
/// write-back queue. A second stop signal during the flush stops waiting for it, one
/// during the drain leaves the rest in the store. Returns how it ended, or an error when
/// the unmount itself failed.
pub async fn serve_until_stopped(
    mut fs: Box<dyn MountedFilesystem>,
    mut signals: Signals,
    metrics: Option<PrometheusHandle>,
) -> Result<Stopped, String> {
    let reason = loop {
        tokio::select! {
            _ = signals.term.recv() => break StopReason::Signal("SIGTERM"),
            _ = signals.int.recv() => break StopReason::Signal("SIGINT"),
            _ = signals.usr1.recv() => dump_metrics(metrics.as_ref()),
            _ = fs.unmounted() => break StopReason::Unmounted,
        }
    };
    let mut stop_signals = u32::from(matches!(reason, StopReason::Signal(_)));
    let queue = fs.write_back();
    tracing::info!(?reason, "stopping: finishing in-flight uploads");
    let unfinished = tokio::select! {
        n = fs.flush(FLUSH_TIMEOUT) => n,
        name = signals.stop() => {
            stop_signals += 1;
            tracing::warn!(signal = name, "stop signal: not waiting for uploads any longer");
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
    let write_back_left = match queue {
        None => None,
        Some(queue) if stop_signals >= 2 => {
            let left = queue.status();
            (!left.drained()).then(|| {
                tracing::warn!(
                    store = %left.store_dir.display(),
                    "not draining the write-back queue after a second stop signal: {}; the next mount with the same store uploads them",
                    super::write_back::describe(&left)
                );
                left
            })
        }
        Some(queue) => match drain(queue.as_ref(), next_stop(&mut signals, stop_signals)).await {
            DrainOutcome::Drained => None,
            DrainOutcome::Abandoned(left) => Some(left),
        },
    };
    Ok(Stopped {
        reason,
        write_back_left,
    })
}

/// Resolves at the stop signal that makes `seen` two: the first one (after an external
/// `umount`, such as systemd's SIGTERM after `ExecStop`) only says the drain continues.
async fn next_stop(signals: &mut Signals, mut seen: u32) -> &'static str {
    loop {
        let name = signals.stop().await;
        seen += 1;
        if seen >= 2 {
            return name;
        }
        tracing::info!(
            signal = name,
            "still draining the write-back queue; another SIGTERM or SIGINT exits at once, leaving the rest in the store"
        );
    }
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
    use super::super::write_back::fake::{FakeQueue, pending, upload_one};
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct FakeFs {
        unmount_after: Duration,
        flushed: Arc<AtomicUsize>,
        unmounted: Arc<AtomicUsize>,
        queue: Option<Arc<FakeQueue>>,
        on_unmount: Option<tokio::sync::oneshot::Sender<()>>,
    }

    impl FakeFs {
        fn new() -> FakeFs {
            FakeFs {
                unmount_after: Duration::from_millis(20),
                flushed: Arc::default(),
                unmounted: Arc::default(),
                queue: None,
                on_unmount: None,
            }
        }
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
        fn unmount(mut self: Box<Self>) -> Result<(), String> {
            self.unmounted.fetch_add(1, Ordering::SeqCst);
            if let Some(tx) = self.on_unmount.take() {
                let _ = tx.send(());
            }
            Ok(())
        }
        fn write_back(&self) -> Option<Arc<dyn WriteBackQueue>> {
            self.queue.clone().map(|q| -> Arc<dyn WriteBackQueue> { q })
        }
    }

    #[tokio::test]
    async fn external_unmount_flushes_then_unmounts() {
        let fs = FakeFs::new();
        let (flushed, unmounted) = (fs.flushed.clone(), fs.unmounted.clone());
        let signals = Signals::register().unwrap();
        let stopped = serve_until_stopped(Box::new(fs), signals, None)
            .await
            .unwrap();
        assert_eq!(stopped.reason, StopReason::Unmounted);
        assert_eq!(stopped.write_back_left, None);
        assert_eq!(flushed.load(Ordering::SeqCst), 1);
        assert_eq!(unmounted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn after_unmount_the_write_back_queue_is_drained_before_returning() {
        let queue = FakeQueue::new(pending(3));
        let (tx, unmounted_rx) = tokio::sync::oneshot::channel();
        let fs = FakeFs {
            queue: Some(queue.clone()),
            on_unmount: Some(tx),
            ..FakeFs::new()
        };
        // The uploads finish only after the kernel side is gone: serving must outlive it.
        let uploader = tokio::spawn({
            let queue = queue.clone();
            async move {
                unmounted_rx.await.unwrap();
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                    queue.update(upload_one);
                }
            }
        });
        let signals = Signals::register().unwrap();
        let stopped = serve_until_stopped(Box::new(fs), signals, None)
            .await
            .unwrap();
        assert_eq!(stopped.reason, StopReason::Unmounted);
        assert_eq!(stopped.write_back_left, None);
        assert!(queue.status().drained());
        assert_eq!(queue.status().uploaded_files, 3);
        uploader.await.unwrap();
    }
}
