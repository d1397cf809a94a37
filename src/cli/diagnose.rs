//! One-line hints for the errors users hit when first mounting.
//!
//! The client reports what happened ([`StoreError`] with OSS's code, status, request id);
//! this module adds what to do about it. Hints are keyed on the OSS error code first, then
//! on the transport failure (refused, DNS, TLS, timeout), matched on the lower-cased
//! message because the client flattens network errors into text.

use crate::store::{ServiceCode, StoreError};

/// A hint for `err`, or None when there is nothing better to say than the error itself.
pub fn hint(err: &StoreError) -> Option<&'static str> {
    match err {
        StoreError::Service(e) => service_hint(&e.code, &e.message, e.status),
        StoreError::Network { message, .. } => network_hint(message),
        StoreError::Timeout { .. } => Some(
            "OSS did not answer in time: check the network and firewall; internal endpoints (--internal) only work from ECS/VPC in the same region",
        ),
        StoreError::Credentials(_) => Some(
            "no usable credentials: set OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET, use --credentials-file or --ram-role, or --anonymous for public buckets",
        ),
        StoreError::InvalidResponse { .. } => Some(
            "the endpoint did not answer like OSS: check --endpoint (a proxy or captive portal may be in the way)",
        ),
        _ => None,
    }
}

fn service_hint(code: &ServiceCode, message: &str, status: u16) -> Option<&'static str> {
    Some(match code {
        ServiceCode::NoSuchBucket => {
            "the bucket does not exist: check its name and --region (`ossmount regions` lists regions)"
        }
        ServiceCode::AccessDenied if message.contains("specified endpoint") => {
            "the bucket lives in another region: pass that region with --region (or its endpoint with --endpoint)"
        }
        ServiceCode::AccessDenied => {
            "the credentials were accepted but lack permission on this bucket or prefix: check the RAM policy (oss:ListObjects, oss:GetObject, oss:PutObject…) and the bucket policy"
        }
        ServiceCode::InvalidAccessKeyId => {
            "OSS does not know this AccessKey id (typo, deleted or disabled key): check the id and where it was read from"
        }
        ServiceCode::SignatureDoesNotMatch => {
            "the AccessKey secret does not match the id: check the secret (stray spaces or quotes?) and --signature-version"
        }
        ServiceCode::SecurityTokenExpired | ServiceCode::InvalidSecurityToken => {
            "the STS security token is expired or does not belong to this AccessKey: get fresh temporary credentials"
        }
        ServiceCode::RequestTimeTooSkewed => {
            "the local clock is more than 15 minutes off: synchronise it (chrony, systemd-timesyncd)"
        }
        ServiceCode::InvalidBucketName => "the bucket name is not valid for OSS",
        _ if status == 301 || status == 307 => {
            "OSS redirected the request: the bucket is probably in another region; pass its --region"
        }
        _ if status >= 500 => "OSS reported a server error: retry later",
        _ => return None,
    })
}

fn network_hint(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    Some(if m.contains("connection refused") {
        "nothing accepts connections at the endpoint: check --endpoint and its port (and --disable-ssl for plain HTTP)"
    } else if m.contains("dns")
        || m.contains("lookup address")
        || m.contains("name or service not known")
        || m.contains("no address associated")
    {
        "the endpoint host name does not resolve: check --region/--endpoint; -internal endpoints only resolve inside Alibaba Cloud"
    } else if m.contains("tls") || m.contains("certificate") || m.contains("ssl") {
        "the TLS handshake failed: if the endpoint speaks plain HTTP use --disable-ssl; for a private CA pass --ca-cert FILE (or set SSL_CERT_FILE); otherwise check the system CA certificates (ca-certificates package)"
    } else if m.contains("timed out") || m.contains("timeout") {
        "connecting timed out: check the network and firewall; internal endpoints (--internal) only work from ECS/VPC in the same region"
    } else if m.contains("reset") || m.contains("closed") {
        "the connection was dropped: check proxies and firewalls between here and OSS"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: u16, code: &str, message: &str) -> StoreError {
        StoreError::from_service(status, code, message)
    }

    #[test]
    fn service_codes_have_hints() {
        for (err, needle) in [
            (
                service(404, "NoSuchBucket", "The specified bucket does not exist."),
                "--region",
            ),
            (
                service(403, "AccessDenied", "denied by policy"),
                "RAM policy",
            ),
            (
                service(
                    403,
                    "AccessDenied",
                    "The bucket you are attempting to access must be addressed using the specified endpoint.",
                ),
                "another region",
            ),
            (service(403, "InvalidAccessKeyId", "x"), "AccessKey id"),
            (service(403, "SignatureDoesNotMatch", "x"), "secret"),
            (service(403, "RequestTimeTooSkewed", "x"), "clock"),
            (service(503, "ServiceUnavailable", "x"), "retry later"),
        ] {
            let h = hint(&err).unwrap_or_default();
            assert!(h.contains(needle), "{err}: {h}");
        }
        assert_eq!(hint(&service(400, "SomethingElse", "x")), None);
    }

    #[test]
    fn network_failures_have_hints() {
        let net = |m: &str| StoreError::Network {
            endpoint: "http://127.0.0.1:1".into(),
            message: m.into(),
        };
        for (msg, needle) in [
            (
                "tcp connect error: Connection refused (os error 111)",
                "port",
            ),
            ("dns error: failed to lookup address information", "resolve"),
            ("invalid peer certificate: UnknownIssuer", "TLS"),
            ("operation timed out", "firewall"),
        ] {
            let h = hint(&net(msg)).unwrap_or_default();
            assert!(h.contains(needle), "{msg}: {h}");
        }
        let t = StoreError::Timeout {
            what: "connect".into(),
            secs: 5,
        };
        assert!(hint(&t).is_some_and(|h| h.contains("internal")));
        assert!(
            hint(&StoreError::Credentials("none".into()))
                .is_some_and(|h| h.contains("OSS_ACCESS_KEY_ID"))
        );
    }
}
