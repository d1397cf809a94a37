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
}

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

/// Serves the control socket until dropped; dropping removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// Binds the socket for `facts.mountpoint` and answers requests on the current tokio
    /// runtime. `metrics` renders the current Prometheus text.
    pub fn start(
        facts: MountFacts,
        metrics: Box<dyn Fn() -> String + Send + Sync>,
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
        let metrics: std::sync::Arc<dyn Fn() -> String + Send + Sync> = metrics.into();
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
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &facts, metrics.as_ref()).await {
                        tracing::debug!(error = %e, "control socket client");
                    }
                });
            }
        });
        Ok(ControlServer { path, task })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(
    stream: UnixStream,
    facts: &MountFacts,
    metrics: &(dyn Fn() -> String + Send + Sync),
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
        })
        .map_err(std::io::Error::other)?,
        other => {
            serde_json::json!({ "error": format!("unknown request '{}'", other.escape_debug()) })
                .to_string()
        }
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// Asks the mount behind `socket` for its status.
pub async fn query_status(socket: &Path) -> Result<StatusReport, ControlError> {
    let connect_err = |source| ControlError::Connect {
        path: socket.to_path_buf(),
        source,
    };
    let protocol = |reason: String| ControlError::Protocol {
        path: socket.to_path_buf(),
        reason,
    };
    let mut stream = UnixStream::connect(socket).await.map_err(connect_err)?;
    stream.write_all(b"status\n").await.map_err(connect_err)?;
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
