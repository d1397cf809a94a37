//! V4 signatures (`OSS4-HMAC-SHA256`), header and presigned-query forms
//! (docs/PROTOCOL.md §1.1, §1.2).
//!
//! The canonical request is six lines: method, canonical URI (`/bucket/key`, encoded,
//! slashes kept), canonical query (every parameter, encoded, sorted by encoded name),
//! canonical headers (`x-oss-*`, `content-type`, `content-md5` and the additional
//! headers, lower-case, trimmed, sorted; each line ends in `\n`), the additional-header
//! list (`a;b`) and the payload hash (`UNSIGNED-PAYLOAD`). The signing key is derived
//! from the secret, date, region and product, so a leaked signature is scoped to one day
//! and one region.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{
    SignError, SignableRequest, SigningParams, format_http_date, format_x_oss_date, unix_seconds,
    uri_encode,
};
use crate::credentials::Credentials;

type HmacSha256 = Hmac<Sha256>;

/// The algorithm name, first word of the Authorization header and of the string to sign.
pub const V4_ALGORITHM: &str = "OSS4-HMAC-SHA256";
/// The payload hash OSS clients send: the body is not hashed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Longest presigned URL lifetime accepted (7 days), as in the Go SDK.
pub const MAX_PRESIGN_EXPIRES: Duration = Duration::from_secs(7 * 24 * 3600);

const TERMINATOR: &str = "aliyun_v4_request";

/// Whether a lower-case header name is signed without being listed as additional.
fn is_default_signed(lower: &str) -> bool {
    lower.starts_with("x-oss-") || lower == "content-type" || lower == "content-md5"
}

/// The additional-header list as it is signed: lower-cased, without names signed by
/// default, without names absent or empty in the request, sorted and de-duplicated.
pub fn v4_additional_headers(req: &SignableRequest<'_>, wanted: &[String]) -> Vec<String> {
    let mut out: Vec<String> = wanted
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty() && !is_default_signed(h))
        .filter(|h| req.header_values(h).any(|v| !v.is_empty()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `date/region/product/aliyun_v4_request`, `date` being `YYYYMMDD`.
pub fn v4_scope(date: &str, region: &str, product: &str) -> String {
    format!("{date}/{region}/{product}/{TERMINATOR}")
}

fn canonical_uri(req: &SignableRequest<'_>) -> String {
    let mut uri = String::from("/");
    if let Some(bucket) = req.bucket {
        uri.push_str(bucket);
        uri.push('/');
    }
    if let Some(key) = req.key {
        uri.push_str(key);
    }
    uri_encode(&uri, true)
}

fn canonical_query(query: &[(String, Option<String>)]) -> String {
    let mut items: Vec<(String, String)> = query
        .iter()
        .map(|(n, v)| {
            (
                uri_encode(n, false),
                uri_encode(v.as_deref().unwrap_or(""), false),
            )
        })
        .collect();
    items.sort();
    let mut out = String::new();
    for (name, value) in items {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&name);
        if !value.is_empty() {
            out.push('=');
            out.push_str(&value);
        }
    }
    out
}

fn canonical_headers(req: &SignableRequest<'_>, additional: &[String]) -> String {
    // Stable sort by name keeps repeated headers in sending order before joining.
    let mut signed: Vec<(String, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim()))
        .filter(|(n, _)| is_default_signed(n) || additional.iter().any(|a| a == n))
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    let mut i = 0;
    while i < signed.len() {
        let name = &signed[i].0;
        out.push_str(name);
        out.push(':');
        let mut first = true;
        while i < signed.len() && signed[i].0 == *name {
            if !first {
                out.push(',');
            }
            out.push_str(signed[i].1);
            first = false;
            i += 1;
        }
        out.push('\n');
    }
    out
}

/// The V4 canonical request of `req` exactly as it is (headers such as `x-oss-date`
/// must already be present). `additional_headers` is filtered with
/// [`v4_additional_headers`]. The payload hash is the `x-oss-content-sha256` header, or
/// `UNSIGNED-PAYLOAD` when absent (presigned URLs).
pub fn v4_canonical_request(req: &SignableRequest<'_>, additional_headers: &[String]) -> String {
    let additional = v4_additional_headers(req, additional_headers);
    let payload = req
        .header("x-oss-content-sha256")
        .map(str::trim)
        .unwrap_or(UNSIGNED_PAYLOAD);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        canonical_uri(req),
        canonical_query(req.query),
        canonical_headers(req, &additional),
        additional.join(";"),
        payload
    )
}

