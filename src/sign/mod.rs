//! Request signing for OSS: V4 (`OSS4-HMAC-SHA256`) and V1 (`OSS AKID:Sig`), header and
//! presigned-query forms, plus the building blocks a server-side verifier needs.
//!
//! Design:
//! - Everything here is pure: a [`SignableRequest`] borrows the method, the bucket, the
//!   *raw* key, the *decoded* query parameters and the headers as they will be sent, and
//!   the functions return what to add (headers or query parameters). No HTTP types, no
//!   I/O, so the client (which produces signatures) and the emulator (which checks them)
//!   share the exact same canonicalisation code.
//! - The canonical resource always contains the bucket, whatever the URL style (virtual
//!   host, path style, CNAME), and is always built from the raw key, never from a URL.
//!
//! Pitfalls (see docs/PROTOCOL.md §1 and §7):
//! - URL libraries normalise `.`/`..` path segments (WHATWG ones even `%2E%2E`) and
//!   form-encode queries (`+` for space). Use [`encode_url_path`] for the URL path and
//!   [`encode_query_string`] / [`uri_encode`] (space → `%20`, `+` → `%2B`) for the
//!   query, so the URL the server sees matches what was signed.
//! - Header values are trimmed when canonicalised (Go does, Python does not): never
//!   send values with surrounding whitespace.
//! - Secrets never reach logs, errors or `Debug`: only [`crate::credentials::Secret::expose`]
//!   reads them, and only inside the HMAC computations.

mod v1;
mod v4;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDateTime, Utc};

pub use v1::{
    V1_SUB_RESOURCES, presign_v1, sign_v1_header, v1_canonicalized_resource, v1_signature,
    v1_string_to_sign,
};
pub use v4::{
    MAX_PRESIGN_EXPIRES, UNSIGNED_PAYLOAD, V4_ALGORITHM, presign_v4, sign_v4_header,
    v4_additional_headers, v4_authorization, v4_canonical_request, v4_scope, v4_signature,
    v4_signing_key, v4_string_to_sign,
};

/// Which signature algorithm to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureVersion {
    /// `OSS AKID:Signature` (HMAC-SHA1). Legacy; kept for old deployments.
    V1,
    /// `OSS4-HMAC-SHA256` (HMAC-SHA256 with a scoped signing key). The default.
    #[default]
    V4,
}

impl FromStr for SignatureVersion {
    type Err = SignError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "1" | "v1" => Ok(SignatureVersion::V1),
            "4" | "v4" => Ok(SignatureVersion::V4),
            _ => Err(SignError::UnknownVersion(s.to_string())),
        }
    }
}

impl fmt::Display for SignatureVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureVersion::V1 => "v1",
            SignatureVersion::V4 => "v4",
        })
    }
}

/// Errors from signing and from parsing signed requests. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("unknown signature version {0:?}: use \"v1\" or \"v4\"")]
    UnknownVersion(String),
    #[error("presigned URL expiry of {0} s exceeds the 7-day maximum (604800 s)")]
    ExpiresTooLong(u64),
    #[error("presigned URL expiry must be at least 1 second")]
    ExpiresZero,
    #[error("signing time is before 1970-01-01")]
    TimeBeforeEpoch,
}

/// One request, as it will be sent, seen by the signer.
///
/// `query` holds the decoded parameters in the order they appear in the URL; a value of
/// `None` is a bare name (`?acl`), and `Some("")` is treated the same when
/// canonicalising. `headers` may use any case; repeated names are allowed.
///
/// Every header that will be sent and is signed (`content-type`, `content-md5`,
/// `x-oss-*`, additional headers) must be in `headers` when signing, or the server's
/// signature will differ. `Debug` redacts credentials (Authorization, tokens,
/// signatures).
#[derive(Clone, Copy)]
pub struct SignableRequest<'a> {
    pub method: &'a str,
    /// Always part of the canonical resource, whatever the URL style.
    pub bucket: Option<&'a str>,
    /// The raw object key, never URL-encoded.
    pub key: Option<&'a str>,
    pub query: &'a [(String, Option<String>)],
    pub headers: &'a [(String, String)],
}

/// Header and query names whose values are credentials or signatures.
const SENSITIVE_NAMES: &[&str] = &[
    "authorization",
    "x-oss-security-token",
    "security-token",
    "x-oss-signature",
    "signature",
    "x-oss-credential",
];

