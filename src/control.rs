//! The per-mount control socket: how `ossmount status MOUNTPOINT` (and the CSI plugin)
//! ask a running mount about itself, without `--metrics-addr`.
//!
//! Where: one Unix socket per mount in the runtime directory —
//! `/run/ossmount/` for root, `$XDG_RUNTIME_DIR/ossmount/` otherwise (falling back to
//! `/tmp/ossmount-UID/`) — named after a hash of the mount's canonical path, so the
//! status command finds it from the path alone. The directory is created mode 0700 and the
//! socket is chmod 0600: only the mount's owner (and root) may connect.
//!
//! Protocol: the client sends one line, `status`; the server answers one JSON line
//! ([`StatusReport`]) and closes. Unknown requests get `{"error": …}`. New commands and
//! new report fields are added, never renamed (the write-back queue joins the same report).
//!
//! The report carries the mount's facts (bucket, endpoint, where the credentials come
//! from — never a secret) and the Prometheus text of its metrics; the status command picks
//! the figures it prints from that text ([`summarize`]), so every metric the mount records
//! is available to it without a second list of counters here.
//!
//! Pitfall: a socket left by a mount that crashed stays on disk. [`ControlServer::start`]
//! replaces it; a client that finds it gets "connection refused", which the status command
//! reports as a dead mount.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::write_back::{WriteBackQueue, WriteBackStatus};

type MetricsFn = dyn Fn() -> String + Send + Sync;

/// What a mount says about itself, fixed at mount time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountFacts {
    pub version: String,
    pub pid: u32,
    pub bucket: String,
    pub prefix: String,
    pub mountpoint: PathBuf,
    pub endpoint: String,
    /// Where the credentials come from, e.g. `environment OSS_ACCESS_KEY_ID` (never a secret).
    pub credentials: String,
    pub read_only: bool,
    /// Seconds since the Unix epoch when the mount became ready.
    pub mounted_at: u64,
}

/// The answer to `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    #[serde(flatten)]
    pub facts: MountFacts,
    /// The mount's metrics in Prometheus text format.
    #[serde(default)]
    pub metrics: String,
    /// The write-back queue, when the mount has one (absent from older servers' answers
    /// and for mounts without `--write-back`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_back: Option<WriteBackStatus>,
}

/// One line of the answer to `sync`: sent at once, on changes of the queue (at most every
/// [`SYNC_UPDATE_INTERVAL`]) and every [`SYNC_HEARTBEAT`], the last one with `done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// Everything queued before the request is settled; this is the last line.
    pub done: bool,
    /// The queue's `enqueued_seq` when the request arrived: done once `settled_seq`
    /// reaches it. Files queued later are not waited for.
    #[serde(default)]
    pub target_seq: u64,
    /// The queue now; absent when the mount has no write-back (then the first line is
    /// already `done`: every close waited for its upload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_back: Option<WriteBackStatus>,
}

/// The shortest time between two progress lines of a `sync` answer.
pub const SYNC_UPDATE_INTERVAL: Duration = Duration::from_millis(200);
/// A `sync` answer repeats the state at least this often, so a client can tell a slow
/// queue from a hung daemon (it gives up after [`SYNC_SILENCE_LIMIT`]).
pub const SYNC_HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a `sync` client waits for a line before it calls the mount unresponsive.
pub const SYNC_SILENCE_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot create the control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot reach the mount's control socket {path}: {source} (is the ossmount process for this mount still running?)"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control socket {path}: {reason}")]
    Protocol { path: PathBuf, reason: String },
}

/// The directory holding control sockets for the current user.
pub fn runtime_dir() -> PathBuf {
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        return PathBuf::from("/run/ossmount");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => Path::new(&dir).join("ossmount"),
        _ => PathBuf::from(format!("/tmp/ossmount-{uid}")),
    }
}

