//! In-memory [`ObjectStore`] with OSS semantics, for tests.
//!
//! `MockStore` keeps objects in a `BTreeMap` (so listings come out in key byte order like
//! OSS) and counts every request per OSS operation name, so tests can assert costs such
//! as "`ls -l` of 2 000 entries = 2 LIST, 0 HEAD". The names used by [`MockStore::count`]
//! are the OSS API names:
//! `HeadObject`, `GetObject` (both `get_range` and `get_object`), `PutObject`,
//! `InitiateMultipartUpload`, `UploadPart`, `CompleteMultipartUpload`,
//! `AbortMultipartUpload`, `ListMultipartUploads`, `ListObjectsV2`, `DeleteObject`,
//! `DeleteMultipleObjects`, `CopyObject`, `UploadPartCopy`, `AppendObject`, `PutSymlink`,
//! `GetSymlink`. Helper methods (`put`, `get`, `set_user_meta`, …) are *not* counted:
//! they model another client changing the bucket behind the mount's back.
//!
//! Semantics reproduced (and their pitfalls):
//! - ETags are quoted; PutObject ETags are the upper-case MD5 like OSS, multipart ETags
//!   get the `-N` suffix, appendable/symlink ETags are opaque. Every write produces a new
//!   ETag even for identical content, so a rewrite is always detectable.
//! - `get_range`: end past EOF is truncated, start at/after EOF is 416 `InvalidRange`
//!   unless the object is empty and start is 0 (`x-oss-range-behavior: standard`).
//!   `if_match` mismatches give 412 `PreconditionFailed`.
//! - HEAD/GET on a symlink resolve to the target (size, ETag, data of the target) but
//!   HEAD reports `ObjectType::Symlink` and the link's own user metadata; a dangling
//!   link gives 404 `SymlinkTargetNotExist`. Listings show the link itself (`Symlink`).
//! - Multipart: parts other than the last must be ≥ 100 KiB (`EntityTooSmall` at
//!   completion, as OSS); completion checks part ETags (`InvalidPart`) and ascending order
//!   (`InvalidPartOrder`); the object becomes visible only at completion.
//! - Append: position must equal the length (409 `PositionNotEqualToLength`); appending
//!   to a non-appendable object is 409 `ObjectNotAppendable`.
//! - `forbid_overwrite` gives 409 `FileAlreadyExists`.
//! - Listing: prefix / delimiter / start-after / continuation token / max-keys (default
//!   100, max 1000); objects and common prefixes share the max-keys budget.
//!
//! Failure hooks: [`MockStore::fail_next`] makes the next N calls of one operation fail
//! with a given error, and [`MockStore::set_latency`] / [`MockStore::set_op_latency`]
//! delay every counted call or one operation (to test
//! that a slow request does not stall others). Seeded random faults live in
//! [`crate::store::fault::FaultStore`].

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::{Digest, Md5};

use super::{
    AppendResult, GetObjectOutput, GetRangeOutput, ListPage, ListRequest, MultipartUploadInfo,
    ObjectMeta, ObjectStore, ObjectType, PartInfo, PutBody, PutOptions, PutResult, StoreError,
    StoreResult, SymlinkInfo,
};

/// Smallest allowed size of a non-last multipart part (OSS: 100 KB).
pub const MIN_PART_SIZE: u64 = 100 * 1024;
/// Largest key in bytes.
const MAX_KEY_BYTES: usize = 1023;

/// CRC-64/XZ (`x-oss-hash-crc64ecma`) of `data`.
pub fn crc64_of(data: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Xz, data)
}

/// One stored object, as returned by [`MockStore::object`].
#[derive(Debug, Clone, PartialEq)]
pub struct MockObject {
    pub data: Bytes,
    pub etag: String,
    pub last_modified: SystemTime,
    pub object_type: ObjectType,
    pub content_type: Option<String>,
    pub user_meta: BTreeMap<String, String>,
    /// For `ObjectType::Symlink`: the target key.
    pub symlink_target: Option<String>,
}

