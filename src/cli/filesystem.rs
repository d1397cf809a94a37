//! The seams to the layers below the command: the OSS client ([`crate::client`]) and the
//! FUSE filesystem ([`crate::fs`], [`crate::fuse`]). Kept in one file so that wiring
//! them is a local change.

use std::sync::Arc;

use crate::client::{ClientConfig, OssClient, RegionSource, UrlStyle};
use crate::config::{Config, EndpointConfig, KeyOrigin, SignatureVersion, resolve_connection};
use crate::credentials::CredentialsProvider;
use crate::endpoint::{AddressingStyle, EndpointChoice, RegionRow, region_listing};
use crate::store::ObjectStore;

use super::args::ConnectionArgs;
use super::error::CliError;
use super::serve::MountedFilesystem;

/// The OSS client for `bucket` at the chosen endpoint.
pub fn build_store(
    settings: &EndpointConfig,
    choice: &EndpointChoice,
    provider: Arc<dyn CredentialsProvider>,
    bucket: &str,
) -> Result<Arc<dyn ObjectStore>, CliError> {
    let client = OssClient::new(client_config(settings, choice, provider, bucket))
        .map_err(|e| CliError::store("cannot set up the OSS client", e))?;
    Ok(Arc::new(client))
}

fn client_config(
    settings: &EndpointConfig,
    choice: &EndpointChoice,
    provider: Arc<dyn CredentialsProvider>,
    bucket: &str,
) -> ClientConfig {
    let mut cfg = ClientConfig::new(
        choice.config.base_url(),
        bucket,
        choice.region.clone().unwrap_or_default(),
        provider,
    );
    cfg.url_style = match choice.config.style {
        AddressingStyle::VirtualHosted => UrlStyle::VirtualHosted,
        AddressingStyle::Path => UrlStyle::Path,
        AddressingStyle::Cname => UrlStyle::Cname,
    };
    cfg.signature_version = match settings.signature_version {
        SignatureVersion::V1 => crate::sign::SignatureVersion::V1,
        SignatureVersion::V4 => crate::sign::SignatureVersion::V4,
    };
    cfg.connect_timeout = settings.connect_timeout;
    cfg.read_timeout = settings.readwrite_timeout;
    cfg.max_attempts = settings.retries;
    cfg
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

/// Live DescribeRegions, or the built-in table with the reason it was used.
pub async fn describe_regions(args: &ConnectionArgs) -> (Vec<RegionRow>, String) {
    let builtin = |reason: String| (region_listing(), format!("built-in table: {reason}"));
    let mut args = args.clone();
    // DescribeRegions can be asked anywhere; Hangzhou when the user did not say.
    if args.region.is_none() && args.endpoint.is_none() {
        args.region = Some("cn-hangzhou".into());
    }
    let (endpoint, creds) = match resolve_connection(&args, KeyOrigin::CommandLine) {
        Ok(c) => c,
        Err(e) => return builtin(e.to_string()),
    };
    // Any syntactically valid name: DescribeRegions is a service-level request.
    match super::connect::connect(&endpoint, &creds, "ossmount-regions").await {
        Ok(conn) => match OssClient::new(client_config(
            &endpoint,
            &conn.endpoint,
            conn.provider.clone(),
            "ossmount-regions",
        )) {
            Ok(client) => match client.list_regions_or_builtin().await {
                (rows, RegionSource::Live) => (rows, "live from OSS DescribeRegions".into()),
                (rows, RegionSource::Builtin { reason }) => (
                    rows,
                    format!("built-in table: DescribeRegions failed: {reason}"),
                ),
            },
            Err(e) => builtin(e.to_string()),
        },
        Err(e) => builtin(e.to_string()),
    }
}
