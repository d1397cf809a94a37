//! One OSS request before it is sent: target, query, headers, body; URL building and
//! signing.
//!
//! Pitfalls this module exists for (docs/PROTOCOL.md §7):
//! - **Dot segments.** reqwest's `Url` applies WHATWG dot-segment removal, and WHATWG
//!   treats `%2E`/`%2e` like a literal dot, so `a/%2E%2E/b` still becomes `b` (checked
//!   with reqwest 0.12). We therefore never let a dot-only segment (`.`, `..`) stand alone
//!   in the URL: the `/` on either side of it is written `%2F`, which OSS decodes like
//!   `/` (`a/../b` → `a%2F..%2Fb`); [`crate::sign::encode_url_path`] does this. The keys
//!   `.` and `..` have no neighbour to lean on and are refused with a clear error.
//! - **Query encoding.** Names and values are encoded with [`crate::sign::uri_encode`]
//!   (`%20`, `%2B`), never form encoding, and the signer sees the same decoded pairs.
//! - **Signing** uses the raw key and the bucket, whatever the URL style, and is redone
//!   for every attempt (fresh time, fresh credentials, adopted clock offset).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::config::{ParsedEndpoint, UrlStyle};
use crate::credentials::Credentials;
use crate::sign::{self, SignableRequest, SignatureVersion, SigningParams};
use crate::store::StoreError;

/// Longest key OSS accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1023;

/// What a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// No bucket (DescribeRegions).
    Service,
    Bucket,
    Object(String),
}

/// A request body that can be produced again for each attempt.
#[derive(Debug, Clone)]
pub(crate) enum RequestBody {
    Empty,
    /// In memory, as one or more pieces sent back to back (`len` bytes in all); `crc`
    /// is the CRC-64 of the whole (computed once, reused by every attempt).
    Bytes {
        pieces: Vec<Bytes>,
        len: u64,
        crc: u64,
    },
    /// `len` bytes of a file from `offset`, streamed from disk; the CRC is computed while
    /// sending.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl RequestBody {
    pub(crate) fn bytes(data: Bytes) -> RequestBody {
        RequestBody::pieces(vec![data])
    }
    pub(crate) fn pieces(pieces: Vec<Bytes>) -> RequestBody {
        let mut hasher = crate::crc64::Crc64Hasher::new();
        for p in &pieces {
            hasher.update(p);
        }
        let len = pieces.iter().map(|p| p.len() as u64).sum();
        RequestBody::Bytes {
            pieces,
            len,
            crc: hasher.finish(),
        }
    }
    pub(crate) fn len(&self) -> u64 {
        match self {
            RequestBody::Empty => 0,
            RequestBody::Bytes { len, .. } => *len,
            RequestBody::File { len, .. } => *len,
        }
    }
}

impl From<crate::store::PutBody> for RequestBody {
    fn from(b: crate::store::PutBody) -> Self {
        match b {
            crate::store::PutBody::Bytes(data) => RequestBody::bytes(data),
            crate::store::PutBody::Pieces(pieces) => RequestBody::pieces(pieces),
            crate::store::PutBody::File { path, offset, len } => {
                RequestBody::File { path, offset, len }
            }
        }
    }
}

/// One OSS operation's request.
#[derive(Debug, Clone)]
pub(crate) struct OssRequest {
    /// OSS API name (`GetObject`), for metrics, logs and errors.
    pub op: &'static str,
    pub method: reqwest::Method,
    pub target: Target,
    /// Decoded; `None` = bare name (`?uploads`).
    pub query: Vec<(String, Option<String>)>,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: RequestBody,
    /// Longer response wait for operations the server may take long to answer
    /// (CompleteMultipartUpload, CopyObject).
    pub response_timeout: Option<Duration>,
}

