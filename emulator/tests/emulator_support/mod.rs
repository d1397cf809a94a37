//! Shared helpers for the emulator integration tests: start an in-process emulator and
//! send raw, signed HTTP requests (ossmount::sign, never crate::client) with reqwest.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ossmount::credentials::Credentials;
use ossmount::sign::{
    SignableRequest, SigningParams, encode_query_string, encode_url_path, presign_v1, presign_v4,
    sign_v1_header, sign_v4_header, uri_encode,
};
use ossmount_emulator::{EmulatorConfig, RunningEmulator};

pub(crate) const BUCKET: &str = "test-bucket";

pub(crate) async fn start(dir: &std::path::Path) -> RunningEmulator {
    start_with(EmulatorConfig::new(dir, BUCKET)).await
}

pub(crate) async fn start_with(cfg: EmulatorConfig) -> RunningEmulator {
    ossmount_emulator::start(cfg)
        .await
        .expect("emulator starts")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Auth {
    None,
    V4,
    V1,
}

/// One request to send.
#[derive(Clone, Debug)]
pub(crate) struct Req {
    pub method: &'static str,
    pub key: Option<String>,
    pub query: Vec<(String, Option<String>)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub bucket: Option<String>,
}

impl Req {
    pub(crate) fn new(method: &'static str, key: &str) -> Self {
        Req {
            method,
            key: (!key.is_empty()).then(|| key.to_string()),
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            bucket: Some(BUCKET.to_string()),
        }
    }
    pub(crate) fn q(mut self, name: &str, value: Option<&str>) -> Self {
        self.query
            .push((name.to_string(), value.map(str::to_string)));
        self
    }
    pub(crate) fn h(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub(crate) fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }
    pub(crate) fn service(mut self) -> Self {
        self.bucket = None;
        self
    }
}

#[derive(Debug)]
pub(crate) struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// `<Code>` of an error body (or of `x-oss-err` for HEAD).
    pub(crate) fn code(&self) -> String {
        let xml = if self.body.is_empty() {
            use base64::Engine as _;
            self.header("x-oss-err")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        } else {
            self.text()
        };
        between(&xml, "<Code>", "</Code>").unwrap_or_default()
    }
}

pub(crate) fn between(s: &str, a: &str, b: &str) -> Option<String> {
    let start = s.find(a)? + a.len();
    let end = s[start..].find(b)? + start;
    Some(s[start..end].to_string())
}

pub(crate) fn all_between(s: &str, a: &str, b: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(a) {
        let after = &rest[i + a.len()..];
        let Some(j) = after.find(b) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + b.len()..];
    }
    out
}

/// A raw OSS client (path style) that signs with ossmount::sign.
pub(crate) struct Client {
    pub http: reqwest::Client,
    pub endpoint: String,
    pub creds: Option<Credentials>,
    pub region: String,
    pub auth: Auth,
    /// Added to the signing time (clock skew tests).
    pub time_offset: i64,
}

impl Client {
    pub(crate) fn new(emu: &RunningEmulator) -> Self {
        Client {
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("reqwest client"),
            endpoint: emu.endpoint(),
            creds: Some(emu.credentials()),
            region: emu.region().to_string(),
            auth: Auth::V4,
            time_offset: 0,
        }
    }
    pub(crate) fn with_creds(mut self, c: Option<Credentials>) -> Self {
        self.creds = c;
        self
    }
    pub(crate) fn with_auth(mut self, a: Auth) -> Self {
        self.auth = a;
        self
    }

    fn signing_time(&self) -> SystemTime {
        let now = SystemTime::now();
        if self.time_offset >= 0 {
            now + Duration::from_secs(self.time_offset as u64)
        } else {
            now - Duration::from_secs((-self.time_offset) as u64)
        }
    }

