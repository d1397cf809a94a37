//! Where requests go: regions, endpoints, bucket names and request URLs.
//!
//! - [`regions`]: the built-in region table, region-id normalisation, rule-built
//!   endpoint names and the `--list-regions` listing.
//! - [`names`]: bucket-name and object-key validation with actionable messages.
//! - [`resolve`]: picks the endpoint (`--endpoint`, `--internal`, `--accelerate`, or
//!   automatically via the ECS metadata service) and says why.
//! - This file: [`EndpointConfig`], which turns (bucket, key, query) into a URL in the
//!   right addressing style.
//!
//! Addressing styles (precedence CNAME > path > virtual host, as in the Go SDK):
//! virtual host `https://bucket.endpoint/key` is the default; path style
//! `https://endpoint/bucket/key` is forced when the endpoint host is an IP address (or
//! `localhost`), since `bucket.1.2.3.4` cannot resolve; CNAME `https://endpoint/key`
//! omits the bucket from the URL. Whatever the style, the bucket stays in the signature
//! (see [`crate::sign`]).
//!
//! Pitfall: the key goes into the path through [`crate::sign::encode_url_path`], which
//! keeps `.`/`..` segments away from URL normalisation (by writing the adjacent `/` as
//! `%2F`; percent-encoding the dots is not enough for WHATWG parsers such as reqwest's),
//! and the query through
//! [`crate::sign::encode_query_string`] (`%20`, `%2B`), never form encoding. Keys that
//! are exactly `.` or `..` cannot survive a WHATWG parser at all
//! ([`crate::sign::url_path_survives_normalisation`]).

pub mod names;
pub mod regions;
pub mod resolve;

use std::fmt;
use std::net::IpAddr;

use crate::sign::{encode_query_string, encode_url_path};

pub use names::{MAX_KEY_BYTES, validate_bucket_name, validate_object_key};
pub use regions::{
    ACCELERATE_ENDPOINT, ACCELERATE_OVERSEAS_ENDPOINT, REGIONS, RegionInfo, RegionRow,
    dual_stack_endpoint, find_region, format_region_table, internal_endpoint, normalize_region,
    public_endpoint, region_from_host, region_listing,
};
pub use resolve::{
    DEFAULT_ECS_METADATA_ENDPOINT, ECS_METADATA_ENV, EndpointChoice, EndpointOptions,
    choose_endpoint, ecs_region, metadata_base_from_env,
};

/// Errors about regions, endpoints and names. Messages say what form is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "invalid region {input:?}: {reason}; write it like \"cn-hangzhou\" or \"oss-cn-hangzhou\" (see --list-regions)"
    )]
    InvalidRegion { input: String, reason: String },
    #[error("invalid bucket name {name:?}: {reason}")]
    InvalidBucket { name: String, reason: String },
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error(
        "invalid endpoint {input:?}: {reason}; write it like \"oss-cn-hangzhou.aliyuncs.com\", \"https://oss.example.com\" or \"http://127.0.0.1:9000\""
    )]
    InvalidEndpoint { input: String, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error(
        "no region given and it could not be detected: pass --region (e.g. --region cn-hangzhou) or an --endpoint such as oss-cn-hangzhou.aliyuncs.com"
    )]
    MissingRegion,
}

/// How the bucket appears in request URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressingStyle {
    /// `https://bucket.endpoint/key` (default).
    #[default]
    VirtualHosted,
    /// `https://endpoint/bucket/key`.
    Path,
    /// `https://endpoint/key`: the endpoint is a custom domain bound to the bucket.
    Cname,
}

impl fmt::Display for AddressingStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressingStyle::VirtualHosted => "virtual-hosted",
            AddressingStyle::Path => "path",
            AddressingStyle::Cname => "cname",
        })
    }
}

/// A parsed endpoint plus the addressing style in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// `https` or `http`.
    pub scheme: &'static str,
    /// Host with optional `:port`; IPv6 addresses in brackets.
    pub host: String,
    pub style: AddressingStyle,
}