impl MockObject {
    fn crc64(&self) -> u64 {
        crc64_of(&self.data)
    }
}

#[derive(Debug)]
struct Upload {
    key: String,
    opts: PutOptions,
    initiated: SystemTime,
    parts: BTreeMap<u32, (Bytes, String)>,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, MockObject>,
    uploads: HashMap<String, Upload>,
    next_id: u64,
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// In-memory object store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MockStore {
    bucket: String,
    state: Mutex<State>,
    counts: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<HashMap<String, Vec<StoreError>>>,
    latency: Mutex<Duration>,
    op_latency: Mutex<HashMap<String, Duration>>,
}

impl Default for MockStore {
    fn default() -> Self {
        MockStore::new("mock-bucket")
    }
}

fn not_found(key: &str) -> StoreError {
    StoreError::from_service(
        404,
        "NoSuchKey",
        &format!("The specified key does not exist: {key}"),
    )
}

fn md5_etag(data: &[u8]) -> String {
    let digest = Md5::digest(data);
    format!("\"{}\"", hex::encode_upper(digest))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not make every later assertion fail with PoisonError.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_key(key: &str) -> StoreResult<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.starts_with('/') || key.starts_with('\\')
    {
        return Err(StoreError::from_service(
            400,
            "InvalidObjectName",
            "The specified object name is not valid",
        ));
    }
    Ok(())
}

impl MockStore {
    pub fn new(bucket: &str) -> Self {
        MockStore {
            bucket: bucket.to_string(),
            state: Mutex::new(State::default()),
            counts: Mutex::new(BTreeMap::new()),
            failures: Mutex::new(HashMap::new()),
            latency: Mutex::new(Duration::ZERO),
            op_latency: Mutex::new(HashMap::new()),
        }
    }

    // ----- request counters -----

    /// Requests of operation `op` (OSS API name, e.g. `HeadObject`) since the last reset.
    pub fn count(&self, op: &str) -> u64 {
        lock(&self.counts).get(op).copied().unwrap_or(0)
    }

