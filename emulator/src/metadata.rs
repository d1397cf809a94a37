//! The ECS instance metadata service and an STS endpoint (ACK RRSA), on
//! `--metadata-listen`.
//!
//! ECS (`/latest/…`): region id, RAM role name and role credentials, plus hardened mode
//! (`PUT /latest/api/token` → token; GETs carrying a wrong or expired token get 401, GETs
//! without one are served, like ECS in normal mode). Credentials rotate like ECS: the
//! current set is reused until it has aged past half its lifetime, then a new one is
//! issued; every issued set stays valid until its own expiry.
//!
//! STS (`/` with `Action=AssumeRoleWithOIDC`, query or form body): issues a fresh set per
//! call; lifetime = min(DurationSeconds, --sts-lifetime). An empty OIDC token is refused
//! with an STS-style JSON error.
//!
//! `POST /-/metadata {"down":true}` on the main listener makes every answer here a 503,
//! to test credential-refresh outages. Metadata requests are never fault-injected.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde_json::json;

use super::auth::IssuedCredential;
use super::body::{RespBody, full, read_small_body};
use super::state::State;
use super::xml::iso8601_seconds;

/// RAM role name the metadata service reports.
pub const ROLE_NAME: &str = "EcsRamRoleOssmount";

pub struct MetadataService {
    state: Arc<State>,
    lifetime: Duration,
    current: Mutex<Option<IssuedCredential>>,
    /// Hardened-mode tokens and their expiry.
    tokens: Mutex<HashMap<String, SystemTime>>,
}

