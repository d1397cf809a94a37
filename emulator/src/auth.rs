//! Request authentication, as OSS does it: V4 header and presigned, V1 header and
//! presigned, with the static key pair or with STS credentials issued by the emulator's
//! own metadata service.
//!
//! The signature maths is [`crate::verify`] (shared with the client's signer, so
//! both sides canonicalise identically); this module decides *whose* secret to check
//! against and maps failures to OSS errors:
//! - unknown access key id → 403 `InvalidAccessKeyId`;
//! - STS key without its token → 403 `InvalidAccessKeyId`, as OSS answers (without the
//!   token, OSS looks the id up among long-term keys and finds nothing: EC 0002-00000005);
//! - STS key with another key's token → 403 `InvalidSecurityToken`;
//! - STS key past its expiry → 403 `SecurityTokenExpired` (EC 0002-00000007);
//! - bad signature → 403 `SignatureDoesNotMatch`, echoing `StringToSign` (public data);
//! - clock skew > 15 min → 403 `RequestTimeTooSkewed`; expired presigned URL → 403
//!   `AccessDenied`;
//! - no signature at all → 403 `AccessDenied`, unless the emulator runs `--anonymous`.
//!
//! Every issued STS set stays valid until its own expiry, even after newer sets exist.
//! Secrets live in [`Secret`] so Debug never shows them.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::verify::{MAX_CLOCK_SKEW, VerifyError, VerifyOptions, parse_auth, verify};
use ossmount::credentials::Secret;
use ossmount::sign::SignableRequest;

use super::error::OssError;
use super::request::Ctx;

/// One STS credential set handed out by the metadata service.
#[derive(Debug, Clone)]
pub struct IssuedCredential {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Secret,
    /// Whole seconds, so the advertised `Expiration` is exactly what is enforced.
    pub expiration: SystemTime,
    pub issued_at: SystemTime,
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(buf.as_mut_slice());
    hex::encode(buf)
}

/// Knows every valid key pair and checks request signatures.
pub struct Authenticator {
    region: String,
    access_key_id: String,
    access_key_secret: Secret,
    sts: RwLock<HashMap<String, IssuedCredential>>,
}

impl Authenticator {
    pub fn new(region: &str, access_key_id: &str, access_key_secret: Secret) -> Self {
        Authenticator {
            region: region.to_string(),
            access_key_id: access_key_id.to_string(),
            access_key_secret,
            sts: RwLock::new(HashMap::new()),
        }
    }

    /// Issues a new STS set valid for `lifetime` (rounded down to whole seconds, at
    /// least one second).
    pub fn issue(&self, lifetime: Duration) -> IssuedCredential {
        let now = SystemTime::now();
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let cred = IssuedCredential {
            access_key_id: format!("STS.{}", random_token(12).to_uppercase()),
            access_key_secret: Secret::new(random_token(20)),
            security_token: Secret::new(format!("CAIS{}", random_token(48))),
            expiration: UNIX_EPOCH + Duration::from_secs(now_secs + lifetime.as_secs().max(1)),
            issued_at: now,
        };
        let mut map = self.sts.write().unwrap_or_else(|e| e.into_inner());
        // Forget sets that expired long ago so the map stays small.
        let cutoff =
            now - Duration::from_secs(3600).min(now.duration_since(UNIX_EPOCH).unwrap_or_default());
        map.retain(|_, c| c.expiration > cutoff);
        map.insert(cred.access_key_id.clone(), cred.clone());
        cred
    }

    /// Checks the request's authentication. `anonymous` allows unsigned requests.
    pub fn verify(&self, ctx: &Ctx, anonymous: bool) -> Result<(), OssError> {
        let headers: Vec<(String, String)> = ctx
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let req = SignableRequest {
            method: ctx.method.as_str(),
            bucket: ctx.bucket.as_deref(),
            key: ctx.key.as_deref(),
            query: &ctx.query.0,
            headers: &headers,
        };
        let auth = match parse_auth(&req) {
            Ok(Some(a)) => a,
            Ok(None) if anonymous => return Ok(()),
            Ok(None) => {
                return Err(OssError::access_denied(
                    "You have no right to access this object because of bucket acl.",
                ));
            }
            Err(e) => return Err(map_error(e, None, None)),
        };
        let now = SystemTime::now();
        let secret: Secret = if auth.access_key_id == self.access_key_id {
            if auth
                .security_token
                .as_deref()
                .is_some_and(|t| !t.is_empty())
            {
                return Err(invalid_token(
                    "A security token was sent with a long-term access key.",
                ));
            }
            self.access_key_secret.clone()
        } else {
            let map = self.sts.read().unwrap_or_else(|e| e.into_inner());
            let unknown_key = || {
                OssError::new(
                    403,
                    "InvalidAccessKeyId",
                    "The OSS Access Key Id you provided does not exist in our records.",
                )
                .with_extra("OSSAccessKeyId", auth.access_key_id.clone())
            };
            let Some(cred) = map.get(&auth.access_key_id) else {
                return Err(unknown_key());
            };
            match auth.security_token.as_deref() {
                Some(t) if t == cred.security_token.expose() => {}
                // Without a token OSS treats the id as a long-term key, which it is not.
                None | Some("") => return Err(unknown_key()),
                Some(_) => {
                    return Err(invalid_token("The security token you provided is invalid."));
                }
            }
            if now >= cred.expiration {
                return Err(OssError::new(
                    403,
                    "SecurityTokenExpired",
                    "The security token you provided has expired.",
                ));
            }
            cred.access_key_secret.clone()
        };
        let opts = VerifyOptions {
            region: &self.region,
            product: ossmount::sign::PRODUCT_OSS,
            now,
            max_skew: MAX_CLOCK_SKEW,
        };
        verify(&req, &auth, secret.expose(), &opts)
            .map_err(|e| map_error(e, Some(&auth.access_key_id), auth.security_token.as_deref()))
    }
}

fn invalid_token(message: &str) -> OssError {
    OssError::new(403, "InvalidSecurityToken", message)
}

/// Maps a verification failure to the OSS error. A V1 string to sign contains the STS
/// token (it is an `x-oss-` header / sub-resource); it is redacted before echoing.
fn map_error(e: VerifyError, access_key_id: Option<&str>, token: Option<&str>) -> OssError {
    match e {
        VerifyError::SignatureDoesNotMatch { string_to_sign } => {
            let string_to_sign = match token {
                Some(t) if !t.is_empty() => string_to_sign.replace(t, "<redacted>"),
                _ => string_to_sign,
            };
            let bytes = string_to_sign
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ");
            let mut err = OssError::new(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            )
            .with_extra("StringToSign", string_to_sign)
            .with_extra("StringToSignBytes", bytes);
            if let Some(ak) = access_key_id {
                err = err.with_extra("OSSAccessKeyId", ak);
            }
            err
        }
        VerifyError::RequestTimeTooSkewed => OssError::new(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        )
        .with_extra("ServerTime", super::xml::iso8601_seconds(SystemTime::now())),
        VerifyError::Expired => OssError::access_denied("Request has expired."),
        other => OssError::new(other.status(), other.code(), other.to_string()),
    }
}
