//! Credentials of the ECS instance's RAM role, from the instance metadata service.
//!
//! Protocol (docs/PROTOCOL.md §3):
//! 1. Hardened mode first: `PUT {base}/latest/api/token` with
//!    `X-aliyun-ecs-metadata-token-ttl-seconds: 21600`; the body is a token sent as
//!    `X-aliyun-ecs-metadata-token` on the GETs. If that fails we fall back to normal mode
//!    (no token) unless `ALIBABA_CLOUD_IMDSV1_DISABLED=true`, in which case it is an error.
//! 2. Role: `--ram-role`, else `ALIBABA_CLOUD_ECS_METADATA`, else discovered with
//!    `GET {base}/latest/meta-data/ram/security-credentials/` (plain-text role name).
//! 3. `GET {base}/latest/meta-data/ram/security-credentials/<role>` → JSON with
//!    `Code == "Success"`, `AccessKeyId`, `AccessKeySecret`, `SecurityToken`, `Expiration`
//!    (`2006-01-02T15:04:05Z`).
//!
//! `base` is `http://100.100.100.200` unless `OSSMOUNT_ECS_METADATA_ENDPOINT` says
//! otherwise (tests and the emulator). Timeouts are short (1 s connect, 1 s read) because
//! on a machine that is not an ECS instance the address simply does not answer, and the
//! chain must not hang. Proxies are bypassed: the metadata address is link-local.
//!
//! The fetcher is wrapped in [`super::refresh::RefreshingProvider`] for caching/refresh.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;

use super::refresh::CredentialsFetcher;
use super::{Credentials, CredentialsError, Secret};

/// Default metadata service address.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://100.100.100.200";
const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";
/// Cap on metadata reply sizes: a misbehaving endpoint must not make us buffer much.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct EcsRamRoleConfig {
    /// Explicit role name; None = discover it.
    pub role: Option<String>,
    /// Base URL, e.g. `http://100.100.100.200`.
    pub endpoint: String,
    /// `ALIBABA_CLOUD_IMDSV1_DISABLED=true`: hardened mode is mandatory.
    pub imdsv1_disabled: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub token_ttl_secs: u32,
}

impl Default for EcsRamRoleConfig {
    fn default() -> Self {
        EcsRamRoleConfig {
            role: None,
            endpoint: DEFAULT_METADATA_ENDPOINT.to_string(),
            imdsv1_disabled: false,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            token_ttl_secs: 21600,
        }
    }
}