fn redacted<'v>(name: &str, value: &'v str) -> &'v str {
    if SENSITIVE_NAMES.iter().any(|s| name.eq_ignore_ascii_case(s)) {
        "<redacted>"
    } else {
        value
    }
}

impl fmt::Debug for SignableRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), redacted(n, v)))
            .collect();
        let query: Vec<(&str, Option<&str>)> = self
            .query
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref().map(|v| redacted(n, v))))
            .collect();
        f.debug_struct("SignableRequest")
            .field("method", &self.method)
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field("query", &query)
            .field("headers", &headers)
            .finish()
    }
}

impl<'a> SignableRequest<'a> {
    /// All values of a header (case-insensitive name), in order.
    pub fn header_values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_values(name).next()
    }

    /// The first value of a query parameter (exact name); bare names give `Some("")`.
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

/// Inputs of a V4 signature besides the request and the credentials.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    /// Bare region id (`cn-hangzhou`, not `oss-cn-hangzhou`); a cloud box id (`cb-…`)
    /// for cloud box.
    pub region: &'a str,
    /// `oss`, or `oss-cloudbox` for cloud box.
    pub product: &'a str,
    /// Signing time (already corrected for clock skew by the caller).
    pub time: SystemTime,
    /// Extra headers to sign (any case). Names signed anyway (`x-oss-*`, `content-type`,
    /// `content-md5`) and names absent from the request are dropped.
    pub additional_headers: &'a [String],
}

impl<'a> SigningParams<'a> {
    /// Plain OSS in `region`, no additional headers.
    pub fn oss(region: &'a str, time: SystemTime) -> Self {
        SigningParams {
            region,
            product: "oss",
            time,
            additional_headers: &[],
        }
    }
}

/// Product name for ordinary OSS.
pub const PRODUCT_OSS: &str = "oss";
/// Product name for OSS on cloud box (the region is then the box id).
pub const PRODUCT_CLOUDBOX: &str = "oss-cloudbox";

/// Percent-encodes every UTF-8 byte except `A-Z a-z 0-9 - . _ ~` (and `/` when
/// `keep_slash`), with upper-case hex. This is the encoding of the V4 canonical URI and
/// query, and the right encoding for query names and values in URLs (space → `%20`,
/// `+` → `%2B`).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    for &b in s.as_bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xF)] as char);
        }
    }
    out
}

/// Encodes an object key for a URL path (no leading `/`): like the canonical URI
/// (slashes kept), except around `.` and `..` segments.
///
/// URL libraries remove dot segments (RFC 3986 §5.2.4), and WHATWG parsers (the `url`
/// crate, hence reqwest) also treat `%2E`, `.%2E`, `%2E%2E` as dots, so percent-encoding
/// the dots is not enough: `a/%2E%2E/b` still becomes `b`. Instead, a `/` next to a
/// `.` or `..` segment is written as `%2F`, which joins the dots to a neighbouring
/// segment (`a/../b` → `a%2F..%2Fb`), and no segment of the URL is dot-only any more.
/// OSS percent-decodes the whole path, `%2F` included, so it sees the raw key; the
/// signature uses the raw key anyway.
///
/// Keys that are exactly `.` or `..` have no neighbour to join: they come out as
/// `%2E`/`%2E%2E`, which survives `http::Uri` (hyper) but not a WHATWG parser; see
/// [`url_path_survives_normalisation`].
pub fn encode_url_path(key: &str) -> String {
    let segments: Vec<&str> = key.split('/').collect();
    let is_dots = |s: &str| s == "." || s == "..";
    let mut out = String::with_capacity(key.len() + 8);
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            if is_dots(segments[i - 1]) || is_dots(segment) {
                out.push_str("%2F");
            } else {
                out.push('/');
            }
        }
        if segments.len() == 1 && is_dots(segment) {
            out.push_str(if *segment == "." { "%2E" } else { "%2E%2E" });
        } else {
            out.push_str(&uri_encode(segment, false));
        }
    }
    out
}

/// Whether [`encode_url_path`]`(key)` keeps its meaning through any URL parser,
/// including WHATWG ones that drop `.`/`..` segments. False only for the keys `.` and
/// `..`, which need a client that sends the path verbatim.
pub fn url_path_survives_normalisation(key: &str) -> bool {
    key != "." && key != ".."
}

