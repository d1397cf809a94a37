//! Choosing the endpoint, and saying why.
//!
//! Order: an explicit `--endpoint`; `--internal` (`oss-<region>-internal…`);
//! `--accelerate` (`oss-accelerate…`); else automatic: ask the ECS metadata service
//! which region this machine is in. Same region as the bucket → internal endpoint
//! (free traffic, lower latency); another region or not on ECS → public endpoint.
//!
//! The metadata query must never slow down a mount off Alibaba Cloud, so the whole
//! exchange (optional hardened-mode token + GET) is bounded by [`METADATA_TIMEOUT`]
//! and any failure just means "not on ECS". Hardened mode (IMDSv2-like, docs/PROTOCOL.md
//! §3) is tried first so instances that refuse token-less reads still answer.

use std::time::Duration;

use super::{
    ACCELERATE_ENDPOINT, AddressingStyle, EndpointConfig, EndpointError, internal_endpoint,
    normalize_region, public_endpoint, region_from_host,
};

/// The ECS metadata service.
pub const DEFAULT_ECS_METADATA_ENDPOINT: &str = "http://100.100.100.200";
/// Environment variable overriding [`DEFAULT_ECS_METADATA_ENDPOINT`] (tests, proxies).
pub const ECS_METADATA_ENV: &str = "OSSMOUNT_ECS_METADATA_ENDPOINT";
/// Budget for the whole metadata exchange.
pub const METADATA_TIMEOUT: Duration = Duration::from_millis(1000);

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct EndpointOptions {
    /// `--region`, either form (`cn-hangzhou` / `oss-cn-hangzhou`).
    pub region: Option<String>,
    /// `--endpoint`.
    pub endpoint: Option<String>,
    pub internal: bool,
    pub accelerate: bool,
    pub disable_ssl: bool,
    pub path_style: bool,
    pub cname: bool,
    /// Metadata service base URL; `None` = [`metadata_base_from_env`].
    pub metadata_base: Option<String>,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointChoice {
    pub config: EndpointConfig,
    /// Bare signing region, when known (always known unless a custom endpoint was
    /// given without `--region` and its host does not name one).
    pub region: Option<String>,
    /// Human explanation, e.g. "internal endpoint: this ECS instance is in cn-hangzhou".
    pub why: String,
}

/// The metadata base: `$OSSMOUNT_ECS_METADATA_ENDPOINT` or the default.
pub fn metadata_base_from_env() -> String {
    std::env::var(ECS_METADATA_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ECS_METADATA_ENDPOINT.to_string())
}

/// The region this ECS instance runs in, or `None` when the metadata service does not
/// answer within [`METADATA_TIMEOUT`] (not on ECS) or answers nonsense.
pub async fn ecs_region(base: &str) -> Option<String> {
    match tokio::time::timeout(METADATA_TIMEOUT, fetch_region(base)).await {
        Ok(Ok(region)) => Some(region),
        Ok(Err(reason)) => {
            tracing::debug!(%base, %reason, "ECS metadata region lookup failed");
            None
        }
        Err(_) => {
            tracing::debug!(%base, "ECS metadata region lookup timed out");
            None
        }
    }
}

async fn fetch_region(base: &str) -> Result<String, String> {
    let base = base.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .connect_timeout(METADATA_TIMEOUT)
        .timeout(METADATA_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    // Hardened mode first; fall back to a plain GET if the token is refused.
    let token = match client
        .put(format!("{base}/latest/api/token"))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "60")
        .send()
        .await
    {
        Ok(resp) if resp.status().is_success() => resp.text().await.ok(),
        Ok(_) => None,
        // Nothing listening: no point in a second attempt.
        Err(e) if e.is_connect() || e.is_timeout() => return Err(e.to_string()),
        Err(_) => None,
    };
    let mut req = client.get(format!("{base}/latest/meta-data/region-id"));
    if let Some(token) = token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        req = req.header("X-aliyun-ecs-metadata-token", token);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = resp.text().await.map_err(|e| e.to_string())?;
    normalize_region(body.trim()).map_err(|e| e.to_string())
}

/// Applies the options in order and logs the choice at info level.
pub async fn choose_endpoint(opts: &EndpointOptions) -> Result<EndpointChoice, EndpointError> {
    let region = opts.region.as_deref().map(normalize_region).transpose()?;
    if opts.internal && opts.accelerate {
        return Err(EndpointError::Conflict(
            "--internal and --accelerate are mutually exclusive".to_string(),
        ));
    }
    if opts.endpoint.is_some() && (opts.internal || opts.accelerate) {
        return Err(EndpointError::Conflict(
            "--endpoint already names the endpoint: drop --internal/--accelerate".to_string(),
        ));
    }
    if opts.cname && opts.endpoint.is_none() {
        return Err(EndpointError::Conflict(
            "--cname needs --endpoint set to the custom domain bound to the bucket".to_string(),
        ));
    }
    let parse =
        |host: &str| EndpointConfig::parse(host, opts.disable_ssl, opts.path_style, opts.cname);

    let choice = if let Some(endpoint) = &opts.endpoint {
        let config = parse(endpoint)?;
        let region = region.or_else(|| region_from_host(&config.host));
        EndpointChoice {
            why: format!(
                "endpoint given with --endpoint ({} addressing)",
                config.style
            ),
            config,
            region,
        }
    } else if opts.internal {
        let region = region.ok_or(EndpointError::MissingRegion)?;
        EndpointChoice {
            config: parse(&internal_endpoint(&region))?,
            why: format!("internal endpoint requested with --internal (region {region})"),
            region: Some(region),
        }
    } else if opts.accelerate {
        let region = region.ok_or(EndpointError::MissingRegion)?;
        EndpointChoice {
            config: parse(ACCELERATE_ENDPOINT)?,
            why: format!(
                "transfer acceleration requested with --accelerate (bucket region {region})"
            ),
            region: Some(region),
        }
    } else {
        let base = opts
            .metadata_base
            .clone()
            .unwrap_or_else(metadata_base_from_env);
        let here = ecs_region(&base).await;
        match (region, here) {
            (Some(r), Some(h)) if r == h => EndpointChoice {
                config: parse(&internal_endpoint(&r))?,
                why: format!("internal endpoint: this ECS instance is in the bucket's region {r}"),
                region: Some(r),
            },
            (Some(r), Some(h)) => EndpointChoice {
                config: parse(&public_endpoint(&r))?,
                why: format!(
                    "public endpoint: this ECS instance is in {h}, the bucket's region is {r}"
                ),
                region: Some(r),
            },
            (Some(r), None) => EndpointChoice {
                config: parse(&public_endpoint(&r))?,
                why: format!(
                    "public endpoint for {r}: not on Alibaba Cloud ECS (metadata service did not answer)"
                ),
                region: Some(r),
            },
            (None, Some(h)) => EndpointChoice {
                config: parse(&internal_endpoint(&h))?,
                why: format!(
                    "internal endpoint: no --region given, using this ECS instance's region {h}"
                ),
                region: Some(h),
            },
            (None, None) => return Err(EndpointError::MissingRegion),
        }
    };
    if choice.config.style == AddressingStyle::Path && !opts.path_style && !opts.cname {
        tracing::debug!(host = %choice.config.host, "endpoint host is an IP or localhost: path-style URLs");
    }
    tracing::info!(endpoint = %choice.config.base_url(), why = %choice.why, "chose OSS endpoint");
    Ok(choice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// How the fake metadata server behaves.
    #[derive(Clone, Copy)]
    enum Fake {
        /// Answers the token PUT and requires the token on the GET.
        Hardened(&'static str),
        /// Refuses the token PUT (403), serves the GET without a token.
        Plain(&'static str),
        /// Accepts connections but never answers.
        Silent,
    }

    /// A tiny HTTP/1.1 server on loopback; returns its base URL and a request counter.
    async fn fake_metadata(kind: Fake) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    loop {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        let req = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                        let (status, body) = match kind {
                            Fake::Silent => {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                return;
                            }
                            Fake::Hardened(region) => {
                                if req.starts_with("put /latest/api/token") {
                                    ("200 OK", "tok123".to_string())
                                } else if req.contains("x-aliyun-ecs-metadata-token: tok123") {
                                    ("200 OK", format!("{region}\n"))
                                } else {
                                    ("403 Forbidden", String::new())
                                }
                            }
                            Fake::Plain(region) => {
                                if req.starts_with("put ") {
                                    ("403 Forbidden", String::new())
                                } else if req.starts_with("get /latest/meta-data/region-id") {
                                    ("200 OK", region.to_string())
                                } else {
                                    ("404 Not Found", String::new())
                                }
                            }
                        };
                        let resp = format!(
                            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{addr}"), hits)
    }

    fn opts(region: Option<&str>, base: &str) -> EndpointOptions {
        EndpointOptions {
            region: region.map(str::to_string),
            metadata_base: Some(base.to_string()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn same_region_goes_internal() {
        let (base, hits) = fake_metadata(Fake::Hardened("cn-hangzhou")).await;
        let c = choose_endpoint(&opts(Some("oss-cn-hangzhou"), &base))
            .await
            .expect("choice");
        assert_eq!(c.config.host, "oss-cn-hangzhou-internal.aliyuncs.com");
        assert_eq!(c.region.as_deref(), Some("cn-hangzhou"));
        assert!(c.why.contains("internal"), "{}", c.why);
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn other_region_goes_public_and_plain_mode_works() {
        let (base, _) = fake_metadata(Fake::Plain("cn-beijing")).await;
        let c = choose_endpoint(&opts(Some("cn-hangzhou"), &base))
            .await
            .expect("choice");
        assert_eq!(c.config.base_url(), "https://oss-cn-hangzhou.aliyuncs.com");
        assert!(c.why.contains("cn-beijing"), "{}", c.why);
        // No --region: the instance's region is used.
        let c = choose_endpoint(&opts(None, &base)).await.expect("choice");
        assert_eq!(c.region.as_deref(), Some("cn-beijing"));
        assert_eq!(c.config.host, "oss-cn-beijing-internal.aliyuncs.com");
    }

    #[tokio::test]
    async fn unreachable_or_silent_metadata_is_quick_and_public() {
        // Nothing listens on this port once the listener is dropped.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        let (silent, _) = fake_metadata(Fake::Silent).await;
        for base in [closed, silent] {
            let start = std::time::Instant::now();
            let c = choose_endpoint(&opts(Some("cn-hangzhou"), &base))
                .await
                .expect("choice");
            assert!(
                start.elapsed() < Duration::from_millis(1500),
                "{:?}",
                start.elapsed()
            );
            assert_eq!(c.config.host, "oss-cn-hangzhou.aliyuncs.com");
            assert!(c.why.contains("not on Alibaba Cloud ECS"), "{}", c.why);
            assert_eq!(
                choose_endpoint(&opts(None, &base)).await,
                Err(EndpointError::MissingRegion)
            );
        }
    }

    #[tokio::test]
    async fn explicit_choices() {
        let base = "http://127.0.0.1:1";
        let mut o = opts(Some("cn-shanghai"), base);
        o.internal = true;
        let c = choose_endpoint(&o).await.expect("internal");
        assert_eq!(c.config.host, "oss-cn-shanghai-internal.aliyuncs.com");
        o.internal = false;
        o.accelerate = true;
        o.disable_ssl = true;
        let c = choose_endpoint(&o).await.expect("accelerate");
        assert_eq!(c.config.base_url(), "http://oss-accelerate.aliyuncs.com");
        assert_eq!(c.region.as_deref(), Some("cn-shanghai"));

        let o = EndpointOptions {
            endpoint: Some("oss-ap-southeast-1.aliyuncs.com".into()),
            ..opts(None, base)
        };
        let c = choose_endpoint(&o).await.expect("endpoint");
        assert_eq!(c.region.as_deref(), Some("ap-southeast-1"));
        assert!(c.why.contains("--endpoint"));
        let o = EndpointOptions {
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..opts(Some("cn-hangzhou"), base)
        };
        let c = choose_endpoint(&o).await.expect("local");
        assert_eq!(c.config.style, AddressingStyle::Path);

        // Conflicts and missing pieces.
        let o = EndpointOptions {
            cname: true,
            ..opts(Some("cn-hangzhou"), base)
        };
        assert!(matches!(
            choose_endpoint(&o).await,
            Err(EndpointError::Conflict(_))
        ));
        let o = EndpointOptions {
            internal: true,
            accelerate: true,
            ..opts(Some("cn-hangzhou"), base)
        };
        assert!(matches!(
            choose_endpoint(&o).await,
            Err(EndpointError::Conflict(_))
        ));
        let o = EndpointOptions {
            internal: true,
            ..opts(None, base)
        };
        assert_eq!(choose_endpoint(&o).await, Err(EndpointError::MissingRegion));
        let o = opts(Some("cn_hangzhou"), base);
        assert!(matches!(
            choose_endpoint(&o).await,
            Err(EndpointError::InvalidRegion { .. })
        ));
    }
}
