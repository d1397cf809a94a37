//! A small in-memory `ObjectStore` for the read/write path tests: records every request,
//! honours `If-Match`, can delay requests (to observe parallelism) and fail chosen parts.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use ossmount::store::*;

pub(crate) fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Xz, data)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Req {
    Get { key: String, range: Range<u64> },
    Put { key: String, len: u64 },
    Initiate { key: String },
    Part { key: String, number: u32, len: u64 },
    Complete { key: String, parts: Vec<u32> },
    Abort { key: String },
}

/// Key and parts of an in-progress multipart upload.
type Upload = (String, BTreeMap<u32, Bytes>);

#[derive(Default)]
pub(crate) struct MockStore {
    objects: Mutex<HashMap<String, (Bytes, String)>>,
    uploads: Mutex<HashMap<String, Upload>>,
    pub log: Mutex<Vec<Req>>,
    next_id: AtomicU64,
    /// Artificial latency of GETs and part uploads.
    pub delay: Mutex<Duration>,
    /// Part numbers whose upload fails with a 500.
    pub fail_parts: Mutex<Vec<u32>>,
    /// Ignore If-Match (to test the reader's own ETag check).
    pub ignore_if_match: std::sync::atomic::AtomicBool,
    /// Streaming GET bodies fail after this many bytes (tests the reader's fallback).
    pub break_streams_after: Mutex<Option<usize>>,
    /// Streaming GET bodies stop after this many bytes and never end (a stalled link).
    pub stall_streams_after: Mutex<Option<usize>>,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl MockStore {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap() = d;
    }

