//! Credentials and the provider chain.
//!
//! TODO(credentials owner): env, files, ossfs passwd files, ~/.alibabacloud/credentials,
//! ECS RAM role with background refresh, RRSA (OIDC). The types below are the contract
//! shared with [`crate::sign`] and [`crate::client`].

use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;

/// A secret string whose Debug/Display never shows the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to read the secret: used by the signer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One set of credentials. The access key id is not secret (it is in every
/// Authorization header); the secret and the STS token are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Option<Secret>,
    /// None for long-term keys.
    pub expiration: Option<SystemTime>,
}

impl Credentials {
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials {
            access_key_id: id.into(),
            access_key_secret: Secret::new(secret),
            security_token: None,
            expiration: None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsError(pub String);

#[async_trait]
pub trait CredentialsProvider: Send + Sync + 'static {
    /// Current credentials; may block only when the cached ones have expired.
    async fn credentials(&self) -> Result<Credentials, CredentialsError>;
    /// Where the credentials come from, for `--dry-run` and logs (never the secret).
    fn describe(&self) -> String;
}

/// Fixed credentials (flags, env, files).
#[derive(Debug, Clone)]
pub struct StaticProvider {
    pub creds: Credentials,
    pub source: String,
}

#[async_trait]
impl CredentialsProvider for StaticProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        Ok(self.creds.clone())
    }
    fn describe(&self) -> String {
        self.source.clone()
    }
}

/// No credentials: requests are sent unsigned (anonymous buckets, `--anonymous`).
#[derive(Debug, Clone, Default)]
pub struct AnonymousProvider;
