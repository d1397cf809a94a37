//! Multipart uploads: Initiate, UploadPart, UploadPartCopy, Complete, Abort,
//! ListMultipartUploads, ListParts.
//!
//! Completion rules as OSS enforces them: parts listed in strictly ascending order
//! (`InvalidPartOrder`), each present with the ETag the client got back (`InvalidPart`),
//! every part but the last at least 100 KiB (`EntityTooSmall`). `x-oss-complete-all: yes`
//! with an empty body completes every uploaded part. The object ETag is
//! `"<MD5 of the concatenated binary part MD5s>-<N>"`; its CRC-64 is the combination of
//! the part CRCs (no re-read of the data).

use std::sync::Arc;

use http::Response;
use hyper::body::Incoming;
use md5::{Digest as _, Md5};
use serde::Deserialize;

use super::object::{content_md5_header, open_copy_source};
use super::{blocking, content_type, key_of, user_meta};
use crate::body::{RespBody, empty, read_small_body, stage_body};
use crate::body::{response, xml_response};
use crate::error::OssError;
use crate::request::Ctx;
use crate::state::State;
use crate::storage::{
    Bucket, MAX_PART_NUMBER, MAX_PUT_SIZE, MIN_PART_SIZE, NewObject, ObjectKind, PartRecord,
    UploadMeta, crc64_combine,
};
use crate::xml::{XmlWriter, iso8601_millis, url_encode};

fn url_encoding(ctx: &Ctx) -> bool {
    ctx.query.get("encoding-type") == Some("url")
}

/// The upload named by `?uploadId=`, which must belong to the request's key.
fn upload_of(ctx: &Ctx, bucket: &Bucket) -> Result<Arc<UploadMeta>, OssError> {
    let id = ctx.query.get("uploadId").unwrap_or("");
    let key = key_of(ctx)?;
    match bucket.upload(id) {
        Some(u) if u.key == key => Ok(u),
        _ => Err(OssError::no_such_upload(id)),
    }
}

fn part_number(ctx: &Ctx) -> Result<u32, OssError> {
    ctx.query
        .get("partNumber")
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            OssError::invalid_argument(
                "Part number must be an integer between 1 and 10000, inclusive.",
            )
        })
}

pub async fn initiate(ctx: &Ctx, bucket: &Arc<Bucket>) -> Result<Response<RespBody>, OssError> {
    let key = key_of(ctx)?.to_string();
    let ct = content_type(ctx);
    let meta = user_meta(ctx)?;
    let b = bucket.clone();
    let k = key.clone();
    let upload = blocking(move || b.create_upload(&k, ct, meta).map_err(OssError::from)).await?;
    let url = url_encoding(ctx);
    let mut w = XmlWriter::new("InitiateMultipartUploadResult");
    w.elem("Bucket", &bucket.name)
        .elem("Key", if url { url_encode(&key) } else { key })
        .elem("UploadId", &upload.upload_id);
    if url {
        w.elem("EncodingType", "url");
    }
    xml_response(200, w.finish("InitiateMultipartUploadResult"))
}

pub async fn upload_part(
    state: &Arc<State>,
    ctx: &Ctx,
    bucket: &Arc<Bucket>,
    body: Incoming,
) -> Result<Response<RespBody>, OssError> {
    let n = part_number(ctx)?;
    let upload = upload_of(ctx, bucket)?;
    let want_md5 = content_md5_header(ctx)?;
    let staged = stage_body(bucket, body, &state.stats, MAX_PUT_SIZE).await?;
    if want_md5.is_some_and(|m| m != staged.md5) {
        return Err(OssError::new(
            400,
            "InvalidDigest",
            "The Content-MD5 you specified did not match what we received.",
        ));
    }
    let b = bucket.clone();
    let part = blocking(move || b.put_part(&upload.upload_id, n, staged)).await?;
    response(200)
        .header("etag", part.etag.as_str())
        .header("x-oss-hash-crc64ecma", part.crc64.to_string())
        .header("content-length", 0)
        .body(empty())
        .map_err(|e| OssError::internal(e.to_string()))
}

