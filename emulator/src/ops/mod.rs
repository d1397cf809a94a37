//! OSS operations: detection from method + bucket/key + sub-resources, dispatch, and
//! helpers shared by the handlers (object response headers, user metadata, buckets).
//!
//! Submodules, one concept each: [`object`] (HEAD/GET/PUT/DELETE/copy/append/symlink),
//! [`multipart`], [`list`] (ListObjects v1/v2), [`service`] (bucket info, location,
//! regions, multi-delete, list buckets).

pub mod list;
pub mod multipart;
pub mod object;
pub mod service;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Method, Response};
use hyper::body::Incoming;

use super::body::RespBody;
use super::error::OssError;
use super::faults::FaultDecision;
use super::request::Ctx;
use super::state::State;
use super::storage::{Bucket, ObjectRecord};
use super::xml::{from_millis, http_date};

/// The OSS API operations the emulator serves (names as in `/-/stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    HeadObject,
    GetObject,
    PutObject,
    DeleteObject,
    DeleteMultipleObjects,
    ListObjectsV2,
    ListObjects,
    InitiateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListMultipartUploads,
    ListParts,
    CopyObject,
    AppendObject,
    PutSymlink,
    GetSymlink,
    GetBucketInfo,
    GetBucketLocation,
    DescribeRegions,
    ListBuckets,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::HeadObject => "HeadObject",
            Op::GetObject => "GetObject",
            Op::PutObject => "PutObject",
            Op::DeleteObject => "DeleteObject",
            Op::DeleteMultipleObjects => "DeleteMultipleObjects",
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::ListObjects => "ListObjects",
            Op::InitiateMultipartUpload => "InitiateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::UploadPartCopy => "UploadPartCopy",
            Op::CompleteMultipartUpload => "CompleteMultipartUpload",
            Op::AbortMultipartUpload => "AbortMultipartUpload",
            Op::ListMultipartUploads => "ListMultipartUploads",
            Op::ListParts => "ListParts",
            Op::CopyObject => "CopyObject",
            Op::AppendObject => "AppendObject",
            Op::PutSymlink => "PutSymlink",
            Op::GetSymlink => "GetSymlink",
            Op::GetBucketInfo => "GetBucketInfo",
            Op::GetBucketLocation => "GetBucketLocation",
            Op::DescribeRegions => "DescribeRegions",
            Op::ListBuckets => "ListBuckets",
        }
    }

    /// Faults apply to object and list requests only.
    pub fn faultable(self) -> bool {
        !matches!(
            self,
            Op::GetBucketInfo | Op::GetBucketLocation | Op::DescribeRegions | Op::ListBuckets
        )
    }

    /// Picks the operation from method, addressing and sub-resources.
    pub fn detect(ctx: &Ctx) -> Result<Op, OssError> {
        let q = &ctx.query;
        // Sub-resources of operations the emulator does not serve: refuse them rather
        // than answering, say, GetObjectAcl with the object's content.
        if let Some((name, _)) = q.0.iter().find(|(n, _)| UNSUPPORTED.contains(&n.as_str())) {
            return Err(OssError::not_implemented(&format!(
                "the `{name}` sub-resource"
            )));
        }
        let m = &ctx.method;
        let op = match (&ctx.bucket, &ctx.key) {
            (None, _) => match *m {
                Method::GET if q.has("regions") => Op::DescribeRegions,
                Method::GET => Op::ListBuckets,
                _ => return Err(OssError::method_not_allowed()),
            },
            (Some(_), None) => match *m {
                Method::GET if q.has("bucketInfo") => Op::GetBucketInfo,
                Method::GET if q.has("location") => Op::GetBucketLocation,
                Method::GET if q.has("uploads") => Op::ListMultipartUploads,
                Method::GET if q.get("list-type") == Some("2") => Op::ListObjectsV2,
                Method::GET => Op::ListObjects,
                Method::POST if q.has("delete") => Op::DeleteMultipleObjects,
                _ => return Err(OssError::method_not_allowed()),
            },
            (Some(_), Some(_)) => {
                let copy = ctx.headers.contains_key("x-oss-copy-source");
                match *m {
                    Method::HEAD => Op::HeadObject,
                    Method::GET if q.has("symlink") => Op::GetSymlink,
                    Method::GET if q.has("uploadId") => Op::ListParts,
                    Method::GET => Op::GetObject,
                    Method::PUT if q.has("symlink") => Op::PutSymlink,
                    Method::PUT if q.has("uploadId") && copy => Op::UploadPartCopy,
                    Method::PUT if q.has("uploadId") => Op::UploadPart,
                    Method::PUT if copy => Op::CopyObject,
                    Method::PUT => Op::PutObject,
                    Method::POST if q.has("uploads") => Op::InitiateMultipartUpload,
                    Method::POST if q.has("uploadId") => Op::CompleteMultipartUpload,
                    Method::POST if q.has("append") => Op::AppendObject,
                    Method::DELETE if q.has("uploadId") => Op::AbortMultipartUpload,
                    Method::DELETE => Op::DeleteObject,
                    _ => return Err(OssError::method_not_allowed()),
                }
            }
        };
        Ok(op)
    }
}

const UNSUPPORTED: &[&str] = &[
    "acl",
    "tagging",
    "restore",
    "versions",
    "versioning",
    "versionId",
    "lifecycle",
    "cors",
    "website",
    "referer",
    "logging",
    "policy",
    "encryption",
    "worm",
    "stat",
    "x-oss-process",
    "cname",
    "inventory",
    "qos",
    "replication",
];

