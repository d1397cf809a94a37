//! RRSA: STS `AssumeRoleWithOIDC` with a projected service-account token (ACK pods).
//!
//! Enabled when `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` and
//! `ALIBABA_CLOUD_OIDC_TOKEN_FILE` are all set. Each fetch re-reads the token file (the
//! kubelet rotates it) and calls STS:
//!
//! `POST {sts}/?Action=AssumeRoleWithOIDC&Format=JSON&Version=2015-04-01&Timestamp=…`
//! with a form body `RoleArn`, `OIDCProviderArn`, `OIDCToken`, `RoleSessionName`,
//! `DurationSeconds`. The call is not signed (the OIDC token is the proof).
//! Success: `{"RequestId","Credentials":{"AccessKeyId","AccessKeySecret","SecurityToken",
//! "Expiration"},"AssumedRoleUser":{…}}`; failure: `{"RequestId","Code","Message"}`.
//!
//! STS endpoint: `ALIBABA_CLOUD_STS_ENDPOINT`, else `OSSMOUNT_STS_ENDPOINT`, else
//! `https://sts.aliyuncs.com` (a bare host gets `https://`). Session name:
//! `ALIBABA_CLOUD_ROLE_SESSION_NAME`, else `ossmount-<unix time>`.
//! Caching and refresh: [`super::refresh::RefreshingProvider`], like ECS.
//!
//! The OIDC token is a bearer secret: it is never logged or put in errors.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::ecs_ram_role::{error_chain, parse_expiration};
use super::env::EnvLookup;
use super::refresh::CredentialsFetcher;
use super::{Credentials, CredentialsError, Secret};

pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.aliyuncs.com";
const MAX_BODY: usize = 64 * 1024;

/// RFC 3986 unreserved characters stay; everything else is %XX (space → %20).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub oidc_token_file: PathBuf,
    pub sts_endpoint: String,
    pub session_name: String,
    pub duration_secs: u32,
}

impl OidcConfig {
    /// `None` unless all three RRSA variables are set.
    pub fn from_env(env: &dyn EnvLookup) -> Option<OidcConfig> {
        let role_arn = env.var("ALIBABA_CLOUD_ROLE_ARN")?;
        let oidc_provider_arn = env.var("ALIBABA_CLOUD_OIDC_PROVIDER_ARN")?;
        let oidc_token_file = PathBuf::from(env.var("ALIBABA_CLOUD_OIDC_TOKEN_FILE")?);
        let mut sts_endpoint = env
            .var("ALIBABA_CLOUD_STS_ENDPOINT")
            .or_else(|| env.var("OSSMOUNT_STS_ENDPOINT"))
            .unwrap_or_else(|| DEFAULT_STS_ENDPOINT.to_string());
        if !sts_endpoint.contains("://") {
            sts_endpoint = format!("https://{sts_endpoint}");
        }
        let session_name = env
            .var("ALIBABA_CLOUD_ROLE_SESSION_NAME")
            .unwrap_or_else(|| {
                let secs = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                format!("ossmount-{secs}")
            });
        Some(OidcConfig {
            role_arn,
            oidc_provider_arn,
            oidc_token_file,
            sts_endpoint: sts_endpoint.trim_end_matches('/').to_string(),
            session_name,
            duration_secs: 3600,
        })
    }
}