impl OssRequest {
    pub(crate) fn new(op: &'static str, method: reqwest::Method, target: Target) -> OssRequest {
        OssRequest {
            op,
            method,
            target,
            query: Vec::new(),
            headers: Vec::new(),
            body: RequestBody::Empty,
            response_timeout: None,
        }
    }
    pub(crate) fn object(op: &'static str, method: reqwest::Method, key: &str) -> OssRequest {
        OssRequest::new(op, method, Target::Object(key.to_string()))
    }
    pub(crate) fn param(mut self, name: &str, value: impl Into<String>) -> OssRequest {
        self.query.push((name.to_string(), Some(value.into())));
        self
    }
    pub(crate) fn bare(mut self, name: &str) -> OssRequest {
        self.query.push((name.to_string(), None));
        self
    }
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> OssRequest {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }
    pub(crate) fn body(mut self, body: RequestBody) -> OssRequest {
        self.body = body;
        self
    }
    pub(crate) fn key(&self) -> Option<&str> {
        match &self.target {
            Target::Object(k) => Some(k),
            _ => None,
        }
    }
    /// `bucket/key`, `bucket` or empty, for errors and logs.
    pub(crate) fn resource(&self, bucket: &str) -> String {
        match &self.target {
            Target::Service => String::new(),
            Target::Bucket => bucket.to_string(),
            Target::Object(k) => format!("{bucket}/{k}"),
        }
    }
}

/// Checks a key before anything is sent.
pub(crate) fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidArgument("object key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::InvalidArgument(format!(
            "object key is {} bytes; OSS allows at most {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if key == "." || key == ".." {
        return Err(StoreError::InvalidArgument(format!(
            "object key {key:?} cannot be sent in an HTTP URL path (URL parsers remove \
             dot segments)"
        )));
    }
    Ok(())
}

/// URL path (no leading `/`) for a key; see the module docs for dot segments.
pub(crate) fn key_url_path(key: &str) -> String {
    sign::encode_url_path(key)
}

/// Builds request URLs for one endpoint, bucket and URL style.
#[derive(Debug, Clone)]
pub(crate) struct UrlBuilder {
    pub endpoint: ParsedEndpoint,
    pub style: UrlStyle,
    pub bucket: String,
}

impl UrlBuilder {
    pub(crate) fn new(endpoint: ParsedEndpoint, requested: UrlStyle, bucket: &str) -> UrlBuilder {
        let style = match requested {
            UrlStyle::Cname => UrlStyle::Cname,
            _ if endpoint.host_is_ip => UrlStyle::Path,
            other => other,
        };
        UrlBuilder {
            endpoint,
            style,
            bucket: bucket.to_string(),
        }
    }

    /// `scheme://authority`, for messages (never has credentials).
    pub(crate) fn endpoint_display(&self) -> String {
        format!("{}://{}", self.endpoint.scheme, self.endpoint.authority)
    }

    pub(crate) fn url(&self, target: &Target, query: &[(String, Option<String>)]) -> String {
        let ParsedEndpoint {
            scheme, authority, ..
        } = &self.endpoint;
        let bucket = &self.bucket;
        let mut url = match (target, self.style) {
            (Target::Service, _) => format!("{scheme}://{authority}/"),
            (Target::Bucket, UrlStyle::VirtualHosted) => {
                format!("{scheme}://{bucket}.{authority}/")
            }
            (Target::Bucket, UrlStyle::Path) => format!("{scheme}://{authority}/{bucket}/"),
            (Target::Bucket, UrlStyle::Cname) => format!("{scheme}://{authority}/"),
            (Target::Object(k), UrlStyle::VirtualHosted) => {
                format!("{scheme}://{bucket}.{authority}/{}", key_url_path(k))
            }
            (Target::Object(k), UrlStyle::Path) => {
                format!("{scheme}://{authority}/{bucket}/{}", key_url_path(k))
            }
            (Target::Object(k), UrlStyle::Cname) => {
                format!("{scheme}://{authority}/{}", key_url_path(k))
            }
        };
        if !query.is_empty() {
            url.push('?');
            url.push_str(&sign::encode_query_string(query));
        }
        url
    }
}

