//! The HTTP front: accept loop, addressing (virtual-hosted / path style / service),
//! request parsing, control endpoints (`/-/…`) and the headers every reply carries.
//!
//! Request flow: parse Host + path + query into a [`Ctx`] → pick the OSS operation
//! ([`Op::detect`]) → count it → faults → authentication → the operation handler. Every
//! reply, success or error, gets `x-oss-request-id`, `Date` and `Server: AliyunOSS`.
//!
//! Pitfalls handled here: the path is percent-decoded exactly once and never normalised
//! (`%2E%2E` stays a literal `..` segment of the key); `+` in the query is a literal plus
//! (RFC 3986), not a space; a virtual-hosted key `-/stats` is an object, not the control
//! endpoint (control endpoints answer only on the bare host).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::body::{ConnSocket, RespBody, empty, full, read_small_body};
use super::error::OssError;
use super::faults::{FaultDecision, FaultRule, FaultSettings, FaultUpdate, Faults};
use super::network::ConnSetup;
use super::ops::{self, Op};
use super::request::{Ctx, Query};
use super::state::State;
use super::stats::Stats;
use super::xml::{XmlWriter, http_date};

fn json_response(status: u16, body: String) -> Response<RespBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Renders an OSS error. HEAD gets no body but `x-oss-err` (base64 of the XML).
pub fn error_response(
    e: &OssError,
    request_id: &str,
    host_id: &str,
    head: bool,
) -> Response<RespBody> {
    let mut w = XmlWriter::new("Error");
    w.elem("Code", e.code)
        .elem("Message", &e.message)
        .elem("RequestId", request_id)
        .elem("HostId", host_id);
    for (name, value) in &e.extra {
        w.elem(name, value);
    }
    w.elem("EC", e.ec);
    let xml = w.finish("Error");
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(e.ec) {
        h.insert("x-oss-ec", v);
    }
    for (name, value) in &e.headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(*name, v);
        }
    }
    if head {
        let b64 = base64::engine::general_purpose::STANDARD.encode(xml.as_bytes());
        if let Ok(v) = HeaderValue::from_str(&b64) {
            h.insert("x-oss-err", v);
        }
    } else if e.status != 304 {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(xml.len()));
        *r.body_mut() = full(xml);
    }
    r
}

/// Host without port; handles `[::1]:9000`.
fn host_name(headers: &HeaderMap, uri: &http::Uri) -> String {
    let raw = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_ascii_lowercase();
    }
    raw.split(':').next().unwrap_or("").to_ascii_lowercase()
}

/// The bucket named by a virtual-hosted Host, if any.
fn virtual_bucket(state: &State, host: &str) -> Option<String> {
    if host.is_empty() || host == "localhost" || host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let (first, rest) = host.split_once('.')?;
    if state.storage.bucket(first).is_some() {
        return Some(first.to_string());
    }
    // `oss-<region>.aliyuncs.com` and other bare endpoints name no bucket.
    if first.starts_with("oss-") || rest.is_empty() {
        return None;
    }
    Some(first.to_string())
}

fn parse_target(
    state: &State,
    req: &Request<Incoming>,
) -> Result<(Option<String>, Option<String>, bool), OssError> {
    let host = host_name(req.headers(), req.uri());
    let path = percent_decode_str(req.uri().path())
        .decode_utf8()
        .map_err(|_| {
            OssError::new(
                400,
                "InvalidObjectName",
                "The object name is not valid UTF-8.",
            )
        })?
        .into_owned();
    let path = path.strip_prefix('/').unwrap_or(&path);
    let (bucket, key, vhost) = match virtual_bucket(state, &host) {
        Some(b) => (Some(b), path.to_string(), true),
        None => match path.split_once('/') {
            Some((b, k)) => (Some(b.to_string()), k.to_string(), false),
            None if path.is_empty() => (None, String::new(), false),
            None => (Some(path.to_string()), String::new(), false),
        },
    };
    let key = if key.is_empty() {
        None
    } else {
        if key.len() > 1023 {
            return Err(OssError::new(
                400,
                "InvalidObjectName",
                "The object name is longer than 1023 bytes.",
            ));
        }
        if key.starts_with('/') || key.starts_with('\\') {
            return Err(OssError::new(
                400,
                "InvalidObjectName",
                "The object name must not start with '/' or '\\'.",
            ));
        }
        Some(key)
    };
    Ok((bucket, key, vhost))
}

