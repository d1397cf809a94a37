//! Fault-injecting [`ObjectStore`] wrapper for reliability tests.
//!
//! `FaultStore<S>` forwards every call to the wrapped store but, driven by a seeded RNG
//! (so a failing run can be replayed with the same seed), may instead:
//! - fail *before* forwarding with a transient error (503 `ServiceUnavailable`,
//!   500 `InternalError`, a network reset or a timeout) — what the client returns after
//!   its retries are exhausted;
//! - for mutating calls, forward and *then* report a network error ("ambiguous
//!   failure": the change happened but the caller cannot know) — the nastiest case for
//!   "never lose data" logic;
//! - truncate reads: a streaming `get_object` body stops early with a network error,
//!   and `get_range` fails with a network error (its contract forbids short data), or —
//!   with [`FaultConfig::short_range_data`] — returns fewer bytes than asked, to check
//!   that readers detect contract violations instead of serving garbage.
//!
//! Faults can be limited to some operations ([`FaultConfig::ops`], OSS API names as in
//! [`crate::store::mock`]) and switched off at run time ([`FaultStore::set_enabled`]) so
//! a test can set up state, enable faults, then verify with faults disabled.
//! [`FaultStore::injected`] tells how many faults fired, so a test can check it really
//! exercised failures.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    AppendResult, GetObjectOutput, GetRangeOutput, ListPage, ListRequest, MultipartUploadInfo,
    ObjectMeta, ObjectStore, PartInfo, PutBody, PutOptions, PutResult, StoreError, StoreResult,
    SymlinkInfo,
};

/// What to inject, and how often. Probabilities are per call, in `0.0..=1.0`.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    pub seed: u64,
    /// Probability that a call fails with a transient error before reaching the store.
    pub error_probability: f64,
    /// Probability that a mutating call succeeds in the store but reports a network error.
    pub ambiguous_probability: f64,
    /// Probability that a read (`get_range`/`get_object`) is cut short.
    pub short_read_probability: f64,
    /// With a short read, `get_range` returns truncated data (contract violation) instead
    /// of an error.
    pub short_range_data: bool,
    /// Only these operations get faults; empty = all.
    pub ops: Vec<String>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 1,
            error_probability: 0.0,
            ambiguous_probability: 0.0,
            short_read_probability: 0.0,
            short_range_data: false,
            ops: Vec::new(),
        }
    }
}

/// Wraps a store and injects seeded failures.
#[derive(Debug)]
pub struct FaultStore<S> {
    inner: S,
    cfg: FaultConfig,
    rng: Mutex<StdRng>,
    enabled: AtomicBool,
    injected: AtomicU64,
}

impl<S: ObjectStore> FaultStore<S> {
    pub fn new(inner: S, cfg: FaultConfig) -> Self {
        FaultStore {
            rng: Mutex::new(StdRng::seed_from_u64(cfg.seed)),
            inner,
            cfg,
            enabled: AtomicBool::new(true),
            injected: AtomicU64::new(0),
        }
    }

