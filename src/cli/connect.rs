//! From a configuration to a working [`ObjectStore`]: endpoint choice
//! ([`crate::endpoint::choose_endpoint`]), the credentials chain
//! ([`crate::credentials::resolve_chain`]) and the OSS client; and the service-level
//! DescribeRegions behind `ossmount regions`.
//!
//! Keys read by clap from `OSS_ACCESS_KEY_ID`/`OSS_ACCESS_KEY_SECRET` are *not* handed to the
//! chain as explicit credentials: the chain finds them itself and then reports the right
//! source ("environment OSS_ACCESS_KEY_ID") instead of "command line".

use std::sync::Arc;

use crate::client::{ClientConfig, OssClient, RegionSource, UrlStyle};
use crate::config::{
    CredentialsConfig, EndpointConfig, KeyOrigin, SignatureVersion, resolve_connection,
};
use crate::credentials::{
    AnonymousProvider, CredentialsProvider, ExplicitCredentials, resolve_chain,
};
use crate::endpoint::{
    AddressingStyle, EndpointChoice, EndpointOptions, RegionRow, choose_endpoint, region_listing,
};
use crate::store::ObjectStore;

use super::args::ConnectionArgs;
use super::error::CliError;

/// Everything `connect` decided, for `--dry-run` and the log.
pub struct Connection {
    pub store: Arc<dyn ObjectStore>,
    pub endpoint: EndpointChoice,
    /// Where the credentials come from (never the secret).
    pub credentials_source: String,
    pub provider: Arc<dyn CredentialsProvider>,
}

/// Picks the endpoint for `endpoint` settings, logging why.
pub async fn resolve_endpoint(endpoint: &EndpointConfig) -> Result<EndpointChoice, CliError> {
    let choice = choose_endpoint(&EndpointOptions {
        region: endpoint.region.clone(),
        endpoint: endpoint.endpoint.clone(),
        internal: endpoint.internal,
        accelerate: endpoint.accelerate,
        disable_ssl: endpoint.disable_ssl,
        path_style: endpoint.path_style,
        cname: endpoint.cname,
        metadata_base: None,
    })
    .await?;
    Ok(choice)
}

/// The credentials provider for `creds`: anonymous, or the provider chain.
pub async fn resolve_credentials(
    creds: &CredentialsConfig,
    bucket: &str,
) -> Result<Arc<dyn CredentialsProvider>, CliError> {
    if creds.anonymous {
        return Ok(Arc::new(AnonymousProvider));
    }
    let explicit = if creds.keys_from_env {
        ExplicitCredentials {
            credentials_file: creds.credentials_file.clone(),
            ..Default::default()
        }
    } else {
        ExplicitCredentials {
            access_key_id: creds.access_key_id.clone(),
            access_key_secret: creds.access_key_secret.clone(),
            security_token: creds.security_token.clone(),
            credentials_file: creds.credentials_file.clone(),
        }
    };
    resolve_chain(explicit, bucket, creds.ram_role.clone())
        .await
        .map_err(|e| CliError::Credentials(e.to_string()))
}

/// Endpoint, credentials and the client for `bucket`.
pub async fn connect(
    endpoint: &EndpointConfig,
    creds: &CredentialsConfig,
    bucket: &str,
) -> Result<Connection, CliError> {
    let choice = resolve_endpoint(endpoint).await?;
    let provider = resolve_credentials(creds, bucket).await?;
    let credentials_source = provider.describe();
    tracing::info!(credentials = %credentials_source, "credentials source");
    let store = build_store(endpoint, &choice, provider.clone(), bucket)?;
    Ok(Connection {
        store,
        endpoint: choice,
        credentials_source,
        provider,
    })
}

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
    cfg.ca_cert = settings.ca_cert.clone();
    cfg.max_inflight = settings.max_inflight;
    cfg
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
    match connect(&endpoint, &creds, "ossmount-regions").await {
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