/// Serves one request; never fails at the HTTP level.
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let request_id = state.next_request_id();
    let head = req.method() == Method::HEAD;
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let (mut resp, bucket) = match serve(&state, req, &request_id).await {
        Ok(r) => (r, None),
        Err((e, bucket)) => {
            tracing::debug!(%method, %uri, code = e.code, status = e.status, "request failed");
            let host_id = state.host_id(bucket.as_deref());
            (error_response(&e, &request_id, &host_id, head), bucket)
        }
    };
    let _ = bucket;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-oss-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(SystemTime::now())) {
        h.insert(header::DATE, v);
    }
    h.insert(header::SERVER, HeaderValue::from_static("AliyunOSS"));
    tracing::trace!(%method, %uri, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    Ok(resp)
}

type ServeError = (OssError, Option<String>);

async fn serve(
    state: &Arc<State>,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Response<RespBody>, ServeError> {
    let (bucket, key, virtual_hosted) = parse_target(state, &req).map_err(|e| (e, None))?;
    if !virtual_hosted && bucket.as_deref() == Some("-") {
        return control(state, req).await.map_err(|e| (e, None));
    }
    let query = Query::parse(req.uri().query()).map_err(|e| (e, bucket.clone()))?;
    let (parts, body) = req.into_parts();
    let socket = parts.extensions.get::<ConnSocket>().copied();
    let ctx = Ctx {
        socket,
        method: parts.method,
        headers: parts.headers,
        bucket,
        key,
        query,
        request_id: request_id.to_string(),
        virtual_hosted,
    };
    let fail = |e: OssError| (e, ctx.bucket.clone());
    let op = Op::detect(&ctx).map_err(fail)?;
    state.stats.request(op.name());

    if let Some(hit) = state.faults.rule_for(op.name(), ctx.key.as_deref()) {
        state.stats.fault("rule");
        return Err(fail(OssError::new(
            hit.status,
            hit.code,
            "Injected fault (fault rule).",
        )));
    }
    let mut fault = FaultDecision::None;
    if op.faultable() {
        let (decision, latency_ms) = state.faults.decide(op == Op::GetObject);
        if latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        }
        match decision {
            FaultDecision::Throttled => {
                state.stats.fault("throttled");
                return Err(fail(
                    OssError::new(
                        503,
                        "ServiceUnavailable",
                        "Please reduce your request rate.",
                    )
                    .with_ec("0004-00000302"),
                ));
            }
            FaultDecision::Error(status) => {
                state.stats.fault("error");
                return Err(fail(if status == 503 {
                    OssError::new(
                        503,
                        "ServiceUnavailable",
                        "Injected fault: service unavailable.",
                    )
                } else {
                    OssError::internal("Injected fault: internal error.")
                }));
            }
            other => fault = other,
        }
    }

    if let Err(e) = state.auth.verify(&ctx, state.anonymous) {
        state.stats.auth_failure(e.code);
        return Err(fail(e));
    }
    ops::run(state, &ctx, op, body, fault).await.map_err(fail)
}

