//! The OSS HTTP client: [`OssClient`] implements [`crate::store::ObjectStore`].
//!
//! Layout:
//! - [`config`]: endpoint, bucket, region, URL style, signature version, credentials,
//!   timeouts, retries.
//! - `request`: the request model, URL building (dot-segment-safe paths, `%20` queries)
//!   and signing; `transport`: one attempt / retries / clock skew / metrics / logs;
//!   `retry`: classification and full-jitter backoff; `error`: error replies →
//!   [`StoreError`]; `xml`: reply parsing and request bodies.
//! - Operations: `object` (head, get, put, delete, copy, append, symlink) with `download`
//!   (streaming bodies that verify and resume), `multipart`,
//!   `list` (ListObjectsV2, DeleteMultipleObjects), [`bucket`] (GetBucketInfo,
//!   DescribeRegions).
//!
//! Design rules:
//! - Every attempt is signed afresh (new time, current credentials, adopted clock offset).
//! - Bodies stream in both directions; only `get_range` (bounded ranges) and XML replies
//!   are buffered. File bodies are streamed from disk and re-opened for each attempt.
//! - CRC-64 is checked on every upload (PutObject, UploadPart, AppendObject,
//!   CompleteMultipartUpload via combined part CRCs) and on whole-object downloads.
//!   Download mismatches are retried; upload mismatches are returned as
//!   [`StoreError::CrcMismatch`] (the object exists; the caller decides what to do).
//! - Every attempt holds a permit of one per-client budget of requests in flight
//!   (`limiter`), which halves on throttling (503 / EC 0004-00000302) and grows back.
//! - The connection pool is per host with 50 s idle timeout, TCP keepalive and nodelay.
//! - HTTPS trusts the system CA store (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured) plus
//!   `--ca-cert`; a rejected certificate fails at once with a one-line reason (`tls`).
//!
//! The client is cheap to clone (an `Arc` inside).

pub mod bucket;
pub mod config;
mod download;
mod error;
mod limiter;
mod list;
mod multipart;
mod object;
mod request;
mod retry;
mod tls;
mod transport;
#[cfg(test)]
mod transport_tests;
mod xml;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

pub use bucket::{BucketInfo, RegionSource};
pub use config::{ClientConfig, UrlStyle, default_user_agent};
pub use limiter::{InflightLimit, InflightPermit};
pub use list::DeleteReport;
pub use request::MAX_KEY_BYTES;
pub use retry::{Backoff, RetryReason, classify_status};

use crate::store::{
    AppendResult, GetObjectOutput, GetRangeOutput, ListPage, ListRequest, MultipartUploadInfo,
    ObjectMeta, ObjectStore, PartInfo, PutBody, PutOptions, PutResult, StoreError, StoreResult,
};
use config::{ParsedEndpoint, bare_region};
use request::UrlBuilder;

pub(crate) struct Inner {
    pub cfg: ClientConfig,
    pub urls: UrlBuilder,
    /// Bare signing region.
    pub region: String,
    pub http: reqwest::Client,
    /// Server time − local time, adopted after `RequestTimeTooSkewed`.
    pub clock_offset_ms: AtomicI64,
    pub backoff: Backoff,
    /// The mount-wide budget of requests in flight (AIMD under throttling).
    pub limit: Arc<InflightLimit>,
}

/// The OSS client. See the module docs.
#[derive(Clone)]
pub struct OssClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for OssClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OssClient")
            .field("endpoint", &self.inner.urls.endpoint_display())
            .field("bucket", &self.inner.cfg.bucket)
            .field("style", &self.inner.urls.style)
            .finish_non_exhaustive()
    }
}

impl OssClient {
    /// Validates the configuration and builds the connection pool (no request is sent).
    pub fn new(cfg: ClientConfig) -> StoreResult<OssClient> {
        let endpoint = ParsedEndpoint::parse(&cfg.endpoint)?;
        let region = bare_region(cfg.region.trim()).to_string();
        if region.is_empty() && cfg.signature_version == crate::sign::SignatureVersion::V4 {
            return Err(StoreError::InvalidArgument(
                "a region is required for V4 signatures (e.g. --region cn-hangzhou)".into(),
            ));
        }
        if cfg.url_style == UrlStyle::VirtualHosted && !endpoint.host_is_ip {
            // The bucket becomes a DNS label: it must be one.
            let b = &cfg.bucket;
            let ok = (3..=63).contains(&b.len())
                && b.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !b.starts_with('-')
                && !b.ends_with('-');
            if !ok {
                return Err(StoreError::InvalidArgument(format!(
                    "bucket name {b:?} is invalid: 3-63 characters of a-z, 0-9 and '-', \
                     not starting or ending with '-'"
                )));
            }
        }
        let mut http = reqwest::Client::builder();
        if let Some(ca) = &cfg.ca_cert {
            http = tls::add_ca_file(http, ca)?;
        }
        let http = http
            .connect_timeout(cfg.connect_timeout)
            // `Filesystem::trim_when_settled` counts on this bound.
            .pool_idle_timeout(Duration::from_secs(50))
            .pool_max_idle_per_host(100)
            .tcp_keepalive(Duration::from_secs(30))
            .tcp_nodelay(true)
            .user_agent(cfg.user_agent.clone())
            // OSS never redirects object requests; following one would re-send a signed
            // request to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StoreError::InvalidArgument(format!("cannot build HTTP client: {e}")))?;
        let urls = UrlBuilder::new(endpoint, cfg.url_style, &cfg.bucket);
        let backoff = Backoff {
            base: cfg.retry_base_delay,
            max: cfg.retry_max_delay,
        };
        Ok(OssClient {
            inner: Arc::new(Inner {
                urls,
                region,
                http,
                clock_offset_ms: AtomicI64::new(0),
                backoff,
                limit: InflightLimit::new(cfg.max_inflight),
                cfg,
            }),
        })
    }