/// `bytes=a-b` of `x-oss-copy-source-range`; must lie inside the source.
fn copy_range(v: Option<&str>, size: u64) -> Result<(u64, u64), OssError> {
    let Some(v) = v else {
        return Ok((0, size));
    };
    let bad = || OssError::invalid_argument("x-oss-copy-source-range is invalid");
    let (a, b) = v
        .trim()
        .strip_prefix("bytes=")
        .and_then(|s| s.split_once('-'))
        .ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = if b.trim().is_empty() {
        size.checked_sub(1).ok_or_else(bad)?
    } else {
        b.trim().parse().map_err(|_| bad())?
    };
    if end < start || end >= size {
        return Err(bad());
    }
    Ok((start, end - start + 1))
}

pub async fn upload_part_copy(
    state: &Arc<State>,
    ctx: &Ctx,
    bucket: &Arc<Bucket>,
) -> Result<Response<RespBody>, OssError> {
    let n = part_number(ctx)?;
    let upload = upload_of(ctx, bucket)?;
    let (src_bucket, src, file) = open_copy_source(state, ctx)?;
    if src.kind == ObjectKind::Appendable {
        return Err(OssError::invalid_argument(
            "Objects uploaded by AppendObject cannot be copied with UploadPartCopy.",
        ));
    }
    let file =
        file.ok_or_else(|| OssError::invalid_argument("cannot copy a part from a symlink"))?;
    let (offset, len) = copy_range(ctx.header("x-oss-copy-source-range"), src.size)?;
    let b = bucket.clone();
    let part = blocking(move || {
        let staged = src_bucket.stage_copy(&file, offset, len)?;
        b.put_part(&upload.upload_id, n, staged)
    })
    .await?;
    let mut w = XmlWriter::new("CopyPartResult");
    w.elem("LastModified", iso8601_millis(part.last_modified_ms))
        .elem("ETag", &part.etag);
    let mut resp = xml_response(200, w.finish("CopyPartResult"))?;
    if let Ok(v) = http::HeaderValue::from_str(&part.crc64.to_string()) {
        resp.headers_mut().insert("x-oss-hash-crc64ecma", v);
    }
    Ok(resp)
}

#[derive(Deserialize)]
struct CompleteBody {
    #[serde(rename = "Part", default)]
    parts: Vec<CompletePart>,
}

#[derive(Deserialize)]
struct CompletePart {
    #[serde(rename = "PartNumber")]
    part_number: u32,
    #[serde(rename = "ETag")]
    etag: String,
}

/// Picks and validates the parts named by the client (or all with complete-all).
fn select_parts(
    uploaded: Vec<PartRecord>,
    requested: Option<Vec<CompletePart>>,
) -> Result<Vec<PartRecord>, OssError> {
    let chosen = match requested {
        None => uploaded,
        Some(req) => {
            let mut out = Vec::with_capacity(req.len());
            let mut last = 0u32;
            for p in req {
                if p.part_number <= last {
                    return Err(OssError::new(
                        400,
                        "InvalidPartOrder",
                        "The list of parts was not in ascending order. Parts list must be specified in order by part number.",
                    ));
                }
                last = p.part_number;
                let found = uploaded
                    .iter()
                    .find(|u| u.part_number == p.part_number)
                    .filter(|u| {
                        u.etag
                            .trim_matches('"')
                            .eq_ignore_ascii_case(p.etag.trim().trim_matches('"'))
                    })
                    .ok_or_else(|| {
                        OssError::new(400, "InvalidPart", "One or more of the specified parts could not be found or the specified entity tag might not have matched the part's entity tag.")
                            .with_extra("PartNumber", p.part_number.to_string())
                    })?;
                out.push(found.clone());
            }
            out
        }
    };
    if chosen.is_empty() {
        return Err(OssError::malformed_xml(
            "The XML you provided did not list any part.",
        ));
    }
    if let Some(small) = chosen[..chosen.len() - 1]
        .iter()
        .find(|p| p.size < MIN_PART_SIZE)
    {
        return Err(OssError::new(
            400,
            "EntityTooSmall",
            "Your proposed upload is smaller than the minimum allowed size.",
        )
        .with_extra("PartNumber", small.part_number.to_string())
        .with_extra("MinSizeAllowed", MIN_PART_SIZE.to_string()));
    }
    Ok(chosen)
}

