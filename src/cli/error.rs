//! The error type of the command layer: everything that can stop `ossmount`, each
//! printed as one line, optionally followed by a hint line (see [`super::diagnose`]).

use std::io;

use crate::config::ConfigError;
use crate::csi::CsiError;
use crate::daemon::DaemonError;
use crate::endpoint::EndpointError;
use crate::logging::LoggingError;
use crate::metrics::MetricsError;
use crate::mount_check::MountpointError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Mountpoint(#[from] MountpointError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Logging(#[from] LoggingError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// No usable credentials; the message lists every source tried.
    #[error("no usable credentials: {0}")]
    Credentials(String),
    /// An OSS request failed; `context` says what we were doing.
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error("{0}")]
    Helper(String),
    #[error("mount failed: {0}")]
    Mount(String),
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),
    /// `ossmount status` could not get a report.
    #[error("{0}")]
    Status(String),
    /// `ossmount sync` could not wait for the queue.
    #[error("{0}")]
    Sync(String),
    /// A second stop signal ended the daemon before its write-back queue drained.
    #[error(
        "stopped before the write-back queue drained: {files} files ({size}) stay in the store {store} and the next mount with the same store uploads them",
        size = crate::config::units::format_size(*bytes),
        store = store.display()
    )]
    WriteBackLeft {
        files: u64,
        bytes: u64,
        store: std::path::PathBuf,
    },
    /// The CSI plugin could not start or stopped with an error.
    #[error(transparent)]
    Csi(#[from] CsiError),
}

impl CliError {
    pub fn store(context: impl Into<String>, source: StoreError) -> CliError {
        CliError::Store {
            context: context.into(),
            source,
        }
    }

    /// The process exit status for this error: 1, or
    /// [`super::serve::EXIT_WRITE_BACK_LEFT`] when files were left in the write-back store.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::WriteBackLeft { .. } => super::serve::EXIT_WRITE_BACK_LEFT,
            _ => 1,
        }
    }

    /// A one-line suggestion for fixing the error, when we have one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            CliError::Store { source, .. } => super::diagnose::hint(source),
            CliError::Credentials(_) => Some(
                "set OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET, pass --credentials-file or --ram-role, or use --anonymous for a public bucket",
            ),
            CliError::Mountpoint(MountpointError::Io { source, .. })
                if source.kind() == io::ErrorKind::PermissionDenied =>
            {
                Some("run as the owner of the mountpoint, or as root")
            }
            _ => None,
        }
    }

    /// The full user-facing text: message, then the hint on its own line.
    pub fn render(&self) -> String {
        match self.hint() {
            Some(h) => format!("{self}\n  hint: {h}"),
            None => self.to_string(),
        }
    }
}