/// `OSS4-HMAC-SHA256 \n x-oss-date \n scope \n hex(sha256(canonical request))`.
pub fn v4_string_to_sign(x_oss_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex::encode(Sha256::digest(canonical_request.as_bytes()));
    format!("{V4_ALGORITHM}\n{x_oss_date}\n{scope}\n{hash}")
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 accepts any key length"),
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The scoped signing key: HMAC chain over `"aliyun_v4"+secret`, date (`YYYYMMDD`),
/// region, product and `aliyun_v4_request`. Callers may cache it per (date, region).
pub fn v4_signing_key(secret: &str, date: &str, region: &str, product: &str) -> [u8; 32] {
    let mut seed = Vec::with_capacity(9 + secret.len());
    seed.extend_from_slice(b"aliyun_v4");
    seed.extend_from_slice(secret.as_bytes());
    let k = hmac_sha256(&seed, date.as_bytes());
    let k = hmac_sha256(&k, region.as_bytes());
    let k = hmac_sha256(&k, product.as_bytes());
    hmac_sha256(&k, TERMINATOR.as_bytes())
}

/// Lower-hex HMAC-SHA256 of the string to sign under the signing key.
pub fn v4_signature(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac_sha256(signing_key, string_to_sign.as_bytes()))
}

/// `OSS4-HMAC-SHA256 Credential=AK/scope[,AdditionalHeaders=a;b],Signature=hex`.
pub fn v4_authorization(
    access_key_id: &str,
    scope: &str,
    additional: &[String],
    signature: &str,
) -> String {
    let mut out = format!("{V4_ALGORITHM} Credential={access_key_id}/{scope}");
    if !additional.is_empty() {
        out.push_str(",AdditionalHeaders=");
        out.push_str(&additional.join(";"));
    }
    out.push_str(",Signature=");
    out.push_str(signature);
    out
}

/// Signs `req` for header authentication. Returns the headers to set (replacing any
/// of the same name): `date`, `x-oss-date`, `x-oss-content-sha256` (the request's own
/// value if it has one, else `UNSIGNED-PAYLOAD`), `x-oss-security-token` (STS only)
/// and `authorization`, in that order.
pub fn sign_v4_header(
    req: &SignableRequest<'_>,
    creds: &Credentials,
    p: &SigningParams<'_>,
) -> Vec<(String, String)> {
    let x_oss_date = format_x_oss_date(p.time);
    let date = &x_oss_date[..8];
    let payload = req
        .header("x-oss-content-sha256")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| UNSIGNED_PAYLOAD.to_string());

    let mut added: Vec<(String, String)> = vec![
        ("date".to_string(), format_http_date(p.time)),
        ("x-oss-date".to_string(), x_oss_date.clone()),
        ("x-oss-content-sha256".to_string(), payload),
    ];
    // The request as it will be sent: its own headers, minus those we set, plus ours.
    let headers = super::merge_signer_headers(req.headers, &mut added, creds);
    let signed = SignableRequest {
        headers: &headers,
        ..*req
    };

    let additional = v4_additional_headers(&signed, p.additional_headers);
    let scope = v4_scope(date, p.region, p.product);
    let canonical = v4_canonical_request(&signed, &additional);
    let sts = v4_string_to_sign(&x_oss_date, &scope, &canonical);
    let key = v4_signing_key(creds.access_key_secret.expose(), date, p.region, p.product);
    let signature = v4_signature(&key, &sts);
    added.push((
        "authorization".to_string(),
        v4_authorization(&creds.access_key_id, &scope, &additional, &signature),
    ));
    added
}