pub async fn complete(
    state: &Arc<State>,
    ctx: &Ctx,
    bucket: &Arc<Bucket>,
    body: Incoming,
) -> Result<Response<RespBody>, OssError> {
    let upload = upload_of(ctx, bucket)?;
    let complete_all = ctx
        .header("x-oss-complete-all")
        .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let xml = read_small_body(body, &state.stats, 4 << 20).await?;
    let requested = if complete_all {
        if !xml.is_empty() {
            return Err(OssError::invalid_argument(
                "x-oss-complete-all requires an empty body",
            ));
        }
        None
    } else {
        let text =
            std::str::from_utf8(&xml).map_err(|_| OssError::malformed_xml("body is not UTF-8"))?;
        let parsed: CompleteBody = quick_xml::de::from_str(text).map_err(|e| {
            OssError::malformed_xml(format!("The XML you provided was not well-formed: {e}"))
        })?;
        Some(parsed.parts)
    };
    let forbid = ctx
        .header("x-oss-forbid-overwrite")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let b = bucket.clone();
    let up = upload.clone();
    let rec = blocking(move || {
        let parts = select_parts(b.parts(&up.upload_id)?, requested)?;
        let mut md5s = Md5::new();
        let mut crc = 0u64;
        for p in &parts {
            let bin = hex::decode(p.etag.trim_matches('"')).unwrap_or_default();
            md5s.update(&bin);
            crc = crc64_combine(crc, p.crc64, p.size);
        }
        let new = NewObject {
            kind: ObjectKind::Multipart,
            etag: format!("\"{}-{}\"", hex::encode_upper(md5s.finalize()), parts.len()),
            content_type: up.content_type.clone(),
            user_meta: up.user_meta.clone(),
            symlink_target: None,
            content_md5: None,
        };
        let rec = b.commit_parts(&up.key, &up.upload_id, &parts, crc, new, |cur| {
            if forbid && cur.is_some() {
                Err(OssError::new(
                    409,
                    "FileAlreadyExists",
                    "The object you specified already exists and can not be overwritten.",
                ))
            } else {
                Ok(())
            }
        })?;
        b.remove_upload(&up.upload_id)?;
        Ok(rec)
    })
    .await?;
    let url = url_encoding(ctx);
    let key = if url {
        url_encode(&rec.key)
    } else {
        rec.key.clone()
    };
    let mut w = XmlWriter::new("CompleteMultipartUploadResult");
    if url {
        w.elem("EncodingType", "url");
    }
    w.elem(
        "Location",
        format!(
            "http://{}.oss-{}.aliyuncs.com/{}",
            bucket.name, state.region, key
        ),
    )
    .elem("Bucket", &bucket.name)
    .elem("Key", key)
    .elem("ETag", &rec.etag);
    let mut resp = xml_response(200, w.finish("CompleteMultipartUploadResult"))?;
    let h = resp.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(&rec.crc64.to_string()) {
        h.insert("x-oss-hash-crc64ecma", v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&rec.etag) {
        h.insert("etag", v);
    }
    Ok(resp)
}

pub async fn abort(ctx: &Ctx, bucket: &Arc<Bucket>) -> Result<Response<RespBody>, OssError> {
    let upload = upload_of(ctx, bucket)?;
    let b = bucket.clone();
    blocking(move || b.remove_upload(&upload.upload_id).map_err(OssError::from)).await?;
    response(204)
        .body(empty())
        .map_err(|e| OssError::internal(e.to_string()))
}

pub fn list_uploads(ctx: &Ctx, bucket: &Arc<Bucket>) -> Result<Response<RespBody>, OssError> {
    let q = &ctx.query;
    let prefix = q.get("prefix").unwrap_or("");
    let key_marker = q.get("key-marker").unwrap_or("");
    let id_marker = q.get("upload-id-marker").unwrap_or("");
    let max: usize = match q.get("max-uploads") {
        None => 1000,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| OssError::invalid_argument("max-uploads must be between 1 and 1000"))?,
    };
    let url = url_encoding(ctx);
    let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
    let all: Vec<_> = bucket
        .uploads()
        .into_iter()
        .filter(|u| u.key.starts_with(prefix))
        .filter(|u| {
            key_marker.is_empty()
                || u.key.as_str() > key_marker
                || (u.key == key_marker
                    && !id_marker.is_empty()
                    && u.upload_id.as_str() > id_marker)
        })
        .collect();
    // With a delimiter, keys sharing `prefix + … + delimiter` collapse into one common
    // prefix (uploads are sorted by key, so members are contiguous).
    let delimiter = q.get("delimiter").unwrap_or("");
    enum Item {
        Upload(Arc<UploadMeta>),
        Prefix(String),
    }
    let mut items: Vec<Item> = Vec::new();
    for u in all {
        let cp = (!delimiter.is_empty())
            .then(|| u.key[prefix.len()..].find(delimiter))
            .flatten()
            .map(|pos| u.key[..prefix.len() + pos + delimiter.len()].to_string());
        match cp {
            Some(cp) if cp == key_marker => {}
            Some(cp) if matches!(items.last(), Some(Item::Prefix(last)) if *last == cp) => {}
            Some(cp) => items.push(Item::Prefix(cp)),
            None => items.push(Item::Upload(u)),
        }
    }
    let truncated = items.len() > max;
    let page = &items[..items.len().min(max)];
    let (next_key, next_id) = match page.last() {
        Some(Item::Upload(u)) => (u.key.as_str(), u.upload_id.as_str()),
        Some(Item::Prefix(p)) => (p.as_str(), ""),
        None => ("", ""),
    };
    let mut w = XmlWriter::new("ListMultipartUploadsResult");
    w.elem("Bucket", &bucket.name)
        .elem("KeyMarker", enc(key_marker))
        .elem("UploadIdMarker", id_marker)
        .elem("NextKeyMarker", enc(next_key))
        .elem("NextUploadIdMarker", next_id)
        .elem("Delimiter", enc(delimiter))
        .elem("Prefix", enc(prefix))
        .elem("MaxUploads", max.to_string())
        .elem("IsTruncated", if truncated { "true" } else { "false" });
    if url {
        w.elem("EncodingType", "url");
    }
    for item in page {
        if let Item::Upload(u) = item {
            w.open("Upload")
                .elem("Key", enc(&u.key))
                .elem("UploadId", &u.upload_id)
                .elem("StorageClass", "Standard")
                .elem("Initiated", iso8601_millis(u.initiated_ms))
                .close("Upload");
        }
    }
    for item in page {
        if let Item::Prefix(p) = item {
            w.open("CommonPrefixes")
                .elem("Prefix", enc(p))
                .close("CommonPrefixes");
        }
    }
    xml_response(200, w.finish("ListMultipartUploadsResult"))
}