    /// Stores `data` as `key` with a fresh ETag; returns `(etag, crc64)`.
    pub(crate) fn put(&self, key: &str, data: Vec<u8>) -> (String, u64) {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let etag = format!("\"etag-{n}\"");
        let crc = crc64(&data);
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_string(), (Bytes::from(data), etag.clone()));
        (etag, crc)
    }

    pub(crate) fn object(&self, key: &str) -> Option<Bytes> {
        self.objects.lock().unwrap().get(key).map(|o| o.0.clone())
    }

    pub(crate) fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    pub(crate) fn gets(&self) -> Vec<Range<u64>> {
        self.requests()
            .into_iter()
            .filter_map(|r| match r {
                Req::Get { range, .. } => Some(range),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn open_uploads(&self) -> usize {
        self.uploads.lock().unwrap().len()
    }

    fn record(&self, r: Req) {
        self.log.lock().unwrap().push(r);
    }

    async fn busy(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let d = *self.delay.lock().unwrap();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        } else {
            tokio::task::yield_now().await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn unsupported(op: &str) -> StoreError {
    StoreError::InvalidArgument(format!("{op} not supported by the test mock"))
}

#[async_trait]
impl ObjectStore for MockStore {
    fn bucket(&self) -> &str {
        "test-bucket"
    }

    async fn head_object(&self, key: &str) -> StoreResult<ObjectMeta> {
        let objs = self.objects.lock().unwrap();
        let (data, etag) = objs
            .get(key)
            .ok_or_else(|| StoreError::from_service(404, "NoSuchKey", "no such key"))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: data.len() as u64,
            etag: etag.clone(),
            crc64: Some(crc64(data)),
            ..Default::default()
        })
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<GetRangeOutput> {
        self.record(Req::Get {
            key: key.to_string(),
            range: range.clone(),
        });
        self.busy().await;
        let (data, etag) = self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::from_service(404, "NoSuchKey", "no such key"))?;
        if let Some(m) = if_match
            && m != etag
            && !self.ignore_if_match.load(Ordering::SeqCst)
        {
            return Err(StoreError::from_service(412, "PreconditionFailed", "etag"));
        }
        let size = data.len() as u64;
        if range.start >= size && !(size == 0 && range.start == 0) {
            return Err(StoreError::from_service(416, "InvalidRange", "range"));
        }
        let end = range.end.min(size);
        Ok(GetRangeOutput {
            data: data.slice(range.start as usize..end as usize),
            etag,
            object_size: size,
            object_crc64: Some(crc64(&data)),
        })
    }

    async fn get_object(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> StoreResult<GetObjectOutput> {
        let size = self.object(key).map_or(0, |d| d.len() as u64);
        let range = range.unwrap_or(0..size);
        let out = self.get_range(key, range, if_match).await?;
        // Deliver the body in pieces, like a network stream.
        let limit = *self.break_streams_after.lock().unwrap();
        let body = match limit {
            Some(n) if n < out.data.len() => out.data.slice(..n),
            _ => out.data.clone(),
        };
        let mut pieces: Vec<StoreResult<Bytes>> = body
            .chunks(64 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        if body.len() < out.data.len() {
            pieces.push(Err(StoreError::Network {
                endpoint: "mock".into(),
                message: "connection reset".into(),
            }));
        }
        let stall = *self.stall_streams_after.lock().unwrap();
        let body: futures::stream::BoxStream<'static, StoreResult<Bytes>> = match stall {
            Some(n) if n < body.len() => {
                let pieces: Vec<StoreResult<Bytes>> = body
                    .slice(..n)
                    .chunks(64 * 1024)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                Box::pin(futures::stream::iter(pieces).chain(futures::stream::pending()))
            }
            _ => Box::pin(futures::stream::iter(pieces)),
        };
        Ok(GetObjectOutput {
            meta: ObjectMeta {
                key: key.to_string(),
                size: out.object_size,
                etag: out.etag,
                crc64: out.object_crc64,
                ..Default::default()
            },
            body,
        })
    }

    async fn put_object(
        &self,
        key: &str,
        body: PutBody,
        _opts: &PutOptions,
    ) -> StoreResult<PutResult> {
        self.record(Req::Put {
            key: key.to_string(),
            len: body.len(),
        });
        let data = body.to_bytes().await?;
        let (etag, crc) = self.put(key, data.to_vec());
        Ok(PutResult {
            etag,
            crc64: Some(crc),
        })
    }

    async fn initiate_multipart_upload(
        &self,
        key: &str,
        _opts: &PutOptions,
    ) -> StoreResult<String> {
        self.record(Req::Initiate {
            key: key.to_string(),
        });
        let id = format!("upload-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        self.uploads
            .lock()
            .unwrap()
            .insert(id.clone(), (key.to_string(), BTreeMap::new()));
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: PutBody,
    ) -> StoreResult<PartInfo> {
        self.record(Req::Part {
            key: key.to_string(),
            number: part_number,
            len: body.len(),
        });
        self.busy().await;
        if self.fail_parts.lock().unwrap().contains(&part_number) {
            return Err(StoreError::from_service(500, "InternalError", "injected"));
        }
        let data = body.to_bytes().await?;
        let crc = crc64(&data);
        let mut ups = self.uploads.lock().unwrap();
        let up = ups
            .get_mut(upload_id)
            .ok_or_else(|| StoreError::from_service(404, "NoSuchUpload", "no upload"))?;
        let size = data.len() as u64;
        up.1.insert(part_number, data);
        Ok(PartInfo {
            part_number,
            etag: format!("\"part-{part_number}\""),
            size,
            crc64: Some(crc),
        })
    }

    async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> StoreResult<PutResult> {
        self.record(Req::Complete {
            key: key.to_string(),
            parts: parts.iter().map(|p| p.part_number).collect(),
        });
        if parts
            .windows(2)
            .any(|w| w[0].part_number >= w[1].part_number)
        {
            return Err(StoreError::from_service(400, "InvalidPartOrder", "order"));
        }
        let (_, stored) = self
            .uploads
            .lock()
            .unwrap()
            .remove(upload_id)
            .ok_or_else(|| StoreError::from_service(404, "NoSuchUpload", "no upload"))?;
        let mut data = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let part = stored
                .get(&p.part_number)
                .ok_or_else(|| StoreError::from_service(400, "InvalidPart", "missing part"))?;
            if i + 1 < parts.len() && part.len() < 100 * 1024 {
                return Err(StoreError::from_service(
                    400,
                    "EntityTooSmall",
                    "small part",
                ));
            }
            data.extend_from_slice(part);
        }
        let (etag, crc) = self.put(key, data);
        Ok(PutResult {
            etag,
            crc64: Some(crc),
        })
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.record(Req::Abort {
            key: key.to_string(),
        });
        self.uploads
            .lock()
            .unwrap()
            .remove(upload_id)
            .map(|_| ())
            .ok_or_else(|| StoreError::from_service(404, "NoSuchUpload", "no upload"))
    }

    async fn list_multipart_uploads(&self, _prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        Err(unsupported("list_multipart_uploads"))
    }

    async fn list_objects(&self, _req: &ListRequest) -> StoreResult<ListPage> {
        Err(unsupported("list_objects"))
    }

    async fn delete_object(&self, key: &str) -> StoreResult<()> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }

    async fn delete_objects(&self, keys: &[String]) -> StoreResult<()> {
        for k in keys {
            self.objects.lock().unwrap().remove(k);
        }
        Ok(())
    }

    async fn copy_object(
        &self,
        _src_key: &str,
        _dst_key: &str,
        _replace_meta: Option<&PutOptions>,
    ) -> StoreResult<PutResult> {
        Err(unsupported("copy_object"))
    }

    async fn upload_part_copy(
        &self,
        _src_key: &str,
        _dst_key: &str,
        _upload_id: &str,
        _part_number: u32,
        _range: Range<u64>,
    ) -> StoreResult<PartInfo> {
        Err(unsupported("upload_part_copy"))
    }

    async fn append_object(
        &self,
        _key: &str,
        _position: u64,
        _body: Bytes,
        _init_crc: Option<u64>,
        _opts: &PutOptions,
    ) -> StoreResult<AppendResult> {
        Err(unsupported("append_object"))
    }

    async fn put_symlink(&self, _key: &str, _target: &str, _opts: &PutOptions) -> StoreResult<()> {
        Err(unsupported("put_symlink"))
    }

    async fn get_symlink(&self, _key: &str) -> StoreResult<String> {
        Err(unsupported("get_symlink"))
    }
}
