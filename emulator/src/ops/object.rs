//! Single-object operations: HeadObject, GetObject, PutObject, DeleteObject, CopyObject,
//! AppendObject, PutSymlink, GetSymlink.
//!
//! OSS rules kept strictly (clients are tested against them):
//! - Range: one `bytes=a-b` range. By default an invalid or out-of-bounds range is
//!   ignored (200, whole object); with `x-oss-range-behavior: standard` an end past EOF
//!   is clamped and a start at/after EOF is `416 InvalidRange`.
//! - Conditionals: If-Match / If-Unmodified-Since failing → 412; If-None-Match /
//!   If-Modified-Since failing → 304.
//! - A symlink is resolved (one level) by GET/HEAD; HEAD reports `x-oss-object-type:
//!   Symlink` with the target's size, ETag and CRC.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use http::Response;
use hyper::body::Incoming;
use md5::{Digest as _, Md5};
use ossmount::sign::parse_http_date;
use percent_encoding::percent_decode_str;

use super::{blocking, content_type, key_of, object_headers, user_meta};
use crate::body::{RespBody, empty, file_body, response, stage_body, xml_response};
use crate::error::OssError;
use crate::faults::FaultDecision;
use crate::request::Ctx;
use crate::state::State;
use crate::storage::{
    Bucket, Content, MAX_PUT_SIZE, NewObject, ObjectKind, ObjectRecord, base64_md5, not_appendable,
    position_mismatch, quoted_md5_etag,
};
use crate::xml::{XmlWriter, from_millis, iso8601_millis, url_encode};

fn symlink_target_missing() -> OssError {
    OssError::new(
        404,
        "SymlinkTargetNotExist",
        "The symlink target object does not exist.",
    )
}

/// Looks up `key`, resolving a symlink; returns (record to report, content record, file).
fn open_resolved(
    bucket: &Bucket,
    key: &str,
) -> Result<(Arc<ObjectRecord>, Arc<ObjectRecord>, Content), OssError> {
    let rec = bucket.get(key).ok_or_else(|| OssError::no_such_key(key))?;
    if rec.kind == ObjectKind::Symlink {
        let target = rec.symlink_target.clone().unwrap_or_default();
        // OSS does not follow chains: a link to a link (itself included) has no target.
        // Checked first because opening a symlink record's (absent) content is an error.
        if bucket
            .get(&target)
            .is_some_and(|t| t.kind == ObjectKind::Symlink)
        {
            return Err(symlink_target_missing());
        }
        return match bucket.open_object(&target)? {
            Some((t, _)) if t.kind == ObjectKind::Symlink => Err(symlink_target_missing()),
            Some((t, f)) => Ok((rec, t, f)),
            None => Err(symlink_target_missing()),
        };
    }
    match bucket.open_object(key)? {
        Some((r, f)) => Ok((r.clone(), r, f)),
        None => Err(OssError::no_such_key(key)),
    }
}

/// Whether an `If-Match`-style header value matches an ETag (quotes optional, `*`).
pub fn etag_matches(header: &str, etag: &str) -> bool {
    let bare = etag.trim_matches('"');
    header
        .split(',')
        .map(str::trim)
        .any(|h| h == "*" || h == etag || h.trim_start_matches("W/").trim_matches('"') == bare)
}

