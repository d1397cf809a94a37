//! Object operations: HeadObject, GetObject (ranged into memory, or streaming), PutObject,
//! DeleteObject, CopyObject, AppendObject, PutSymlink/GetSymlink.
//!
//! Ranged reads send `Range: bytes=a-b` with `x-oss-range-behavior: standard` (end past
//! EOF is clamped; a start at or past EOF is 416 InvalidRange) and optionally `If-Match`.
//! `get_range` reads exactly the promised length: shorter is retried (`ShortBody`), longer
//! is an invalid response. When the range covers the whole object the CRC-64 header is
//! checked (mismatch retried). Streaming GETs check length and CRC at the end and resume
//! after connection breaks: see `download`.
//!
//! Non-idempotent retries: AppendObject (or PutObject with `forbid_overwrite`) may have
//! succeeded on the server when its reply was lost; the retry then fails with
//! `PositionNotEqualToLength` (`FileAlreadyExists`). Only in that case — an error after a
//! retry — we check with a HEAD whether the object has exactly the expected length and
//! CRC and then report success.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::Method;
use reqwest::header::HeaderMap;

use super::OssClient;
use super::download::{BodyStream, Resume, parse_content_range};
use super::error::header_str;
use super::request::{OssRequest, RequestBody, validate_key};
use super::retry::{Failure, RetryReason};
use super::xml::CopyResult;
use crate::crc64::{Crc64Hasher, crc64, parse_header};
use crate::sign::{uri_decode, uri_encode};
use crate::store::{
    AppendResult, GetObjectOutput, GetRangeOutput, ObjectMeta, ObjectType, PutBody, PutOptions,
    PutResult, ServiceCode, StoreError, StoreResult,
};

/// CopyObject and friends may take a while on the server side for big objects.
pub(crate) const SLOW_OP_TIMEOUT_FACTOR: u32 = 6;

pub(crate) fn etag_of(h: &HeaderMap) -> String {
    header_str(h, "etag").unwrap_or("").to_string()
}

pub(crate) fn crc_of(h: &HeaderMap) -> Option<u64> {
    header_str(h, "x-oss-hash-crc64ecma").and_then(parse_header)
}