fn text(status: u16, body: impl Into<String>) -> Response<RespBody> {
    let body = body.into();
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

fn json_resp(status: u16, v: serde_json::Value) -> Response<RespBody> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Form decoding (`+` is a space here, unlike OSS paths and queries).
fn form_decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_form(raw: &str, into: &mut HashMap<String, String>) {
    for item in raw.split('&').filter(|s| !s.is_empty()) {
        let (n, v) = item.split_once('=').unwrap_or((item, ""));
        into.insert(form_decode(n), form_decode(v));
    }
}

impl MetadataService {
    pub fn new(state: Arc<State>, lifetime: Duration) -> Self {
        MetadataService {
            state,
            lifetime: lifetime.max(Duration::from_secs(1)),
            current: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The ECS role credentials, rotated once past half their lifetime.
    fn ecs_credentials(&self) -> IssuedCredential {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        let fresh = cur.as_ref().is_some_and(|c| {
            now.duration_since(c.issued_at).unwrap_or_default() < self.lifetime / 2
                && now < c.expiration
        });
        if !fresh {
            let c = self.state.auth.issue(self.lifetime);
            self.state.stats.sts_issued();
            tracing::debug!(access_key_id = %c.access_key_id, "ECS role credentials rotated");
            *cur = Some(c);
        }
        cur.clone()
            .unwrap_or_else(|| self.state.auth.issue(self.lifetime))
    }

    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<RespBody>, Infallible> {
        self.state.stats.metadata_request();
        if self.state.metadata_down.load(Ordering::Relaxed) {
            return Ok(text(503, "metadata service unavailable"));
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let token_ttl = req
            .headers()
            .get("x-aliyun-ecs-metadata-token-ttl-seconds")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let token = req
            .headers()
            .get("x-aliyun-ecs-metadata-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match read_small_body(req.into_body(), &super::stats::Stats::default(), 1 << 16)
            .await
        {
            Ok(b) => b,
            Err(e) => return Ok(text(400, e.message)),
        };

        if path.starts_with("/latest/") {
            return Ok(self.ecs(&method, &path, token_ttl, token));
        }
        if path == "/" && (method == Method::POST || method == Method::GET) {
            let mut params = HashMap::new();
            parse_form(&query, &mut params);
            parse_form(&String::from_utf8_lossy(&body), &mut params);
            return Ok(self.sts(&params));
        }
        Ok(text(404, "not found"))
    }

    fn ecs(
        &self,
        method: &Method,
        path: &str,
        token_ttl: Option<String>,
        token: Option<String>,
    ) -> Response<RespBody> {
        let now = SystemTime::now();
        if path == "/latest/api/token" {
            if method != Method::PUT {
                return text(405, "method not allowed");
            }
            let Some(ttl) = token_ttl
                .and_then(|t| t.trim().parse::<u64>().ok())
                .filter(|t| (1..=21600).contains(t))
            else {
                return text(
                    400,
                    "X-aliyun-ecs-metadata-token-ttl-seconds must be 1..21600",
                );
            };
            let tok = format!("{:032x}", rand::random::<u128>());
            let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens.retain(|_, exp| *exp > now);
            tokens.insert(tok.clone(), now + Duration::from_secs(ttl));
            return text(200, tok);
        }
        if method != Method::GET {
            return text(405, "method not allowed");
        }
        if let Some(t) = token {
            let ok = self
                .tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&t)
                .is_some_and(|exp| *exp > now);
            if !ok {
                return text(401, "invalid or expired metadata token");
            }
        }
        match path {
            "/latest/meta-data/region-id" => text(200, self.state.region.clone()),
            "/latest/meta-data/ram/security-credentials/"
            | "/latest/meta-data/ram/security-credentials" => text(200, ROLE_NAME),
            p => match p.strip_prefix("/latest/meta-data/ram/security-credentials/") {
                Some(role) if role == ROLE_NAME => {
                    let c = self.ecs_credentials();
                    json_resp(
                        200,
                        json!({
                            "AccessKeyId": c.access_key_id,
                            "AccessKeySecret": c.access_key_secret.expose(),
                            "SecurityToken": c.security_token.expose(),
                            "Expiration": iso8601_seconds(c.expiration),
                            "LastUpdated": iso8601_seconds(c.issued_at),
                            "Code": "Success",
                        }),
                    )
                }
                Some(_) => text(404, "no such role"),
                None => text(404, "not found"),
            },
        }
    }

    fn sts(&self, params: &HashMap<String, String>) -> Response<RespBody> {
        let request_id = format!("{:032X}", rand::random::<u128>());
        let err = |status: u16, code: &str, msg: &str| {
            json_resp(
                status,
                json!({
                    "RequestId": request_id,
                    "HostId": "sts.aliyuncs.com",
                    "Code": code,
                    "Message": msg,
                    "Recommend": "https://api.aliyun.com/troubleshoot",
                }),
            )
        };
        match params.get("Action").map(String::as_str) {
            Some("AssumeRoleWithOIDC") => {}
            Some(other) => {
                return err(
                    400,
                    "InvalidAction.NotFound",
                    &format!("Specified api {other} is not found."),
                );
            }
            None => {
                return err(
                    400,
                    "MissingAction",
                    "Action is mandatory for this request.",
                );
            }
        }
        let get = |n: &str| params.get(n).map(String::as_str).unwrap_or("");
        if get("OIDCToken").is_empty() {
            return err(
                400,
                "MissingOIDCToken",
                "OIDCToken is mandatory for this action.",
            );
        }
        if get("RoleArn").is_empty() {
            return err(
                400,
                "MissingRoleArn",
                "RoleArn is mandatory for this action.",
            );
        }
        if get("OIDCProviderArn").is_empty() {
            return err(
                400,
                "MissingOIDCProviderArn",
                "OIDCProviderArn is mandatory for this action.",
            );
        }
        let lifetime = match params.get("DurationSeconds") {
            None => self.lifetime,
            Some(d) => match d.parse::<u64>() {
                Ok(s) if s >= 1 => self.lifetime.min(Duration::from_secs(s)),
                _ => {
                    return err(
                        400,
                        "InvalidParameter.DurationSeconds",
                        "DurationSeconds is invalid.",
                    );
                }
            },
        };
        let session = match get("RoleSessionName") {
            "" => "ossmount-session",
            s => s,
        };
        let c = self.state.auth.issue(lifetime);
        self.state.stats.sts_issued();
        json_resp(
            200,
            json!({
                "RequestId": request_id,
                "Credentials": {
                    "AccessKeyId": c.access_key_id,
                    "AccessKeySecret": c.access_key_secret.expose(),
                    "SecurityToken": c.security_token.expose(),
                    "Expiration": iso8601_seconds(c.expiration),
                },
                "AssumedRoleUser": {
                    "AssumedRoleId": format!("3{:017}:{session}", rand::random::<u64>() % 100_000_000_000_000_000),
                    "Arn": format!("{}/{session}", get("RoleArn")),
                },
                "OIDCTokenInfo": {
                    "Subject": "system:serviceaccount:default:ossmount",
                    "Issuer": "https://oidc-ack.emulator",
                    "ClientIds": "sts.aliyuncs.com",
                },
            }),
        )
    }
}
