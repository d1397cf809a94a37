//! Turning OSS error replies into [`StoreError`].
//!
//! - A body `<Error><Code/><Message/><RequestId/><HostId/><EC/></Error>` becomes
//!   [`StoreError::Service`]. EC falls back to the `x-oss-ec` header and RequestId to
//!   `x-oss-request-id`.
//! - HEAD replies have no body: OSS puts the same XML, base64-encoded, in `x-oss-err`.
//!   Without it we synthesise the code from the status (404 → `NoSuchKey`, …), as the Go
//!   SDK does.
//! - Anything else (an HTML page from a proxy, truncated or malformed XML, an error body
//!   larger than [`MAX_ERROR_BODY`]) becomes [`StoreError::InvalidResponse`] carrying the
//!   status and a short, sanitised excerpt — never a panic.

use base64::Engine;
use reqwest::header::HeaderMap;

use super::xml::{self, ErrorXml};
use crate::store::{ServiceCode, ServiceError, StoreError};

/// Error bodies larger than this are not parsed (real ones are < 1 KiB).
pub(super) const MAX_ERROR_BODY: usize = 64 * 1024;

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Code OSS would have sent for a body-less error reply.
fn code_for_status(status: u16) -> &'static str {
    match status {
        304 => "NotModified",
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NoSuchKey",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        412 => "PreconditionFailed",
        416 => "InvalidRange",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        s if s >= 500 => "InternalError",
        _ => "",
    }
}

