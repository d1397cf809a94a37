//! The object store seen by the filesystem.
//!
//! The filesystem ([`crate::fs`]), the read path ([`crate::read`]) and the write path
//! ([`crate::write`]) are written against [`ObjectStore`], never against HTTP. Three
//! implementations exist:
//! - [`crate::client::OssClient`]: the real OSS HTTP client;
//! - [`mock::MockStore`]: in memory, counts requests per operation (unit tests);
//! - [`fault::FaultStore`]: wraps any store and injects seeded failures.
//!
//! Contract notes every implementation must honour:
//! - Keys are raw UTF-8 object names (no leading `/`, never percent-encoded).
//! - ETags are returned exactly as OSS sends them, quotes included (`"abc"`), and
//!   `if_match` takes the same form.
//! - `get_range` returns the whole requested range or an error: implementations retry
//!   transient failures, including bodies shorter than promised. A range whose end is past
//!   the end of the object is truncated (OSS `x-oss-range-behavior: standard`); a start at
//!   or past the end is `InvalidRange` (416) unless the object is empty and start is 0.
//! - User metadata keys are lower-case and without the `x-oss-meta-` prefix.

#[cfg(any(test, feature = "testing"))]
pub mod fault;
#[cfg(any(test, feature = "testing"))]
pub mod mock;
mod service_code;

pub use service_code::ServiceCode;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// OSS object types (`x-oss-object-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ObjectType {
    #[default]
    Normal,
    Multipart,
    Appendable,
    Symlink,
}

impl ObjectType {
    pub fn parse(s: &str) -> ObjectType {
        match s {
            "Multipart" => ObjectType::Multipart,
            "Appendable" => ObjectType::Appendable,
            "Symlink" => ObjectType::Symlink,
            _ => ObjectType::Normal,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            ObjectType::Normal => "Normal",
            ObjectType::Multipart => "Multipart",
            ObjectType::Appendable => "Appendable",
            ObjectType::Symlink => "Symlink",
        }
    }
}

/// What HEAD (and the headers of GET) tell about an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Quoted, as sent by OSS.
    pub etag: String,
    pub last_modified: Option<SystemTime>,
    pub object_type: ObjectType,
    /// `x-oss-hash-crc64ecma` of the whole object, when the server sent it.
    pub crc64: Option<u64>,
    pub content_type: Option<String>,
    /// `x-oss-meta-*` without the prefix, names lower-cased.
    pub user_meta: BTreeMap<String, String>,
    /// `x-oss-next-append-position` for Appendable objects.
    pub next_append_position: Option<u64>,
}

/// One `<Contents>` entry of ListObjectsV2.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListEntry {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: Option<SystemTime>,
    pub object_type: ObjectType,
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListPage {
    pub objects: Vec<ListEntry>,
    /// Full prefixes including the trailing delimiter, e.g. `dir/sub/`.
    pub common_prefixes: Vec<String>,
    /// Set when the listing is truncated.
    pub next_continuation_token: Option<String>,
}

impl ListPage {
    /// No object and no common prefix: nothing under the listed prefix (on this page).
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.common_prefixes.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListRequest {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub continuation_token: Option<String>,
    pub start_after: Option<String>,
    /// 1..=1000; 0 means the server default.
    pub max_keys: u32,
}

/// Options for object-creating requests (PutObject, InitiateMultipartUpload,
/// CopyObject with REPLACE, first AppendObject, PutSymlink).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PutOptions {
    pub content_type: Option<String>,
    /// Lower-case names without `x-oss-meta-`.
    pub user_meta: BTreeMap<String, String>,
    /// `x-oss-forbid-overwrite: true`.
    pub forbid_overwrite: bool,
}

/// Result of PutObject / CompleteMultipartUpload / CopyObject.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PutResult {
    pub etag: String,
    pub crc64: Option<u64>,
}

/// One uploaded part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartInfo {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    pub crc64: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MultipartUploadInfo {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendResult {
    pub next_position: u64,
    /// CRC64 of the whole object after the append.
    pub crc64: Option<u64>,
}

/// Result of a ranged GET, fully read.
#[derive(Debug, Clone, Default)]
pub struct GetRangeOutput {
    pub data: Bytes,
    pub etag: String,
    /// Size of the whole object.
    pub object_size: u64,
    /// CRC64 of the whole object (header), when sent.
    pub object_crc64: Option<u64>,
}

/// A streaming GET.
pub struct GetObjectOutput {
    pub meta: ObjectMeta,
    /// Bytes of the requested range (or the whole object).
    pub body: BoxStream<'static, Result<Bytes, StoreError>>,
}

