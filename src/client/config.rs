//! Client configuration: where to send requests, how to sign them, how long to wait.
//!
//! The endpoint is a URL (`https://oss-cn-hangzhou.aliyuncs.com`,
//! `http://127.0.0.1:9000`); a missing scheme means `https`. The URL style decides where
//! the bucket goes: virtual-hosted `bucket.host/key` (default), path `host/bucket/key`, or
//! CNAME `host/key`. An endpoint whose host is an IP address forces path style (a bucket
//! cannot be a sub-domain of an IP), except with CNAME, which wins over everything
//! (docs/PROTOCOL.md §5).

use std::sync::Arc;
use std::time::Duration;

use crate::credentials::{AnonymousProvider, CredentialsProvider};
use crate::sign::SignatureVersion;
use crate::store::StoreError;

/// Where the bucket name goes in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlStyle {
    /// `https://bucket.endpoint/key`.
    #[default]
    VirtualHosted,
    /// `https://endpoint/bucket/key`.
    Path,
    /// `https://endpoint/key`: the endpoint is the bucket's own domain.
    Cname,
}

/// Everything [`super::OssClient::new`] needs.
#[derive(Clone)]
pub struct ClientConfig {
    /// Endpoint URL; scheme optional (https).
    pub endpoint: String,
    pub bucket: String,
    /// Signing region, bare (`cn-hangzhou`); an `oss-` prefix is stripped.
    pub region: String,
    pub url_style: UrlStyle,
    pub signature_version: SignatureVersion,
    /// [`AnonymousProvider`] sends requests unsigned.
    pub credentials: Arc<dyn CredentialsProvider>,
    pub connect_timeout: Duration,
    /// Longest silence while reading a response (headers or a body chunk) or while the
    /// server is not taking our upload body. Before the first byte of a request body has
    /// moved (or for requests without a body) the connect timeout is added, since the
    /// connection may still be being set up: like the Go SDK, a reply may take up to
    /// connect + read timeout.
    pub read_timeout: Duration,
    /// Attempts in total, including the first (≥ 1).
    pub max_attempts: u32,
    /// Backoff unit: a retry waits U[0,1) × min(base × 2^retry, max).
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub user_agent: String,
    /// PEM file of CA certificates trusted on top of the system store.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Most requests in flight at once, over all users of this client (≥ 1).
    pub max_inflight: usize,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("url_style", &self.url_style)
            .field("signature_version", &self.signature_version)
            .field("credentials", &self.credentials.describe())
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// Default budget of requests in flight per client (per mount).
pub const DEFAULT_MAX_INFLIGHT: usize = 64;

/// `ossmount/<version>`.
pub fn default_user_agent() -> String {
    format!("ossmount/{}", env!("CARGO_PKG_VERSION"))
}

impl ClientConfig {
    /// Defaults from docs/PROTOCOL.md §5: V4, virtual-hosted, 5 s connect, 10 s read,
    /// 3 attempts, 0.2 s backoff unit capped at 20 s.
    pub fn new(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        region: impl Into<String>,
        credentials: Arc<dyn CredentialsProvider>,
    ) -> ClientConfig {
        ClientConfig {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            region: region.into(),
            url_style: UrlStyle::VirtualHosted,
            signature_version: SignatureVersion::V4,
            credentials,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            max_attempts: 3,
            retry_base_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(20),
            user_agent: default_user_agent(),
            ca_cert: None,
            max_inflight: DEFAULT_MAX_INFLIGHT,
        }
    }

    /// Same, unsigned.
    pub fn anonymous(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        region: impl Into<String>,
    ) -> ClientConfig {
        ClientConfig::new(endpoint, bucket, region, Arc::new(AnonymousProvider))
    }
}

/// The endpoint split into what URL building needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedEndpoint {
    pub scheme: String,
    /// Host and optional port as written (`[::1]:9000` keeps its brackets).
    pub authority: String,
    pub host_is_ip: bool,
}

impl ParsedEndpoint {
    pub(crate) fn parse(endpoint: &str) -> Result<ParsedEndpoint, StoreError> {
        let trimmed = endpoint.trim().trim_end_matches('/');
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("https://{trimmed}")
        };
        let url = reqwest::Url::parse(&with_scheme).map_err(|e| {
            StoreError::InvalidArgument(format!("endpoint {endpoint:?} is not a valid URL: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(StoreError::InvalidArgument(format!(
                "endpoint {endpoint:?}: scheme must be http or https"
            )));
        }
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return Err(StoreError::InvalidArgument(format!(
                "endpoint {endpoint:?} must be scheme://host[:port] without a path, query or user"
            )));
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => {
                return Err(StoreError::InvalidArgument(format!(
                    "endpoint {endpoint:?} has no host"
                )));
            }
        };
        let host_is_ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok();
        let mut authority = host;
        if let Some(port) = url.port() {
            authority.push_str(&format!(":{port}"));
        }
        Ok(ParsedEndpoint {
            scheme: url.scheme().to_string(),
            authority,
            host_is_ip,
        })
    }
}

/// Signing region without the `oss-` prefix DescribeRegions uses.
pub(crate) fn bare_region(region: &str) -> &str {
    region.strip_prefix("oss-").unwrap_or(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let e = ParsedEndpoint::parse("oss-cn-hangzhou.aliyuncs.com").unwrap();
        assert_eq!(e.scheme, "https");
        assert_eq!(e.authority, "oss-cn-hangzhou.aliyuncs.com");
        assert!(!e.host_is_ip);
        let e = ParsedEndpoint::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            (e.scheme.as_str(), e.authority.as_str()),
            ("http", "127.0.0.1:9000")
        );
        assert!(e.host_is_ip);
        let e = ParsedEndpoint::parse("http://[::1]:80").unwrap();
        assert!(e.host_is_ip);
        assert_eq!(e.authority, "[::1]");
        assert!(ParsedEndpoint::parse("ftp://x").is_err());
        assert!(ParsedEndpoint::parse("http://x/path").is_err());
        assert!(ParsedEndpoint::parse("http://user:pw@x").is_err());
    }

    #[test]
    fn strips_oss_prefix() {
        assert_eq!(bare_region("oss-cn-beijing"), "cn-beijing");
        assert_eq!(bare_region("cn-beijing"), "cn-beijing");
    }

    #[test]
    fn debug_has_no_secrets() {
        let cfg = ClientConfig::anonymous("e", "b", "r");
        let d = format!("{cfg:?}");
        assert!(d.contains("anonymous"));
    }
}