/// The control socket of the mount at `mountpoint` (a canonical path, as in the mount
/// table).
pub fn socket_path(mountpoint: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let digest = Sha256::digest(mountpoint.as_os_str().as_bytes());
    runtime_dir().join(format!("{}.sock", &hex::encode(digest)[..24]))
}

/// Serves the control socket until dropped; dropping removes the socket file (unless
/// another mount of the same path has replaced it meanwhile).
pub struct ControlServer {
    path: PathBuf,
    /// Device and inode of the socket file this server bound.
    bound: Option<(u64, u64)>,
    task: tokio::task::JoinHandle<()>,
    /// Every answer in progress holds a read guard; [`ControlServer::finish`] takes the
    /// write side to wait for them.
    sessions: std::sync::Arc<tokio::sync::RwLock<()>>,
}

impl ControlServer {
    /// Binds the socket for `facts.mountpoint` and answers requests on the current tokio
    /// runtime. `metrics` renders the current Prometheus text.
    pub fn start(
        facts: MountFacts,
        metrics: Box<dyn Fn() -> String + Send + Sync>,
    ) -> Result<ControlServer, ControlError> {
        Self::start_with_write_back(facts, metrics, None)
    }

    /// Like [`ControlServer::start`], also reporting the mount's write-back queue in
    /// `status` and answering `sync`.
    pub fn start_with_write_back(
        facts: MountFacts,
        metrics: Box<dyn Fn() -> String + Send + Sync>,
        write_back: Option<std::sync::Arc<dyn WriteBackQueue>>,
    ) -> Result<ControlServer, ControlError> {
        let path = socket_path(&facts.mountpoint);
        let bind_err = |source| ControlError::Bind {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            create_private_dir(dir).map_err(bind_err)?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::debug!(path = %path.display(), "replaced a leftover control socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bind_err(e)),
        }
        let listener = UnixListener::bind(&path).map_err(bind_err)?;
        set_mode(&path, 0o600).map_err(bind_err)?;
        let bound = file_id(&path);
        let metrics: std::sync::Arc<MetricsFn> = metrics.into();
        let sessions = std::sync::Arc::new(tokio::sync::RwLock::new(()));
        let tracker = sessions.clone();
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let facts = facts.clone();
                let metrics = metrics.clone();
                let write_back = write_back.clone();
                let session = tracker.clone().read_owned().await;
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &facts, metrics.as_ref(), write_back).await {
                        tracing::debug!(error = %e, "control socket client");
                    }
                    drop(session);
                });
            }
        });
        Ok(ControlServer {
            path,
            bound,
            task,
            sessions,
        })
    }

    /// Stops accepting, waits up to `grace` for the answers in progress (a `sync` that
    /// must still send its final line once the queue is drained), then removes the
    /// socket.
    pub async fn finish(self, grace: Duration) {
        self.task.abort();
        let _ = tokio::time::timeout(grace, self.sessions.write()).await;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        // A daemon draining its write-back queue after `umount` may see a new mount of
        // the same path replace its socket: that one is not ours to remove.
        if self.bound.is_some() && file_id(&self.path) == self.bound {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

async fn answer(
    stream: UnixStream,
    facts: &MountFacts,
    metrics: &MetricsFn,
    write_back: Option<std::sync::Arc<dyn WriteBackQueue>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // One short request line; a client that sends more is cut off.
    let mut reader = BufReader::new(read.take(256));
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    let reply = match line.trim() {
        "status" => serde_json::to_string(&StatusReport {
            facts: facts.clone(),
            metrics: metrics(),
            write_back: write_back.map(|q| q.status()),
        })
        .map_err(std::io::Error::other)?,
        "sync" => return answer_sync(reader, write, write_back).await,
        other => {
            serde_json::json!({ "error": format!("unknown request '{}'", other.escape_debug()) })
                .to_string()
        }
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// Streams [`SyncProgress`] lines until everything queued before the request is settled,
/// the client goes away, or the queue shuts down (an `error` line).
async fn answer_sync<R>(
    mut reader: R,
    mut write: tokio::net::unix::OwnedWriteHalf,
    write_back: Option<std::sync::Arc<dyn WriteBackQueue>>,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
{
    async fn send(
        write: &mut tokio::net::unix::OwnedWriteHalf,
        line: &impl Serialize,
    ) -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        text.push('\n');
        write.write_all(text.as_bytes()).await
    }
    let Some(queue) = write_back else {
        let line = SyncProgress {
            done: true,
            target_seq: 0,
            write_back: None,
        };
        send(&mut write, &line).await?;
        return write.shutdown().await;
    };
    let mut rx = queue.watch();
    rx.borrow_and_update();
    let target_seq = queue.status().enqueued_seq;
    let mut byte = [0u8; 1];
    let mut last_sent: Option<tokio::time::Instant> = None;
    loop {
        let status = queue.status();
        let done = status.settled_seq >= target_seq;
        // The final line goes out at once; progress lines at most every interval (a
        // change not sent now is sent when the interval has passed).
        let since = last_sent.map(|t| t.elapsed());
        let due = done || since.is_none_or(|d| d >= SYNC_UPDATE_INTERVAL);
        if due {
            let line = SyncProgress {
                done,
                target_seq,
                write_back: Some(status),
            };
            send(&mut write, &line).await?;
            last_sent = Some(tokio::time::Instant::now());
        }
        if done {
            break;
        }
        let wait = match since {
            Some(d) if !due => SYNC_UPDATE_INTERVAL.saturating_sub(d),
            _ => SYNC_HEARTBEAT,
        };
        tokio::select! {
            res = rx.changed() => if res.is_err() && !queue.status().drained() {
                let line = serde_json::json!({
                    "error": "the write-back queue stopped before the files were uploaded; they stay in the store for the next mount",
                });
                send(&mut write, &line).await?;
                break;
            },
            // EOF (or anything else) from the client: it is gone.
            _ = reader.read(&mut byte) => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        rx.borrow_and_update();
    }
    write.shutdown().await
}

/// Connects to the control socket and sends one request line; returns the stream and
/// the constructor of this socket's protocol errors.
async fn send_request(
    socket: &Path,
    request: &str,
) -> Result<(UnixStream, impl Fn(String) -> ControlError + use<>), ControlError> {
    let connect_err = |source| ControlError::Connect {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).await.map_err(connect_err)?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .await
        .map_err(connect_err)?;
    let path = socket.to_path_buf();
    let protocol = move |reason: String| ControlError::Protocol {
        path: path.clone(),
        reason,
    };
    Ok((stream, protocol))
}

/// Asks the mount behind `socket` to report until every file queued for write-back
/// before the call is uploaded; `progress` sees every line, the last one is returned.
/// Waits as long as the mount keeps answering (a line at least every
/// [`SYNC_HEARTBEAT`]).
pub async fn sync_write_back(
    socket: &Path,
    mut progress: impl FnMut(&SyncProgress),
) -> Result<SyncProgress, ControlError> {
    let (stream, protocol) = send_request(socket, "sync").await?;
    let mut lines = BufReader::new(stream);
    loop {
        let mut text = String::new();
        let n = tokio::time::timeout(SYNC_SILENCE_LIMIT, lines.read_line(&mut text))
            .await
            .map_err(|_| {
                protocol(format!(
                    "no word from the mount for {}s",
                    SYNC_SILENCE_LIMIT.as_secs()
                ))
            })?
            .map_err(|e| protocol(e.to_string()))?;
        if n == 0 {
            return Err(protocol(
                "the ossmount process closed the connection before the uploads were done (did it exit or crash? files it did not upload stay in its write-back store for the next mount)".into(),
            ));
        }
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| protocol(format!("bad answer: {e}")))?;
        if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
            return Err(protocol(error.to_string()));
        }
        let line: SyncProgress =
            serde_json::from_value(value).map_err(|e| protocol(format!("bad answer: {e}")))?;
        progress(&line);
        if line.done {
            return Ok(line);
        }
    }
}

/// Asks the mount behind `socket` for its status.
pub async fn query_status(socket: &Path) -> Result<StatusReport, ControlError> {
    let (stream, protocol) = send_request(socket, "status").await?;
    let mut text = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stream).read_line(&mut text),
    )
    .await
    .map_err(|_| protocol("no answer within 10s".into()))?
    .map_err(|e| protocol(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| protocol(format!("bad answer: {e}")))?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        return Err(protocol(error.to_string()));
    }
    serde_json::from_value(value).map_err(|e| protocol(format!("bad answer: {e}")))
}

/// Seconds since the epoch, for [`MountFacts::mounted_at`].
pub fn now_epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// One sample of Prometheus text: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the sample lines of Prometheus text format (comments and malformed lines are
/// skipped). Label values are taken as written between the quotes (our labels never hold
/// escaped quotes).
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}')?;
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .filter_map(|pair| {
                            let (k, v) = pair.split_once('=')?;
                            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, Vec::new()),
            };
            Some(Sample {
                name: name.trim().to_string(),
                labels,
                value,
            })
        })
        .collect()
}