/// Fetches the role's credentials; see the module docs.
pub struct EcsRamRoleFetcher {
    cfg: EcsRamRoleConfig,
    http: reqwest::Client,
    /// Role and mode of the last successful fetch, for `describe()`.
    last: Mutex<(Option<String>, Option<bool>)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetadataCredentials {
    code: Option<String>,
    message: Option<String>,
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    security_token: Option<String>,
    expiration: Option<String>,
}

impl EcsRamRoleFetcher {
    pub fn new(mut cfg: EcsRamRoleConfig) -> Result<Self, CredentialsError> {
        cfg.endpoint = cfg.endpoint.trim_end_matches('/').to_string();
        if !cfg.endpoint.contains("://") {
            cfg.endpoint = format!("http://{}", cfg.endpoint);
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .timeout(cfg.connect_timeout + cfg.read_timeout * 2)
            .build()
            .map_err(|e| CredentialsError(format!("cannot build metadata HTTP client: {e}")))?;
        let role = cfg.role.clone();
        Ok(EcsRamRoleFetcher {
            cfg,
            http,
            last: Mutex::new((role, None)),
        })
    }

    /// The hardened-mode token, or None for normal mode.
    async fn session_token(&self) -> Result<Option<String>, CredentialsError> {
        let url = format!("{}/latest/api/token", self.cfg.endpoint);
        let result = self
            .http
            .put(&url)
            .header(TOKEN_TTL_HEADER, self.cfg.token_ttl_secs.to_string())
            .send()
            .await;
        let failure = match result {
            Ok(resp) if resp.status().is_success() => {
                let token = read_text(resp).await?;
                let token = token.trim();
                if !token.is_empty() {
                    return Ok(Some(token.to_string()));
                }
                "empty token".to_string()
            }
            Ok(resp) => format!("HTTP {}", resp.status().as_u16()),
            Err(e) => error_chain(&e),
        };
        if self.cfg.imdsv1_disabled {
            return Err(CredentialsError(format!(
                "ECS metadata hardened-mode token request to {url} failed ({failure}) and \
                 ALIBABA_CLOUD_IMDSV1_DISABLED=true forbids normal mode"
            )));
        }
        tracing::debug!(%url, failure, "ECS metadata token unavailable; using normal mode");
        Ok(None)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<String, CredentialsError> {
        let url = format!("{}{}", self.cfg.endpoint, path);
        let mut req = self.http.get(&url);
        if let Some(t) = token {
            req = req.header(TOKEN_HEADER, t);
        }
        let resp = req.send().await.map_err(|e| {
            CredentialsError(format!(
                "ECS metadata service {url} unreachable: {}",
                error_chain(&e)
            ))
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(CredentialsError(format!(
                "ECS metadata service {url} answered HTTP {}",
                status.as_u16()
            )));
        }
        read_text(resp).await
    }
}

async fn read_text(mut resp: reqwest::Response) -> Result<String, CredentialsError> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| CredentialsError(format!("reading metadata reply: {}", error_chain(&e))))?
    {
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(CredentialsError("metadata reply too large".into()));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| CredentialsError("metadata reply is not UTF-8".into()))
}

/// `reqwest::Error` Display hides the cause ("error sending request"); include the chain.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Parses `2006-01-02T15:04:05Z` (also accepts full RFC 3339).
pub(crate) fn parse_expiration(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(dt.into());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
        .ok()
        .map(|n| n.and_utc().into())
}

/// Parses the credentials JSON of the metadata service.
pub fn parse_metadata_credentials(body: &str) -> Result<Credentials, CredentialsError> {
    let m: MetadataCredentials = serde_json::from_str(body).map_err(|e| {
        CredentialsError(format!(
            "ECS metadata credentials are not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if m.code.as_deref() != Some("Success") {
        return Err(CredentialsError(format!(
            "ECS metadata service refused credentials: Code={}, Message={}",
            m.code.as_deref().unwrap_or("-"),
            m.message.as_deref().unwrap_or("-")
        )));
    }
    let (Some(id), Some(secret), Some(token), Some(exp)) = (
        m.access_key_id,
        m.access_key_secret,
        m.security_token,
        m.expiration,
    ) else {
        return Err(CredentialsError(
            "ECS metadata credentials lack AccessKeyId/AccessKeySecret/SecurityToken/Expiration"
                .into(),
        ));
    };
    let expiration = parse_expiration(&exp).ok_or_else(|| {
        CredentialsError(format!("ECS metadata credentials: bad Expiration {exp:?}"))
    })?;
    Ok(Credentials {
        access_key_id: id,
        access_key_secret: Secret::new(secret),
        security_token: Some(Secret::new(token)),
        expiration: Some(expiration),
    })
}

#[async_trait]
impl CredentialsFetcher for EcsRamRoleFetcher {
    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let token = self.session_token().await?;
        let role = match &self.cfg.role {
            Some(r) => r.clone(),
            None => {
                let r = self.get(CREDENTIALS_PATH, token.as_deref()).await?;
                let r = r.trim().lines().next().unwrap_or("").trim().to_string();
                if r.is_empty() {
                    return Err(CredentialsError(
                        "no RAM role is attached to this ECS instance".into(),
                    ));
                }
                r
            }
        };
        let body = self
            .get(&format!("{CREDENTIALS_PATH}{role}"), token.as_deref())
            .await?;
        let creds = parse_metadata_credentials(&body)?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = (Some(role), Some(token.is_some()));
        Ok(creds)
    }

    fn describe(&self) -> String {
        let (role, hardened) = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mode = match hardened {
            Some(true) => " (hardened mode)",
            Some(false) => " (normal mode)",
            None => "",
        };
        format!(
            "ECS RAM role {} via {}{mode}",
            role.as_deref().unwrap_or("(discovered)"),
            self.cfg.endpoint
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::test_http::{MiniServer, Reply};

    fn creds_json(id: &str, secs: u64) -> String {
        let exp =
            chrono::DateTime::<chrono::Utc>::from(SystemTime::now() + Duration::from_secs(secs))
                .format("%Y-%m-%dT%H:%M:%SZ");
        format!(
            r#"{{"AccessKeyId":"{id}","AccessKeySecret":"sec","SecurityToken":"tok","Expiration":"{exp}","LastUpdated":"2020-01-01T00:00:00Z","Code":"Success"}}"#
        )
    }

    fn cfg(server: &MiniServer) -> EcsRamRoleConfig {
        EcsRamRoleConfig {
            endpoint: server.base_url(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn hardened_mode_discovers_role_and_sends_token() {
        let json = creds_json("STS.AK", 3600);
        let server = MiniServer::start(move |req| match (req.method.as_str(), req.path.as_str()) {
            ("PUT", "/latest/api/token") => {
                if req.header(TOKEN_TTL_HEADER).as_deref() == Some("21600") {
                    Reply::ok("tkn-1")
                } else {
                    Reply::status(400)
                }
            }
            ("GET", p) if req.header(TOKEN_HEADER).as_deref() != Some("tkn-1") => {
                let _ = p;
                Reply::status(401)
            }
            ("GET", "/latest/meta-data/ram/security-credentials/") => Reply::ok("MyRole\n"),
            ("GET", "/latest/meta-data/ram/security-credentials/MyRole") => Reply::ok(&json),
            _ => Reply::status(404),
        })
        .await;
        let f = EcsRamRoleFetcher::new(cfg(&server)).unwrap();
        let c = f.fetch().await.unwrap();
        assert_eq!(c.access_key_id, "STS.AK");
        assert_eq!(c.security_token.unwrap().expose(), "tok");
        assert!(c.expiration.unwrap() > SystemTime::now());
        let d = f.describe();
        assert!(d.contains("MyRole") && d.contains("hardened mode"), "{d}");
        assert!(d.contains(&server.base_url()));
    }

    #[tokio::test]
    async fn falls_back_to_normal_mode_when_token_fails() {
        let json = creds_json("AK-normal", 3600);
        let server = MiniServer::start(move |req| match (req.method.as_str(), req.path.as_str()) {
            ("PUT", _) => Reply::status(403),
            ("GET", "/latest/meta-data/ram/security-credentials/Given") => {
                assert!(req.header(TOKEN_HEADER).is_none());
                Reply::ok(&json)
            }
            _ => Reply::status(404),
        })
        .await;
        let mut c = cfg(&server);
        c.role = Some("Given".into());
        let f = EcsRamRoleFetcher::new(c).unwrap();
        assert_eq!(f.fetch().await.unwrap().access_key_id, "AK-normal");
        assert!(f.describe().contains("Given via"));
        assert!(f.describe().contains("normal mode"));
        // Discovery was skipped: only the token PUT and one GET.
        assert_eq!(server.requests(), 2);
    }

    #[tokio::test]
    async fn imdsv1_disabled_makes_token_failure_fatal() {
        let server = MiniServer::start(|_| Reply::status(403)).await;
        let mut c = cfg(&server);
        c.role = Some("R".into());
        c.imdsv1_disabled = true;
        let f = EcsRamRoleFetcher::new(c).unwrap();
        let err = f.fetch().await.unwrap_err().to_string();
        assert!(err.contains("ALIBABA_CLOUD_IMDSV1_DISABLED"), "{err}");
        assert_eq!(server.requests(), 1);
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_a_quick_error() {
        // Bind then drop to get a port nothing listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let f = EcsRamRoleFetcher::new(EcsRamRoleConfig {
            endpoint: format!("http://127.0.0.1:{port}"),
            ..Default::default()
        })
        .unwrap();
        let start = std::time::Instant::now();
        let err = f.fetch().await.unwrap_err().to_string();
        assert!(err.contains("unreachable"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn code_must_be_success() {
        let err = parse_metadata_credentials(r#"{"Code":"Failed","Message":"no role"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Failed") && err.contains("no role"));
        assert!(parse_metadata_credentials("<html>").is_err());
        assert!(parse_metadata_credentials(r#"{"Code":"Success"}"#).is_err());
    }

    #[test]
    fn expiration_formats() {
        let t = parse_expiration("2017-11-01T05:20:01Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1509513601
        );
        assert!(parse_expiration("yesterday").is_none());
    }
}