/// Whole seconds, as HTTP dates carry.
fn secs(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Evaluates conditional headers with the given names against `rec`.
fn check_conditions(ctx: &Ctx, rec: &ObjectRecord, names: [&str; 4]) -> Result<(), OssError> {
    let [if_match, if_none_match, if_unmodified, if_modified] = names;
    let modified = secs(from_millis(rec.last_modified_ms));
    if let Some(h) = ctx.header(if_match)
        && !etag_matches(h, &rec.etag)
    {
        return Err(OssError::precondition_failed());
    }
    if let Some(t) = ctx.header(if_unmodified).and_then(parse_http_date)
        && modified > secs(t)
    {
        return Err(OssError::precondition_failed());
    }
    if let Some(h) = ctx.header(if_none_match)
        && etag_matches(h, &rec.etag)
    {
        return Err(not_modified());
    }
    if let Some(t) = ctx.header(if_modified).and_then(parse_http_date)
        && modified <= secs(t)
    {
        return Err(not_modified());
    }
    Ok(())
}

fn not_modified() -> OssError {
    OssError::new(304, "NotModified", "The object was not modified.")
}

/// Parses a Range header against `size`. `Ok(None)` = serve the whole object.
pub fn parse_range(spec: &str, size: u64, standard: bool) -> Result<Option<(u64, u64)>, OssError> {
    let invalid = || -> Result<Option<(u64, u64)>, OssError> {
        if standard {
            Err(OssError::new(
                416,
                "InvalidRange",
                "The requested range is not satisfiable.",
            )
            .with_header("content-range", format!("bytes */{size}")))
        } else {
            Ok(None)
        }
    };
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return invalid();
        }
        if n > size {
            return if standard {
                Ok(Some((0, size - 1)))
            } else {
                Ok(None)
            };
        }
        return Ok(Some((size - n, size - 1)));
    }
    let Ok(start) = a.parse::<u64>() else {
        return Ok(None);
    };
    let end = if b.is_empty() {
        None
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => Some(e),
            _ => return Ok(None),
        }
    };
    if start >= size {
        return invalid();
    }
    match end {
        None => Ok(Some((start, size - 1))),
        Some(e) if e < size => Ok(Some((start, e))),
        Some(_) if standard => Ok(Some((start, size - 1))),
        Some(_) => Ok(None),
    }
}

