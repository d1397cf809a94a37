//! The seams to the layers below the command: the OSS client (h-client) and the FUSE
//! filesystem (h-fs). Kept in one file so wiring them is a local change.

use std::sync::Arc;

use crate::config::{Config, EndpointConfig};
use crate::credentials::CredentialsProvider;
use crate::endpoint::{EndpointChoice, RegionRow};
use crate::store::ObjectStore;

use super::args::ConnectionArgs;
use super::error::CliError;
use super::serve::MountedFilesystem;

/// The OSS client for `bucket` at the chosen endpoint.
pub fn build_store(
    _settings: &EndpointConfig,
    _choice: &EndpointChoice,
    _provider: Arc<dyn CredentialsProvider>,
    _bucket: &str,
) -> Result<Arc<dyn ObjectStore>, CliError> {
    Err(CliError::Mount(
        "this build has no OSS client yet (crate::client is not merged)".into(),
    ))
}

/// Mounts the filesystem at `config.mountpoint`, serving `store`.
pub async fn mount(
    _config: &Config,
    _store: Arc<dyn ObjectStore>,
) -> Result<Box<dyn MountedFilesystem>, CliError> {
    Err(CliError::Mount(
        "this build has no FUSE filesystem yet (crate::fs is not merged)".into(),
    ))
}

/// Live DescribeRegions; None falls back to the built-in table.
pub async fn describe_regions(_conn: &ConnectionArgs) -> Option<Vec<RegionRow>> {
    None
}