pub async fn list_parts(ctx: &Ctx, bucket: &Arc<Bucket>) -> Result<Response<RespBody>, OssError> {
    let upload = upload_of(ctx, bucket)?;
    let q = &ctx.query;
    let max: usize = match q.get("max-parts") {
        None => 1000,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| OssError::invalid_argument("max-parts must be between 1 and 1000"))?,
    };
    let marker: u32 = match q.get("part-number-marker") {
        None | Some("") => 0,
        Some(s) => s
            .parse()
            .map_err(|_| OssError::invalid_argument("part-number-marker must be an integer"))?,
    };
    let b = bucket.clone();
    let id = upload.upload_id.clone();
    let parts = blocking(move || b.parts(&id).map_err(OssError::from)).await?;
    let rest: Vec<_> = parts
        .into_iter()
        .filter(|p| p.part_number > marker)
        .collect();
    let truncated = rest.len() > max;
    let page = &rest[..rest.len().min(max)];
    let url = url_encoding(ctx);
    let mut w = XmlWriter::new("ListPartsResult");
    w.elem("Bucket", &bucket.name)
        .elem(
            "Key",
            if url {
                url_encode(&upload.key)
            } else {
                upload.key.clone()
            },
        )
        .elem("UploadId", &upload.upload_id)
        .elem("StorageClass", "Standard")
        .elem("PartNumberMarker", marker.to_string())
        .elem(
            "NextPartNumberMarker",
            page.last().map(|p| p.part_number).unwrap_or(0).to_string(),
        )
        .elem("MaxParts", max.to_string())
        .elem("IsTruncated", if truncated { "true" } else { "false" });
    if url {
        w.elem("EncodingType", "url");
    }
    for p in page {
        w.open("Part")
            .elem("PartNumber", p.part_number.to_string())
            .elem("LastModified", iso8601_millis(p.last_modified_ms))
            .elem("ETag", &p.etag)
            .elem("HashCrc64ecma", p.crc64.to_string())
            .elem("Size", p.size.to_string())
            .close("Part");
    }
    xml_response(200, w.finish("ListPartsResult"))
}