impl fmt::Debug for GetObjectOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetObjectOutput")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// An upload body that can be produced again for a retry.
#[derive(Debug, Clone)]
pub enum PutBody {
    Bytes(Bytes),
    /// In memory, as pieces sent back to back (a streamed part made of 1 MiB buffers).
    Pieces(Vec<Bytes>),
    /// `len` bytes of a local file starting at `offset` (staging files).
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl PutBody {
    pub fn len(&self) -> u64 {
        match self {
            PutBody::Bytes(b) => b.len() as u64,
            PutBody::Pieces(p) => p.iter().map(|b| b.len() as u64).sum(),
            PutBody::File { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads the whole body into memory (only for bounded sizes: parts, tests).
    pub async fn to_bytes(&self) -> std::io::Result<Bytes> {
        match self {
            PutBody::Bytes(b) => Ok(b.clone()),
            PutBody::Pieces(p) if p.len() == 1 => Ok(p[0].clone()),
            PutBody::Pieces(p) => Ok(Bytes::from(p.concat())),
            PutBody::File { path, offset, len } => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let mut f = tokio::fs::File::open(path).await?;
                f.seek(std::io::SeekFrom::Start(*offset)).await?;
                let mut buf = vec![0u8; *len as usize];
                f.read_exact(&mut buf).await?;
                Ok(Bytes::from(buf))
            }
        }
    }
}

impl From<Bytes> for PutBody {
    fn from(b: Bytes) -> Self {
        PutBody::Bytes(b)
    }
}

impl From<Vec<u8>> for PutBody {
    fn from(b: Vec<u8>) -> Self {
        PutBody::Bytes(Bytes::from(b))
    }
}

/// An error reply from OSS, printed like the official SDKs do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceError {
    pub status: u16,
    pub code: ServiceCode,
    pub message: String,
    pub request_id: String,
    pub host_id: String,
    /// Detailed error id, e.g. `0002-00000040` (body `<EC>` or header `x-oss-ec`).
    pub ec: String,
    /// Operation name, e.g. `GetObject` (filled by the client).
    pub operation: String,
    /// The request target (`bucket/key`) when known.
    pub resource: String,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OSS error: operation {}, StatusCode={}, ErrorCode={}, ErrorMessage=\"{}\", RequestId={}, EC={}",
            if self.operation.is_empty() {
                "-"
            } else {
                &self.operation
            },
            self.status,
            self.code,
            self.message,
            if self.request_id.is_empty() {
                "-"
            } else {
                &self.request_id
            },
            if self.ec.is_empty() { "-" } else { &self.ec },
        )?;
        if !self.resource.is_empty() {
            write!(f, ", Resource={}", self.resource)?;
        }
        Ok(())
    }
}