/// Runs an authenticated request.
pub async fn run(
    state: &Arc<State>,
    ctx: &Ctx,
    op: Op,
    body: Incoming,
    fault: FaultDecision,
) -> Result<Response<RespBody>, OssError> {
    match op {
        Op::DescribeRegions => service::describe_regions(state, ctx),
        Op::ListBuckets => service::list_buckets(state),
        _ => {
            let bucket = bucket_of(state, ctx)?;
            match op {
                Op::HeadObject => object::get(state, ctx, &bucket, true, fault).await,
                Op::GetObject => object::get(state, ctx, &bucket, false, fault).await,
                Op::PutObject => object::put(state, ctx, &bucket, body).await,
                Op::DeleteObject => object::delete(ctx, &bucket).await,
                Op::CopyObject => object::copy(state, ctx, &bucket).await,
                Op::AppendObject => object::append(state, ctx, &bucket, body).await,
                Op::PutSymlink => object::put_symlink(ctx, &bucket).await,
                Op::GetSymlink => object::get_symlink(ctx, &bucket),
                Op::ListObjectsV2 => list::list_objects(ctx, &bucket, true),
                Op::ListObjects => list::list_objects(ctx, &bucket, false),
                Op::InitiateMultipartUpload => multipart::initiate(ctx, &bucket).await,
                Op::UploadPart => multipart::upload_part(state, ctx, &bucket, body).await,
                Op::UploadPartCopy => multipart::upload_part_copy(state, ctx, &bucket).await,
                Op::CompleteMultipartUpload => multipart::complete(state, ctx, &bucket, body).await,
                Op::AbortMultipartUpload => multipart::abort(ctx, &bucket).await,
                Op::ListMultipartUploads => multipart::list_uploads(ctx, &bucket),
                Op::ListParts => multipart::list_parts(ctx, &bucket).await,
                Op::GetBucketInfo => service::bucket_info(state, &bucket),
                Op::GetBucketLocation => service::bucket_location(state),
                Op::DeleteMultipleObjects => {
                    service::delete_multiple(state, ctx, &bucket, body).await
                }
                Op::DescribeRegions | Op::ListBuckets => Err(OssError::internal("unreachable")),
            }
        }
    }
}

pub fn bucket_of(state: &State, ctx: &Ctx) -> Result<Arc<Bucket>, OssError> {
    let name = ctx.bucket.as_deref().unwrap_or("");
    state
        .storage
        .bucket(name)
        .ok_or_else(|| OssError::no_such_bucket(name))
}

pub fn key_of(ctx: &Ctx) -> Result<&str, OssError> {
    ctx.key
        .as_deref()
        .ok_or_else(|| OssError::new(400, "InvalidObjectName", "The object name is missing."))
}

/// `x-oss-meta-*` request headers, names lower-cased without the prefix.
pub fn user_meta(ctx: &Ctx) -> Result<BTreeMap<String, String>, OssError> {
    let mut meta = BTreeMap::new();
    let mut total = 0;
    for (name, value) in &ctx.headers {
        if let Some(n) = name.as_str().strip_prefix("x-oss-meta-") {
            // The SDKs send (and sign) UTF-8 values as raw bytes; keep them as sent.
            let v = std::str::from_utf8(value.as_bytes())
                .map_err(|_| OssError::invalid_argument("user metadata must be UTF-8"))?;
            total += n.len() + v.len();
            meta.insert(n.to_string(), v.to_string());
        }
    }
    if total > 8 * 1024 {
        return Err(OssError::new(
            400,
            "MetadataTooLarge",
            "Your metadata headers exceed the maximum allowed metadata size (8 KB).",
        ));
    }
    Ok(meta)
}

pub fn content_type(ctx: &Ctx) -> String {
    ctx.header("content-type")
        .filter(|s| !s.is_empty())
        .unwrap_or("application/octet-stream")
        .to_string()
}

/// Headers HEAD and GET send for an object (`type_override`: Symlink for resolved links).
pub fn object_headers(
    mut b: http::response::Builder,
    rec: &ObjectRecord,
    type_override: Option<&str>,
) -> http::response::Builder {
    b = b
        .header("content-type", rec.content_type.as_str())
        .header("etag", rec.etag.as_str())
        .header(
            "last-modified",
            http_date(from_millis(rec.last_modified_ms)),
        )
        .header(
            "x-oss-object-type",
            type_override.unwrap_or(rec.kind.as_str()),
        )
        .header("x-oss-hash-crc64ecma", rec.crc64.to_string())
        .header("x-oss-storage-class", "Standard")
        .header("accept-ranges", "bytes");
    if rec.kind == super::storage::ObjectKind::Appendable {
        b = b.header("x-oss-next-append-position", rec.size.to_string());
    }
    if let Some(md5) = &rec.content_md5 {
        b = b.header("content-md5", md5.as_str());
    }
    meta_headers(b, &rec.user_meta)
}

/// `x-oss-meta-*` reply headers; values go out as raw UTF-8 bytes, like OSS.
pub fn meta_headers(
    mut b: http::response::Builder,
    meta: &BTreeMap<String, String>,
) -> http::response::Builder {
    for (k, v) in meta {
        if let Ok(value) = http::HeaderValue::from_bytes(v.as_bytes()) {
            b = b.header(format!("x-oss-meta-{k}"), value);
        }
    }
    b
}

/// Runs blocking storage work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OssError> + Send + 'static,
) -> Result<T, OssError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OssError::internal(format!("storage task failed: {e}")))?
}