/// HeadObject / GetObject.
pub async fn get(
    state: &Arc<State>,
    ctx: &Ctx,
    bucket: &Arc<Bucket>,
    head: bool,
    fault: FaultDecision,
) -> Result<Response<RespBody>, OssError> {
    let key = key_of(ctx)?.to_string();
    let b = bucket.clone();
    let (shown, content, file) = blocking(move || open_resolved(&b, &key)).await?;
    check_conditions(
        ctx,
        &content,
        [
            "if-match",
            "if-none-match",
            "if-unmodified-since",
            "if-modified-since",
        ],
    )?;
    let type_override = (shown.kind == ObjectKind::Symlink).then_some("Symlink");
    let mut rb = object_headers(response(200), &content, type_override);
    for (param, header) in [
        ("response-content-type", "content-type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ] {
        if let Some(v) = ctx.query.get(param)
            && let Some(h) = rb.headers_mut()
            && let Ok(v) = http::HeaderValue::from_str(v)
        {
            h.insert(header, v);
        }
    }
    let size = content.size;
    if head {
        return rb
            .header("content-length", size)
            .body(empty())
            .map_err(|e| OssError::internal(e.to_string()));
    }
    let standard = ctx
        .header("x-oss-range-behavior")
        .is_some_and(|v| v.eq_ignore_ascii_case("standard"));
    let range = match ctx.header("range") {
        Some(spec) => parse_range(spec, size, standard)?,
        None => None,
    };
    let (status, start, len) = match range {
        Some((s, e)) => {
            rb = rb.header("content-range", format!("bytes {s}-{e}/{size}"));
            (206, s, e - s + 1)
        }
        None => (200, 0, size),
    };
    // A cut needs at least one byte sent (so the headers go out) and one withheld.
    let fault = if len < 2 { FaultDecision::None } else { fault };
    if !matches!(fault, FaultDecision::None) {
        state.stats.fault(match fault {
            FaultDecision::Reset { .. } => "reset",
            _ => "truncate",
        });
    }
    let body = file_body(
        Arc::new(file),
        start,
        len,
        state.stats.clone(),
        fault,
        ctx.socket,
    );
    let mut resp = rb
        .header("content-length", len)
        .body(body)
        .map_err(|e| OssError::internal(e.to_string()))?;
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    Ok(resp)
}

fn forbid_overwrite(ctx: &Ctx) -> bool {
    ctx.header("x-oss-forbid-overwrite")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn file_exists() -> OssError {
    OssError::new(
        409,
        "FileAlreadyExists",
        "The object you specified already exists and can not be overwritten.",
    )
}

/// The `Content-MD5` header, decoded (InvalidDigest when malformed).
pub fn content_md5_header(ctx: &Ctx) -> Result<Option<[u8; 16]>, OssError> {
    let Some(v) = ctx.header("content-md5") else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
        .map(Some)
        .ok_or_else(|| {
            OssError::new(
                400,
                "InvalidDigest",
                "The Content-MD5 you specified was invalid.",
            )
        })
}

/// PutObject.
pub async fn put(
    state: &Arc<State>,
    ctx: &Ctx,
    bucket: &Arc<Bucket>,
    body: Incoming,
) -> Result<Response<RespBody>, OssError> {
    let key = key_of(ctx)?.to_string();
    let forbid = forbid_overwrite(ctx);
    if forbid && bucket.get(&key).is_some() {
        return Err(file_exists());
    }
    let want_md5 = content_md5_header(ctx)?;
    let meta = user_meta(ctx)?;
    let staged = stage_body(bucket, body, &state.stats, MAX_PUT_SIZE).await?;
    if want_md5.is_some_and(|m| m != staged.md5) {
        return Err(OssError::new(
            400,
            "InvalidDigest",
            "The Content-MD5 you specified did not match what we received.",
        ));
    }
    let new = NewObject {
        kind: ObjectKind::Normal,
        etag: quoted_md5_etag(&staged.md5),
        content_type: content_type(ctx),
        user_meta: meta,
        symlink_target: None,
        content_md5: Some(base64_md5(&staged.md5)),
    };
    let b = bucket.clone();
    let rec = blocking(move || {
        b.commit(&key, Some(staged), new, |cur| {
            if forbid && cur.is_some() {
                Err(file_exists())
            } else {
                Ok(())
            }
        })
    })
    .await?;
    response(200)
        .header("etag", rec.etag.as_str())
        .header("x-oss-hash-crc64ecma", rec.crc64.to_string())
        .header("content-md5", rec.content_md5.clone().unwrap_or_default())
        .header("content-length", 0)
        .body(empty())
        .map_err(|e| OssError::internal(e.to_string()))
}

/// DeleteObject: 204 whether or not the key existed.
pub async fn delete(ctx: &Ctx, bucket: &Arc<Bucket>) -> Result<Response<RespBody>, OssError> {
    let key = key_of(ctx)?.to_string();
    let b = bucket.clone();
    blocking(move || b.delete(&key).map_err(OssError::from)).await?;
    response(204)
        .body(empty())
        .map_err(|e| OssError::internal(e.to_string()))
}

/// Parses `x-oss-copy-source: /bucket/encoded-key[?versionId=…]`.
pub fn parse_copy_source(v: &str) -> Result<(String, String), OssError> {
    let bad = || OssError::invalid_argument("x-oss-copy-source must be /bucket/object");
    let path = v.split('?').next().unwrap_or("");
    let decoded = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| bad())?
        .into_owned();
    let decoded = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (b, k) = decoded.split_once('/').ok_or_else(bad)?;
    if b.is_empty() || k.is_empty() {
        return Err(bad());
    }
    Ok((b.to_string(), k.to_string()))
}

/// The source of a copy: its bucket, record and open content (None for a symlink).
pub type CopySource = (Arc<Bucket>, Arc<ObjectRecord>, Option<Content>);

/// Opens the source of a copy, with the copy-source conditions checked.
pub fn open_copy_source(state: &State, ctx: &Ctx) -> Result<CopySource, OssError> {
    let src = ctx.header("x-oss-copy-source").unwrap_or("");
    let (sb, sk) = parse_copy_source(src)?;
    let src_bucket = state
        .storage
        .bucket(&sb)
        .ok_or_else(|| OssError::no_such_bucket(&sb))?;
    let rec = src_bucket
        .get(&sk)
        .ok_or_else(|| OssError::no_such_key(&sk))?;
    // Every failed copy-source condition is a 412 (no 304 for a copy).
    check_conditions(
        ctx,
        &rec,
        [
            "x-oss-copy-source-if-match",
            "x-oss-copy-source-if-none-match",
            "x-oss-copy-source-if-unmodified-since",
            "x-oss-copy-source-if-modified-since",
        ],
    )
    .map_err(|e| {
        if e.status == 304 {
            OssError::precondition_failed()
        } else {
            e
        }
    })?;
    if rec.kind == ObjectKind::Symlink {
        return Ok((src_bucket, rec, None));
    }
    match src_bucket.open_object(&sk)? {
        Some((r, f)) => Ok((src_bucket, r, Some(f))),
        None => Err(OssError::no_such_key(&sk)),
    }
}

/// Largest source CopyObject accepts (OSS: 1 GB; larger copies use UploadPartCopy).
pub const MAX_COPY_OBJECT_SIZE: u64 = 1 << 30;

/// CopyObject.
pub async fn copy(
    state: &Arc<State>,
    ctx: &Ctx,
    bucket: &Arc<Bucket>,
) -> Result<Response<RespBody>, OssError> {
    let key = key_of(ctx)?.to_string();
    let replace = match ctx.header("x-oss-metadata-directive") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("COPY") => false,
        Some(v) if v.eq_ignore_ascii_case("REPLACE") => true,
        Some(_) => {
            return Err(OssError::invalid_argument(
                "x-oss-metadata-directive must be COPY or REPLACE",
            ));
        }
    };
    let forbid = forbid_overwrite(ctx);
    let (new_ct, new_meta) = if replace {
        (content_type(ctx), user_meta(ctx)?)
    } else {
        (String::new(), Default::default())
    };
    // Condition headers are read inside; Ctx is not Send-able into the pool, so check here.
    let (src_bucket, src, file) = open_copy_source(state, ctx)?;
    if src.size > MAX_COPY_OBJECT_SIZE {
        return Err(OssError::new(
            400,
            "EntityTooLarge",
            "CopyObject copies objects up to 1 GB; use UploadPartCopy for larger ones.",
        ));
    }
    let b = bucket.clone();
    let rec = blocking(move || {
        let staged = match &file {
            Some(f) => Some(src_bucket.stage_copy(f, 0, src.size)?),
            None => None,
        };
        let new = NewObject {
            kind: match src.kind {
                ObjectKind::Appendable => ObjectKind::Normal,
                k => k,
            },
            etag: src.etag.clone(),
            content_type: if replace {
                new_ct
            } else {
                src.content_type.clone()
            },
            user_meta: if replace {
                new_meta
            } else {
                src.user_meta.clone()
            },
            symlink_target: src.symlink_target.clone(),
            content_md5: src.content_md5.clone(),
        };
        b.commit(&key, staged, new, |cur| {
            if forbid && cur.is_some() {
                Err(file_exists())
            } else {
                Ok(())
            }
        })
    })
    .await?;
    let mut w = XmlWriter::new("CopyObjectResult");
    w.elem("ETag", &rec.etag)
        .elem("LastModified", iso8601_millis(rec.last_modified_ms));
    let mut resp = xml_response(200, w.finish("CopyObjectResult"))?;
    let h = resp.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(&rec.crc64.to_string()) {
        h.insert("x-oss-hash-crc64ecma", v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&rec.etag) {
        h.insert("etag", v);
    }
    Ok(resp)
}

/// AppendObject (`POST /key?append&position=P`).
pub async fn append(
    state: &Arc<State>,
    ctx: &Ctx,
    bucket: &Arc<Bucket>,
    body: Incoming,
) -> Result<Response<RespBody>, OssError> {
    let key = key_of(ctx)?.to_string();
    let position: u64 = ctx
        .query
        .get("position")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| OssError::invalid_argument("position must be a non-negative integer"))?;
    // Reject early, before receiving the body, when the position is already wrong.
    match bucket.get(&key) {
        Some(cur) if cur.kind != ObjectKind::Appendable => return Err(not_appendable()),
        Some(cur) if cur.size != position => return Err(position_mismatch(cur.size)),
        None if position != 0 => return Err(position_mismatch(0)),
        _ => {}
    }
    let want_md5 = content_md5_header(ctx)?;
    let create = NewObject {
        kind: ObjectKind::Appendable,
        etag: String::new(),
        content_type: content_type(ctx),
        user_meta: user_meta(ctx)?,
        symlink_target: None,
        content_md5: None,
    };
    let staged = stage_body(bucket, body, &state.stats, MAX_PUT_SIZE).await?;
    if want_md5.is_some_and(|m| m != staged.md5) {
        return Err(OssError::new(
            400,
            "InvalidDigest",
            "The Content-MD5 you specified did not match what we received.",
        ));
    }
    let b = bucket.clone();
    let rec = blocking(move || b.append(&key, position, staged, create)).await?;
    response(200)
        .header("etag", rec.etag.as_str())
        .header("x-oss-next-append-position", rec.size.to_string())
        .header("x-oss-hash-crc64ecma", rec.crc64.to_string())
        .header("content-length", 0)
        .body(empty())
        .map_err(|e| OssError::internal(e.to_string()))
}