/// `/-/…` endpoints: stats, faults, metadata outage switch. No auth.
async fn control(
    state: &Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, OssError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = read_small_body(req.into_body(), &Stats::default(), 1 << 16).await?;
    match (method.as_str(), path.as_str()) {
        ("GET", "/-/stats") => Ok(json_response(
            200,
            serde_json::to_string(&state.stats.snapshot())
                .map_err(|e| OssError::internal(e.to_string()))?,
        )),
        ("POST", "/-/stats/reset") => {
            state.stats.reset();
            Ok(json_response(200, "{}".into()))
        }
        ("GET", "/-/faults") => faults_view(&state.faults),
        ("POST", "/-/faults") => {
            let req: FaultsRequest = serde_json::from_slice(&body)
                .map_err(|e| OssError::invalid_argument(format!("bad faults JSON: {e}")))?;
            if let Some(rules) = req.rules {
                state
                    .faults
                    .set_rules(rules)
                    .map_err(OssError::invalid_argument)?;
            }
            let now = state.faults.update(&req.update);
            tracing::info!(?now, rules = ?state.faults.rules(), "fault settings changed");
            faults_view(&state.faults)
        }
        ("POST", "/-/metadata") => {
            #[derive(serde::Deserialize)]
            struct Down {
                down: bool,
            }
            let d: Down = serde_json::from_slice(&body)
                .map_err(|e| OssError::invalid_argument(format!("bad metadata JSON: {e}")))?;
            state.metadata_down.store(d.down, Ordering::Relaxed);
            tracing::info!(down = d.down, "metadata service switched");
            Ok(json_response(200, format!("{{\"down\":{}}}", d.down)))
        }
        ("GET", "/-/health") => Ok(json_response(200, "{\"ok\":true}".into())),
        _ => Err(OssError::new(
            404,
            "NotFound",
            format!("no control endpoint {method} {path}"),
        )),
    }
}

/// Body of `POST /-/faults`: a partial [`FaultUpdate`] plus, optionally, the new list of
/// rules (replacing the old one; absent keeps it).
#[derive(serde::Deserialize)]
struct FaultsRequest {
    #[serde(flatten)]
    update: FaultUpdate,
    #[serde(default)]
    rules: Option<Vec<FaultRule>>,
}

/// Reply of `GET`/`POST /-/faults`: the settings' fields, and `rules` with their counters.
fn faults_view(faults: &Faults) -> Result<Response<RespBody>, OssError> {
    #[derive(serde::Serialize)]
    struct View {
        #[serde(flatten)]
        settings: FaultSettings,
        rules: Vec<FaultRule>,
    }
    let view = View {
        settings: faults.settings(),
        rules: faults.rules(),
    };
    Ok(json_response(
        200,
        serde_json::to_string(&view).map_err(|e| OssError::internal(e.to_string()))?,
    ))
}

/// Accepts connections until `shutdown` flips to true; each connection is served with
/// keep-alive and shut down gracefully on the same signal.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    setup: ConnSetup,
    serve: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<RespBody>, Infallible>> + Send + 'static,
{
    // Connection tasks are kept so shutdown can wait for in-flight requests.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let serve = serve.clone();
        let socket = ConnSocket(std::os::fd::AsRawFd::as_raw_fd(&stream));
        let serve = move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(socket);
            serve(req)
        };
        let mut shutdown = shutdown.clone();
        let setup = setup.clone();
        connections.spawn(async move {
            let stream = match setup.wrap(stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(serve));
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with error");
                    }
                }
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
    drop(listener);
    // Each connection finishes its current request (at most 5 s); stragglers are
    // aborted when the set is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(6), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decodes_percent_but_keeps_plus() {
        let q = Query::parse(Some("prefix=a%20b+c&uploads&max-keys=5&x=%2B")).unwrap();
        assert_eq!(q.get("prefix"), Some("a b+c"));
        assert!(q.has("uploads"));
        assert_eq!(q.get("uploads"), Some(""));
        assert_eq!(q.get("max-keys"), Some("5"));
        assert_eq!(q.get("x"), Some("+"));
        assert!(Query::parse(Some("a=%FF")).is_err());
    }

    #[test]
    fn error_xml_and_head_header() {
        let e = OssError::no_such_key("k<1>");
        let r = error_response(&e, "RID", "host", true);
        assert_eq!(r.status(), 404);
        let b64 = r.headers()["x-oss-err"].to_str().unwrap();
        let xml = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap();
        assert!(xml.contains("<Code>NoSuchKey</Code>"));
        assert!(xml.contains("<Key>k&lt;1&gt;</Key>"));
        assert!(xml.contains("<EC>0026-00000001</EC>"));
        assert_eq!(r.headers()["x-oss-ec"], "0026-00000001");
    }
}