    /// All non-zero counters.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.counts).clone()
    }

    /// Sum of all counters.
    pub fn total_requests(&self) -> u64 {
        lock(&self.counts).values().sum()
    }

    pub fn reset_counts(&self) {
        lock(&self.counts).clear();
    }

    // ----- failure / latency hooks -----

    /// The next `errors.len()` calls of `op` fail with these errors, in order.
    pub fn fail_next(&self, op: &str, errors: Vec<StoreError>) {
        let mut f = lock(&self.failures);
        let queue = f.entry(op.to_string()).or_default();
        // Stored reversed so `pop` yields them in the given order.
        let mut errors = errors;
        errors.reverse();
        errors.append(queue);
        *queue = errors;
    }

    /// Every counted call sleeps this long before answering.
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.latency) = latency;
    }

    /// Calls of `op` sleep this long before answering (overrides [`Self::set_latency`]).
    pub fn set_op_latency(&self, op: &str, latency: Duration) {
        lock(&self.op_latency).insert(op.to_string(), latency);
    }

    async fn begin(&self, op: &str) -> StoreResult<()> {
        *lock(&self.counts).entry(op.to_string()).or_insert(0) += 1;
        let op_latency = lock(&self.op_latency).get(op).copied();
        let latency = op_latency.unwrap_or_else(|| *lock(&self.latency));
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(err) = lock(&self.failures).get_mut(op).and_then(|q| q.pop()) {
            return Err(err);
        }
        Ok(())
    }

    // ----- helpers acting "behind the mount's back" (not counted) -----

    /// Stores a Normal object (overwrites).
    pub fn put(&self, key: &str, data: impl Into<Bytes>) {
        self.put_with_meta(key, data, BTreeMap::new());
    }

    /// Stores a Normal object with user metadata (names without `x-oss-meta-`).
    pub fn put_with_meta(
        &self,
        key: &str,
        data: impl Into<Bytes>,
        user_meta: BTreeMap<String, String>,
    ) {
        let data = data.into();
        let obj = MockObject {
            etag: md5_etag(&data),
            data,
            last_modified: SystemTime::now(),
            object_type: ObjectType::Normal,
            content_type: None,
            user_meta,
            symlink_target: None,
        };
        lock(&self.state).objects.insert(key.to_string(), obj);
    }

    /// Stores an object exactly as given (any type, ETag, mtime).
    pub fn insert_object(&self, key: &str, obj: MockObject) {
        lock(&self.state).objects.insert(key.to_string(), obj);
    }

    /// Replaces the content of an object keeping its metadata (new ETag).
    pub fn mutate(&self, key: &str, data: impl Into<Bytes>) -> bool {
        let mut st = lock(&self.state);
        let id = st.next_id();
        match st.objects.get_mut(key) {
            Some(obj) => {
                let data = data.into();
                obj.etag = format!("\"{}-M{id}\"", md5_etag(&data).trim_matches('"'));
                obj.data = data;
                obj.last_modified = SystemTime::now();
                true
            }
            None => false,
        }
    }

    /// Sets (replaces) the user metadata of an object.
    pub fn set_user_meta(&self, key: &str, user_meta: BTreeMap<String, String>) -> bool {
        match lock(&self.state).objects.get_mut(key) {
            Some(obj) => {
                obj.user_meta = user_meta;
                true
            }
            None => false,
        }
    }

    /// Content of an object (symlinks are not followed: returns the link's empty data).
    pub fn get(&self, key: &str) -> Option<Bytes> {
        lock(&self.state).objects.get(key).map(|o| o.data.clone())
    }

    /// Snapshot of a stored object.
    pub fn object(&self, key: &str) -> Option<MockObject> {
        lock(&self.state).objects.get(key).cloned()
    }

    pub fn contains(&self, key: &str) -> bool {
        lock(&self.state).objects.contains_key(key)
    }

    /// Deletes an object; returns whether it existed.
    pub fn remove(&self, key: &str) -> bool {
        lock(&self.state).objects.remove(key).is_some()
    }

    /// All keys in order.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.state).objects.keys().cloned().collect()
    }

    /// Number of multipart uploads not yet completed or aborted.
    pub fn pending_uploads(&self) -> usize {
        lock(&self.state).uploads.len()
    }

    // ----- internals -----

    /// Resolves a symlink (one level, like OSS) for GET/HEAD.
    fn resolve<'a>(
        st: &'a State,
        key: &str,
    ) -> StoreResult<(&'a MockObject, Option<&'a MockObject>)> {
        let obj = st.objects.get(key).ok_or_else(|| not_found(key))?;
        if obj.object_type == ObjectType::Symlink {
            let target = obj.symlink_target.as_deref().unwrap_or_default();
            let t = st.objects.get(target).ok_or_else(|| {
                StoreError::from_service(
                    404,
                    "SymlinkTargetNotExist",
                    "The symlink target object does not exist",
                )
            })?;
            Ok((t, Some(obj)))
        } else {
            Ok((obj, None))
        }
    }

    fn check_if_match(obj: &MockObject, if_match: Option<&str>) -> StoreResult<()> {
        match if_match {
            Some(tag) if tag != obj.etag => Err(StoreError::from_service(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            )),
            _ => Ok(()),
        }
    }

    fn clamp_range(size: u64, range: Range<u64>) -> StoreResult<Range<u64>> {
        if range.start > range.end {
            return Err(StoreError::InvalidArgument(format!("bad range {range:?}")));
        }
        if range.start >= size && !(size == 0 && range.start == 0) {
            return Err(StoreError::from_service(
                416,
                "InvalidRange",
                "The requested range cannot be satisfied",
            ));
        }
        Ok(range.start..range.end.min(size))
    }

    fn store_object(
        st: &mut State,
        key: &str,
        data: Bytes,
        etag: String,
        object_type: ObjectType,
        opts: &PutOptions,
    ) -> StoreResult<PutResult> {
        if opts.forbid_overwrite && st.objects.contains_key(key) {
            return Err(StoreError::from_service(
                409,
                "FileAlreadyExists",
                "The object you specified already exists and can not be overwritten",
            ));
        }
        let crc = crc64_of(&data);
        st.objects.insert(
            key.to_string(),
            MockObject {
                data,
                etag: etag.clone(),
                last_modified: SystemTime::now(),
                object_type,
                content_type: opts.content_type.clone(),
                user_meta: opts.user_meta.clone(),
                symlink_target: None,
            },
        );
        Ok(PutResult {
            etag,
            crc64: Some(crc),
        })
    }

    fn no_such_upload() -> StoreError {
        StoreError::from_service(404, "NoSuchUpload", "The specified upload does not exist")
    }
}

