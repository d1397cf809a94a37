//! `ossmount csi`: a CSI node plugin, so Kubernetes mounts OSS volumes with ossmount.
//!
//! Scope: static volumes (a PV names an existing bucket), node service only — kubelet
//! calls NodePublishVolume for each pod volume and the plugin mounts the bucket at the
//! pod's target path; no controller, no NodeStage (one mount per pod volume; see
//! docs/kubernetes.md for what staging would add).
//!
//! Pieces:
//! - [`proto`]: messages and services generated from `proto/csi/csi.proto` by `build.rs`;
//! - [`volume`]: request → ossmount command line (Alibaba Cloud CSI attribute names), pure;
//! - [`node`]: the Identity and Node services: one detached ossmount process per volume;
//! - [`state`]: what was published, under `--data-dir`, so a restarted plugin knows.
//!
//! Process model: every volume is its own `ossmount` process in its own session, started
//! with ossmount's ordinary background mode. The plugin can exit, crash or be upgraded
//! without touching mounted volumes; on start it reads its state directory and reports
//! them, and serves publish (idempotently) and unpublish for them. Pitfall: the volume
//! processes still live in the plugin's *container*; a container restart kills them (see
//! docs/kubernetes.md). In a container the plugin should not be PID 1: the volume
//! processes are re-parented to PID 1 when their launcher exits and must be reaped, which
//! the image leaves to `tini`.
//!
//! Secrets (publish secrets, mount flags) never reach logs: the publish request's `Debug`
//! redacts them and the plugin logs option *names* only for what it drops.

pub mod node;
pub mod proto;
pub mod state;
pub mod volume;

use std::io;
use std::path::PathBuf;

use clap::Args;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::logging::{self, LogTarget, LoggingError};

pub use node::PLUGIN_NAME;

// The flags of `ossmount csi` (a subcommand of the CLI, which only parses them). A plain
// comment: a doc comment here would become the subcommand's help text.
#[derive(Debug, Clone, Args)]
pub struct CsiArgs {
    /// gRPC endpoint to serve, e.g. unix:///csi/csi.sock (a Unix socket path).
    #[arg(long, value_name = "ENDPOINT", env = "CSI_ENDPOINT")]
    pub endpoint: String,

    /// This node's id, reported by NodeGetInfo (on Kubernetes: the node name).
    #[arg(long, value_name = "NODE", env = "KUBE_NODE_NAME")]
    pub node_id: String,

    /// Where the plugin keeps the state of published volumes and their logs; must
    /// survive a restart of the plugin (a hostPath on Kubernetes).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/ossmount-csi")]
    pub data_dir: PathBuf,

    /// Debug logging.
    #[arg(short = 'd', long)]
    pub debug: bool,
}

/// Why the plugin could not start or stopped. The CLI wraps it unchanged
/// (`CliError::Csi`), so the messages are the ones users see.
#[derive(Debug, thiserror::Error)]
pub enum CsiError {
    #[error(transparent)]
    Logging(#[from] LoggingError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    /// Bad flags, an unusable socket or data directory, or the gRPC server failing.
    #[error("csi plugin: {0}")]
    Plugin(String),
}

/// The Unix socket path of a CSI endpoint: `unix:///csi/csi.sock`, `unix:/csi/csi.sock`
/// or a plain absolute path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if path.is_empty() || !path.starts_with('/') {
        return Err(format!(
            "--endpoint {endpoint:?} is not a Unix socket (expected unix:///path/to/csi.sock)"
        ));
    }
    Ok(PathBuf::from(path))
}

/// Runs the plugin until SIGTERM/SIGINT. Mounted volumes stay mounted when it stops.
pub fn run_plugin(args: &CsiArgs) -> Result<(), CsiError> {
    logging::init(&LogTarget::Stderr, args.debug, true)?;
    if args.node_id.trim().is_empty() {
        return Err(CsiError::Plugin("--node-id must not be empty".into()));
    }
    let socket = socket_path(&args.endpoint).map_err(CsiError::Plugin)?;
    let exe = std::env::current_exe()
        .map_err(|e| CsiError::Plugin(format!("cannot find the ossmount executable: {e}")))?;
    let states = state::StateDir::open(&args.data_dir).map_err(|e| {
        CsiError::Plugin(format!(
            "cannot use data directory {}: {e}",
            args.data_dir.display()
        ))
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ossmount-csi")
        .build()
        .map_err(CsiError::Runtime)?;
    runtime.block_on(async {
        let node = node::NodeService::new(args.node_id.clone(), exe, states);
        node.report_recovered();
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CsiError::Plugin(format!("cannot create {}: {e}", dir.display())))?;
        }
        match std::fs::remove_file(&socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(CsiError::Plugin(format!(
                    "cannot replace {}: {e}",
                    socket.display()
                )));
            }
            _ => {}
        }
        let listener = UnixListener::bind(&socket)
            .map_err(|e| CsiError::Plugin(format!("cannot listen on {}: {e}", socket.display())))?;
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| CsiError::Plugin(format!("cannot install signal handlers: {e}")))?;
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| CsiError::Plugin(format!("cannot install signal handlers: {e}")))?;
        tracing::info!(
            endpoint = %socket.display(),
            node = %args.node_id,
            name = PLUGIN_NAME,
            version = env!("CARGO_PKG_VERSION"),
            "CSI plugin listening"
        );
        tonic::transport::Server::builder()
            .add_service(proto::identity_server::IdentityServer::new(
                node::IdentityService,
            ))
            .add_service(proto::node_server::NodeServer::new(node))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                async {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    tracing::info!("stopping the CSI plugin; mounted volumes stay mounted");
                },
            )
            .await
            .map_err(|e| CsiError::Plugin(format!("gRPC server failed: {e}")))?;
        let _ = std::fs::remove_file(&socket);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("unix:/csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(socket_path("/x.sock").unwrap(), PathBuf::from("/x.sock"));
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
        assert!(socket_path("unix://").is_err());
    }
}