impl EndpointConfig {
    /// Parses `endpoint` (`host`, `host:port`, `scheme://host[:port][/]`, IPv6 in
    /// brackets). Without a scheme, `https` is used, or `http` with `disable_ssl`.
    /// The style is CNAME if `cname`, else path if `path_style` or the host is an IP
    /// address or `localhost`, else virtual-hosted.
    pub fn parse(
        endpoint: &str,
        disable_ssl: bool,
        path_style: bool,
        cname: bool,
    ) -> Result<EndpointConfig, EndpointError> {
        let input = endpoint.trim();
        let bad = |reason: &str| EndpointError::InvalidEndpoint {
            input: endpoint.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = match input.split_once("://") {
            Some((s, rest)) => match s.to_ascii_lowercase().as_str() {
                "https" if disable_ssl => {
                    return Err(EndpointError::Conflict(format!(
                        "--disable-ssl conflicts with the https:// endpoint {endpoint:?}: drop one of them"
                    )));
                }
                "https" => ("https", rest),
                "http" => ("http", rest),
                _ => return Err(bad("the scheme must be http or https")),
            },
            None if disable_ssl => ("http", input),
            None => ("https", input),
        };
        let host = rest.strip_suffix('/').unwrap_or(rest);
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if host.contains('/') || host.contains('?') || host.contains('#') {
            return Err(bad(
                "an endpoint is a host name only, without a path or query",
            ));
        }
        if host.contains('@') {
            return Err(bad("credentials do not belong in the endpoint"));
        }
        let (name, _port) = split_host_port(host).ok_or_else(|| bad("malformed host or port"))?;
        let ip = name.parse::<IpAddr>().is_ok();
        if !ip
            && !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(bad(
                "host names may contain only letters, digits, '-' and '.'",
            ));
        }
        let style = if cname {
            AddressingStyle::Cname
        } else if path_style || ip || name.eq_ignore_ascii_case("localhost") {
            AddressingStyle::Path
        } else {
            AddressingStyle::VirtualHosted
        };
        Ok(EndpointConfig {
            scheme,
            host: host.to_ascii_lowercase(),
            style,
        })
    }

    /// `scheme://host`, e.g. for logs.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    /// The host (with port) requests for `bucket` are sent to.
    pub fn bucket_host(&self, bucket: &str) -> String {
        match self.style {
            AddressingStyle::VirtualHosted => format!("{bucket}.{}", self.host),
            AddressingStyle::Path | AddressingStyle::Cname => self.host.clone(),
        }
    }

    /// URL of an object (`key = Some`) or bucket-level (`None`) request, with the
    /// query encoded (`%20`/`%2B`; bare names without `=`).
    pub fn object_url(
        &self,
        bucket: &str,
        key: Option<&str>,
        query: &[(String, Option<String>)],
    ) -> String {
        let mut url = format!("{}://{}/", self.scheme, self.bucket_host(bucket));
        if self.style == AddressingStyle::Path {
            url.push_str(bucket);
            url.push('/');
        }
        if let Some(key) = key {
            url.push_str(&encode_url_path(key));
        }
        push_query(&mut url, query);
        url
    }

    /// URL of a service-level request (e.g. DescribeRegions): the bare endpoint.
    pub fn service_url(&self, query: &[(String, Option<String>)]) -> String {
        let mut url = format!("{}://{}/", self.scheme, self.host);
        push_query(&mut url, query);
        url
    }
}

fn push_query(url: &mut String, query: &[(String, Option<String>)]) {
    if !query.is_empty() {
        url.push('?');
        url.push_str(&encode_query_string(query));
    }
}