/// Decodes `%XX` escapes (as sent in a URL path or query) into raw bytes, then UTF-8.
/// `+` is left alone: OSS URLs are never form-encoded. Returns `None` for malformed
/// escapes or non-UTF-8 results. Used by verifiers to recover raw keys and parameters.
pub fn uri_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits a raw URL query string (`a=1&b&c=%20`) into decoded `(name, value)` pairs,
/// `None` for bare names. Empty items are skipped. Returns `None` on malformed escapes.
pub fn parse_query_string(raw: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for item in raw.split('&').filter(|s| !s.is_empty()) {
        match item.split_once('=') {
            Some((n, v)) => out.push((uri_decode(n)?, Some(uri_decode(v)?))),
            None => out.push((uri_decode(item)?, None)),
        }
    }
    Some(out)
}

/// Encodes decoded query parameters for a URL (`%20`/`%2B`, never form encoding); bare
/// names are written without `=`. No leading `?`.
pub fn encode_query_string(query: &[(String, Option<String>)]) -> String {
    let mut out = String::new();
    for (name, value) in query {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&uri_encode(name, false));
        if let Some(v) = value {
            out.push('=');
            out.push_str(&uri_encode(v, false));
        }
    }
    out
}

const X_OSS_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC, the V4 `x-oss-date` form.
pub fn format_x_oss_date(t: SystemTime) -> String {
    DateTime::<Utc>::from(t)
        .format(X_OSS_DATE_FORMAT)
        .to_string()
}

/// Parses the V4 `x-oss-date` form (`20231216T162057Z`). Strict: exactly 16 chars.
pub fn parse_x_oss_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(s, X_OSS_DATE_FORMAT).ok()?;
    Some(SystemTime::from(naive.and_utc()))
}

/// RFC 1123 GMT date (`Wed, 28 Dec 2022 10:27:41 GMT`), the HTTP `Date` / V1 form.
pub fn format_http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Parses an RFC 1123 / HTTP date.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

/// The headers a request is signed and sent with: `added` (plus `x-oss-security-token`
/// for STS credentials, appended to `added`) replace any same-named request header.
pub(crate) fn merge_signer_headers(
    request_headers: &[(String, String)],
    added: &mut Vec<(String, String)>,
    creds: &crate::credentials::Credentials,
) -> Vec<(String, String)> {
    if let Some(token) = &creds.security_token {
        added.push((
            "x-oss-security-token".to_string(),
            token.expose().to_string(),
        ));
    }
    let mut headers: Vec<(String, String)> = request_headers
        .iter()
        .filter(|(n, _)| !added.iter().any(|(a, _)| n.eq_ignore_ascii_case(a)))
        .cloned()
        .collect();
    headers.extend(added.iter().cloned());
    headers
}

/// Seconds since the Unix epoch (an error before it).
pub fn unix_seconds(t: SystemTime) -> Result<u64, SignError> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| SignError::TimeBeforeEpoch)
}

