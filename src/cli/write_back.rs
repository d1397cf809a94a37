//! The daemon's watchers of the write-back queue ([`crate::write_back`]): the drain after
//! `umount` and the metrics.
//!
//! Both work only through [`WriteBackQueue`]: a watch channel that sees every change, plus
//! [`WriteBackQueue::status`] for a fresh snapshot (the oldest pending age grows without
//! any change being published, so timers re-read it).
//!
//! Drain: once the kernel side is unmounted no new work can arrive, so the queue only
//! shrinks. [`drain`] waits for [`WriteBackStatus::drained`], logging what is left every
//! [`PROGRESS_INTERVAL`] when it changed and every [`HEARTBEAT_INTERVAL`] when it did not
//! (a stuck upload shows its last error). The caller passes the future of the signal
//! that ends the wait early; what is left then stays in the store's journal and the next
//! mount with the same store uploads it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::units::format_size;
use crate::write_back::{WriteBackQueue, WriteBackStatus};

/// How often drain progress is logged while the queue changes.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// How often drain progress is logged while nothing changes.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// How often the metrics re-read the queue between changes (for the oldest pending age).
const METRICS_REFRESH: Duration = Duration::from_secs(5);

/// How a drain ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DrainOutcome {
    /// Nothing is left to upload.
    Drained,
    /// Stopped early (a stop signal, or the queue shut down); this is what stays in the
    /// store for the next mount.
    Abandoned(WriteBackStatus),
}

