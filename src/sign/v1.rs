//! V1 signatures (`OSS AKID:Signature`, HMAC-SHA1, base64), header and presigned-query
//! forms (docs/PROTOCOL.md §1.3, §1.4).
//!
//! The string to sign is `VERB \n Content-MD5 \n Content-Type \n Date \n` followed by the
//! `x-oss-*` headers (`name:value\n`, sorted) and the canonicalized resource
//! `/bucket/key` with the **raw** key and, after `?`, only the sub-resources (a fixed
//! list plus any `x-oss-*` parameter), sorted. Ordinary parameters such as `prefix` are
//! not signed, which is why V1 is weaker than V4 and only kept for compatibility.
//!
//! Token placement differs by form: a header signature carries the STS token in the
//! `x-oss-security-token` header (signed as an `x-oss-*` header, as Go and oss2 do); a
//! presigned URL carries it in the `security-token` parameter (a sub-resource).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{SignableRequest, format_http_date};
use crate::credentials::Credentials;
use std::time::SystemTime;

type HmacSha1 = Hmac<Sha1>;

/// Query parameters signed by V1 (Go SDK list, plus `resourceGroup` and `seal` which Go
/// adds per operation). Any parameter whose name starts with `x-oss-` is signed too.
pub const V1_SUB_RESOURCES: &[&str] = &[
    "acl",
    "append",
    "bucketInfo",
    "callback",
    "callback-var",
    "cloudboxes",
    "continuation-token",
    "delete",
    "location",
    "objectMeta",
    "partNumber",
    "position",
    "regionList",
    "resourceGroup",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "seal",
    "security-token",
    "sequential",
    "stat",
    "symlink",
    "tagging",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
];

fn is_sub_resource(name: &str, extra: &[&str]) -> bool {
    name.starts_with("x-oss-") || V1_SUB_RESOURCES.contains(&name) || extra.contains(&name)
}

/// `/bucket/key[?sub=v&sub2]` with the raw key and the sorted sub-resources of the
/// query (decoded values). `extra_sub_resources` adds operation-specific names.
pub fn v1_canonicalized_resource(
    req: &SignableRequest<'_>,
    extra_sub_resources: &[&str],
) -> String {
    let mut out = String::from("/");
    if let Some(bucket) = req.bucket {
        out.push_str(bucket);
        out.push('/');
    }
    if let Some(key) = req.key {
        out.push_str(key);
    }
    let mut subs: Vec<(&str, &str)> = req
        .query
        .iter()
        .filter(|(n, _)| is_sub_resource(n, extra_sub_resources))
        .map(|(n, v)| (n.as_str(), v.as_deref().unwrap_or("")))
        .collect();
    subs.sort();
    for (i, (name, value)) in subs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        if !value.is_empty() {
            out.push('=');
            out.push_str(value);
        }
    }
    out
}

/// The V1 string to sign. `date` is the value for the Date line: pass `None` to use the
/// request's `x-oss-date` header, else its `Date` header (header form); pass the
/// `Expires` seconds for query form.
pub fn v1_string_to_sign(
    req: &SignableRequest<'_>,
    date: Option<&str>,
    extra_sub_resources: &[&str],
) -> String {
    let date = date
        .or_else(|| req.header("x-oss-date"))
        .or_else(|| req.header("date"))
        .unwrap_or("");
    let mut oss_headers: Vec<(String, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim()))
        .filter(|(n, _)| n.starts_with("x-oss-"))
        .collect();
    oss_headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = format!(
        "{}\n{}\n{}\n{}\n",
        req.method.to_ascii_uppercase(),
        req.header("content-md5").unwrap_or(""),
        req.header("content-type").unwrap_or(""),
        date
    );
    let mut i = 0;
    while i < oss_headers.len() {
        let name = oss_headers[i].0.clone();
        out.push_str(&name);
        out.push(':');
        let mut first = true;
        while i < oss_headers.len() && oss_headers[i].0 == name {
            if !first {
                out.push(',');
            }
            out.push_str(oss_headers[i].1);
            first = false;
            i += 1;
        }
        out.push('\n');
    }
    out.push_str(&v1_canonicalized_resource(req, extra_sub_resources));
    out
}