/// Headers to add so that `req` is signed with `creds` at `time`.
pub(crate) fn sign_headers(
    req: &OssRequest,
    headers: &[(String, String)],
    bucket: &str,
    region: &str,
    version: SignatureVersion,
    creds: &Credentials,
    time: SystemTime,
) -> Vec<(String, String)> {
    let signable = SignableRequest {
        method: req.method.as_str(),
        bucket: match req.target {
            Target::Service => None,
            _ => Some(bucket),
        },
        key: req.key(),
        query: &req.query,
        headers,
    };
    match version {
        SignatureVersion::V4 => {
            sign::sign_v4_header(&signable, creds, &SigningParams::oss(region, time))
        }
        SignatureVersion::V1 => sign::sign_v1_header(&signable, creds, time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_in_pieces_has_the_length_and_crc_of_the_whole() {
        let whole = Bytes::from_static(b"The quick brown fox jumps over the lazy dog");
        let pieces = vec![
            whole.slice(..4),
            Bytes::new(),
            whole.slice(4..20),
            whole.slice(20..),
        ];
        let (
            RequestBody::Bytes { len, crc, .. },
            RequestBody::Bytes {
                len: l2, crc: c2, ..
            },
        ) = (
            RequestBody::pieces(pieces),
            RequestBody::bytes(whole.clone()),
        )
        else {
            panic!("in-memory bodies");
        };
        assert_eq!((len, crc), (l2, c2));
        assert_eq!(len, whole.len() as u64);
        assert_eq!(crc, crate::crc64::crc64(&whole));
    }

    fn builder(endpoint: &str, style: UrlStyle) -> UrlBuilder {
        UrlBuilder::new(ParsedEndpoint::parse(endpoint).unwrap(), style, "bkt")
    }

    #[test]
    fn url_styles() {
        let t = Target::Object("a b/c".into());
        assert_eq!(
            builder("oss-cn-hangzhou.aliyuncs.com", UrlStyle::VirtualHosted).url(&t, &[]),
            "https://bkt.oss-cn-hangzhou.aliyuncs.com/a%20b/c"
        );
        assert_eq!(
            builder("http://h:81", UrlStyle::Path).url(&t, &[]),
            "http://h:81/bkt/a%20b/c"
        );
        assert_eq!(
            builder("https://files.example.com", UrlStyle::Cname).url(&Target::Bucket, &[]),
            "https://files.example.com/"
        );
        // An IP endpoint forces path style.
        let ip = builder("http://127.0.0.1:9000", UrlStyle::VirtualHosted);
        assert_eq!(ip.style, UrlStyle::Path);
        assert_eq!(ip.url(&Target::Bucket, &[]), "http://127.0.0.1:9000/bkt/");
        assert_eq!(
            ip.url(&Target::Service, &[("regions".into(), None)]),
            "http://127.0.0.1:9000/?regions"
        );
    }

    #[test]
    fn query_uses_percent_20_and_2b() {
        let b = builder("http://h", UrlStyle::Path);
        let q = vec![
            ("prefix".to_string(), Some("a b+c&d=e".to_string())),
            ("uploads".to_string(), None),
        ];
        assert_eq!(
            b.url(&Target::Bucket, &q),
            "http://h/bkt/?prefix=a%20b%2Bc%26d%3De&uploads"
        );
    }

    #[test]
    fn odd_keys_survive_reqwest_url_parsing() {
        let b = builder("http://127.0.0.1:1", UrlStyle::Path);
        for (key, path) in [
            ("a/../b", "/bkt/a%2F..%2Fb"),
            ("./x", "/bkt/.%2Fx"),
            ("x/.", "/bkt/x%2F."),
            ("a//b", "/bkt/a//b"),
            ("+ %#?=&~", "/bkt/%2B%20%25%23%3F%3D%26~"),
            ("中文/é", "/bkt/%E4%B8%AD%E6%96%87/%C3%A9"),
            ("..a/b..", "/bkt/..a/b.."),
        ] {
            let s = b.url(&Target::Object(key.into()), &[]);
            let u = reqwest::Url::parse(&s).unwrap();
            assert_eq!(u.path(), path, "key {key:?}");
            // Decoding the path gives back bucket + key.
            assert_eq!(
                sign::uri_decode(u.path()).unwrap(),
                format!("/bkt/{key}"),
                "key {key:?}"
            );
        }
    }

    #[test]
    fn key_validation() {
        assert!(validate_key("").is_err());
        assert!(validate_key("..").is_err());
        assert!(validate_key(".").is_err());
        assert!(validate_key("./..").is_ok());
        assert!(validate_key("a/..").is_ok());
        assert!(validate_key(&"k".repeat(1023)).is_ok());
        let err = validate_key(&"k".repeat(1024)).unwrap_err().to_string();
        assert!(err.contains("1024"));
    }
}