/// Presigns `req` (V4 query authentication) valid for `expires` after `p.time`.
/// Returns the query parameters to append after the request's own, in order:
/// `x-oss-signature-version`, `x-oss-date`, `x-oss-expires`, `x-oss-credential`,
/// `x-oss-security-token` (STS), `x-oss-additional-headers` (if any), and last
/// `x-oss-signature`. Values are decoded; encode them with [`super::uri_encode`].
/// Headers present in `req` that are signed (content-type, content-md5, x-oss-*,
/// additional) must be sent by whoever uses the URL.
pub fn presign_v4(
    req: &SignableRequest<'_>,
    creds: &Credentials,
    p: &SigningParams<'_>,
    expires: Duration,
) -> Result<Vec<(String, String)>, SignError> {
    let expires_secs = expires.as_secs();
    if expires > MAX_PRESIGN_EXPIRES {
        return Err(SignError::ExpiresTooLong(expires_secs));
    }
    if expires_secs == 0 {
        return Err(SignError::ExpiresZero);
    }
    unix_seconds(p.time)?;
    let x_oss_date = format_x_oss_date(p.time);
    let date = &x_oss_date[..8];
    let scope = v4_scope(date, p.region, p.product);
    let additional = v4_additional_headers(req, p.additional_headers);

    let mut added: Vec<(String, String)> = vec![
        ("x-oss-signature-version".into(), V4_ALGORITHM.into()),
        ("x-oss-date".into(), x_oss_date.clone()),
        ("x-oss-expires".into(), expires_secs.to_string()),
        (
            "x-oss-credential".into(),
            format!("{}/{scope}", creds.access_key_id),
        ),
    ];
    if let Some(token) = &creds.security_token {
        added.push(("x-oss-security-token".into(), token.expose().to_string()));
    }
    if !additional.is_empty() {
        added.push(("x-oss-additional-headers".into(), additional.join(";")));
    }

    // The request's own parameters, minus any stale auth parameters, plus ours.
    let mut query: Vec<(String, Option<String>)> = req
        .query
        .iter()
        .filter(|(n, _)| {
            n != "x-oss-signature" && !added.iter().any(|(a, _)| a.as_str() == n.as_str())
        })
        .cloned()
        .collect();
    query.extend(added.iter().map(|(n, v)| (n.clone(), Some(v.clone()))));
    let signed = SignableRequest {
        query: &query,
        ..*req
    };

    let canonical = v4_canonical_request(&signed, &additional);
    let sts = v4_string_to_sign(&x_oss_date, &scope, &canonical);
    let key = v4_signing_key(creds.access_key_secret.expose(), date, p.region, p.product);
    added.push(("x-oss-signature".into(), v4_signature(&key, &sts)));
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::from_unix_seconds;

    fn strings(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn canonical_request_shape() {
        let headers = strings(&[
            ("X-Oss-Meta-A", " v1 "),
            ("x-oss-meta-a", "v2"),
            ("Content-Type", "text/plain"),
            ("Range", "bytes=0-1"),
            ("x-oss-date", "20231216T162057Z"),
        ]);
        let query = vec![
            ("prefix".to_string(), Some("a b".to_string())),
            ("acl".to_string(), None),
        ];
        let req = SignableRequest {
            method: "get",
            bucket: Some("b"),
            key: Some("dir/中 文"),
            query: &query,
            headers: &headers,
        };
        let cr = v4_canonical_request(&req, &["range".to_string()]);
        assert_eq!(
            cr,
            "GET\n/b/dir/%E4%B8%AD%20%E6%96%87\nacl&prefix=a%20b\n\
             content-type:text/plain\nrange:bytes=0-1\nx-oss-date:20231216T162057Z\n\
             x-oss-meta-a:v1,v2\n\nrange\nUNSIGNED-PAYLOAD"
        );
    }

    #[test]
    fn service_and_bucket_level_uris() {
        let req = SignableRequest {
            method: "GET",
            bucket: None,
            key: None,
            query: &[],
            headers: &[],
        };
        assert_eq!(canonical_uri(&req), "/");
        let req = SignableRequest {
            bucket: Some("bkt"),
            ..req
        };
        assert_eq!(canonical_uri(&req), "/bkt/");
    }

    #[test]
    fn header_signing_replaces_stale_auth_headers() {
        let headers = strings(&[("X-OSS-Date", "19700101T000000Z"), ("x-oss-meta-k", "v")]);
        let req = SignableRequest {
            method: "PUT",
            bucket: Some("b"),
            key: Some("k"),
            query: &[],
            headers: &headers,
        };
        let mut creds = Credentials::new("ak", "sk");
        creds.security_token = Some(crate::credentials::Secret::new("tok"));
        let t = from_unix_seconds(1_702_743_657);
        let out = sign_v4_header(&req, &creds, &SigningParams::oss("cn-hangzhou", t));
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "date",
                "x-oss-date",
                "x-oss-content-sha256",
                "x-oss-security-token",
                "authorization"
            ]
        );
        assert_eq!(out[1].1, "20231216T162057Z");
        let auth = &out[4].1;
        assert!(auth.starts_with(
            "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,Signature="
        ));
        // Signing the request as it will be sent gives the same signature.
        let mut sent = strings(&[("x-oss-meta-k", "v")]);
        sent.extend(out[..4].iter().cloned());
        let sent_req = SignableRequest {
            headers: &sent,
            ..req
        };
        let cr = v4_canonical_request(&sent_req, &[]);
        let scope = v4_scope("20231216", "cn-hangzhou", "oss");
        let sig = v4_signature(
            &v4_signing_key("sk", "20231216", "cn-hangzhou", "oss"),
            &v4_string_to_sign("20231216T162057Z", &scope, &cr),
        );
        assert!(auth.ends_with(&format!(",Signature={sig}")));
        // No secret in the output.
        assert!(!format!("{out:?}").contains("sk,"));
    }

    #[test]
    fn presign_limits() {
        let req = SignableRequest {
            method: "GET",
            bucket: Some("b"),
            key: Some("k"),
            query: &[],
            headers: &[],
        };
        let creds = Credentials::new("ak", "sk");
        let p = SigningParams::oss("cn-hangzhou", from_unix_seconds(1_700_000_000));
        assert_eq!(
            presign_v4(&req, &creds, &p, Duration::from_secs(604_801)),
            Err(SignError::ExpiresTooLong(604_801))
        );
        assert_eq!(
            presign_v4(&req, &creds, &p, Duration::ZERO),
            Err(SignError::ExpiresZero)
        );
        let ok = presign_v4(&req, &creds, &p, MAX_PRESIGN_EXPIRES).unwrap_or_default();
        assert_eq!(ok.len(), 5);
        assert_eq!(ok[2], ("x-oss-expires".into(), "604800".into()));
        assert_eq!(ok[4].0, "x-oss-signature");
    }
}