/// Object metadata from HEAD/GET headers; `size` is the whole object's size.
pub(crate) fn meta_from_headers(key: &str, h: &HeaderMap, size: u64) -> ObjectMeta {
    let mut user_meta = BTreeMap::new();
    for (name, value) in h {
        if let Some(m) = name.as_str().strip_prefix("x-oss-meta-")
            && let Ok(v) = std::str::from_utf8(value.as_bytes())
        {
            user_meta.insert(m.to_ascii_lowercase(), v.to_string());
        }
    }
    ObjectMeta {
        key: key.to_string(),
        size,
        etag: etag_of(h),
        last_modified: header_str(h, "last-modified").and_then(crate::sign::parse_http_date),
        object_type: ObjectType::parse(header_str(h, "x-oss-object-type").unwrap_or("Normal")),
        crc64: crc_of(h),
        content_type: header_str(h, "content-type").map(str::to_string),
        user_meta,
        next_append_position: header_str(h, "x-oss-next-append-position")
            .and_then(|v| v.parse().ok()),
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    header_str(h, "content-length").and_then(|v| v.parse().ok())
}

/// Adds the headers of object-creating requests.
pub(crate) fn apply_put_options(mut req: OssRequest, opts: &PutOptions) -> OssRequest {
    if let Some(ct) = &opts.content_type {
        req = req.header("content-type", ct.clone());
    }
    for (k, v) in &opts.user_meta {
        req = req.header(&format!("x-oss-meta-{}", k.to_ascii_lowercase()), v.clone());
    }
    if opts.forbid_overwrite {
        req = req.header("x-oss-forbid-overwrite", "true");
    }
    req
}

/// `/bucket/key` with the key encoded like a canonical URI (slashes kept).
pub(crate) fn copy_source(bucket: &str, key: &str) -> String {
    format!("/{bucket}/{}", uri_encode(key, true))
}

/// Compares the CRC we computed with the server's; None on either side skips the check.
pub(crate) fn check_crc(key: &str, client: Option<u64>, server: Option<u64>) -> StoreResult<()> {
    match (client, server) {
        (Some(c), Some(s)) if c != s => Err(StoreError::CrcMismatch {
            key: key.to_string(),
            client: c,
            server: s,
        }),
        _ => Ok(()),
    }
}

impl OssClient {
    pub(crate) async fn head_object_impl(&self, key: &str) -> StoreResult<ObjectMeta> {
        validate_key(key)?;
        let req = OssRequest::object("HeadObject", Method::HEAD, key);
        let sent = self.execute(&req).await?;
        let h = sent.resp.headers();
        let size = content_length(h).ok_or_else(|| StoreError::InvalidResponse {
            operation: "HeadObject".into(),
            message: "reply has no Content-Length".into(),
        })?;
        Ok(meta_from_headers(key, h, size))
    }

    pub(crate) fn ranged_get(
        &self,
        key: &str,
        range: Option<&Range<u64>>,
        if_match: Option<&str>,
    ) -> OssRequest {
        let mut req = OssRequest::object("GetObject", Method::GET, key);
        if let Some(r) = range {
            req = req
                .header("range", format!("bytes={}-{}", r.start, r.end - 1))
                .header("x-oss-range-behavior", "standard");
        }
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        req
    }

    /// The empty-range / empty-object answer: HEAD, honouring `if_match`.
    async fn empty_range(&self, key: &str, if_match: Option<&str>) -> StoreResult<GetRangeOutput> {
        let meta = self.head_object_impl(key).await?;
        if let Some(m) = if_match
            && m != meta.etag
        {
            return Err(StoreError::Service(Box::new(crate::store::ServiceError {
                status: 412,
                code: ServiceCode::PreconditionFailed,
                message: "ETag changed".into(),
                operation: "GetObject".into(),
                resource: format!("{}/{key}", self.inner.cfg.bucket),
                ..Default::default()
            })));
        }
        Ok(GetRangeOutput {
            data: Bytes::new(),
            etag: meta.etag,
            object_size: meta.size,
            object_crc64: meta.crc64,
        })
    }

    pub(crate) async fn get_range_impl(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<GetRangeOutput> {
        validate_key(key)?;
        if range.start > range.end {
            return Err(StoreError::InvalidArgument(format!(
                "range {}..{} is reversed",
                range.start, range.end
            )));
        }
        if range.start == range.end {
            return self.empty_range(key, if_match).await;
        }
        let req = self.ranged_get(key, Some(&range), if_match);
        let result = self
            .run(&req, || self.get_range_attempt(&req, key, &range))
            .await;
        match result {
            Err(e) if range.start == 0 && e.has_code(&ServiceCode::InvalidRange) => {
                // Reading from 0 of an empty object is an empty read, not an error.
                let out = self.empty_range(key, if_match).await?;
                if out.object_size == 0 {
                    Ok(out)
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    async fn get_range_attempt(
        &self,
        req: &OssRequest,
        key: &str,
        range: &Range<u64>,
    ) -> Result<GetRangeOutput, Failure> {
        let sent = self.send_once(req).await?;
        let h = sent.resp.headers().clone();
        let status = sent.resp.status().as_u16();
        let invalid = |message: String| {
            Failure::fatal(StoreError::InvalidResponse {
                operation: "GetObject".into(),
                message,
            })
        };
        let (object_size, expected) = if status == 206 {
            let (a, b, total) = header_str(&h, "content-range")
                .and_then(parse_content_range)
                .ok_or_else(|| invalid("206 reply without a valid Content-Range".into()))?;
            if a != range.start || b < a || b >= range.end {
                return Err(invalid(format!(
                    "asked for bytes {}-{}, got Content-Range {a}-{b}",
                    range.start,
                    range.end - 1
                )));
            }
            (total, b - a + 1)
        } else {
            // 200: the whole object. Acceptable only when that is what we asked for.
            let total = content_length(&h)
                .ok_or_else(|| invalid("200 reply without Content-Length".into()))?;
            if range.start != 0 || total > range.end - range.start {
                return Err(invalid(format!(
                    "server ignored the Range header (HTTP 200 for {} bytes)",
                    total
                )));
            }
            (total, total)
        };
        let data = self.read_exact_body(sent.resp, expected, req).await?;
        let object_crc64 = crc_of(&h);
        if range.start == 0
            && expected == object_size
            && let Some(server) = object_crc64
        {
            let client = crc64(&data);
            if client != server {
                return Err(Failure::retryable(
                    StoreError::CrcMismatch {
                        key: key.to_string(),
                        client,
                        server,
                    },
                    RetryReason::CrcMismatch,
                ));
            }
        }
        Ok(GetRangeOutput {
            data,
            etag: etag_of(&h),
            object_size,
            object_crc64,
        })
    }

    /// Reads exactly `expected` bytes: fewer is a retryable short body.
    async fn read_exact_body(
        &self,
        mut resp: reqwest::Response,
        expected: u64,
        req: &OssRequest,
    ) -> Result<Bytes, Failure> {
        let timeout = self.inner.cfg.read_timeout;
        let mut buf = BytesMut::with_capacity(expected.min(64 << 20) as usize);
        loop {
            let chunk = match tokio::time::timeout(timeout, resp.chunk()).await {
                Err(_) => {
                    return Err(Failure::retryable(
                        StoreError::Timeout {
                            what: format!("reading GetObject body from {}", self.endpoint()),
                            secs: timeout.as_secs().max(1),
                        },
                        RetryReason::Timeout,
                    ));
                }
                Ok(Err(e)) => {
                    // A connection cut mid-body: report it as a short body if we got any.
                    let mut f = self.network_failure(&e, req);
                    if !buf.is_empty() {
                        f.retry = Some(RetryReason::ShortBody);
                    }
                    return Err(f);
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            ::metrics::counter!(crate::metrics::OSS_BYTES_READ).increment(chunk.len() as u64);
            if buf.len() as u64 + chunk.len() as u64 > expected {
                return Err(Failure::fatal(StoreError::InvalidResponse {
                    operation: req.op.into(),
                    message: format!("body longer than the {expected} bytes promised"),
                }));
            }
            buf.extend_from_slice(&chunk);
        }
        if (buf.len() as u64) < expected {
            return Err(Failure::retryable(
                StoreError::Network {
                    endpoint: self.endpoint(),
                    message: format!("short body: received {} of {expected} bytes", buf.len()),
                },
                RetryReason::ShortBody,
            ));
        }
        Ok(buf.freeze())
    }

    pub(crate) async fn get_object_impl(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> StoreResult<GetObjectOutput> {
        validate_key(key)?;
        if let Some(r) = &range {
            if r.start > r.end {
                return Err(StoreError::InvalidArgument(format!(
                    "range {}..{} is reversed",
                    r.start, r.end
                )));
            }
            if r.start == r.end {
                let out = self.empty_range(key, if_match).await?;
                return Ok(GetObjectOutput {
                    meta: self
                        .head_object_impl(key)
                        .await
                        .unwrap_or_else(|_| ObjectMeta {
                            key: key.to_string(),
                            size: out.object_size,
                            etag: out.etag.clone(),
                            crc64: out.object_crc64,
                            ..Default::default()
                        }),
                    body: futures::stream::empty().boxed(),
                });
            }
        }
        let req = self.ranged_get(key, range.as_ref(), if_match);
        let sent = match self.execute(&req).await {
            Ok(s) => s,
            Err(e)
                if range.as_ref().is_some_and(|r| r.start == 0)
                    && e.has_code(&ServiceCode::InvalidRange) =>
            {
                let out = self.empty_range(key, if_match).await?;
                if out.object_size != 0 {
                    return Err(e);
                }
                return Ok(GetObjectOutput {
                    meta: ObjectMeta {
                        key: key.to_string(),
                        etag: out.etag,
                        crc64: out.object_crc64,
                        ..Default::default()
                    },
                    body: futures::stream::empty().boxed(),
                });
            }
            Err(e) => return Err(e),
        };
        let h = sent.resp.headers().clone();
        let body_len = content_length(&h).ok_or_else(|| StoreError::InvalidResponse {
            operation: "GetObject".into(),
            message: "reply has no Content-Length".into(),
        })?;
        let (start, size) = match header_str(&h, "content-range").and_then(parse_content_range) {
            Some((a, _, total)) if sent.resp.status().as_u16() == 206 => (a, total),
            _ => (0, body_len),
        };
        let meta = meta_from_headers(key, &h, size);
        let verify_crc = if start == 0 && body_len == size {
            meta.crc64
        } else {
            None
        };
        // Resuming needs the ETag to pin the object version.
        let resume = (!meta.etag.is_empty()).then(|| Resume {
            client: self.clone(),
            etag: meta.etag.clone(),
            start,
            attempts_left: self.inner.cfg.max_attempts.saturating_sub(1),
            retry: 0,
        });
        let body = BodyStream {
            inner: sent.resp.bytes_stream().boxed(),
            pending: None,
            hasher: verify_crc.map(|_| Crc64Hasher::new()),
            expected_crc: verify_crc,
            received: 0,
            expected_len: body_len,
            timeout: self.inner.cfg.read_timeout,
            key: key.to_string(),
            endpoint: self.endpoint(),
            done: false,
            resume,
        }
        .into_stream();
        Ok(GetObjectOutput { meta, body })
    }

    pub(crate) async fn put_object_impl(
        &self,
        key: &str,
        body: PutBody,
        opts: &PutOptions,
    ) -> StoreResult<PutResult> {
        validate_key(key)?;
        let req = apply_put_options(
            OssRequest::object("PutObject", Method::PUT, key).body(RequestBody::from(body)),
            opts,
        );
        let (result, attempts) = self.execute_counted(&req).await;
        let sent = match result {
            Ok(s) => s,
            Err(e)
                if opts.forbid_overwrite
                    && attempts > 1
                    && e.has_code(&ServiceCode::FileAlreadyExists) =>
            {
                // Did our own earlier attempt create it? Then the object is exactly our
                // body. The CRC is known up front only for in-memory bodies.
                if let RequestBody::Bytes { len, crc, .. } = &req.body {
                    let meta = self.head_object_impl(key).await?;
                    if meta.size == *len && meta.crc64 == Some(*crc) {
                        return Ok(PutResult {
                            etag: meta.etag,
                            crc64: meta.crc64,
                        });
                    }
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let h = sent.resp.headers();
        let server = crc_of(h);
        check_crc(key, sent.body_crc, server)?;
        Ok(PutResult {
            etag: etag_of(h),
            crc64: server.or(sent.body_crc),
        })
    }

    pub(crate) async fn delete_object_impl(&self, key: &str) -> StoreResult<()> {
        validate_key(key)?;
        let req = OssRequest::object("DeleteObject", Method::DELETE, key);
        match self.execute(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.has_code(&ServiceCode::NoSuchKey) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn copy_object_impl(
        &self,
        src_key: &str,
        dst_key: &str,
        replace_meta: Option<&PutOptions>,
    ) -> StoreResult<PutResult> {
        validate_key(src_key)?;
        validate_key(dst_key)?;
        let mut req = OssRequest::object("CopyObject", Method::PUT, dst_key).header(
            "x-oss-copy-source",
            copy_source(&self.inner.cfg.bucket, src_key),
        );
        req = match replace_meta {
            Some(opts) => {
                apply_put_options(req.header("x-oss-metadata-directive", "REPLACE"), opts)
            }
            None => req.header("x-oss-metadata-directive", "COPY"),
        };
        req.response_timeout = Some(self.inner.cfg.read_timeout * SLOW_OP_TIMEOUT_FACTOR);
        let (h, result) = self.execute_xml::<CopyResult>(&req).await?;
        Ok(PutResult {
            etag: result.etag,
            crc64: crc_of(&h),
        })
    }

    pub(crate) async fn append_object_impl(
        &self,
        key: &str,
        position: u64,
        body: Bytes,
        init_crc: Option<u64>,
        opts: &PutOptions,
    ) -> StoreResult<AppendResult> {
        validate_key(key)?;
        let len = body.len() as u64;
        let expected_crc = match init_crc {
            Some(c) => {
                let mut h = Crc64Hasher::with_initial(c);
                h.update(&body);
                Some(h.finish())
            }
            None if position == 0 => Some(crc64(&body)),
            None => None,
        };
        let mut req = OssRequest::object("AppendObject", Method::POST, key)
            .bare("append")
            .param("position", position.to_string())
            .body(RequestBody::bytes(body));
        if position == 0 {
            req = apply_put_options(req, opts);
        }
        let (result, attempts) = self.execute_counted(&req).await;
        let sent = match result {
            Ok(s) => s,
            Err(e)
                if attempts > 1
                    && e.has_code(&ServiceCode::PositionNotEqualToLength)
                    && expected_crc.is_some() =>
            {
                // Did an earlier attempt of ours land? Then the object is exactly it.
                let meta = self.head_object_impl(key).await?;
                if meta.size == position + len && meta.crc64.is_some() && meta.crc64 == expected_crc
                {
                    return Ok(AppendResult {
                        next_position: meta.size,
                        crc64: meta.crc64,
                    });
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let h = sent.resp.headers();
        let server = crc_of(h);
        check_crc(key, expected_crc, server)?;
        let next_position = header_str(h, "x-oss-next-append-position")
            .and_then(|v| v.parse().ok())
            .unwrap_or(position + len);
        Ok(AppendResult {
            next_position,
            crc64: server.or(expected_crc),
        })
    }

    pub(crate) async fn put_symlink_impl(
        &self,
        key: &str,
        target: &str,
        opts: &PutOptions,
    ) -> StoreResult<()> {
        validate_key(key)?;
        validate_key(target)?;
        // Percent-encoded like oss2 and the OSS docs, so any UTF-8 target fits in a header.
        let req = apply_put_options(
            OssRequest::object("PutSymlink", Method::PUT, key)
                .bare("symlink")
                .header("x-oss-symlink-target", uri_encode(target, true)),
            opts,
        );
        self.execute(&req).await.map(|_| ())
    }

    /// GetSymlink: the target and the link's own headers (its `x-oss-meta-*`).
    pub(crate) async fn get_symlink_impl(
        &self,
        key: &str,
    ) -> StoreResult<crate::store::SymlinkInfo> {
        validate_key(key)?;
        let req = OssRequest::object("GetSymlink", Method::GET, key).bare("symlink");
        let sent = self.execute(&req).await?;
        let raw = header_str(sent.resp.headers(), "x-oss-symlink-target").ok_or_else(|| {
            StoreError::InvalidResponse {
                operation: "GetSymlink".into(),
                message: "reply has no x-oss-symlink-target header".into(),
            }
        })?;
        let target = uri_decode(raw).unwrap_or_else(|| raw.to_string());
        let mut meta = meta_from_headers(key, sent.resp.headers(), 0);
        meta.object_type = ObjectType::Symlink;
        meta.crc64 = None;
        Ok(crate::store::SymlinkInfo { target, meta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9, 100)));
        assert_eq!(parse_content_range("bytes 5-5/6"), Some((5, 5, 6)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("garbage"), None);
    }

    #[test]
    fn copy_source_keeps_slashes_and_encodes_the_rest() {
        assert_eq!(copy_source("b", "a b/c+d/中"), "/b/a%20b/c%2Bd/%E4%B8%AD");
    }
}