    pub(crate) fn url(&self, req: &Req, query: &[(String, Option<String>)]) -> String {
        let mut url = self.endpoint.clone();
        url.push('/');
        if let Some(b) = &req.bucket {
            url.push_str(b);
            url.push('/');
        }
        if let Some(k) = &req.key {
            url.push_str(&encode_url_path(k));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&encode_query_string(query));
        }
        url
    }

    /// Signs (per `self.auth`) and sends.
    pub(crate) async fn send(&self, req: Req) -> Resp {
        let mut headers = req.headers.clone();
        if let (Some(creds), auth) = (&self.creds, self.auth)
            && auth != Auth::None
        {
            let sreq = SignableRequest {
                method: req.method,
                bucket: req.bucket.as_deref(),
                key: req.key.as_deref(),
                query: &req.query,
                headers: &req.headers,
            };
            let added = match auth {
                Auth::V4 => sign_v4_header(
                    &sreq,
                    creds,
                    &SigningParams::oss(&self.region, self.signing_time()),
                ),
                _ => sign_v1_header(&sreq, creds, self.signing_time()),
            };
            headers.retain(|(n, _)| !added.iter().any(|(a, _)| a.eq_ignore_ascii_case(n)));
            headers.extend(added);
        }
        let url = self.url(&req, &req.query);
        self.raw(req.method, &url, &headers, req.body).await
    }

    /// A V4 presigned URL for `req` valid for `expires`.
    pub(crate) fn presign_v4(&self, req: &Req, expires: Duration) -> String {
        let creds = self.creds.as_ref().expect("creds");
        let sreq = SignableRequest {
            method: req.method,
            bucket: req.bucket.as_deref(),
            key: req.key.as_deref(),
            query: &req.query,
            headers: &req.headers,
        };
        let added = presign_v4(
            &sreq,
            creds,
            &SigningParams::oss(&self.region, self.signing_time()),
            expires,
        )
        .expect("presign");
        let mut q = req.query.clone();
        q.extend(added.into_iter().map(|(n, v)| (n, Some(v))));
        self.url(req, &q)
    }

    /// A V1 presigned URL expiring at `expires_unix`.
    pub(crate) fn presign_v1(&self, req: &Req, expires_unix: u64) -> String {
        let creds = self.creds.as_ref().expect("creds");
        let sreq = SignableRequest {
            method: req.method,
            bucket: req.bucket.as_deref(),
            key: req.key.as_deref(),
            query: &req.query,
            headers: &req.headers,
        };
        let added = presign_v1(&sreq, creds, expires_unix);
        let mut q = req.query.clone();
        q.extend(added.into_iter().map(|(n, v)| (n, Some(v))));
        self.url(req, &q)
    }

    pub(crate) async fn raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.http.request(m, url);
        for (n, v) in headers {
            // Raw bytes: UTF-8 metadata values are sent as-is, like the SDKs do.
            let value =
                reqwest::header::HeaderValue::from_bytes(v.as_bytes()).expect("header value");
            rb = rb.header(n.as_str(), value);
        }
        let resp = rb.body(body).send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn put(&self, key: &str, data: impl Into<Vec<u8>>) -> Resp {
        let r = self.send(Req::new("PUT", key).body(data)).await;
        assert_eq!(r.status, 200, "PUT {key}: {}", r.text());
        r
    }

    pub(crate) async fn get(&self, key: &str) -> Resp {
        self.send(Req::new("GET", key)).await
    }
}

pub(crate) fn uri(s: &str) -> String {
    uri_encode(s, false)
}

pub(crate) fn md5_b64(data: &[u8]) -> String {
    use base64::Engine as _;
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

/// Sends `req` signed with V4 over a bare TCP connection, path kept byte-for-byte (the
/// `url` crate behind reqwest treats `%2E%2E` as `..` and removes the segment, so keys
/// with dot segments cannot go through reqwest). Returns (status, body).
pub(crate) async fn send_raw_tcp(emu: &RunningEmulator, req: &Req) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let creds = emu.credentials();
    let sreq = SignableRequest {
        method: req.method,
        bucket: req.bucket.as_deref(),
        key: req.key.as_deref(),
        query: &req.query,
        headers: &req.headers,
    };
    let mut headers = req.headers.clone();
    headers.extend(sign_v4_header(
        &sreq,
        &creds,
        &SigningParams::oss(emu.region(), SystemTime::now()),
    ));
    let mut path = format!("/{}/", req.bucket.as_deref().unwrap_or(""));
    if let Some(k) = &req.key {
        path.push_str(&encode_url_path(k));
    }
    if !req.query.is_empty() {
        path.push('?');
        path.push_str(&encode_query_string(&req.query));
    }
    let mut msg = format!(
        "{} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        req.method,
        emu.addr(),
        req.body.len()
    );
    for (n, v) in &headers {
        msg.push_str(&format!("{n}: {v}\r\n"));
    }
    msg.push_str("\r\n");
    let mut s = tokio::net::TcpStream::connect(emu.addr())
        .await
        .expect("connect");
    s.write_all(msg.as_bytes()).await.expect("write");
    s.write_all(&req.body).await.expect("write body");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(out.len());
    (status, out[split..].to_vec())
}
