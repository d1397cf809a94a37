//! Sending requests: signing, timeouts, retries, clock-skew correction, metrics, logs.
//!
//! [`OssClient::send_once`] performs one attempt and classifies its failure;
//! [`OssClient::run`] repeats an attempt closure under the retry policy of
//! [`super::retry`]. Operations whose *body* can fail in a retryable way (a ranged GET
//! that comes back short, a CRC mismatch) put the body reading inside the closure, so
//! those failures are retried like any other.
//!
//! Timeouts. reqwest's own `read_timeout` is one timer from send to response headers, so
//! it would cut off any upload that takes longer than it. We use a progress watchdog
//! instead: the request body stream records when it last handed hyper a chunk, and the
//! attempt fails only after `read_timeout` (or the operation's longer response timeout)
//! without progress. That covers a server that stops taking our upload (a write timeout)
//! and one that never answers. Response bodies are read with the same timeout per chunk.
//! Like the Go SDK's read/write deadlines, the wait after the last body chunk was handed
//! to the socket also covers draining the kernel's socket buffers, so on a very slow link
//! with huge buffers the timeout must stay larger than buffer size / bandwidth.
//!
//! Clock skew. On `RequestTimeTooSkewed` the offset server − local (from the reply's
//! `Date` header, else `<ServerTime>`) is stored and added to the signing time of every
//! later request; the attempt is retried at once.
//!
//! Logging: `debug!` per attempt; one `warn!` per request that finally fails, with the
//! operation, key, status, Code, RequestId and EC. Expected outcomes (404 on HEAD/GET,
//! 412, 304) are logged at debug. Header values, URLs with signatures and credentials are
//! never logged.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::OssClient;
use super::error::{MAX_ERROR_BODY, error_from_reply, header_str};
use super::request::{OssRequest, RequestBody, sign_headers};
use super::retry::{
    Failure, RetryReason, THROTTLED_EXTRA_ATTEMPTS, classify_reply, classify_status,
};
use super::xml;
use crate::crc64::Crc64Hasher;
use crate::credentials::ecs_ram_role::error_chain;
use crate::store::{ServiceCode, StoreError, StoreResult};

/// Largest XML reply we buffer (a 1000-key listing with long keys is a few MiB).
pub(crate) const MAX_XML_BODY: usize = 32 * 1024 * 1024;
/// Bytes per chunk when streaming an in-memory body (keeps the watchdog informed).
const UPLOAD_CHUNK: usize = 256 * 1024;

/// A successful (2xx) reply whose body has not been read yet.
pub(crate) struct Sent {
    pub resp: reqwest::Response,
    /// CRC-64 of the request body actually sent (None without a body).
    pub body_crc: Option<u64>,
}

/// Last moment the request body made progress, as ms after `start` plus one (0 = the
/// body has not moved yet, i.e. the connection may still be being set up).
#[derive(Clone)]
struct Progress {
    start: Instant,
    last_ms_plus_one: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            start: Instant::now(),
            last_ms_plus_one: Arc::new(AtomicU64::new(0)),
        }
    }
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms_plus_one.store(ms + 1, Ordering::Relaxed);
    }
    /// `None` until the body first moves.
    fn last(&self) -> Option<Duration> {
        match self.last_ms_plus_one.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_millis(n - 1)),
        }
    }
}

impl OssClient {
    fn timeout_failure(&self, req: &OssRequest, after: Duration) -> Failure {
        Failure::retryable(
            StoreError::Timeout {
                what: format!("{} to {}", req.op, self.inner.urls.endpoint_display()),
                secs: after.as_secs().max(1),
            },
            RetryReason::Timeout,
        )
    }