/// PutSymlink (`PUT /key?symlink`, target in `x-oss-symlink-target`, URL-encoded).
pub async fn put_symlink(ctx: &Ctx, bucket: &Arc<Bucket>) -> Result<Response<RespBody>, OssError> {
    let key = key_of(ctx)?.to_string();
    let raw = ctx
        .headers
        .get("x-oss-symlink-target")
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OssError::invalid_argument("x-oss-symlink-target is required"))?;
    let target = percent_encoding::percent_decode(raw)
        .decode_utf8()
        .map_err(|_| OssError::invalid_argument("x-oss-symlink-target is not valid UTF-8"))?
        .into_owned();
    if target.len() > 1023 {
        return Err(OssError::new(
            400,
            "InvalidObjectName",
            "The symlink target is too long.",
        ));
    }
    // The target follows the object-name rules: no leading `/` or `\`.
    if target.starts_with(['/', '\\']) {
        return Err(OssError::new(
            400,
            "InvalidObjectName",
            "The symlink target is not a valid object name.",
        ));
    }
    let forbid = forbid_overwrite(ctx);
    let new = NewObject {
        kind: ObjectKind::Symlink,
        etag: quoted_md5_etag(&Md5::digest(target.as_bytes())),
        content_type: content_type(ctx),
        user_meta: user_meta(ctx)?,
        symlink_target: Some(target),
        content_md5: None,
    };
    let b = bucket.clone();
    let rec = blocking(move || {
        b.commit(&key, None, new, |cur| {
            if forbid && cur.is_some() {
                Err(file_exists())
            } else {
                Ok(())
            }
        })
    })
    .await?;
    response(200)
        .header("etag", rec.etag.as_str())
        .header("content-length", 0)
        .body(empty())
        .map_err(|e| OssError::internal(e.to_string()))
}