    /// `scheme://host[:port]` requests go to (without the bucket).
    pub fn endpoint(&self) -> String {
        self.inner.urls.endpoint_display()
    }

    /// The URL style in effect (an IP endpoint forces path style).
    pub fn url_style(&self) -> UrlStyle {
        self.inner.urls.style
    }

    /// Where the credentials come from (never the secret).
    pub fn credentials_source(&self) -> String {
        self.inner.cfg.credentials.describe()
    }

    /// The budget of requests in flight every attempt draws from.
    pub fn inflight_limit(&self) -> &Arc<InflightLimit> {
        &self.inner.limit
    }

    /// Clock offset (server − local, ms) currently applied to signatures.
    pub fn clock_offset_ms(&self) -> i64 {
        self.inner.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// Sets the clock offset; tests use it to simulate a skewed local clock.
    pub fn set_clock_offset_ms(&self, ms: i64) {
        self.inner.clock_offset_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn signing_time(&self) -> SystemTime {
        let now = SystemTime::now();
        let off = self.clock_offset_ms();
        if off >= 0 {
            now + Duration::from_millis(off as u64)
        } else {
            now.checked_sub(Duration::from_millis(off.unsigned_abs()))
                .unwrap_or(now)
        }
    }
}

#[async_trait]
impl ObjectStore for OssClient {
    fn bucket(&self) -> &str {
        &self.inner.cfg.bucket
    }

    async fn head_object(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.head_object_impl(key).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<GetRangeOutput> {
        self.get_range_impl(key, range, if_match).await
    }

    async fn get_object(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> StoreResult<GetObjectOutput> {
        self.get_object_impl(key, range, if_match).await
    }

    async fn put_object(
        &self,
        key: &str,
        body: PutBody,
        opts: &PutOptions,
    ) -> StoreResult<PutResult> {
        self.put_object_impl(key, body, opts).await
    }

    async fn initiate_multipart_upload(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        self.initiate_multipart_upload_impl(key, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: PutBody,
    ) -> StoreResult<PartInfo> {
        self.upload_part_impl(key, upload_id, part_number, body)
            .await
    }

    async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> StoreResult<PutResult> {
        self.complete_multipart_upload_impl(key, upload_id, parts)
            .await
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.abort_multipart_upload_impl(key, upload_id).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        self.list_multipart_uploads_impl(prefix).await
    }

    async fn list_objects(&self, req: &ListRequest) -> StoreResult<ListPage> {
        self.list_objects_impl(req).await
    }

    async fn delete_object(&self, key: &str) -> StoreResult<()> {
        self.delete_object_impl(key).await
    }

    async fn delete_objects(&self, keys: &[String]) -> StoreResult<()> {
        let report = self.delete_objects_detailed(keys).await?;
        report.into_result()
    }

    async fn copy_object(
        &self,
        src_key: &str,
        dst_key: &str,
        replace_meta: Option<&PutOptions>,
    ) -> StoreResult<PutResult> {
        self.copy_object_impl(src_key, dst_key, replace_meta).await
    }

    async fn upload_part_copy(
        &self,
        src_key: &str,
        dst_key: &str,
        upload_id: &str,
        part_number: u32,
        range: Range<u64>,
    ) -> StoreResult<PartInfo> {
        self.upload_part_copy_impl(src_key, dst_key, upload_id, part_number, range)
            .await
    }

    async fn append_object(
        &self,
        key: &str,
        position: u64,
        body: Bytes,
        init_crc: Option<u64>,
        opts: &PutOptions,
    ) -> StoreResult<AppendResult> {
        self.append_object_impl(key, position, body, init_crc, opts)
            .await
    }

    async fn put_symlink(&self, key: &str, target: &str, opts: &PutOptions) -> StoreResult<()> {
        self.put_symlink_impl(key, target, opts).await
    }

    async fn get_symlink(&self, key: &str) -> StoreResult<String> {
        Ok(self.get_symlink_impl(key).await?.target)
    }

    async fn get_symlink_info(&self, key: &str) -> StoreResult<crate::store::SymlinkInfo> {
        self.get_symlink_impl(key).await
    }
}
