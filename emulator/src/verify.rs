//! Server-side verification of signed requests, for the emulator (and for debugging a
//! `SignatureDoesNotMatch`).
//!
//! Flow: [`parse_auth`] finds which of the four forms a request uses (V4 header, V4
//! query, V1 header, V1 query) or none (anonymous), and extracts the access key id and
//! STS token so the caller can look up the secret and check the token. [`verify`] then
//! recomputes the signature from the request *as received* with the same
//! canonicalisation code the client signs with, and checks time limits (15 min skew
//! for header forms, expiry for presigned URLs).
//!
//! Errors carry the OSS error code and HTTP status to answer with; a mismatch carries
//! the server-side string to sign, which OSS echoes in its error body. Comparisons of
//! signatures are constant-time. Nothing secret is ever put in an error.

use std::time::{Duration, SystemTime};

use ossmount::sign::{
    SignableRequest, V4_ALGORITHM, from_unix_seconds, parse_http_date, parse_x_oss_date,
    v1_signature, v1_string_to_sign, v4_canonical_request, v4_scope, v4_signature, v4_signing_key,
    v4_string_to_sign,
};

/// Largest clock difference OSS accepts for header-signed requests.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The authentication form of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthForm {
    V4Header,
    V4Query,
    V1Header,
    V1Query,
}

/// What a signed request claims, before the signature is checked. `Debug` redacts the
/// token and the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedAuth {
    pub form: AuthForm,
    pub access_key_id: String,
    /// STS token sent with the request (header or query, depending on the form).
    /// The caller must check it belongs to `access_key_id`.
    pub security_token: Option<String>,
    /// V4 only: region and product from the credential scope.
    pub region: Option<String>,
    pub product: Option<String>,
    signature: String,
    /// V4: `YYYYMMDD` from the scope.
    scope_date: Option<String>,
    /// V4: additional headers as listed by the client.
    additional_headers: Vec<String>,
}

impl std::fmt::Debug for ParsedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedAuth")
            .field("form", &self.form)
            .field("access_key_id", &self.access_key_id)
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field("product", &self.product)
            .field("scope_date", &self.scope_date)
            .field("additional_headers", &self.additional_headers)
            .finish_non_exhaustive()
    }
}

/// Why a request was refused; [`VerifyError::code`] and [`VerifyError::status`] give
/// the OSS error to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed authentication: {0}")]
    Malformed(String),
    #[error("the request signature we calculated does not match the signature you provided")]
    SignatureDoesNotMatch {
        /// The server's string to sign (OSS echoes it so clients can debug).
        string_to_sign: String,
    },
    #[error("the difference between the request time and the server's time is too large")]
    RequestTimeTooSkewed,
    #[error("request has expired")]
    Expired,
    #[error("invalid signing region {got:?} in credential scope, expected {expected:?}")]
    WrongRegion { got: String, expected: String },
    #[error("invalid signing product {got:?} in credential scope, expected {expected:?}")]
    WrongProduct { got: String, expected: String },
}

impl VerifyError {
    /// OSS error code (`<Code>` in the error body).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_)
            | VerifyError::WrongRegion { .. }
            | VerifyError::WrongProduct { .. } => "InvalidArgument",
            VerifyError::SignatureDoesNotMatch { .. } => "SignatureDoesNotMatch",
            VerifyError::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            VerifyError::Expired => "AccessDenied",
        }
    }

    /// HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            VerifyError::Malformed(_)
            | VerifyError::WrongRegion { .. }
            | VerifyError::WrongProduct { .. } => 400,
            _ => 403,
        }
    }
}

/// What the verifying server expects.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// Server region (bare id); V4 scopes naming another region are refused.
    pub region: &'a str,
    /// `oss` (or `oss-cloudbox`).
    pub product: &'a str,
    /// The server's current time.
    pub now: SystemTime,
    /// Allowed clock difference for header forms ([`MAX_CLOCK_SKEW`] on OSS).
    pub max_skew: Duration,
}