/// Base64(HMAC-SHA1(secret, string to sign)).
pub fn v1_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = match HmacSha1::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA1 accepts any key length"),
    };
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Signs `req` for V1 header authentication at `date`. Returns the headers to set
/// (replacing any of the same name): `date`, `x-oss-security-token` (STS only) and
/// `authorization`. If the request carries an `x-oss-date` header, its value is what
/// gets signed (the server does the same).
pub fn sign_v1_header(
    req: &SignableRequest<'_>,
    creds: &Credentials,
    date: SystemTime,
) -> Vec<(String, String)> {
    let mut added = vec![("date".to_string(), format_http_date(date))];
    // The request as it will be sent: its own headers, minus those we set, plus ours.
    let headers = super::merge_signer_headers(req.headers, &mut added, creds);
    let signed = SignableRequest {
        headers: &headers,
        ..*req
    };
    let sts = v1_string_to_sign(&signed, None, &[]);
    let sig = v1_signature(creds.access_key_secret.expose(), &sts);
    added.push((
        "authorization".to_string(),
        format!("OSS {}:{sig}", creds.access_key_id),
    ));
    added
}

/// Presigns `req` (V1 query authentication) until `expires_unix` (seconds since the
/// epoch). Returns the parameters to append after the request's own, in order:
/// `OSSAccessKeyId`, `Expires`, `security-token` (STS), `Signature`. Values are
/// decoded; encode them with [`super::uri_encode`] (the signature contains `+`, `/`, `=`).
pub fn presign_v1(
    req: &SignableRequest<'_>,
    creds: &Credentials,
    expires_unix: u64,
) -> Vec<(String, String)> {
    let expires = expires_unix.to_string();
    let mut added = vec![
        ("OSSAccessKeyId".to_string(), creds.access_key_id.clone()),
        ("Expires".to_string(), expires.clone()),
    ];
    if let Some(token) = &creds.security_token {
        added.push(("security-token".to_string(), token.expose().to_string()));
    }
    let mut query: Vec<(String, Option<String>)> = req
        .query
        .iter()
        .filter(|(n, _)| n != "Signature" && !added.iter().any(|(a, _)| a == n))
        .cloned()
        .collect();
    query.extend(added.iter().map(|(n, v)| (n.clone(), Some(v.clone()))));
    let signed = SignableRequest {
        query: &query,
        ..*req
    };
    let sts = v1_string_to_sign(&signed, Some(&expires), &[]);
    added.push((
        "Signature".to_string(),
        v1_signature(creds.access_key_secret.expose(), &sts),
    ));
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::from_unix_seconds;

    #[test]
    fn resource_keeps_raw_key_and_only_sub_resources() {
        let query = vec![
            ("uploadId".to_string(), Some("u 1".to_string())),
            ("prefix".to_string(), Some("p".to_string())),
            (
                "x-oss-process".to_string(),
                Some("image/resize".to_string()),
            ),
            ("partNumber".to_string(), Some("3".to_string())),
            ("acl".to_string(), None),
        ];
        let req = SignableRequest {
            method: "PUT",
            bucket: Some("b"),
            key: Some("a b/中+%"),
            query: &query,
            headers: &[],
        };
        assert_eq!(
            v1_canonicalized_resource(&req, &[]),
            "/b/a b/中+%?acl&partNumber=3&uploadId=u 1&x-oss-process=image/resize"
        );
        assert_eq!(
            v1_canonicalized_resource(&req, &["prefix"]),
            "/b/a b/中+%?acl&partNumber=3&prefix=p&uploadId=u 1&x-oss-process=image/resize"
        );
    }

    #[test]
    fn header_form_puts_token_in_signed_header() {
        let req = SignableRequest {
            method: "GET",
            bucket: Some("b"),
            key: Some("k"),
            query: &[],
            headers: &[],
        };
        let mut creds = Credentials::new("ak", "sk");
        creds.security_token = Some(crate::credentials::Secret::new("tok"));
        let t = from_unix_seconds(1_672_223_261);
        let out = sign_v1_header(&req, &creds, t);
        assert_eq!(
            out[0],
            ("date".into(), "Wed, 28 Dec 2022 10:27:41 GMT".into())
        );
        assert_eq!(out[1], ("x-oss-security-token".into(), "tok".into()));
        let sts = "GET\n\n\nWed, 28 Dec 2022 10:27:41 GMT\nx-oss-security-token:tok\n/b/k";
        assert_eq!(out[2].1, format!("OSS ak:{}", v1_signature("sk", sts)));
    }
}