    /// The wrapped store (e.g. to inspect a `MockStore`).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    /// Number of faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn applies(&self, op: &str) -> bool {
        self.enabled.load(Ordering::SeqCst)
            && (self.cfg.ops.is_empty() || self.cfg.ops.iter().any(|o| o == op))
    }

    /// Draws a uniform number in `0..1` and, if below `p`, counts an injected fault.
    fn roll(&self, op: &str, p: f64) -> bool {
        if p <= 0.0 || !self.applies(op) {
            return false;
        }
        let hit = self
            .rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .random::<f64>()
            < p;
        if hit {
            self.injected.fetch_add(1, Ordering::SeqCst);
            tracing::debug!(op, "fault injected");
        }
        hit
    }

    fn random_below(&self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .random_range(0..n)
    }

    fn transient_error(&self, op: &str) -> StoreError {
        match self.random_below(4) {
            0 => StoreError::from_service(503, "ServiceUnavailable", "injected fault"),
            1 => StoreError::from_service(500, "InternalError", "injected fault"),
            2 => StoreError::Network {
                endpoint: "fault-injector".into(),
                message: format!("connection reset by peer (injected, {op})"),
            },
            _ => StoreError::Timeout {
                what: format!("{op} (injected)"),
                secs: 10,
            },
        }
    }

    fn before(&self, op: &str) -> StoreResult<()> {
        if self.roll(op, self.cfg.error_probability) {
            return Err(self.transient_error(op));
        }
        Ok(())
    }

    /// After a successful mutation: maybe pretend the response was lost.
    fn after<T>(&self, op: &str, res: StoreResult<T>) -> StoreResult<T> {
        if res.is_ok() && self.roll(op, self.cfg.ambiguous_probability) {
            return Err(StoreError::Network {
                endpoint: "fault-injector".into(),
                message: format!("connection closed before response (injected, {op})"),
            });
        }
        res
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for FaultStore<S> {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    async fn head_object(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.before("HeadObject")?;
        self.inner.head_object(key).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<GetRangeOutput> {
        self.before("GetObject")?;
        let mut out = self.inner.get_range(key, range, if_match).await?;
        if out.data.len() > 1 && self.roll("GetObject", self.cfg.short_read_probability) {
            if !self.cfg.short_range_data {
                return Err(StoreError::Network {
                    endpoint: "fault-injector".into(),
                    message: "body shorter than Content-Length (injected)".into(),
                });
            }
            let keep = 1 + self.random_below(out.data.len() as u64 - 1) as usize;
            out.data = out.data.slice(..keep);
        }
        Ok(out)
    }

    async fn get_object(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> StoreResult<GetObjectOutput> {
        self.before("GetObject")?;
        let out = self.inner.get_object(key, range, if_match).await?;
        if !self.roll("GetObject", self.cfg.short_read_probability) {
            return Ok(out);
        }
        // Pass through a random number of bytes, then fail like a reset connection.
        let mut budget = self.random_below(out.meta.size.max(1));
        let body = out
            .body
            .scan(false, move |failed, item| {
                if *failed {
                    return futures::future::ready(None);
                }
                let res = match item {
                    Ok(chunk) if (chunk.len() as u64) < budget => {
                        budget -= chunk.len() as u64;
                        Ok(chunk)
                    }
                    Ok(_) => {
                        *failed = true;
                        Err(StoreError::Network {
                            endpoint: "fault-injector".into(),
                            message: "connection reset mid-body (injected)".into(),
                        })
                    }
                    Err(e) => {
                        *failed = true;
                        Err(e)
                    }
                };
                futures::future::ready(Some(res))
            })
            .boxed();
        Ok(GetObjectOutput {
            meta: out.meta,
            body,
        })
    }

    async fn put_object(
        &self,
        key: &str,
        body: PutBody,
        opts: &PutOptions,
    ) -> StoreResult<PutResult> {
        self.before("PutObject")?;
        let r = self.inner.put_object(key, body, opts).await;
        self.after("PutObject", r)
    }

    async fn initiate_multipart_upload(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        self.before("InitiateMultipartUpload")?;
        self.inner.initiate_multipart_upload(key, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: PutBody,
    ) -> StoreResult<PartInfo> {
        self.before("UploadPart")?;
        let r = self
            .inner
            .upload_part(key, upload_id, part_number, body)
            .await;
        self.after("UploadPart", r)
    }

    async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> StoreResult<PutResult> {
        self.before("CompleteMultipartUpload")?;
        let r = self
            .inner
            .complete_multipart_upload(key, upload_id, parts)
            .await;
        self.after("CompleteMultipartUpload", r)
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.before("AbortMultipartUpload")?;
        self.inner.abort_multipart_upload(key, upload_id).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        self.before("ListMultipartUploads")?;
        self.inner.list_multipart_uploads(prefix).await
    }

    async fn list_objects(&self, req: &ListRequest) -> StoreResult<ListPage> {
        self.before("ListObjectsV2")?;
        self.inner.list_objects(req).await
    }

    async fn delete_object(&self, key: &str) -> StoreResult<()> {
        self.before("DeleteObject")?;
        let r = self.inner.delete_object(key).await;
        self.after("DeleteObject", r)
    }

    async fn delete_objects(&self, keys: &[String]) -> StoreResult<()> {
        self.before("DeleteMultipleObjects")?;
        let r = self.inner.delete_objects(keys).await;
        self.after("DeleteMultipleObjects", r)
    }

    async fn copy_object(
        &self,
        src_key: &str,
        dst_key: &str,
        replace_meta: Option<&PutOptions>,
    ) -> StoreResult<PutResult> {
        self.before("CopyObject")?;
        let r = self.inner.copy_object(src_key, dst_key, replace_meta).await;
        self.after("CopyObject", r)
    }

    async fn upload_part_copy(
        &self,
        src_key: &str,
        dst_key: &str,
        upload_id: &str,
        part_number: u32,
        range: Range<u64>,
    ) -> StoreResult<PartInfo> {
        self.before("UploadPartCopy")?;
        let r = self
            .inner
            .upload_part_copy(src_key, dst_key, upload_id, part_number, range)
            .await;
        self.after("UploadPartCopy", r)
    }

    async fn append_object(
        &self,
        key: &str,
        position: u64,
        body: Bytes,
        init_crc: Option<u64>,
        opts: &PutOptions,
    ) -> StoreResult<AppendResult> {
        self.before("AppendObject")?;
        let r = self
            .inner
            .append_object(key, position, body, init_crc, opts)
            .await;
        self.after("AppendObject", r)
    }

    async fn put_symlink(&self, key: &str, target: &str, opts: &PutOptions) -> StoreResult<()> {
        self.before("PutSymlink")?;
        let r = self.inner.put_symlink(key, target, opts).await;
        self.after("PutSymlink", r)
    }

    async fn get_symlink(&self, key: &str) -> StoreResult<String> {
        self.before("GetSymlink")?;
        self.inner.get_symlink(key).await
    }

    async fn get_symlink_info(&self, key: &str) -> StoreResult<SymlinkInfo> {
        self.before("GetSymlink")?;
        self.inner.get_symlink_info(key).await
    }
}

/// A shared store is a store: lets a test wrap an `Arc<MockStore>` it keeps inspecting,
/// or wrap an `Arc<dyn ObjectStore>`.
#[async_trait]
impl<T: ObjectStore + ?Sized> ObjectStore for std::sync::Arc<T> {
    fn bucket(&self) -> &str {
        (**self).bucket()
    }
    async fn head_object(&self, key: &str) -> StoreResult<ObjectMeta> {
        (**self).head_object(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<GetRangeOutput> {
        (**self).get_range(key, range, if_match).await
    }
    async fn get_object(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> StoreResult<GetObjectOutput> {
        (**self).get_object(key, range, if_match).await
    }
    async fn put_object(
        &self,
        key: &str,
        body: PutBody,
        opts: &PutOptions,
    ) -> StoreResult<PutResult> {
        (**self).put_object(key, body, opts).await
    }
    async fn initiate_multipart_upload(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        (**self).initiate_multipart_upload(key, opts).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: PutBody,
    ) -> StoreResult<PartInfo> {
        (**self)
            .upload_part(key, upload_id, part_number, body)
            .await
    }
    async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> StoreResult<PutResult> {
        (**self)
            .complete_multipart_upload(key, upload_id, parts)
            .await
    }
    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        (**self).abort_multipart_upload(key, upload_id).await
    }
    async fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        (**self).list_multipart_uploads(prefix).await
    }
    async fn list_objects(&self, req: &ListRequest) -> StoreResult<ListPage> {
        (**self).list_objects(req).await
    }
    async fn delete_object(&self, key: &str) -> StoreResult<()> {
        (**self).delete_object(key).await
    }
    async fn delete_objects(&self, keys: &[String]) -> StoreResult<()> {
        (**self).delete_objects(keys).await
    }
    async fn copy_object(
        &self,
        src_key: &str,
        dst_key: &str,
        replace_meta: Option<&PutOptions>,
    ) -> StoreResult<PutResult> {
        (**self).copy_object(src_key, dst_key, replace_meta).await
    }
    async fn upload_part_copy(
        &self,
        src_key: &str,
        dst_key: &str,
        upload_id: &str,
        part_number: u32,
        range: Range<u64>,
    ) -> StoreResult<PartInfo> {
        (**self)
            .upload_part_copy(src_key, dst_key, upload_id, part_number, range)
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
        (**self)
            .append_object(key, position, body, init_crc, opts)
            .await
    }
    async fn put_symlink(&self, key: &str, target: &str, opts: &PutOptions) -> StoreResult<()> {
        (**self).put_symlink(key, target, opts).await
    }
    async fn get_symlink(&self, key: &str) -> StoreResult<String> {
        (**self).get_symlink(key).await
    }
    async fn get_symlink_info(&self, key: &str) -> StoreResult<SymlinkInfo> {
        (**self).get_symlink_info(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mock::MockStore;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    async fn failures(store: &FaultStore<MockStore>, n: usize) -> usize {
        let mut failed = 0;
        for _ in 0..n {
            if store.head_object("k").await.is_err() {
                failed += 1;
            }
        }
        failed
    }

    #[test]
    fn same_seed_same_faults() {
        rt().block_on(async {
            let cfg = FaultConfig {
                seed: 42,
                error_probability: 0.3,
                ..Default::default()
            };
            let a = FaultStore::new(MockStore::default(), cfg.clone());
            let b = FaultStore::new(MockStore::default(), cfg);
            a.inner().put("k", "v");
            b.inner().put("k", "v");
            let fa = failures(&a, 200).await;
            let fb = failures(&b, 200).await;
            assert_eq!(fa, fb);
            assert!((30..90).contains(&fa), "~30% of 200 expected, got {fa}");
            assert_eq!(a.injected(), fa as u64);
            // Faults fired before the store: only successes reached the mock.
            assert_eq!(a.inner().count("HeadObject"), 200 - fa as u64);
        });
    }

    #[test]
    fn ambiguous_failures_still_apply_the_change() {
        rt().block_on(async {
            let cfg = FaultConfig {
                ambiguous_probability: 1.0,
                ops: vec!["PutObject".into()],
                ..Default::default()
            };
            let s = FaultStore::new(MockStore::default(), cfg);
            let e = s
                .put_object("k", Bytes::from_static(b"v").into(), &PutOptions::default())
                .await
                .expect_err("ambiguous");
            assert!(matches!(e, StoreError::Network { .. }));
            assert_eq!(s.inner().get("k").as_deref(), Some(&b"v"[..]));
            // Other operations are not affected.
            assert!(s.head_object("k").await.is_ok());
            s.set_enabled(false);
            assert!(
                s.put_object("k", Bytes::from_static(b"w").into(), &PutOptions::default())
                    .await
                    .is_ok()
            );
        });
    }

    #[test]
    fn short_reads_fail_or_truncate() {
        rt().block_on(async {
            let mut cfg = FaultConfig {
                short_read_probability: 1.0,
                ..Default::default()
            };
            let s = FaultStore::new(MockStore::default(), cfg.clone());
            s.inner().put("k", vec![7u8; 200_000]);
            assert!(s.get_range("k", 0..1000, None).await.is_err());
            let out = s.get_object("k", None, None).await.expect("headers ok");
            let items: Vec<_> = out.body.collect().await;
            assert!(items.last().is_some_and(|r| r.is_err()));
            let got: usize = items
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(|b| b.len())
                .sum();
            assert!(got < 200_000);

            cfg.short_range_data = true;
            let s = FaultStore::new(MockStore::default(), cfg);
            s.inner().put("k", vec![7u8; 1000]);
            let out = s.get_range("k", 0..1000, None).await.expect("truncated");
            assert!(out.data.len() < 1000);
        });
    }
}