/// GetSymlink: the target (URL-encoded) in `x-oss-symlink-target`.
pub fn get_symlink(ctx: &Ctx, bucket: &Arc<Bucket>) -> Result<Response<RespBody>, OssError> {
    let key = key_of(ctx)?;
    let rec = bucket.get(key).ok_or_else(|| OssError::no_such_key(key))?;
    let Some(target) = rec
        .symlink_target
        .as_deref()
        .filter(|_| rec.kind == ObjectKind::Symlink)
    else {
        return Err(OssError::new(
            400,
            "NotSymlink",
            "The specified object is not a symlink.",
        ));
    };
    let mut rb = response(200)
        .header("x-oss-symlink-target", url_encode(target))
        .header("etag", rec.etag.as_str())
        .header(
            "last-modified",
            crate::xml::http_date(from_millis(rec.last_modified_ms)),
        )
        .header("content-length", 0);
    rb = super::meta_headers(rb, &rec.user_meta);
    rb.body(empty())
        .map_err(|e| OssError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_default_and_standard() {
        // default: valid → range, invalid → whole object
        assert_eq!(parse_range("bytes=0-9", 100, false).unwrap(), Some((0, 9)));
        assert_eq!(
            parse_range("bytes=90-", 100, false).unwrap(),
            Some((90, 99))
        );
        assert_eq!(
            parse_range("bytes=-10", 100, false).unwrap(),
            Some((90, 99))
        );
        assert_eq!(parse_range("bytes=50-200", 100, false).unwrap(), None);
        assert_eq!(parse_range("bytes=100-200", 100, false).unwrap(), None);
        assert_eq!(parse_range("bytes=9-0", 100, false).unwrap(), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100, false).unwrap(), None);
        // standard: end clamps, start past EOF → 416
        assert_eq!(
            parse_range("bytes=50-200", 100, true).unwrap(),
            Some((50, 99))
        );
        assert_eq!(parse_range("bytes=-200", 100, true).unwrap(), Some((0, 99)));
        let e = parse_range("bytes=100-200", 100, true).unwrap_err();
        assert_eq!((e.status, e.code), (416, "InvalidRange"));
        assert!(parse_range("bytes=0-0", 0, true).is_err());
    }

    #[test]
    fn etag_matching() {
        assert!(etag_matches("\"ABC\"", "\"ABC\""));
        assert!(etag_matches("ABC", "\"ABC\""));
        assert!(etag_matches("\"X\", \"ABC\"", "\"ABC\""));
        assert!(etag_matches("*", "\"ABC\""));
        assert!(!etag_matches("\"abd\"", "\"ABC\""));
    }

    #[test]
    fn copy_source_is_decoded_once() {
        assert_eq!(
            parse_copy_source("/b/a%2Fb/%2E%2E/c%20d?versionId=1").unwrap(),
            ("b".to_string(), "a/b/../c d".to_string())
        );
        assert!(parse_copy_source("/b").is_err());
    }
}