/// Splits `host[:port]` / `[v6][:port]`; `None` if malformed.
fn split_host_port(host: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some((addr, None)),
            p => Some((addr, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        // A bare IPv6 address without brackets cannot carry a port.
        return None;
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() => Some((name, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((host, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(e: &str) -> EndpointConfig {
        EndpointConfig::parse(e, false, false, false).expect(e)
    }

    #[test]
    fn parse_endpoints() {
        let c = parse("oss-cn-hangzhou.aliyuncs.com");
        assert_eq!(
            (c.scheme, c.host.as_str(), c.style),
            (
                "https",
                "oss-cn-hangzhou.aliyuncs.com",
                AddressingStyle::VirtualHosted
            )
        );
        let c = parse("HTTP://OSS-cn-hangzhou.aliyuncs.com/");
        assert_eq!(
            (c.scheme, c.host.as_str()),
            ("http", "oss-cn-hangzhou.aliyuncs.com")
        );
        let c = EndpointConfig::parse("oss.example.com", true, false, false).expect("http");
        assert_eq!(c.scheme, "http");
        for (e, host) in [
            ("127.0.0.1", "127.0.0.1"),
            ("http://127.0.0.1:9000", "127.0.0.1:9000"),
            ("[::1]:9000", "[::1]:9000"),
            ("http://[::1]", "[::1]"),
            ("localhost:8080", "localhost:8080"),
        ] {
            let c = parse(e);
            assert_eq!(c.style, AddressingStyle::Path, "{e}");
            assert_eq!(c.host, host);
        }
        // Path style on request; CNAME wins over everything.
        let c = EndpointConfig::parse("oss.example.com", false, true, false).expect("p");
        assert_eq!(c.style, AddressingStyle::Path);
        let c = EndpointConfig::parse("127.0.0.1:9000", false, true, true).expect("c");
        assert_eq!(c.style, AddressingStyle::Cname);
    }

    #[test]
    fn parse_rejects() {
        for bad in [
            "",
            "ftp://x.com",
            "https://x.com/path",
            "x.com?x=1",
            "user:pw@x.com",
            "x.com:notaport",
            "x.com:99999",
            "::1",
            "[::1",
            "bad_host.com",
            "https://",
        ] {
            let e = EndpointConfig::parse(bad, false, false, false).expect_err(bad);
            assert!(e.to_string().contains("invalid endpoint"), "{bad}: {e}");
        }
        let e = EndpointConfig::parse("https://x.com", true, false, false).expect_err("conflict");
        assert!(e.to_string().contains("--disable-ssl"));
    }

    #[test]
    fn urls_per_style() {
        let q = vec![
            ("prefix".to_string(), Some("a b+c".to_string())),
            ("acl".to_string(), None),
        ];
        let v = parse("oss-cn-hangzhou.aliyuncs.com");
        assert_eq!(
            v.object_url("bkt", Some("dir/a b+c.txt"), &[]),
            "https://bkt.oss-cn-hangzhou.aliyuncs.com/dir/a%20b%2Bc.txt"
        );
        assert_eq!(
            v.object_url("bkt", None, &q),
            "https://bkt.oss-cn-hangzhou.aliyuncs.com/?prefix=a%20b%2Bc&acl"
        );
        assert_eq!(
            v.object_url("bkt", Some("a/../b"), &[]),
            "https://bkt.oss-cn-hangzhou.aliyuncs.com/a%2F..%2Fb"
        );
        assert_eq!(
            v.service_url(&[("regions".into(), None)]),
            "https://oss-cn-hangzhou.aliyuncs.com/?regions"
        );
        let p = parse("http://127.0.0.1:9000");
        assert_eq!(
            p.object_url("bkt", Some("中"), &[]),
            "http://127.0.0.1:9000/bkt/%E4%B8%AD"
        );
        assert_eq!(p.object_url("bkt", None, &[]), "http://127.0.0.1:9000/bkt/");
        assert_eq!(p.bucket_host("bkt"), "127.0.0.1:9000");
        let c = EndpointConfig::parse("files.example.com", false, false, true).expect("cname");
        assert_eq!(
            c.object_url("bkt", Some("k"), &[]),
            "https://files.example.com/k"
        );
        assert_eq!(
            c.object_url("bkt", None, &q),
            "https://files.example.com/?prefix=a%20b%2Bc&acl"
        );
    }
}
