//! From a configuration to a working [`ObjectStore`]: endpoint choice
//! ([`crate::endpoint::choose_endpoint`]), the credentials chain
//! ([`crate::credentials::resolve_chain`]) and the OSS client.
//!
//! Keys read by clap from `OSS_ACCESS_KEY_ID`/`OSS_ACCESS_KEY_SECRET` are *not* handed to the
//! chain as explicit credentials: the chain finds them itself and then reports the right
//! source ("environment OSS_ACCESS_KEY_ID") instead of "command line".

use std::sync::Arc;

use crate::config::{CredentialsConfig, EndpointConfig};
use crate::credentials::{
    AnonymousProvider, CredentialsProvider, ExplicitCredentials, resolve_chain,
};
use crate::endpoint::{EndpointChoice, EndpointOptions, choose_endpoint};
use crate::store::ObjectStore;

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
    let store = super::filesystem::build_store(endpoint, &choice, provider.clone(), bucket)?;
    Ok(Connection {
        store,
        endpoint: choice,
        credentials_source,
        provider,
    })
}