/// First 200 characters, control characters replaced, for messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What an error reply means. `truncated` says the body was cut at [`MAX_ERROR_BODY`].
/// The returned `Option<String>` is `<ServerTime>` when present (clock skew).
pub(crate) fn error_from_reply(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    truncated: bool,
    operation: &str,
    resource: &str,
) -> (StoreError, Option<String>) {
    let mut parsed: Option<ErrorXml> = None;
    if truncated {
        return (
            StoreError::InvalidResponse {
                operation: operation.to_string(),
                message: format!(
                    "HTTP {status} with an error body larger than {} KiB",
                    MAX_ERROR_BODY / 1024
                ),
            },
            None,
        );
    }
    if !body.iter().all(u8::is_ascii_whitespace) {
        match xml::parse::<ErrorXml>(body) {
            Ok(e) if !e.code.is_empty() => parsed = Some(e),
            _ => {
                let ctype = header_str(headers, "content-type").unwrap_or("no content type");
                return (
                    StoreError::InvalidResponse {
                        operation: operation.to_string(),
                        message: format!(
                            "HTTP {status} with a body that is not an OSS error ({ctype}): {}",
                            excerpt(body)
                        ),
                    },
                    None,
                );
            }
        }
    } else if let Some(encoded) = header_str(headers, "x-oss-err") {
        parsed = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|xml_bytes| xml::parse::<ErrorXml>(&xml_bytes).ok())
            .filter(|e| !e.code.is_empty());
    }
    let server_time = parsed.as_ref().and_then(|p| p.server_time.clone());
    let p = parsed.unwrap_or_default();
    let or_header = |v: String, h: &str| {
        if v.is_empty() {
            header_str(headers, h).unwrap_or("").to_string()
        } else {
            v
        }
    };
    let code = if p.code.is_empty() {
        ServiceCode::parse(code_for_status(status))
    } else {
        ServiceCode::from(p.code)
    };
    let err = ServiceError {
        status,
        code,
        message: p.message,
        request_id: or_header(p.request_id, "x-oss-request-id"),
        host_id: p.host_id,
        ec: or_header(p.ec, "x-oss-ec"),
        operation: operation.to_string(),
        resource: resource.to_string(),
    };
    (StoreError::Service(Box::new(err)), server_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn body_error_displays_like_the_sdks() {
        let body = b"<Error><Code>AccessDenied</Code><Message>You have no right to access this object.</Message><RequestId>RID1</RequestId><HostId>h</HostId><EC>0003-00000001</EC></Error>";
        let (e, _) = error_from_reply(403, &HeaderMap::new(), body, false, "GetObject", "bkt/k");
        assert_eq!(
            e.to_string(),
            "OSS error: operation GetObject, StatusCode=403, ErrorCode=AccessDenied, \
             ErrorMessage=\"You have no right to access this object.\", RequestId=RID1, \
             EC=0003-00000001, Resource=bkt/k"
        );
    }

    #[test]
    fn falls_back_to_headers_for_ids() {
        let body = b"<Error><Code>InternalError</Code><Message>m</Message></Error>";
        let h = headers(&[("x-oss-request-id", "RIDH"), ("x-oss-ec", "0000-1")]);
        let (e, _) = error_from_reply(500, &h, body, false, "PutObject", "");
        let s = e.service().unwrap();
        assert_eq!((s.request_id.as_str(), s.ec.as_str()), ("RIDH", "0000-1"));
    }

    #[test]
    fn head_error_from_x_oss_err_header() {
        let xml = "<Error><Code>AccessDenied</Code><Message>denied</Message><RequestId>R</RequestId><EC>0003-1</EC></Error>";
        let enc = base64::engine::general_purpose::STANDARD.encode(xml);
        let (e, _) = error_from_reply(
            403,
            &headers(&[("x-oss-err", &enc)]),
            b"",
            false,
            "HeadObject",
            "b/k",
        );
        let s = e.service().unwrap();
        assert_eq!(
            (s.code.as_str(), s.message.as_str(), s.ec.as_str()),
            ("AccessDenied", "denied", "0003-1")
        );
    }

    #[test]
    fn head_404_without_anything_is_not_found() {
        let (e, _) = error_from_reply(
            404,
            &headers(&[("x-oss-request-id", "R")]),
            b"",
            false,
            "HeadObject",
            "b/k",
        );
        assert!(e.is_not_found());
        assert_eq!(e.code(), Some("NoSuchKey"));
        let (e, _) = error_from_reply(412, &HeaderMap::new(), b"", false, "HeadObject", "b/k");
        assert!(e.is_precondition_failed());
        // A garbage x-oss-err header falls back to the status.
        let (e, _) = error_from_reply(
            404,
            &headers(&[("x-oss-err", "!!!")]),
            b"",
            false,
            "HeadObject",
            "",
        );
        assert_eq!(e.code(), Some("NoSuchKey"));
    }

    #[test]
    fn html_and_malformed_and_huge_are_invalid_response() {
        let (e, _) = error_from_reply(
            502,
            &headers(&[("content-type", "text/html")]),
            b"<html><body><h1>502 Bad Gateway</h1>\n</body></html>",
            false,
            "GetObject",
            "",
        );
        let msg = e.to_string();
        assert!(matches!(e, StoreError::InvalidResponse { .. }));
        assert!(
            msg.contains("502") && msg.contains("text/html") && msg.contains("Bad Gateway"),
            "{msg}"
        );
        let (e, _) = error_from_reply(
            400,
            &HeaderMap::new(),
            b"<Error><Code>X",
            false,
            "PutObject",
            "",
        );
        assert!(matches!(e, StoreError::InvalidResponse { .. }));
        let (e, _) = error_from_reply(500, &HeaderMap::new(), b"<Error>", true, "PutObject", "");
        assert!(e.to_string().contains("64 KiB"));
    }

    #[test]
    fn skew_reply_carries_server_time() {
        let body = b"<Error><Code>RequestTimeTooSkewed</Code><Message>m</Message><RequestTime>2020-01-01T00:00:00.000Z</RequestTime><ServerTime>2020-01-01T01:00:00.000Z</ServerTime></Error>";
        let (e, t) = error_from_reply(403, &HeaderMap::new(), body, false, "GetObject", "");
        assert_eq!(e.code(), Some("RequestTimeTooSkewed"));
        assert_eq!(t.as_deref(), Some("2020-01-01T01:00:00.000Z"));
    }
}