/// Waits until `queue` is drained or `stop` resolves (to the name of what stopped it).
pub async fn drain<F>(queue: &dyn WriteBackQueue, stop: F) -> DrainOutcome
where
    F: Future<Output = &'static str>,
{
    let mut rx = queue.watch();
    rx.borrow_and_update();
    let status = queue.status();
    if status.drained() {
        log_drained(&status);
        return DrainOutcome::Drained;
    }
    tracing::info!(
        store = %status.store_dir.display(),
        "unmounted; uploading the write-back queue before exiting ({}); a second SIGTERM or SIGINT exits at once and leaves the rest in the store",
        describe(&status)
    );
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(PROGRESS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut changed = false;
    let mut quiet_for = Duration::ZERO;
    loop {
        tokio::select! {
            res = rx.changed() => {
                rx.borrow_and_update();
                let status = queue.status();
                if status.drained() {
                    log_drained(&status);
                    return DrainOutcome::Drained;
                }
                if res.is_err() {
                    // The queue dropped its sender: no more progress can come.
                    tracing::error!(
                        store = %status.store_dir.display(),
                        "the write-back queue stopped before draining ({}); the next mount with the same store uploads the rest",
                        describe(&status)
                    );
                    return DrainOutcome::Abandoned(status);
                }
                changed = true;
            }
            _ = ticks.tick() => {
                quiet_for += PROGRESS_INTERVAL;
                if changed || quiet_for >= HEARTBEAT_INTERVAL {
                    tracing::info!("draining the write-back queue: {}", describe(&queue.status()));
                    changed = false;
                    quiet_for = Duration::ZERO;
                }
            }
            name = &mut stop => {
                let status = queue.status();
                tracing::warn!(
                    signal = name,
                    store = %status.store_dir.display(),
                    "exiting before the write-back queue drained: {}; they stay in the store and the next mount with the same store uploads them",
                    describe(&status)
                );
                return DrainOutcome::Abandoned(status);
            }
        }
    }
}

fn log_drained(status: &WriteBackStatus) {
    tracing::info!(
        uploaded_files = status.uploaded_files,
        uploaded_bytes = status.uploaded_bytes,
        conflicts = status.conflicts,
        "write-back queue drained"
    );
}

/// What is left, in one phrase: `3 files (48KiB) left, 1 uploading, oldest 12s, ...`.
pub fn describe(s: &WriteBackStatus) -> String {
    let mut out = format!(
        "{} {} ({}) left, {} uploading",
        s.pending_files,
        if s.pending_files == 1 {
            "file"
        } else {
            "files"
        },
        format_size(s.pending_bytes),
        s.uploading_files
    );
    if let Some(age) = s.oldest_pending_secs {
        out.push_str(&format!(", oldest {age}s"));
    }
    if s.failing_files > 0 {
        out.push_str(&format!(", {} failing", s.failing_files));
        if let Some(e) = &s.last_error {
            out.push_str(&format!(" (last error: {e})"));
        }
    }
    out
}

/// Publishes the queue's state as metrics ([`crate::metrics`]) on every change and every
/// few seconds, until the queue shuts down or the task is aborted.
pub fn spawn_metrics(queue: Arc<dyn WriteBackQueue>) -> tokio::task::JoinHandle<()> {
    let mut rx = queue.watch();
    tokio::spawn(async move {
        let mut refresh = tokio::time::interval(METRICS_REFRESH);
        loop {
            rx.borrow_and_update();
            record_metrics(&queue.status());
            tokio::select! {
                res = rx.changed() => if res.is_err() {
                    record_metrics(&queue.status());
                    return;
                },
                _ = refresh.tick() => {}
            }
        }
    })
}

/// Sets the write-back gauges and counters from one snapshot.
pub fn record_metrics(s: &WriteBackStatus) {
    use crate::metrics as m;
    ::metrics::gauge!(m::WRITE_BACK_PENDING_FILES).set(s.pending_files as f64);
    ::metrics::gauge!(m::WRITE_BACK_PENDING_BYTES).set(s.pending_bytes as f64);
    ::metrics::gauge!(m::WRITE_BACK_OLDEST_PENDING_SECONDS)
        .set(s.oldest_pending_secs.unwrap_or(0) as f64);
    ::metrics::gauge!(m::WRITE_BACK_FAILING_FILES).set(s.failing_files as f64);
    ::metrics::counter!(m::WRITE_BACK_CONFLICTS).absolute(s.conflicts);
    ::metrics::counter!(m::WRITE_BACK_UPLOADED_FILES).absolute(s.uploaded_files);
}

/// A queue driven by hand, for the watchers' tests (daemon, control socket, CLI).
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::sync::Mutex;

    pub(crate) struct FakeQueue {
        tx: Mutex<Option<tokio::sync::watch::Sender<WriteBackStatus>>>,
        rx: tokio::sync::watch::Receiver<WriteBackStatus>,
    }

    impl FakeQueue {
        pub(crate) fn new(initial: WriteBackStatus) -> Arc<FakeQueue> {
            let (tx, rx) = tokio::sync::watch::channel(initial);
            Arc::new(FakeQueue {
                tx: Mutex::new(Some(tx)),
                rx,
            })
        }

        /// Changes the state and notifies every watcher.
        pub(crate) fn update(&self, f: impl FnOnce(&mut WriteBackStatus)) {
            if let Some(tx) = self.tx.lock().unwrap().as_ref() {
                tx.send_modify(f);
            }
        }

        /// Drops the sender, as a queue that shuts down does.
        pub(crate) fn close(&self) {
            self.tx.lock().unwrap().take();
        }
    }

    impl WriteBackQueue for FakeQueue {
        fn status(&self) -> WriteBackStatus {
            self.rx.borrow().clone()
        }
        fn watch(&self) -> tokio::sync::watch::Receiver<WriteBackStatus> {
            self.rx.clone()
        }
    }

    /// `files` pending files of 16 KiB each, queued as journal records 0..files.
    pub(crate) fn pending(files: u64) -> WriteBackStatus {
        WriteBackStatus {
            store_dir: "/var/cache/ossmount/test".into(),
            pending_files: files,
            pending_bytes: files * 16384,
            oldest_pending_secs: (files > 0).then_some(3),
            enqueued_seq: files,
            ..WriteBackStatus::default()
        }
    }

    /// Settles the oldest pending file as uploaded.
    pub(crate) fn upload_one(s: &mut WriteBackStatus) {
        s.pending_files -= 1;
        s.pending_bytes -= 16384;
        s.uploaded_files += 1;
        s.uploaded_bytes += 16384;
        s.settled_seq += 1;
        if s.pending_files == 0 {
            s.oldest_pending_secs = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeQueue, pending, upload_one};
    use super::*;

    #[tokio::test]
    async fn an_empty_queue_is_drained_at_once() {
        let q = FakeQueue::new(pending(0));
        let outcome = drain(q.as_ref(), std::future::pending()).await;
        assert_eq!(outcome, DrainOutcome::Drained);
    }

    #[tokio::test]
    async fn drain_waits_for_the_last_upload() {
        let q = FakeQueue::new(pending(3));
        let uploader = {
            let q = q.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                    q.update(upload_one);
                }
            })
        };
        let outcome = drain(q.as_ref(), std::future::pending()).await;
        assert_eq!(outcome, DrainOutcome::Drained);
        assert_eq!(q.status().uploaded_files, 3);
        uploader.await.unwrap();
    }

    #[tokio::test]
    async fn a_stop_signal_abandons_the_drain_with_what_is_left() {
        let q = FakeQueue::new(pending(5));
        q.update(upload_one);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            rx.await.unwrap();
            "SIGTERM"
        };
        let drain = tokio::spawn({
            let q = q.clone();
            async move { drain(q.as_ref(), stop).await }
        });
        tx.send(()).unwrap();
        match drain.await.unwrap() {
            DrainOutcome::Abandoned(left) => {
                assert_eq!(left.pending_files, 4);
                assert_eq!(left.pending_bytes, 4 * 16384);
            }
            other => panic!("expected an abandoned drain, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_queue_that_shuts_down_ends_the_drain() {
        let q = FakeQueue::new(pending(2));
        let drain = tokio::spawn({
            let q = q.clone();
            async move { drain(q.as_ref(), std::future::pending()).await }
        });
        tokio::task::yield_now().await;
        q.close();
        match drain.await.unwrap() {
            DrainOutcome::Abandoned(left) => assert_eq!(left.pending_files, 2),
            other => panic!("expected an abandoned drain, got {other:?}"),
        }
    }

    #[test]
    fn progress_names_what_is_left_and_why_it_is_stuck() {
        let mut s = pending(3);
        s.uploading_files = 1;
        s.failing_files = 2;
        s.last_error = Some("PutObject: 503 ServiceUnavailable".into());
        let text = describe(&s);
        assert_eq!(
            text,
            "3 files (48KiB) left, 1 uploading, oldest 3s, 2 failing (last error: PutObject: 503 ServiceUnavailable)"
        );
        assert_eq!(
            describe(&pending(1)),
            "1 file (16KiB) left, 0 uploading, oldest 3s"
        );
    }

    #[test]
    fn metrics_carry_the_queue_state() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let mut s = pending(4);
        s.conflicts = 2;
        s.uploaded_files = 7;
        s.failing_files = 1;
        ::metrics::with_local_recorder(&recorder, || record_metrics(&s));
        let text = handle.render();
        let samples = crate::control::parse_prometheus(&text);
        let value = |name: &str| {
            samples
                .iter()
                .find(|x| x.name == name)
                .unwrap_or_else(|| panic!("{name} missing from {text}"))
                .value
        };
        use crate::metrics as m;
        assert_eq!(value(m::WRITE_BACK_PENDING_FILES), 4.0);
        assert_eq!(value(m::WRITE_BACK_PENDING_BYTES), 4.0 * 16384.0);
        assert_eq!(value(m::WRITE_BACK_OLDEST_PENDING_SECONDS), 3.0);
        assert_eq!(value(m::WRITE_BACK_CONFLICTS), 2.0);
        assert_eq!(value(m::WRITE_BACK_UPLOADED_FILES), 7.0);
        assert_eq!(value(m::WRITE_BACK_FAILING_FILES), 1.0);
    }
}