/// `UNIX_EPOCH + secs`.
pub fn from_unix_seconds(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encode_keeps_unreserved_and_upper_hex() {
        assert_eq!(uri_encode("aZ09-._~", false), "aZ09-._~");
        assert_eq!(uri_encode("a b+c/d", false), "a%20b%2Bc%2Fd");
        assert_eq!(uri_encode("a b+c/d", true), "a%20b%2Bc/d");
        assert_eq!(uri_encode("中", false), "%E4%B8%AD");
        assert_eq!(uri_encode("%?#&=", false), "%25%3F%23%26%3D");
    }

    #[test]
    fn url_path_protects_dot_segments() {
        assert_eq!(encode_url_path("a/../b"), "a%2F..%2Fb");
        assert_eq!(encode_url_path("./x"), ".%2Fx");
        assert_eq!(encode_url_path("x/."), "x%2F.");
        assert_eq!(encode_url_path("a/./../b/c"), "a%2F.%2F..%2Fb/c");
        assert_eq!(encode_url_path("a/.../b"), "a/.../b");
        assert_eq!(encode_url_path("a/.b/c."), "a/.b/c.");
        assert_eq!(encode_url_path("a//b/"), "a//b/");
        assert_eq!(encode_url_path("sp ace+plus"), "sp%20ace%2Bplus");
        assert_eq!(encode_url_path(".."), "%2E%2E");
        assert_eq!(encode_url_path("."), "%2E");
    }

    /// The encoded path goes through reqwest's (WHATWG) URL parser unchanged and decodes
    /// back to the key, for every key but `.` and `..`.
    #[test]
    fn url_path_survives_whatwg_parsing() {
        let keys = [
            "a/../b",
            "./x",
            "x/.",
            "../up",
            "a/./../b/c",
            "..",
            ".",
            "a/%2E%2E/b",
            "dir\\..\\x",
            "a//../b",
            "/abs/../x",
            "中/../😀",
            "q?x#y",
            "a/.../b",
        ];
        for key in keys {
            let encoded = encode_url_path(key);
            let url = format!("http://bucket.example.com/{encoded}");
            let parsed = match reqwest::Url::parse(&url) {
                Ok(u) => u,
                Err(e) => panic!("{key}: {e}"),
            };
            let path = parsed.path().strip_prefix('/').unwrap_or_default();
            let survives = path == encoded;
            assert_eq!(
                survives,
                url_path_survives_normalisation(key),
                "{key}: {path}"
            );
            if survives {
                assert_eq!(uri_decode(path).as_deref(), Some(key));
            }
        }
    }

    #[test]
    fn decode_round_trips_encode() {
        for s in ["a b+c", "中文/😀", "%?#&=~", "a/../b"] {
            assert_eq!(uri_decode(&uri_encode(s, false)).as_deref(), Some(s));
            assert_eq!(uri_decode(&encode_url_path(s)).as_deref(), Some(s));
        }
        assert_eq!(uri_decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(uri_decode("%4"), None);
        assert_eq!(uri_decode("%zz"), None);
        assert_eq!(uri_decode("%FF"), None);
    }

    #[test]
    fn query_string_round_trip() {
        let q = vec![
            ("acl".to_string(), None),
            ("prefix".to_string(), Some("a b+c".to_string())),
            ("empty".to_string(), Some(String::new())),
        ];
        let s = encode_query_string(&q);
        assert_eq!(s, "acl&prefix=a%20b%2Bc&empty=");
        assert_eq!(parse_query_string(&s), Some(q));
    }

    #[test]
    fn x_oss_date_round_trip() {
        let t = from_unix_seconds(1_702_743_657);
        assert_eq!(format_x_oss_date(t), "20231216T162057Z");
        assert_eq!(parse_x_oss_date("20231216T162057Z"), Some(t));
        assert_eq!(parse_x_oss_date("2023-12-16T16:20:57Z"), None);
        assert_eq!(parse_x_oss_date("20231216T162057"), None);
        assert_eq!(format_http_date(t), "Sat, 16 Dec 2023 16:20:57 GMT");
        assert_eq!(parse_http_date("Sat, 16 Dec 2023 16:20:57 GMT"), Some(t));
    }

    #[test]
    fn debug_redacts_credentials() {
        let headers = vec![
            ("Authorization".to_string(), "OSS ak:SIGVALUE".to_string()),
            ("x-oss-security-token".to_string(), "TOKENVALUE".to_string()),
            ("x-oss-meta-a".to_string(), "visible".to_string()),
        ];
        let query = vec![
            ("security-token".to_string(), Some("TOKENVALUE".to_string())),
            ("x-oss-signature".to_string(), Some("SIGVALUE".to_string())),
            ("prefix".to_string(), Some("shown".to_string())),
        ];
        let req = SignableRequest {
            method: "GET",
            bucket: Some("b"),
            key: Some("k"),
            query: &query,
            headers: &headers,
        };
        let dbg = format!("{req:?}");
        assert!(
            !dbg.contains("TOKENVALUE") && !dbg.contains("SIGVALUE"),
            "{dbg}"
        );
        assert!(dbg.contains("visible") && dbg.contains("shown"), "{dbg}");
    }

    #[test]
    fn signature_version_parses() {
        assert_eq!("v4".parse::<SignatureVersion>(), Ok(SignatureVersion::V4));
        assert_eq!("4".parse::<SignatureVersion>(), Ok(SignatureVersion::V4));
        assert_eq!("V1".parse::<SignatureVersion>(), Ok(SignatureVersion::V1));
        assert_eq!("1".parse::<SignatureVersion>(), Ok(SignatureVersion::V1));
        assert!("v2".parse::<SignatureVersion>().is_err());
    }
}