/// The figures `ossmount status` prints, picked from a mount's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub cache_bytes: f64,
    pub cache_hits: f64,
    pub cache_misses: f64,
    pub prefetch_in_flight: f64,
    pub upload_parts_in_flight: f64,
    pub oss_requests: f64,
    /// OSS responses with status 4xx (but 404) or 5xx, and network errors.
    pub oss_errors: f64,
    pub oss_retries: f64,
    pub credential_refresh_errors: f64,
    pub fuse_ops: f64,
    /// FUSE operations answered with an errno other than ENOENT.
    pub fuse_errors: f64,
    pub bytes_read_from_oss: f64,
    pub bytes_written_to_oss: f64,
}

/// Sums the metrics `ossmount status` reports.
pub fn summarize(metrics_text: &str) -> Summary {
    use crate::metrics as m;
    let mut s = Summary::default();
    for sample in parse_prometheus(metrics_text) {
        let v = sample.value;
        match sample.name.as_str() {
            n if n == m::CACHE_BYTES => s.cache_bytes += v,
            n if n == m::CACHE_HITS => s.cache_hits += v,
            n if n == m::CACHE_MISSES => s.cache_misses += v,
            n if n == m::PREFETCH_IN_FLIGHT => s.prefetch_in_flight += v,
            n if n == m::UPLOAD_QUEUE_DEPTH => s.upload_parts_in_flight += v,
            n if n == m::OSS_REQUESTS => {
                s.oss_requests += v;
                // 404 is how a filesystem learns a name does not exist: not an error.
                let failed = match sample.label("status") {
                    Some(status) => !status.starts_with(['1', '2', '3']) && status != "404",
                    None => false,
                };
                if failed {
                    s.oss_errors += v;
                }
            }
            n if n == m::OSS_RETRIES => s.oss_retries += v,
            n if n == m::CREDENTIAL_REFRESHES && sample.label("result") == Some("error") => {
                s.credential_refresh_errors += v;
            }
            n if n == m::FUSE_OPS => {
                s.fuse_ops += v;
                if sample
                    .label("result")
                    .is_some_and(|r| r != "ok" && r != "ENOENT")
                {
                    s.fuse_errors += v;
                }
            }
            n if n == m::OSS_BYTES_READ => s.bytes_read_from_oss += v,
            n if n == m::OSS_BYTES_WRITTEN => s.bytes_written_to_oss += v,
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sums_prometheus_text() {
        let text = "\
# TYPE ossmount_oss_requests_total counter
ossmount_oss_requests_total{op=\"GetObject\",status=\"200\"} 7
ossmount_oss_requests_total{op=\"PutObject\",status=\"403\"} 2
ossmount_oss_requests_total{op=\"GetObject\",status=\"error\"} 1
ossmount_oss_requests_total{op=\"HeadObject\",status=\"404\"} 5
ossmount_fuse_ops_total{op=\"lookup\",result=\"EIO\"} 2
ossmount_fuse_ops_total{op=\"read\",result=\"ok\"} 10
ossmount_fuse_ops_total{op=\"lookup\",result=\"ENOENT\"} 3
ossmount_cache_bytes 1048576
ossmount_upload_queue_depth 2
ossmount_credential_refreshes_total{result=\"error\"} 1
ossmount_credential_refreshes_total{result=\"ok\"} 4
";
        let s = summarize(text);
        assert_eq!(s.oss_requests, 15.0);
        assert_eq!(s.oss_errors, 3.0);
        assert_eq!(s.fuse_ops, 15.0);
        assert_eq!(s.fuse_errors, 2.0);
        assert_eq!(s.cache_bytes, 1048576.0);
        assert_eq!(s.upload_parts_in_flight, 2.0);
        assert_eq!(s.credential_refresh_errors, 1.0);
        let samples = parse_prometheus(text);
        assert_eq!(samples[0].label("op"), Some("GetObject"));
        assert_eq!(samples[0].label("status"), Some("200"));
    }

    #[test]
    fn socket_names_depend_on_the_path_only() {
        let a = socket_path(Path::new("/mnt/a"));
        assert_eq!(a, socket_path(Path::new("/mnt/a")));
        assert_ne!(a, socket_path(Path::new("/mnt/b")));
        assert!(a.starts_with(runtime_dir()));
    }

    fn facts_for(mountpoint: PathBuf) -> MountFacts {
        MountFacts {
            version: "1".into(),
            pid: std::process::id(),
            bucket: "b".into(),
            prefix: String::new(),
            mountpoint,
            endpoint: "http://127.0.0.1:1".into(),
            credentials: "anonymous".into(),
            read_only: false,
            mounted_at: now_epoch_secs(),
        }
    }

    fn server_with(
        dir: &tempfile::TempDir,
        queue: Option<std::sync::Arc<FakeQueue>>,
    ) -> ControlServer {
        ControlServer::start_with_write_back(
            facts_for(dir.path().join("mnt")),
            Box::new(String::new),
            queue.map(|q| -> std::sync::Arc<dyn WriteBackQueue> { q }),
        )
        .unwrap()
    }

    use crate::cli::write_back::fake::{FakeQueue, pending, upload_one};

    #[tokio::test]
    async fn status_reports_the_write_back_queue() {
        let dir = tempfile::tempdir().unwrap();
        let queue = FakeQueue::new(pending(2));
        let server = server_with(&dir, Some(queue.clone()));
        let report = query_status(server.path()).await.unwrap();
        assert_eq!(report.write_back, Some(pending(2)));
        let plain = tempfile::tempdir().unwrap();
        let server = server_with(&plain, None);
        let report = query_status(server.path()).await.unwrap();
        assert_eq!(report.write_back, None);
        // Old clients and servers interoperate: the field is optional both ways.
        let json = serde_json::to_value(&report).unwrap();
        assert!(json.get("write_back").is_none());
        let old: StatusReport = serde_json::from_value(json).unwrap();
        assert!(old.write_back.is_none());
    }

    #[tokio::test]
    async fn sync_waits_for_what_was_queued_before_it_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let queue = FakeQueue::new(pending(3));
        let server = server_with(&dir, Some(queue.clone()));
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let client = tokio::spawn({
            let path = server.path().to_path_buf();
            async move {
                sync_write_back(&path, |p| {
                    let _ = seen_tx.send(p.clone());
                })
                .await
            }
        });
        let first = seen_rx.recv().await.unwrap();
        assert!(!first.done);
        assert_eq!(first.target_seq, 3);
        // Two more files queued after the request, then the first three uploaded.
        queue.update(|s| {
            s.pending_files += 2;
            s.pending_bytes += 2 * 16384;
            s.enqueued_seq += 2;
        });
        for _ in 0..3 {
            queue.update(upload_one);
        }
        let last = client.await.unwrap().unwrap();
        assert!(last.done);
        let status = last.write_back.unwrap();
        assert_eq!(status.settled_seq, 3);
        assert_eq!(status.pending_files, 2);
        while let Ok(line) = seen_rx.try_recv() {
            assert!(line.write_back.unwrap().settled_seq <= 3);
        }
    }

    #[test]
    fn finish_lets_a_sync_send_its_final_line() {
        let dir = tempfile::tempdir().unwrap();
        let queue = FakeQueue::new(pending(1));
        // The daemon's runtime, dropped like a process that exits; the client has its own.
        let daemon = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = daemon.block_on(async { server_with(&dir, Some(queue.clone())) });
        let path = server.path().to_path_buf();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let client = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(sync_write_back(&path, |p| seen_tx.send(p.done).unwrap()))
        });
        assert!(!seen_rx.recv().unwrap());
        // The drain ends with the last upload, and the daemon shuts down at once.
        queue.update(upload_one);
        daemon.block_on(server.finish(Duration::from_secs(10)));
        drop(daemon);
        let last = client.join().unwrap().unwrap();
        assert!(last.done);
        assert_eq!(last.write_back.unwrap().settled_seq, 1);
    }

    #[tokio::test]
    async fn sync_without_write_back_is_done_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let server = server_with(&dir, None);
        let mut lines = 0;
        let last = sync_write_back(server.path(), |_| lines += 1)
            .await
            .unwrap();
        assert!(last.done);
        assert_eq!(last.write_back, None);
        assert_eq!(lines, 1);
    }

    #[tokio::test]
    async fn sync_fails_when_the_queue_or_the_daemon_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let queue = FakeQueue::new(pending(1));
        let server = server_with(&dir, Some(queue.clone()));
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let client = tokio::spawn({
            let path = server.path().to_path_buf();
            async move { sync_write_back(&path, |_| seen_tx.send(()).unwrap()).await }
        });
        seen_rx.recv().await.unwrap();
        queue.close();
        let err = client.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("write-back queue stopped"), "{err}");

        // A daemon that dies mid-way: one progress line, then the connection closes.
        let path = dir.path().join("dying.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 5];
            stream.read_exact(&mut request).await.unwrap();
            assert_eq!(&request, b"sync\n");
            let line = SyncProgress {
                done: false,
                target_seq: 1,
                write_back: Some(pending(1)),
            };
            let text = serde_json::to_string(&line).unwrap() + "\n";
            stream.write_all(text.as_bytes()).await.unwrap();
        });
        let err = sync_write_back(&path, |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("closed the connection before"), "{err}");
        server.await.unwrap();
        let err = sync_write_back(&dir.path().join("none.sock"), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, ControlError::Connect { .. }), "{err}");
    }

    #[tokio::test]
    async fn serves_status_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let facts = MountFacts {
            version: "1".into(),
            pid: std::process::id(),
            bucket: "b".into(),
            prefix: "p/".into(),
            mountpoint: dir.path().join("mnt"),
            endpoint: "http://127.0.0.1:1".into(),
            credentials: "environment OSS_ACCESS_KEY_ID".into(),
            read_only: false,
            mounted_at: now_epoch_secs(),
        };
        let server = ControlServer::start(
            facts.clone(),
            Box::new(|| "ossmount_cache_bytes 5\n".into()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(server.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let report = query_status(server.path()).await.unwrap();
        assert_eq!(report.facts, facts);
        assert_eq!(summarize(&report.metrics).cache_bytes, 5.0);
        let path = server.path().to_path_buf();
        drop(server);
        assert!(!path.exists());
        assert!(matches!(
            query_status(&path).await,
            Err(ControlError::Connect { .. })
        ));
    }
}