fn malformed(msg: impl Into<String>) -> VerifyError {
    VerifyError::Malformed(msg.into())
}

/// Finds the authentication form of `req`. `Ok(None)` means anonymous (no Authorization
/// header and no signature parameters).
pub fn parse_auth(req: &SignableRequest<'_>) -> Result<Option<ParsedAuth>, VerifyError> {
    if let Some(auth) = req.header("authorization") {
        let auth = auth.trim();
        if let Some(rest) = auth.strip_prefix(V4_ALGORITHM) {
            return parse_v4_header(req, rest).map(Some);
        }
        if let Some(rest) = auth.strip_prefix("OSS ") {
            let (ak, sig) = rest
                .trim()
                .rsplit_once(':')
                .ok_or_else(|| malformed("V1 Authorization must be `OSS AccessKeyId:Signature`"))?;
            if ak.is_empty() || sig.is_empty() {
                return Err(malformed(
                    "V1 Authorization has an empty access key id or signature",
                ));
            }
            return Ok(Some(ParsedAuth {
                form: AuthForm::V1Header,
                access_key_id: ak.to_string(),
                security_token: req.header("x-oss-security-token").map(str::to_string),
                region: None,
                product: None,
                signature: sig.to_string(),
                scope_date: None,
                additional_headers: Vec::new(),
            }));
        }
        return Err(malformed(
            "Authorization must start with `OSS4-HMAC-SHA256 ` or `OSS `",
        ));
    }
    if let Some(version) = req.query_param("x-oss-signature-version") {
        if version != V4_ALGORITHM {
            return Err(malformed(format!(
                "unsupported x-oss-signature-version {version:?}"
            )));
        }
        let credential = req
            .query_param("x-oss-credential")
            .ok_or_else(|| malformed("missing x-oss-credential"))?;
        let signature = req
            .query_param("x-oss-signature")
            .ok_or_else(|| malformed("missing x-oss-signature"))?;
        let additional = req
            .query_param("x-oss-additional-headers")
            .map(split_additional)
            .unwrap_or_default();
        let mut parsed = parse_credential(credential)?;
        parsed.form = AuthForm::V4Query;
        parsed.signature = signature.to_string();
        parsed.additional_headers = additional;
        parsed.security_token = req.query_param("x-oss-security-token").map(str::to_string);
        return Ok(Some(parsed));
    }
    if let Some(sig) = req.query_param("Signature") {
        let ak = req
            .query_param("OSSAccessKeyId")
            .ok_or_else(|| malformed("missing OSSAccessKeyId"))?;
        return Ok(Some(ParsedAuth {
            form: AuthForm::V1Query,
            access_key_id: ak.to_string(),
            security_token: req.query_param("security-token").map(str::to_string),
            region: None,
            product: None,
            signature: sig.to_string(),
            scope_date: None,
            additional_headers: Vec::new(),
        }));
    }
    Ok(None)
}

fn split_additional(list: &str) -> Vec<String> {
    list.split(';')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `AK/date/region/product/aliyun_v4_request`.
fn parse_credential(credential: &str) -> Result<ParsedAuth, VerifyError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [ak, date, region, product, terminator] = parts.as_slice() else {
        return Err(malformed(
            "credential must be AccessKeyId/YYYYMMDD/region/product/aliyun_v4_request",
        ));
    };
    if *terminator != "aliyun_v4_request" || ak.is_empty() || date.len() != 8 {
        return Err(malformed(
            "credential must be AccessKeyId/YYYYMMDD/region/product/aliyun_v4_request",
        ));
    }
    Ok(ParsedAuth {
        form: AuthForm::V4Header,
        access_key_id: ak.to_string(),
        security_token: None,
        region: Some(region.to_string()),
        product: Some(product.to_string()),
        signature: String::new(),
        scope_date: Some(date.to_string()),
        additional_headers: Vec::new(),
    })
}