pub struct OidcFetcher {
    cfg: OidcConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsReply {
    request_id: Option<String>,
    code: Option<String>,
    message: Option<String>,
    credentials: Option<StsCredentials>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

impl OidcFetcher {
    pub fn new(cfg: OidcConfig) -> Result<Self, CredentialsError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CredentialsError(format!("cannot build STS HTTP client: {e}")))?;
        Ok(OidcFetcher { cfg, http })
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", k, utf8_percent_encode(v, FORM)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Parses an STS reply body; `status` is the HTTP status.
fn parse_sts_reply(status: u16, body: &str) -> Result<Credentials, CredentialsError> {
    let reply: StsReply = serde_json::from_str(body).map_err(|_| {
        CredentialsError(format!(
            "STS AssumeRoleWithOIDC answered HTTP {status} with a body that is not STS JSON"
        ))
    })?;
    match reply.credentials {
        Some(c) if (200..300).contains(&status) => {
            let expiration = parse_expiration(&c.expiration).ok_or_else(|| {
                CredentialsError(format!("STS: bad Expiration {:?}", c.expiration))
            })?;
            Ok(Credentials {
                access_key_id: c.access_key_id,
                access_key_secret: Secret::new(c.access_key_secret),
                security_token: Some(Secret::new(c.security_token)),
                expiration: Some(expiration),
            })
        }
        _ => Err(CredentialsError(format!(
            "STS AssumeRoleWithOIDC failed: HTTP {status}, Code={}, Message={}, RequestId={}",
            reply.code.as_deref().unwrap_or("-"),
            reply.message.as_deref().unwrap_or("-"),
            reply.request_id.as_deref().unwrap_or("-"),
        ))),
    }
}

#[async_trait]
impl CredentialsFetcher for OidcFetcher {
    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let token = tokio::fs::read_to_string(&self.cfg.oidc_token_file)
            .await
            .map_err(|e| {
                CredentialsError(format!(
                    "cannot read OIDC token file {} (ALIBABA_CLOUD_OIDC_TOKEN_FILE): {e}",
                    self.cfg.oidc_token_file.display()
                ))
            })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(CredentialsError(format!(
                "OIDC token file {} is empty",
                self.cfg.oidc_token_file.display()
            )));
        }
        let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let url = format!(
            "{}/?{}",
            self.cfg.sts_endpoint,
            form(&[
                ("Action", "AssumeRoleWithOIDC"),
                ("Format", "JSON"),
                ("Version", "2015-04-01"),
                ("Timestamp", &timestamp),
            ])
        );
        let duration = self.cfg.duration_secs.to_string();
        let body = form(&[
            ("RoleArn", &self.cfg.role_arn),
            ("OIDCProviderArn", &self.cfg.oidc_provider_arn),
            ("OIDCToken", token),
            ("RoleSessionName", &self.cfg.session_name),
            ("DurationSeconds", &duration),
        ]);
        let mut resp = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                CredentialsError(format!(
                    "STS endpoint {} unreachable: {}",
                    self.cfg.sts_endpoint,
                    error_chain(&e)
                ))
            })?;
        let status = resp.status().as_u16();
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CredentialsError(format!("reading STS reply: {}", error_chain(&e))))?
        {
            if buf.len() + chunk.len() > MAX_BODY {
                return Err(CredentialsError("STS reply too large".into()));
            }
            buf.extend_from_slice(&chunk);
        }
        parse_sts_reply(status, &String::from_utf8_lossy(&buf))
    }

    fn describe(&self) -> String {
        format!(
            "RRSA/OIDC role {} via {}",
            self.cfg.role_arn, self.cfg.sts_endpoint
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::test_http::{MiniServer, Reply};
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn needs_all_three_variables() {
        let partial = env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1:oidc-provider/p",
            ),
        ]);
        assert!(OidcConfig::from_env(&partial).is_none());
        let mut full = partial.clone();
        full.insert("ALIBABA_CLOUD_OIDC_TOKEN_FILE".into(), "/tok".into());
        full.insert("OSSMOUNT_STS_ENDPOINT".into(), "127.0.0.1:9".into());
        let c = OidcConfig::from_env(&full).unwrap();
        assert_eq!(c.sts_endpoint, "https://127.0.0.1:9");
        assert!(c.session_name.starts_with("ossmount-"));
    }

    #[tokio::test]
    async fn assumes_role_with_token_from_file() {
        let server = MiniServer::start(|req| {
            let body = String::from_utf8_lossy(&req.body).to_string();
            if req.method == "POST"
                && req.query.contains("Action=AssumeRoleWithOIDC")
                && body.contains("OIDCToken=jwt.tok")
                && body.contains("RoleArn=acs%3Aram%3A%3A1%3Arole%2Fr")
            {
                Reply::ok(
                    r#"{"RequestId":"R1","Credentials":{"AccessKeyId":"STS.X","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2099-01-01T00:00:00Z"},"AssumedRoleUser":{}}"#,
                )
            } else {
                Reply::with(
                    400,
                    r#"{"RequestId":"R2","Code":"InvalidParameter.OIDCToken","Message":"bad"}"#,
                )
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("token");
        std::fs::write(&tok, "jwt.tok\n").unwrap();
        let cfg = OidcConfig {
            role_arn: "acs:ram::1:role/r".into(),
            oidc_provider_arn: "p".into(),
            oidc_token_file: tok.clone(),
            sts_endpoint: server.base_url(),
            session_name: "s".into(),
            duration_secs: 900,
        };
        let f = OidcFetcher::new(cfg.clone()).unwrap();
        let c = f.fetch().await.unwrap();
        assert_eq!(c.access_key_id, "STS.X");
        assert!(f.describe().contains("acs:ram::1:role/r"));

        std::fs::write(&tok, "other").unwrap();
        let err = f.fetch().await.unwrap_err().to_string();
        assert!(
            err.contains("InvalidParameter.OIDCToken") && err.contains("R2"),
            "{err}"
        );
        assert!(!err.contains("other"));
    }

    #[test]
    fn html_reply_is_an_error_not_a_panic() {
        let err = parse_sts_reply(502, "<html>bad gateway</html>")
            .unwrap_err()
            .to_string();
        assert!(err.contains("502"));
    }
}