/// Errors of the object-store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// OSS answered with an error status.
    #[error("{0}")]
    Service(Box<ServiceError>),
    /// Connection refused/reset, DNS, TLS, truncated body… after all retries.
    #[error("network error talking to {endpoint}: {message}")]
    Network { endpoint: String, message: String },
    #[error("request timed out after {secs} s ({what})")]
    Timeout { what: String, secs: u64 },
    /// CRC64 check failed (upload or download).
    #[error("CRC64 mismatch for {key}: client computed {client}, server reported {server}")]
    CrcMismatch {
        key: String,
        client: u64,
        server: u64,
    },
    /// Credentials could not be obtained.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The server replied with something we cannot parse (malformed XML, HTML page…).
    #[error("invalid response from OSS ({operation}): {message}")]
    InvalidResponse { operation: String, message: String },
    /// Bad argument detected before sending (key too long, bad part number…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            StoreError::Service(e) => Some(e),
            _ => None,
        }
    }
    /// The OSS error code of a service error, for decisions.
    pub fn service_code(&self) -> Option<&ServiceCode> {
        self.service().map(|e| &e.code)
    }
    /// Whether this is a service error with code `code`.
    pub fn has_code(&self, code: &ServiceCode) -> bool {
        self.service_code() == Some(code)
    }
    /// The code as OSS spelled it, for messages (decide with [`Self::has_code`]).
    pub fn code(&self) -> Option<&str> {
        self.service_code().map(ServiceCode::as_str)
    }
    pub fn status(&self) -> Option<u16> {
        self.service().map(|e| e.status)
    }
    /// NoSuchKey (or a 404 on HEAD, which has no body).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.service_code(),
            Some(ServiceCode::NoSuchKey | ServiceCode::SymlinkTargetNotExist)
        ) || (self.status() == Some(404) && self.service_code().is_none_or(ServiceCode::is_none))
    }
    pub fn is_precondition_failed(&self) -> bool {
        self.status() == Some(412) || self.has_code(&ServiceCode::PreconditionFailed)
    }
    /// Shorthand used by implementations and tests.
    pub fn from_service(status: u16, code: &str, message: &str) -> StoreError {
        StoreError::Service(Box::new(ServiceError {
            status,
            code: ServiceCode::parse(code),
            message: message.to_string(),
            ..Default::default()
        }))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The operations ossmount needs from OSS. Object keys are relative to the bucket (the
/// mount prefix is applied by the filesystem, not here).
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Name of the bucket (for messages).
    fn bucket(&self) -> &str;

    async fn head_object(&self, key: &str) -> StoreResult<ObjectMeta>;

    /// Ranged GET fully read into memory; `if_match` pins the ETag (412 on change).
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<GetRangeOutput>;

    /// Streaming GET of a range or of the whole object.
    async fn get_object(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> StoreResult<GetObjectOutput>;

    async fn put_object(
        &self,
        key: &str,
        body: PutBody,
        opts: &PutOptions,
    ) -> StoreResult<PutResult>;

    async fn initiate_multipart_upload(&self, key: &str, opts: &PutOptions) -> StoreResult<String>;

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: PutBody,
    ) -> StoreResult<PartInfo>;

    /// Parts in ascending part-number order. Verifies the combined CRC64.
    async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> StoreResult<PutResult>;

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> StoreResult<()>;

    /// All in-progress uploads under `prefix` (pages internally).
    async fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>>;

    async fn list_objects(&self, req: &ListRequest) -> StoreResult<ListPage>;

    /// Succeeds when the key does not exist.
    async fn delete_object(&self, key: &str) -> StoreResult<()>;

    /// Up to 1000 keys per call is the OSS limit; implementations split larger sets.
    async fn delete_objects(&self, keys: &[String]) -> StoreResult<()>;

    /// CopyObject within the bucket. `replace_meta` = Some → REPLACE directive.
    async fn copy_object(
        &self,
        src_key: &str,
        dst_key: &str,
        replace_meta: Option<&PutOptions>,
    ) -> StoreResult<PutResult>;

    /// UploadPartCopy of `range` of `src_key` into an upload of `dst_key`.
    async fn upload_part_copy(
        &self,
        src_key: &str,
        dst_key: &str,
        upload_id: &str,
        part_number: u32,
        range: Range<u64>,
    ) -> StoreResult<PartInfo>;

    /// AppendObject at `position`; `init_crc` is the object's CRC64 before the append
    /// (to verify the returned whole-object CRC). `opts` apply on the first append only.
    async fn append_object(
        &self,
        key: &str,
        position: u64,
        body: Bytes,
        init_crc: Option<u64>,
        opts: &PutOptions,
    ) -> StoreResult<AppendResult>;

    async fn put_symlink(&self, key: &str, target: &str, opts: &PutOptions) -> StoreResult<()>;

    async fn get_symlink(&self, key: &str) -> StoreResult<String>;

    /// GetSymlink with the link's *own* metadata (Last-Modified, ETag, `x-oss-meta-*`):
    /// HEAD of a link answers with its target's. The default knows the target only
    /// (empty metadata); stores that can read the headers override it.
    async fn get_symlink_info(&self, key: &str) -> StoreResult<SymlinkInfo> {
        let target = self.get_symlink(key).await?;
        Ok(SymlinkInfo {
            target,
            meta: ObjectMeta {
                key: key.to_string(),
                object_type: ObjectType::Symlink,
                ..Default::default()
            },
        })
    }
}

/// What GetSymlink says of a link: its target key and its own metadata (`size` 0,
/// `object_type` Symlink).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymlinkInfo {
    pub target: String,
    pub meta: ObjectMeta,
}

/// Aborts a multipart upload, trying harder than one request's own retries do: an upload
/// left open keeps its parts on the server, billed and invisible. NoSuchUpload counts as
/// done. Gives up after six rounds (about 6 s of backoff) with a warning that names
/// `ossmount cleanup`. Returns whether the upload is known to be gone.
pub async fn abort_upload_persistently<S: ObjectStore + ?Sized>(
    store: &S,
    key: &str,
    upload_id: &str,
) -> bool {
    let mut delay = std::time::Duration::from_millis(200);
    for round in 1..=6 {
        match store.abort_multipart_upload(key, upload_id).await {
            Ok(()) => return true,
            Err(e) if e.has_code(&ServiceCode::NoSuchUpload) => return true,
            Err(e) if round == 6 => {
                tracing::warn!(
                    key,
                    upload_id,
                    error = %e,
                    "could not abort a failed multipart upload; `ossmount cleanup BUCKET` removes it later"
                );
            }
            Err(e) => {
                tracing::debug!(key, upload_id, round, error = %e, "abort failed; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    false
}