/// Accepts both `Credential=…,AdditionalHeaders=…,Signature=…` (v2 SDKs) and oss2's
/// `Credential=…, Signature=…, AdditionalHeaders=…`.
fn parse_v4_header(req: &SignableRequest<'_>, rest: &str) -> Result<ParsedAuth, VerifyError> {
    let mut credential = None;
    let mut signature = None;
    let mut additional = Vec::new();
    for field in rest.split(',') {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        match field.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            Some(("AdditionalHeaders", v)) => additional = split_additional(v),
            _ => {
                return Err(malformed(format!(
                    "unexpected Authorization field {field:?}"
                )));
            }
        }
    }
    let credential = credential.ok_or_else(|| malformed("Authorization lacks Credential="))?;
    let signature = signature.ok_or_else(|| malformed("Authorization lacks Signature="))?;
    let mut parsed = parse_credential(credential)?;
    parsed.signature = signature.to_string();
    parsed.additional_headers = additional;
    parsed.security_token = req.header("x-oss-security-token").map(str::to_string);
    Ok(parsed)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn abs_diff(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or(Duration::ZERO)
}

/// Checks `auth` (from [`parse_auth`] on the same request) against `secret`, the
/// access key secret of `auth.access_key_id`.
pub fn verify(
    req: &SignableRequest<'_>,
    auth: &ParsedAuth,
    secret: &str,
    opts: &VerifyOptions<'_>,
) -> Result<(), VerifyError> {
    let string_to_sign = match auth.form {
        AuthForm::V4Header | AuthForm::V4Query => {
            let region = auth.region.as_deref().unwrap_or("");
            let product = auth.product.as_deref().unwrap_or("");
            if region != opts.region {
                return Err(VerifyError::WrongRegion {
                    got: region.to_string(),
                    expected: opts.region.to_string(),
                });
            }
            if product != opts.product {
                return Err(VerifyError::WrongProduct {
                    got: product.to_string(),
                    expected: opts.product.to_string(),
                });
            }
            let query_form = auth.form == AuthForm::V4Query;
            let x_oss_date = if query_form {
                req.query_param("x-oss-date")
            } else {
                req.header("x-oss-date")
            }
            .ok_or_else(|| malformed("missing x-oss-date"))?;
            let signed_at = parse_x_oss_date(x_oss_date)
                .ok_or_else(|| malformed("x-oss-date must look like 20231216T162057Z"))?;
            if Some(&x_oss_date[..8]) != auth.scope_date.as_deref() {
                return Err(malformed(
                    "x-oss-date does not match the credential scope date",
                ));
            }
            if query_form {
                let expires: u64 = req
                    .query_param("x-oss-expires")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| malformed("x-oss-expires must be a number of seconds"))?;
                if expires > ossmount::sign::MAX_PRESIGN_EXPIRES.as_secs() {
                    return Err(malformed("x-oss-expires exceeds 604800 seconds"));
                }
                if opts.now > signed_at + Duration::from_secs(expires) {
                    return Err(VerifyError::Expired);
                }
                if signed_at > opts.now + opts.max_skew {
                    return Err(VerifyError::RequestTimeTooSkewed);
                }
            } else if abs_diff(signed_at, opts.now) > opts.max_skew {
                return Err(VerifyError::RequestTimeTooSkewed);
            }
            let query: Vec<(String, Option<String>)>;
            let canonical_req = if query_form {
                query = req
                    .query
                    .iter()
                    .filter(|(n, _)| n != "x-oss-signature")
                    .cloned()
                    .collect();
                SignableRequest {
                    query: &query,
                    ..*req
                }
            } else {
                *req
            };
            let canonical = v4_canonical_request(&canonical_req, &auth.additional_headers);
            let date = &x_oss_date[..8];
            let sts = v4_string_to_sign(x_oss_date, &v4_scope(date, region, product), &canonical);
            let key = v4_signing_key(secret, date, region, product);
            if constant_time_eq(
                v4_signature(&key, &sts).as_bytes(),
                auth.signature.as_bytes(),
            ) {
                return Ok(());
            }
            sts
        }
        AuthForm::V1Header => {
            let date = req
                .header("x-oss-date")
                .or_else(|| req.header("date"))
                .ok_or_else(|| malformed("V1 requests need a Date header"))?;
            let signed_at =
                parse_http_date(date).ok_or_else(|| malformed("Date must be an RFC 1123 date"))?;
            if abs_diff(signed_at, opts.now) > opts.max_skew {
                return Err(VerifyError::RequestTimeTooSkewed);
            }
            let sts = v1_string_to_sign(req, None, &[]);
            if constant_time_eq(
                v1_signature(secret, &sts).as_bytes(),
                auth.signature.as_bytes(),
            ) {
                return Ok(());
            }
            sts
        }
        AuthForm::V1Query => {
            let expires_raw = req
                .query_param("Expires")
                .ok_or_else(|| malformed("missing Expires"))?;
            let expires: u64 = expires_raw
                .parse()
                .map_err(|_| malformed("Expires must be unix seconds"))?;
            if opts.now > from_unix_seconds(expires) {
                return Err(VerifyError::Expired);
            }
            let query: Vec<(String, Option<String>)> = req
                .query
                .iter()
                .filter(|(n, _)| n != "Signature")
                .cloned()
                .collect();
            let signed = SignableRequest {
                query: &query,
                ..*req
            };
            let sts = v1_string_to_sign(&signed, Some(expires_raw), &[]);
            if constant_time_eq(
                v1_signature(secret, &sts).as_bytes(),
                auth.signature.as_bytes(),
            ) {
                return Ok(());
            }
            sts
        }
    };
    // V1 strings to sign contain the STS token (header line or sub-resource); OSS echoes
    // the string to sign, but we keep tokens out of errors.
    let string_to_sign = match auth.security_token.as_deref() {
        Some(token) if !token.is_empty() => string_to_sign
            .replace(
                &format!("x-oss-security-token:{token}"),
                "x-oss-security-token:<redacted>",
            )
            .replace(
                &format!("security-token={token}"),
                "security-token=<redacted>",
            ),
        _ => string_to_sign,
    };
    Err(VerifyError::SignatureDoesNotMatch { string_to_sign })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ossmount::credentials::{Credentials, Secret};
    use ossmount::sign::{
        SigningParams, presign_v1, presign_v4, sign_v1_header, sign_v4_header, unix_seconds,
    };

    const NOW: u64 = 1_702_743_657;

    fn opts(now: SystemTime) -> VerifyOptions<'static> {
        VerifyOptions {
            region: "cn-hangzhou",
            product: "oss",
            now,
            max_skew: MAX_CLOCK_SKEW,
        }
    }

    fn creds() -> Credentials {
        let mut c = Credentials::new("ak", "sk");
        c.security_token = Some(Secret::new("tok"));
        c
    }

    fn base_headers() -> Vec<(String, String)> {
        vec![
            ("Content-Type".into(), "text/plain".into()),
            ("x-oss-meta-a".into(), "1".into()),
            ("Range".into(), "bytes=0-9".into()),
        ]
    }

    fn query() -> Vec<(String, Option<String>)> {
        vec![
            ("uploadId".into(), Some("u 1+".into())),
            ("partNumber".into(), Some("2".into())),
        ]
    }

    /// Merges signer output into the request headers the way a client sends them.
    fn merge(
        mut headers: Vec<(String, String)>,
        add: Vec<(String, String)>,
    ) -> Vec<(String, String)> {
        headers.retain(|(n, _)| !add.iter().any(|(a, _)| n.eq_ignore_ascii_case(a)));
        headers.extend(add);
        headers
    }

    #[test]
    fn v4_header_round_trip_and_tamper() {
        let t = from_unix_seconds(NOW);
        let q = query();
        let base_h = base_headers();
        let req = SignableRequest {
            method: "PUT",
            bucket: Some("b"),
            key: Some("dir/a b.txt"),
            query: &q,
            headers: &base_h,
        };
        let extra = vec!["range".to_string()];
        let p = SigningParams {
            additional_headers: &extra,
            ..SigningParams::oss("cn-hangzhou", t)
        };
        let headers = merge(base_headers(), sign_v4_header(&req, &creds(), &p));
        let sent = SignableRequest {
            headers: &headers,
            ..req
        };
        let auth = parse_auth(&sent).ok().flatten().expect("signed");
        assert_eq!(auth.form, AuthForm::V4Header);
        assert_eq!(auth.access_key_id, "ak");
        assert_eq!(auth.security_token.as_deref(), Some("tok"));
        assert_eq!(auth.additional_headers, ["range"]);
        assert_eq!(verify(&sent, &auth, "sk", &opts(t)), Ok(()));
        // Within skew, outside skew.
        assert_eq!(
            verify(&sent, &auth, "sk", &opts(t + Duration::from_secs(600))),
            Ok(())
        );
        assert_eq!(
            verify(&sent, &auth, "sk", &opts(t + Duration::from_secs(1000))),
            Err(VerifyError::RequestTimeTooSkewed)
        );
        // Wrong secret, tampered signed header, tampered additional header.
        assert!(matches!(
            verify(&sent, &auth, "other", &opts(t)),
            Err(VerifyError::SignatureDoesNotMatch { .. })
        ));
        for tamper in ["x-oss-meta-a", "Range", "Content-Type"] {
            let h = merge(
                headers.clone(),
                vec![(tamper.to_string(), "changed".into())],
            );
            let r = SignableRequest { headers: &h, ..req };
            let e = verify(&r, &auth, "sk", &opts(t)).expect_err(tamper);
            assert_eq!(e.code(), "SignatureDoesNotMatch");
            assert_eq!(e.status(), 403);
        }
        // Unsigned headers may change.
        let h = merge(headers.clone(), vec![("User-Agent".into(), "x".into())]);
        let r = SignableRequest { headers: &h, ..req };
        assert_eq!(verify(&r, &auth, "sk", &opts(t)), Ok(()));
        // Another region is refused.
        let o = VerifyOptions {
            region: "cn-beijing",
            ..opts(t)
        };
        assert_eq!(
            verify(&sent, &auth, "sk", &o).map_err(|e| e.code()),
            Err("InvalidArgument")
        );
    }

    #[test]
    fn oss2_authorization_layout_is_accepted() {
        let t = from_unix_seconds(NOW);
        let base_h = base_headers();
        let req = SignableRequest {
            method: "GET",
            bucket: Some("b"),
            key: Some("k"),
            query: &[],
            headers: &base_h,
        };
        let extra = vec!["range".to_string()];
        let p = SigningParams {
            additional_headers: &extra,
            ..SigningParams::oss("cn-hangzhou", t)
        };
        let mut headers = merge(base_headers(), sign_v4_header(&req, &creds(), &p));
        let auth = headers
            .iter_mut()
            .find(|(n, _)| n == "authorization")
            .expect("auth");
        // Rewrite `Credential=…,AdditionalHeaders=…,Signature=…` the oss2 way.
        let fields: Vec<String> = auth.1["OSS4-HMAC-SHA256 ".len()..]
            .split(',')
            .map(str::to_string)
            .collect();
        auth.1 = format!(
            "OSS4-HMAC-SHA256 {}, {}, {}",
            fields[0], fields[2], fields[1]
        );
        let sent = SignableRequest {
            headers: &headers,
            ..req
        };
        let parsed = parse_auth(&sent).ok().flatten().expect("parsed");
        assert_eq!(verify(&sent, &parsed, "sk", &opts(t)), Ok(()));
    }

    #[test]
    fn v4_query_round_trip_and_expiry() {
        let t = from_unix_seconds(NOW);
        let base = query();
        let mut q = query();
        let req = SignableRequest {
            method: "GET",
            bucket: Some("b"),
            key: Some("中/😀"),
            query: &base,
            headers: &[],
        };
        let params = SigningParams::oss("cn-hangzhou", t);
        let added = presign_v4(&req, &creds(), &params, Duration::from_secs(60)).expect("presign");
        q.extend(added.into_iter().map(|(n, v)| (n, Some(v))));
        let sent = SignableRequest { query: &q, ..req };
        let auth = parse_auth(&sent).ok().flatten().expect("signed");
        assert_eq!(auth.form, AuthForm::V4Query);
        assert_eq!(auth.security_token.as_deref(), Some("tok"));
        assert_eq!(
            verify(&sent, &auth, "sk", &opts(t + Duration::from_secs(60))),
            Ok(())
        );
        assert_eq!(
            verify(&sent, &auth, "sk", &opts(t + Duration::from_secs(61))),
            Err(VerifyError::Expired)
        );
        // A changed parameter breaks it (all parameters are signed in V4).
        let mut q2 = q.clone();
        q2[1].1 = Some("3".into());
        let r = SignableRequest { query: &q2, ..req };
        assert!(verify(&r, &auth, "sk", &opts(t)).is_err());
    }

    #[test]
    fn v1_round_trips() {
        let t = from_unix_seconds(NOW);
        let q = query();
        let base_h = base_headers();
        let req = SignableRequest {
            method: "PUT",
            bucket: Some("b"),
            key: Some("a+b c"),
            query: &q,
            headers: &base_h,
        };
        let headers = merge(base_headers(), sign_v1_header(&req, &creds(), t));
        let sent = SignableRequest {
            headers: &headers,
            ..req
        };
        let auth = parse_auth(&sent).ok().flatten().expect("v1");
        assert_eq!(auth.form, AuthForm::V1Header);
        assert_eq!(auth.security_token.as_deref(), Some("tok"));
        assert_eq!(verify(&sent, &auth, "sk", &opts(t)), Ok(()));
        assert_eq!(
            verify(&sent, &auth, "sk", &opts(t + Duration::from_secs(3600))),
            Err(VerifyError::RequestTimeTooSkewed)
        );

        match verify(&sent, &auth, "bad", &opts(t)) {
            Err(VerifyError::SignatureDoesNotMatch { string_to_sign }) => {
                assert!(string_to_sign.contains("\nx-oss-security-token:<redacted>\n"));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }

        let mut q = query();
        let expires = unix_seconds(t).expect("time") + 30;
        let added = presign_v1(&req, &creds(), expires);
        q.extend(added.into_iter().map(|(n, v)| (n, Some(v))));
        let sent = SignableRequest { query: &q, ..req };
        let auth = parse_auth(&sent).ok().flatten().expect("v1q");
        assert_eq!(auth.form, AuthForm::V1Query);
        assert_eq!(auth.security_token.as_deref(), Some("tok"));
        assert_eq!(verify(&sent, &auth, "sk", &opts(t)), Ok(()));
        assert_eq!(
            verify(&sent, &auth, "sk", &opts(t + Duration::from_secs(31))),
            Err(VerifyError::Expired)
        );
        let e = verify(&sent, &auth, "bad", &opts(t)).expect_err("bad secret");
        let VerifyError::SignatureDoesNotMatch { string_to_sign } = e else {
            panic!("wrong error {e:?}");
        };
        assert!(
            string_to_sign
                .ends_with("/b/a+b c?partNumber=2&security-token=<redacted>&uploadId=u 1+"),
            "{string_to_sign}"
        );
        assert!(!format!("{auth:?}").contains("tok\""), "{auth:?}");
    }

    #[test]
    fn anonymous_and_malformed() {
        let req = SignableRequest {
            method: "GET",
            bucket: Some("b"),
            key: Some("k"),
            query: &[],
            headers: &[],
        };
        assert_eq!(parse_auth(&req), Ok(None));
        for bad in [
            "Bearer x",
            "OSS nocolon",
            "OSS4-HMAC-SHA256 Signature=abc",
            "OSS4-HMAC-SHA256 Credential=ak/2023/cn/oss/x,Signature=a",
            "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,Bogus=1,Signature=a",
        ] {
            let h = vec![("Authorization".to_string(), bad.to_string())];
            let r = SignableRequest { headers: &h, ..req };
            let e = parse_auth(&r).expect_err(bad);
            assert_eq!(e.status(), 400, "{bad}");
        }
    }
}