    pub(crate) fn network_failure(&self, e: &reqwest::Error, req: &OssRequest) -> Failure {
        if e.is_timeout() {
            return self.timeout_failure(req, self.inner.cfg.connect_timeout);
        }
        if e.is_builder() {
            return Failure::fatal(StoreError::InvalidArgument(error_chain(e)));
        }
        if let Some(err) = super::tls::certificate_failure(e, &self.inner.urls.endpoint_display()) {
            return Failure::fatal(err);
        }
        Failure::retryable(
            StoreError::Network {
                endpoint: self.inner.urls.endpoint_display(),
                message: error_chain(e),
            },
            RetryReason::Network,
        )
    }

    /// Builds the reqwest body for one attempt; the returned hasher (if any) holds the
    /// CRC of what has been streamed so far.
    async fn attempt_body(
        &self,
        body: &RequestBody,
        progress: &Progress,
    ) -> Result<(Option<reqwest::Body>, Option<Arc<Mutex<Crc64Hasher>>>), Failure> {
        match body {
            RequestBody::Empty => Ok((None, None)),
            RequestBody::Bytes { pieces, .. } => {
                let chunks: Vec<Bytes> = pieces
                    .iter()
                    .flat_map(|data| {
                        (0..data.len())
                            .step_by(UPLOAD_CHUNK)
                            .map(|at| data.slice(at..(at + UPLOAD_CHUNK).min(data.len())))
                    })
                    .collect();
                let p = progress.clone();
                let stream = futures::stream::iter(chunks).map(move |c| {
                    p.touch();
                    Ok::<Bytes, std::io::Error>(c)
                });
                Ok((Some(reqwest::Body::wrap_stream(stream)), None))
            }
            RequestBody::File { path, offset, len } => {
                let mut file = tokio::fs::File::open(path).await.map_err(|e| {
                    Failure::fatal(StoreError::Io(std::io::Error::new(
                        e.kind(),
                        format!("opening upload source {}: {e}", path.display()),
                    )))
                })?;
                let file_len = file
                    .metadata()
                    .await
                    .map_err(|e| Failure::fatal(StoreError::Io(e)))?
                    .len();
                if file_len < offset.saturating_add(*len) {
                    return Err(Failure::fatal(StoreError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "upload source {} has {file_len} bytes, fewer than offset {offset} + length {len}",
                            path.display()
                        ),
                    ))));
                }
                file.seek(std::io::SeekFrom::Start(*offset))
                    .await
                    .map_err(|e| Failure::fatal(StoreError::Io(e)))?;
                let hasher = Arc::new(Mutex::new(Crc64Hasher::new()));
                let h = hasher.clone();
                let p = progress.clone();
                let stream =
                    tokio_util::io::ReaderStream::with_capacity(file.take(*len), UPLOAD_CHUNK).map(
                        move |chunk| {
                            if let Ok(c) = &chunk {
                                p.touch();
                                h.lock().unwrap_or_else(|e| e.into_inner()).update(c);
                            }
                            chunk
                        },
                    );
                Ok((Some(reqwest::Body::wrap_stream(stream)), Some(hasher)))
            }
        }
    }

    /// One attempt: sign, send, wait for the status line; non-2xx replies are read,
    /// parsed and classified.
    pub(crate) async fn send_once(&self, req: &OssRequest) -> Result<Sent, Failure> {
        let inner = &self.inner;
        let creds = if inner.cfg.credentials.is_anonymous() {
            None
        } else {
            Some(
                inner
                    .cfg
                    .credentials
                    .credentials()
                    .await
                    .map_err(|e| Failure::fatal(StoreError::Credentials(e.0)))?,
            )
        };
        let url = inner.urls.url(&req.target, &req.query);
        let mut headers = req.headers.clone();
        let body_len = req.body.len();
        if body_len > 0 || matches!(req.method, reqwest::Method::PUT | reqwest::Method::POST) {
            headers.push(("content-length".into(), body_len.to_string()));
        }
        if let Some(creds) = &creds {
            let time = self.signing_time();
            let added = sign_headers(
                req,
                &headers,
                &inner.cfg.bucket,
                &inner.region,
                inner.cfg.signature_version,
                creds,
                time,
            );
            headers.retain(|(n, _)| !added.iter().any(|(a, _)| n.eq_ignore_ascii_case(a)));
            headers.extend(added);
        }
        let mut builder = inner.http.request(req.method.clone(), url.as_str());
        for (name, value) in &headers {
            // from_bytes (not from_str) so UTF-8 metadata values go out as raw bytes, as
            // the official SDKs send them; control characters are still refused.
            let v = reqwest::header::HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
                Failure::fatal(StoreError::InvalidArgument(format!(
                    "header {name} has a value that cannot be sent in HTTP (control characters)"
                )))
            })?;
            builder = builder.header(name.as_str(), v);
        }
        let progress = Progress::new();
        let (body, hasher) = self.attempt_body(&req.body, &progress).await?;
        if let Some(b) = body {
            builder = builder.body(b);
        }

        let timeout = req.response_timeout.unwrap_or(inner.cfg.read_timeout);
        let started = Instant::now();
        let send = builder.send();
        tokio::pin!(send);
        let result = loop {
            let last = progress.last();
            // Until the first body chunk moves, the connection may still be being set up:
            // that has its own (connect) timeout inside reqwest, so allow for it.
            let deadline = match last {
                Some(at) => progress.start + at + timeout,
                None => progress.start + inner.cfg.connect_timeout + timeout,
            };
            // Wake at the deadline, or earlier to re-evaluate it once the body has moved
            // (the first body chunk ends the connection-setup allowance).
            let wake = deadline.min(Instant::now() + timeout);
            tokio::select! {
                r = &mut send => break r,
                _ = tokio::time::sleep_until(wake.into()) => {
                    if progress.last() == last && Instant::now() >= deadline {
                        self.record_attempt(req, "timeout", started);
                        return Err(self.timeout_failure(req, timeout));
                    }
                }
            }
        };
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.record_attempt(req, "error", started);
                tracing::debug!(op = req.op, key = req.key(), error = %error_chain(&e), "OSS attempt failed");
                return Err(self.network_failure(&e, req));
            }
        };
        let status = resp.status().as_u16();
        self.record_attempt(req, &status.to_string(), started);
        tracing::debug!(
            op = req.op,
            key = req.key(),
            status,
            request_id = header_str(resp.headers(), "x-oss-request-id").unwrap_or("-"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "OSS attempt"
        );
        if resp.status().is_success() {
            if body_len > 0 {
                ::metrics::counter!(crate::metrics::OSS_BYTES_WRITTEN).increment(body_len);
            }
            let body_crc = match (&req.body, hasher) {
                (RequestBody::Empty, _) => None,
                (RequestBody::Bytes { crc, .. }, _) => Some(*crc),
                (RequestBody::File { .. }, Some(h)) => {
                    Some(h.lock().unwrap_or_else(|e| e.into_inner()).finish())
                }
                (RequestBody::File { .. }, None) => None,
            };
            return Ok(Sent { resp, body_crc });
        }
        let mut failure = self.error_reply(req, resp).await;
        if let Some(creds) = &creds
            && failure.error.service_code() == Some(&ServiceCode::SecurityTokenExpired)
            && inner.cfg.credentials.invalidate(&creds.access_key_id)
        {
            failure.retry = Some(RetryReason::ExpiredCredentials);
        }
        Err(failure)
    }

    fn record_attempt(&self, req: &OssRequest, status: &str, started: Instant) {
        ::metrics::counter!(crate::metrics::OSS_REQUESTS, "op" => req.op, "status" => status.to_string())
            .increment(1);
        ::metrics::histogram!(crate::metrics::OSS_REQUEST_SECONDS, "op" => req.op)
            .record(started.elapsed().as_secs_f64());
    }

    /// Reads and classifies a non-2xx reply.
    async fn error_reply(&self, req: &OssRequest, resp: reqwest::Response) -> Failure {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let (body, truncated) = match self.read_capped(resp, MAX_ERROR_BODY, req).await {
            Ok(b) => b,
            // The status alone decides retryability; a broken error body is still an error.
            Err(f) => {
                return Failure {
                    retry: classify_status(status, &ServiceCode::None).or(f.retry),
                    ..f
                };
            }
        };
        let resource = req.resource(&self.inner.cfg.bucket);
        let (error, server_time) =
            error_from_reply(status, &headers, &body, truncated, req.op, &resource);
        let code = error.service_code().unwrap_or(&ServiceCode::None);
        let ec = error.service().map(|s| s.ec.as_str()).unwrap_or("");
        let retry = classify_reply(status, code, ec);
        let clock_offset_ms = if retry == Some(RetryReason::ClockSkew) {
            let server = header_str(&headers, "date")
                .and_then(crate::sign::parse_http_date)
                .or_else(|| {
                    server_time
                        .as_deref()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(SystemTime::from)
                });
            server.map(|s| signed_ms_between(SystemTime::now(), s))
        } else {
            None
        };
        Failure {
            error,
            retry,
            clock_offset_ms,
        }
    }

    /// Reads a reply body up to `cap` bytes; `true` when it was longer (rest discarded).
    pub(crate) async fn read_capped(
        &self,
        mut resp: reqwest::Response,
        cap: usize,
        req: &OssRequest,
    ) -> Result<(Vec<u8>, bool), Failure> {
        let timeout = self.inner.cfg.read_timeout;
        let mut buf = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(timeout, resp.chunk()).await {
                Err(_) => return Err(self.timeout_failure(req, timeout)),
                Ok(Err(e)) => return Err(self.network_failure(&e, req)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            ::metrics::counter!(crate::metrics::OSS_BYTES_READ).increment(chunk.len() as u64);
            if buf.len() + chunk.len() > cap {
                return Ok((buf, true));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok((buf, false))
    }

    /// Repeats `attempt` under the retry policy. `req` names the operation in logs.
    pub(crate) async fn run<T, F, Fut>(&self, req: &OssRequest, attempt: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.run_counted(req, attempt).await.0
    }

    /// [`Self::run`], also returning how many attempts were made. Non-idempotent
    /// operations use the count: an error such as `FileAlreadyExists` after a retry may
    /// mean our own earlier attempt succeeded and only its reply was lost.
    pub(crate) async fn run_counted<T, F, Fut>(
        &self,
        req: &OssRequest,
        mut attempt: F,
    ) -> (StoreResult<T>, u32)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let max = self.inner.cfg.max_attempts.max(1);
        let limit = &self.inner.limit;
        let mut n = 0u32;
        let mut throttled = 0u32;
        loop {
            n += 1;
            let permit = limit.acquire().await;
            let outcome = attempt().await;
            drop(permit);
            let failure = match outcome {
                Ok(v) => {
                    limit.succeeded();
                    return (Ok(v), n);
                }
                Err(f) => f,
            };
            match failure.retry {
                Some(RetryReason::Throttled) => {
                    throttled += 1;
                    ::metrics::counter!(crate::metrics::OSS_THROTTLED, "op" => req.op).increment(1);
                    limit.throttled();
                }
                // A generic 503 or a connection failure while the mount is busy is also
                // a sign of overload: cut the budget, but keep the usual attempt count.
                Some(RetryReason::ServerError)
                    if failure.error.service().is_some_and(|s| s.status == 503) =>
                {
                    limit.throttled()
                }
                Some(RetryReason::Network | RetryReason::Timeout) if limit.in_flight() > 1 => {
                    limit.throttled()
                }
                _ => {}
            }
            let budget = max.saturating_add(throttled.min(THROTTLED_EXTRA_ATTEMPTS));
            if let Some(off) = failure.clock_offset_ms {
                self.inner.clock_offset_ms.store(off, Ordering::Relaxed);
                tracing::warn!(
                    op = req.op,
                    offset_ms = off,
                    "server says our clock is skewed; adopting its time for signing"
                );
            }
            match failure.retry {
                Some(reason) if n < budget => {
                    ::metrics::counter!(crate::metrics::OSS_RETRIES, "op" => req.op, "reason" => reason.as_str())
                        .increment(1);
                    let wait = if matches!(
                        reason,
                        RetryReason::ClockSkew | RetryReason::ExpiredCredentials
                    ) {
                        Duration::ZERO
                    } else if reason == RetryReason::Throttled {
                        self.inner.backoff.delay(n.min(5))
                    } else {
                        self.inner.backoff.delay(n)
                    };
                    tracing::debug!(
                        op = req.op,
                        key = req.key(),
                        attempt = n,
                        reason = reason.as_str(),
                        wait_ms = wait.as_millis() as u64,
                        error = %failure.error,
                        "retrying OSS request"
                    );
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    self.log_failure(req, &failure.error, n);
                    return (Err(failure.error), n);
                }
            }
        }
    }

    fn log_failure(&self, req: &OssRequest, err: &StoreError, attempts: u32) {
        match err {
            StoreError::Service(s) => {
                let expected = matches!(s.status, 304 | 404 | 412);
                if expected {
                    tracing::debug!(op = req.op, key = req.key(), status = s.status, code = %s.code, request_id = %s.request_id, "OSS request failed");
                } else {
                    tracing::warn!(
                        op = req.op,
                        key = req.key(),
                        status = s.status,
                        code = %s.code,
                        request_id = %s.request_id,
                        ec = %s.ec,
                        attempts,
                        "OSS request failed: {}",
                        s.message
                    );
                }
            }
            other => {
                tracing::warn!(op = req.op, key = req.key(), attempts, error = %other, "OSS request failed")
            }
        }
    }

    /// Sends with retries; the reply body is left to the caller.
    pub(crate) async fn execute(&self, req: &OssRequest) -> StoreResult<Sent> {
        self.run(req, || self.send_once(req)).await
    }

    /// [`Self::execute`] plus the number of attempts made.
    pub(crate) async fn execute_counted(&self, req: &OssRequest) -> (StoreResult<Sent>, u32) {
        self.run_counted(req, || self.send_once(req)).await
    }

    /// Sends with retries and reads the whole (bounded) reply body.
    async fn execute_read_counted(
        &self,
        req: &OssRequest,
    ) -> (StoreResult<(HeaderMap, Bytes)>, u32) {
        self.run_counted(req, || async {
            let sent = self.send_once(req).await?;
            let headers = sent.resp.headers().clone();
            let (body, truncated) = self.read_capped(sent.resp, MAX_XML_BODY, req).await?;
            if truncated {
                return Err(Failure::fatal(StoreError::InvalidResponse {
                    operation: req.op.to_string(),
                    message: format!("reply body larger than {} MiB", MAX_XML_BODY >> 20),
                }));
            }
            Ok((headers, Bytes::from(body)))
        })
        .await
    }

    /// Sends with retries and parses the XML reply.
    pub(crate) async fn execute_xml<T: serde::de::DeserializeOwned>(
        &self,
        req: &OssRequest,
    ) -> StoreResult<(HeaderMap, T)> {
        self.execute_xml_counted(req).await.0
    }

    /// [`Self::execute_xml`] plus the number of attempts made.
    pub(crate) async fn execute_xml_counted<T: serde::de::DeserializeOwned>(
        &self,
        req: &OssRequest,
    ) -> (StoreResult<(HeaderMap, T)>, u32) {
        let (result, attempts) = self.execute_read_counted(req).await;
        let parsed = result.and_then(|(headers, body)| {
            let parsed = xml::parse::<T>(&body).map_err(|message| StoreError::InvalidResponse {
                operation: req.op.to_string(),
                message,
            })?;
            Ok((headers, parsed))
        });
        (parsed, attempts)
    }
}

/// `to − from` in milliseconds, negative when `to` is earlier.
fn signed_ms_between(from: SystemTime, to: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_offsets() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(signed_ms_between(t, t + Duration::from_secs(2)), 2000);
        assert_eq!(signed_ms_between(t, t - Duration::from_millis(1500)), -1500);
    }
}
