//! A local, strict OSS emulator (binary `ossmount-emulator`, and in-process via
//! [`start`]).
//!
//! No real OSS is reachable from tests, so every client, filesystem and benchmark test
//! runs against this. It is deliberately strict (signatures, STS expiry, range and
//! multipart rules, error shapes) so client bugs show up here rather than in production,
//! and fast (streams bodies from disk in large chunks, keep-alive) so it is never the
//! bottleneck of a benchmark.
//!
//! Modules, one concept each:
//! - [`server`]: accept loop, addressing, request parsing, control endpoints (`/-/…`).
//! - [`state`]: what every handler reaches (storage, stats, faults, authenticator);
//!   [`request`]: one parsed request ([`request::Ctx`]). Neither depends on the front.
//! - [`auth`]: which secret a request is checked against; errors as OSS sends them.
//! - [`storage`]: objects on disk (content + JSON sidecar), sorted in-memory key index.
//! - [`ops`]: the OSS operations (object, multipart, list, service/bucket).
//! - [`body`]: streaming request bodies to disk and object bodies from disk.
//! - [`metadata`]: ECS metadata + STS (RRSA) on a second listener.
//! - [`mmap`]: read-only maps of object data for single-copy GET bodies.
//! - [`network`]: optional TLS and the per-connection bandwidth cap.
//! - [`verify`]: the server side of request signing (recomputes the client's signature).
//! - [`binary`]: where the binary is, for other packages' tests.
//! - [`faults`], [`stats`], [`xml`], [`error`].
//!
//! Library use (integration tests):
//! ```no_run
//! # async fn demo() -> Result<(), ossmount_emulator::EmulatorError> {
//! let dir = std::env::temp_dir().join("emu-doc");
//! let emu = ossmount_emulator::start(ossmount_emulator::EmulatorConfig::new(&dir, "bucket")).await?;
//! let endpoint = emu.endpoint(); // "http://127.0.0.1:<port>"
//! # let _ = endpoint;
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod binary;
pub mod body;
pub mod error;
pub mod faults;
pub mod metadata;
pub mod mmap;
pub mod network;
pub mod ops;
pub mod request;
pub mod server;
pub mod state;
pub mod stats;
pub mod storage;
pub mod verify;
pub mod xml;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use binary::binary_path;
pub use faults::{FaultRule, FaultSettings, FaultUpdate};
pub use metadata::ROLE_NAME;
use ossmount::credentials::{Credentials, Secret};
pub use stats::StatsSnapshot;

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("invalid emulator configuration: {0}")]
    InvalidConfig(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot import {path}: {source}")]
    Import {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything the emulator needs to start. [`EmulatorConfig::new`] gives test defaults.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Port 0 picks a free port; see [`RunningEmulator::addr`].
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Buckets served (created on first start).
    pub buckets: Vec<String>,
    /// Bare region id (`cn-hangzhou`); V4 signatures must use it.
    pub region: String,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    /// ECS metadata + STS listener, if wanted.
    pub metadata_listen: Option<SocketAddr>,
    /// Lifetime of issued STS credentials.
    pub sts_lifetime: Duration,
    /// Accept unsigned requests.
    pub anonymous: bool,
    pub faults: FaultSettings,
    pub seed: u64,
    /// Files to import into the first bucket at start (key = relative path).
    pub import_dir: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain and private key.
    pub tls: Option<TlsFiles>,
}

/// PEM files for HTTPS serving (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl EmulatorConfig {
    /// Loopback port 0, region `cn-hangzhou`, key pair `emulator-ak`/`emulator-secret`,
    /// no metadata service, no faults.
    pub fn new(data_dir: impl AsRef<Path>, bucket: &str) -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.as_ref().to_path_buf(),
            buckets: vec![bucket.to_string()],
            region: "cn-hangzhou".to_string(),
            access_key_id: "emulator-ak".to_string(),
            access_key_secret: Secret::new("emulator-secret"),
            metadata_listen: None,
            sts_lifetime: Duration::from_secs(3600),
            anonymous: false,
            faults: FaultSettings::default(),
            seed: 0,
            import_dir: None,
            tls: None,
        }
    }

    /// Also serve ECS metadata + STS on a loopback port chosen by the OS.
    pub fn with_metadata(mut self) -> Self {
        self.metadata_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        self
    }

    fn validate(&self) -> Result<(), EmulatorError> {
        if self.buckets.is_empty() {
            return Err(EmulatorError::InvalidConfig(
                "at least one --bucket is required".into(),
            ));
        }
        for b in &self.buckets {
            ossmount::endpoint::validate_bucket_name(b)
                .map_err(|e| EmulatorError::InvalidConfig(e.to_string()))?;
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        {
            return Err(EmulatorError::InvalidConfig(format!(
                "region {:?} must look like cn-hangzhou",
                self.region
            )));
        }
        if self.access_key_id.is_empty() || self.access_key_secret.expose().is_empty() {
            return Err(EmulatorError::InvalidConfig(
                "access key id and secret must not be empty".into(),
            ));
        }
        for (name, v) in [
            ("fail-rate", self.faults.fail_rate),
            ("reset-rate", self.faults.reset_rate),
            ("truncate-rate", self.faults.truncate_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(EmulatorError::InvalidConfig(format!(
                    "--{name} must be between 0 and 1, got {v}"
                )));
            }
        }
        Ok(())
    }
}