#[async_trait]
impl ObjectStore for MockStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn head_object(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.begin("HeadObject").await?;
        let st = lock(&self.state);
        let (obj, link) = Self::resolve(&st, key)?;
        let meta_src = link.unwrap_or(obj);
        Ok(ObjectMeta {
            key: key.to_string(),
            size: obj.data.len() as u64,
            etag: obj.etag.clone(),
            last_modified: Some(meta_src.last_modified),
            object_type: meta_src.object_type,
            crc64: Some(obj.crc64()),
            content_type: obj.content_type.clone(),
            user_meta: meta_src.user_meta.clone(),
            next_append_position: (obj.object_type == ObjectType::Appendable)
                .then_some(obj.data.len() as u64),
        })
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<GetRangeOutput> {
        self.begin("GetObject").await?;
        let st = lock(&self.state);
        let (obj, _) = Self::resolve(&st, key)?;
        Self::check_if_match(obj, if_match)?;
        let size = obj.data.len() as u64;
        let r = Self::clamp_range(size, range)?;
        Ok(GetRangeOutput {
            data: obj.data.slice(r.start as usize..r.end as usize),
            etag: obj.etag.clone(),
            object_size: size,
            object_crc64: Some(obj.crc64()),
        })
    }

    async fn get_object(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> StoreResult<GetObjectOutput> {
        self.begin("GetObject").await?;
        let st = lock(&self.state);
        let (obj, link) = Self::resolve(&st, key)?;
        Self::check_if_match(obj, if_match)?;
        let size = obj.data.len() as u64;
        let r = match range {
            Some(r) => Self::clamp_range(size, r)?,
            None => 0..size,
        };
        let data = obj.data.slice(r.start as usize..r.end as usize);
        let meta_src = link.unwrap_or(obj);
        let meta = ObjectMeta {
            key: key.to_string(),
            size,
            etag: obj.etag.clone(),
            last_modified: Some(meta_src.last_modified),
            object_type: meta_src.object_type,
            crc64: Some(obj.crc64()),
            content_type: obj.content_type.clone(),
            user_meta: meta_src.user_meta.clone(),
            next_append_position: None,
        };
        // Deliver in 64 KiB chunks so consumers exercise their chunk reassembly.
        let chunks: Vec<StoreResult<Bytes>> = data
            .chunks(64 * 1024)
            .map(|c| Ok(data.slice_ref(c)))
            .collect();
        Ok(GetObjectOutput {
            meta,
            body: futures::stream::iter(chunks).boxed(),
        })
    }

    async fn put_object(
        &self,
        key: &str,
        body: PutBody,
        opts: &PutOptions,
    ) -> StoreResult<PutResult> {
        self.begin("PutObject").await?;
        check_key(key)?;
        let data = body.to_bytes().await?;
        let etag = md5_etag(&data);
        let mut st = lock(&self.state);
        Self::store_object(&mut st, key, data, etag, ObjectType::Normal, opts)
    }

    async fn initiate_multipart_upload(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        self.mpu_initiate(key, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: PutBody,
    ) -> StoreResult<PartInfo> {
        self.mpu_upload_part(key, upload_id, part_number, body)
            .await
    }

    async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> StoreResult<PutResult> {
        self.mpu_complete(key, upload_id, parts).await
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.mpu_abort(key, upload_id).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        self.mpu_list(prefix).await
    }

    async fn list_objects(&self, req: &ListRequest) -> StoreResult<ListPage> {
        self.begin("ListObjectsV2").await?;
        list::list_page(&lock(&self.state).objects, req)
    }

    async fn delete_object(&self, key: &str) -> StoreResult<()> {
        self.begin("DeleteObject").await?;
        lock(&self.state).objects.remove(key);
        Ok(())
    }

    async fn delete_objects(&self, keys: &[String]) -> StoreResult<()> {
        // One request per 1000 keys, as the real client splits them.
        for chunk in keys.chunks(1000) {
            self.begin("DeleteMultipleObjects").await?;
            let mut st = lock(&self.state);
            for k in chunk {
                st.objects.remove(k);
            }
        }
        Ok(())
    }

    async fn copy_object(
        &self,
        src_key: &str,
        dst_key: &str,
        replace_meta: Option<&PutOptions>,
    ) -> StoreResult<PutResult> {
        self.begin("CopyObject").await?;
        check_key(dst_key)?;
        let mut st = lock(&self.state);
        let src = st
            .objects
            .get(src_key)
            .ok_or_else(|| not_found(src_key))?
            .clone();
        if src.object_type == ObjectType::Symlink {
            // OSS copies the symlink itself; keep that so metadata updates on links work.
            let mut link = src.clone();
            if let Some(o) = replace_meta {
                link.user_meta = o.user_meta.clone();
            }
            link.last_modified = SystemTime::now();
            let id = st.next_id();
            link.etag = format!("\"LINK{id:016X}\"");
            let etag = link.etag.clone();
            st.objects.insert(dst_key.to_string(), link);
            return Ok(PutResult { etag, crc64: None });
        }
        let (content_type, user_meta) = match replace_meta {
            Some(o) => (o.content_type.clone(), o.user_meta.clone()),
            None => (src.content_type.clone(), src.user_meta.clone()),
        };
        let opts = PutOptions {
            content_type,
            user_meta,
            forbid_overwrite: replace_meta.is_some_and(|o| o.forbid_overwrite),
        };
        // A copy keeps the content ETag for Normal objects; give it a fresh one otherwise
        // (and for copies onto itself, so metadata changes are visible as a new version).
        let etag = if src_key == dst_key || src.object_type != ObjectType::Normal {
            let id = st.next_id();
            format!("\"{}-C{id}\"", src.etag.trim_matches('"'))
        } else {
            src.etag.clone()
        };
        // Copying an appendable object yields a Normal object, as on OSS.
        let ty = match src.object_type {
            ObjectType::Appendable => ObjectType::Normal,
            t => t,
        };
        Self::store_object(&mut st, dst_key, src.data.clone(), etag, ty, &opts)
    }

    async fn upload_part_copy(
        &self,
        src_key: &str,
        dst_key: &str,
        upload_id: &str,
        part_number: u32,
        range: Range<u64>,
    ) -> StoreResult<PartInfo> {
        self.mpu_upload_part_copy(src_key, dst_key, upload_id, part_number, range)
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
        self.begin("AppendObject").await?;
        check_key(key)?;
        let mut st = lock(&self.state);
        let id = st.next_id();
        let obj = match st.objects.get_mut(key) {
            Some(obj) => {
                if obj.object_type != ObjectType::Appendable {
                    return Err(StoreError::from_service(
                        409,
                        "ObjectNotAppendable",
                        "The object is not appendable",
                    ));
                }
                if obj.data.len() as u64 != position {
                    return Err(StoreError::from_service(
                        409,
                        "PositionNotEqualToLength",
                        "Position is not equal to file length",
                    ));
                }
                let mut d = BytesMut::from(&obj.data[..]);
                d.extend_from_slice(&body);
                obj.data = d.freeze();
                obj.last_modified = SystemTime::now();
                obj
            }
            None => {
                if position != 0 {
                    return Err(StoreError::from_service(
                        409,
                        "PositionNotEqualToLength",
                        "Position is not equal to file length",
                    ));
                }
                st.objects.insert(
                    key.to_string(),
                    MockObject {
                        data: body.clone(),
                        etag: String::new(),
                        last_modified: SystemTime::now(),
                        object_type: ObjectType::Appendable,
                        content_type: opts.content_type.clone(),
                        user_meta: opts.user_meta.clone(),
                        symlink_target: None,
                    },
                );
                st.objects.get_mut(key).ok_or_else(|| not_found(key))?
            }
        };
        obj.etag = format!("\"APPEND{id:016X}\"");
        let crc = obj.crc64();
        if let Some(init) = init_crc {
            let expected = crc_fast::checksum_combine(
                crc_fast::CrcAlgorithm::Crc64Xz,
                init,
                crc64_of(&body),
                body.len() as u64,
            );
            if expected != crc {
                return Err(StoreError::CrcMismatch {
                    key: key.to_string(),
                    client: expected,
                    server: crc,
                });
            }
        }
        Ok(AppendResult {
            next_position: obj.data.len() as u64,
            crc64: Some(crc),
        })
    }

    async fn put_symlink(&self, key: &str, target: &str, opts: &PutOptions) -> StoreResult<()> {
        self.begin("PutSymlink").await?;
        check_key(key)?;
        // The target follows the object-name rules (as on OSS and the emulator).
        check_key(target)?;
        let mut st = lock(&self.state);
        if opts.forbid_overwrite && st.objects.contains_key(key) {
            return Err(StoreError::from_service(
                409,
                "FileAlreadyExists",
                "The object you specified already exists and can not be overwritten",
            ));
        }
        let id = st.next_id();
        st.objects.insert(
            key.to_string(),
            MockObject {
                data: Bytes::new(),
                etag: format!("\"LINK{id:016X}\""),
                last_modified: SystemTime::now(),
                object_type: ObjectType::Symlink,
                content_type: opts.content_type.clone(),
                user_meta: opts.user_meta.clone(),
                symlink_target: Some(target.to_string()),
            },
        );
        Ok(())
    }

    async fn get_symlink(&self, key: &str) -> StoreResult<String> {
        Ok(self.get_symlink_info(key).await?.target)
    }

    async fn get_symlink_info(&self, key: &str) -> StoreResult<SymlinkInfo> {
        self.begin("GetSymlink").await?;
        let st = lock(&self.state);
        let obj = st.objects.get(key).ok_or_else(|| not_found(key))?;
        match (&obj.object_type, &obj.symlink_target) {
            (ObjectType::Symlink, Some(t)) => Ok(SymlinkInfo {
                target: t.clone(),
                meta: ObjectMeta {
                    key: key.to_string(),
                    etag: obj.etag.clone(),
                    last_modified: Some(obj.last_modified),
                    object_type: ObjectType::Symlink,
                    content_type: obj.content_type.clone(),
                    user_meta: obj.user_meta.clone(),
                    ..Default::default()
                },
            }),
            _ => Err(StoreError::from_service(
                400,
                "NotSymlink",
                "The specified object is not a symlink",
            )),
        }
    }
}

mod list;
mod multipart;
#[cfg(test)]
mod tests;
