//! Credentials and the provider chain.
//!
//! The types in this file ([`Secret`], [`Credentials`], [`CredentialsProvider`]) are the
//! contract shared with [`crate::sign`] and [`crate::client`]. The submodules implement the
//! sources, and [`chain::resolve_chain`] picks the first one that is configured, in this
//! documented order:
//!
//! 1. **Explicit** — `--access-key-id/--access-key-secret[/--security-token]` or
//!    `--credentials-file PATH` (ossfs passwd format), handed over by the CLI as
//!    [`chain::ExplicitCredentials`].
//! 2. **`OSS_ACCESS_KEY_ID` / `OSS_ACCESS_KEY_SECRET` / `OSS_SESSION_TOKEN`** (the OSS SDKs'
//!    environment provider).
//! 3. **`ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `ALIBABA_CLOUD_SECURITY_TOKEN`** (the
//!    Alibaba Cloud default chain's environment provider).
//! 4. **RRSA / OIDC** when `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` and
//!    `ALIBABA_CLOUD_OIDC_TOKEN_FILE` are all set: STS `AssumeRoleWithOIDC`, refreshed in the
//!    background ([`oidc`]).
//! 5. **ossfs passwd files** `~/.passwd-ossfs`, then `/etc/passwd-ossfs` (user file first,
//!    like s3fs/ossfs); a `bucket:id:secret` line for our bucket wins over `id:secret`
//!    ([`files`]).
//! 6. **`~/.alibabacloud/credentials`** INI (`ALIBABA_CLOUD_CREDENTIALS_FILE` overrides the
//!    path, `ALIBABA_CLOUD_PROFILE` the section), types `access_key` and `ecs_ram_role`.
//! 7. **ECS RAM role** from the instance metadata service, unless
//!    `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true` ([`ecs_ram_role`]).
//!
//! A source that is *configured but broken* (an id without a secret, a passwd file readable
//! by others, an unreadable token file, an STS error) stops the chain with an error naming
//! it: silently falling through to another identity would be surprising. A source that is
//! simply absent is skipped, and when nothing is found the error lists every source tried.
//!
//! Temporary credentials (ECS, OIDC) go through [`refresh::RefreshingProvider`], which
//! refreshes in the background well before expiry and keeps serving the current set while
//! a refresh fails.
//!
//! Secrets: [`Secret`] redacts itself in Debug/Display; nothing in this module logs or
//! formats a secret or a token, and error messages only name sources and paths.

pub mod chain;
pub mod ecs_ram_role;
pub mod env;
pub mod files;
pub mod oidc;
pub mod refresh;
#[cfg(test)]
pub(crate) mod test_http;

pub use chain::{ExplicitCredentials, resolve_chain};

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
    /// True for [`AnonymousProvider`]: the client then sends requests unsigned.
    fn is_anonymous(&self) -> bool {
        false
    }
    /// The server refused the set with this access key id as expired (its clock ran ahead
    /// of ours, or the request was delayed past the safety margin). A provider that can
    /// fetch a new set drops this one and returns true, so the request is retried once with
    /// fresh credentials; fixed credentials return false (retrying cannot help).
    fn invalidate(&self, _access_key_id: &str) -> bool {
        false
    }
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

#[async_trait]
impl CredentialsProvider for AnonymousProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        Err(CredentialsError(
            "anonymous access: no credentials (requests are sent unsigned)".into(),
        ))
    }
    fn describe(&self) -> String {
        "anonymous (unsigned requests)".into()
    }
    fn is_anonymous(&self) -> bool {
        true
    }
}