/// A started emulator. Dropping it stops accepting connections; [`shutdown`] also waits.
///
/// [`shutdown`]: RunningEmulator::shutdown
pub struct RunningEmulator {
    addr: SocketAddr,
    tls: bool,
    metadata_addr: Option<SocketAddr>,
    state: Arc<state::State>,
    access_key_id: String,
    access_key_secret: Secret,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningEmulator {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://<addr>` (`https://` when serving TLS), for clients.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
    pub fn metadata_addr(&self) -> Option<SocketAddr> {
        self.metadata_addr
    }
    pub fn region(&self) -> &str {
        &self.state.region
    }
    /// The static key pair the emulator accepts.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            access_key_id: self.access_key_id.clone(),
            access_key_secret: self.access_key_secret.clone(),
            security_token: None,
            expiration: None,
        }
    }
    pub fn stats(&self) -> StatsSnapshot {
        self.state.stats.snapshot()
    }
    pub fn reset_stats(&self) {
        self.state.stats.reset()
    }
    /// Changes fault settings (absent fields unchanged); returns the new settings.
    pub fn set_faults(&self, update: FaultUpdate) -> FaultSettings {
        self.state.faults.update(&update)
    }
    /// Replaces the targeted fault rules (see [`FaultRule`]); an unknown code is refused.
    pub fn set_fault_rules(&self, rules: Vec<FaultRule>) -> Result<(), String> {
        self.state.faults.set_rules(rules)
    }
    /// The targeted fault rules with their counters.
    pub fn fault_rules(&self) -> Vec<FaultRule> {
        self.state.faults.rules()
    }
    /// Makes the metadata service answer 503 (true) or normally (false).
    pub fn set_metadata_down(&self, down: bool) {
        self.state
            .metadata_down
            .store(down, std::sync::atomic::Ordering::Relaxed);
    }
    /// Issues STS credentials directly (as the STS endpoint would), for tests.
    pub fn issue_sts(&self, lifetime: Duration) -> Credentials {
        let c = self.state.auth.issue(lifetime);
        self.state.stats.sts_issued();
        Credentials {
            access_key_id: c.access_key_id,
            access_key_secret: c.access_key_secret,
            security_token: Some(c.security_token),
            expiration: Some(c.expiration),
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s) and returns.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        tracing::info!(addr = %self.addr, "emulator stopped");
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, EmulatorError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| EmulatorError::Bind { addr, source })
}

/// Opens the data directory, binds the listeners and starts serving.
pub async fn start(cfg: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    cfg.validate()?;
    let tls = match &cfg.tls {
        Some(f) => Some(network::tls_acceptor(&f.cert, &f.key)?),
        None => None,
    };
    let root = cfg.data_dir.clone();
    let names = cfg.buckets.clone();
    let storage = tokio::task::spawn_blocking(move || storage::Storage::open(&root, &names))
        .await
        .map_err(|e| EmulatorError::DataDir {
            path: cfg.data_dir.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| EmulatorError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })?;
    if let Some(dir) = &cfg.import_dir
        && let Some(bucket) = storage.bucket(&cfg.buckets[0])
    {
        let d = dir.clone();
        let n = tokio::task::spawn_blocking(move || bucket.import_dir(&d))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|source| EmulatorError::Import {
                path: dir.clone(),
                source,
            })?;
        tracing::info!(files = n, dir = %dir.display(), "imported");
    }

    let listener = bind(cfg.listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let meta_listener = match cfg.metadata_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let metadata_addr = match &meta_listener {
        Some(l) => Some(l.local_addr().map_err(|source| EmulatorError::Bind {
            addr: cfg.listen,
            source,
        })?),
        None => None,
    };

    let state = Arc::new(state::State::new(
        storage,
        Arc::new(stats::Stats::default()),
        faults::Faults::new(cfg.faults, cfg.seed),
        auth::Authenticator::new(
            &cfg.region,
            &cfg.access_key_id,
            cfg.access_key_secret.clone(),
        ),
        cfg.region.clone(),
        cfg.anonymous,
    ));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let st = state.clone();
    let served_tls = tls.is_some();
    let setup = network::ConnSetup {
        tls,
        rate: Some(state.faults.conn_rate()),
    };
    tasks.push(tokio::spawn(server::accept_loop(
        listener,
        shutdown_rx.clone(),
        setup,
        move |req| server::handle(st.clone(), req),
    )));
    if let Some(l) = meta_listener {
        let svc = Arc::new(metadata::MetadataService::new(
            state.clone(),
            cfg.sts_lifetime,
        ));
        tasks.push(tokio::spawn(server::accept_loop(
            l,
            shutdown_rx,
            network::ConnSetup::default(),
            move |req| svc.clone().handle(req),
        )));
    }
    tracing::info!(%addr, ?metadata_addr, buckets = ?cfg.buckets, region = %cfg.region, anonymous = cfg.anonymous, tls = served_tls, "emulator listening");
    Ok(RunningEmulator {
        addr,
        tls: served_tls,
        metadata_addr,
        state,
        access_key_id: cfg.access_key_id,
        access_key_secret: cfg.access_key_secret,
        shutdown_tx,
        tasks,
    })
}
