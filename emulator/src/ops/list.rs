//! ListObjectsV2 (`?list-type=2`) and ListObjects (v1, `marker`).
//!
//! Continuation tokens are opaque to clients: base64 of the last key or common prefix
//! returned. `max-keys` must be 1..=1000 (default 100). With `encoding-type=url`, keys,
//! prefixes, the delimiter, start-after/marker and tokens are percent-encoded.

use std::sync::Arc;

use base64::Engine as _;
use http::Response;

use crate::body::RespBody;
use crate::body::xml_response;
use crate::error::OssError;
use crate::request::Ctx;
use crate::storage::{Bucket, ListParams};
use crate::xml::{XmlWriter, iso8601_millis, url_encode};

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

pub fn parse_max_keys(v: Option<&str>) -> Result<usize, OssError> {
    match v {
        None => Ok(100),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(OssError::invalid_argument(
                "max-keys must be an integer between 1 and 1000",
            )),
        },
    }
}

pub fn list_objects(
    ctx: &Ctx,
    bucket: &Arc<Bucket>,
    v2: bool,
) -> Result<Response<RespBody>, OssError> {
    let q = &ctx.query;
    let prefix = q.get("prefix").unwrap_or("");
    let delimiter = q.get("delimiter").unwrap_or("");
    let max_keys = parse_max_keys(q.get("max-keys"))?;
    let url = match q.get("encoding-type") {
        None | Some("") => false,
        Some("url") => true,
        Some(_) => return Err(OssError::invalid_argument("encoding-type must be url")),
    };
    let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
    let token = match q.get("continuation-token").filter(|_| v2) {
        Some(t) => Some(
            b64()
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| OssError::invalid_argument("The continuation token is invalid."))?,
        ),
        None => None,
    };
    let start_after = if v2 {
        q.get("start-after")
    } else {
        q.get("marker")
    };
    let after = match (token.as_deref(), start_after) {
        (Some(t), _) => Some(t),
        (None, s) => s.filter(|s| !s.is_empty()),
    };
    let page = bucket.list(&ListParams {
        prefix,
        delimiter,
        after,
        max_keys,
    });

    let mut w = XmlWriter::new("ListBucketResult");
    w.elem("Name", &bucket.name).elem("Prefix", enc(prefix));
    if v2 {
        if let Some(s) = start_after {
            w.elem("StartAfter", enc(s));
        }
        if let Some(t) = q.get("continuation-token") {
            w.elem("ContinuationToken", enc(t));
        }
    } else {
        w.elem("Marker", enc(start_after.unwrap_or("")));
    }
    w.elem("MaxKeys", max_keys.to_string())
        .elem("Delimiter", enc(delimiter))
        .elem("IsTruncated", if page.truncated { "true" } else { "false" });
    if let Some(m) = &page.next_marker {
        if v2 {
            w.elem("NextContinuationToken", enc(&b64().encode(m.as_bytes())));
        } else {
            w.elem("NextMarker", enc(m));
        }
    }
    if url {
        w.elem("EncodingType", "url");
    }
    if v2 {
        w.elem(
            "KeyCount",
            (page.objects.len() + page.prefixes.len()).to_string(),
        );
    }
    let fetch_owner = !v2 || q.get("fetch-owner") == Some("true");
    for rec in &page.objects {
        w.open("Contents")
            .elem("Key", enc(&rec.key))
            .elem("LastModified", iso8601_millis(rec.last_modified_ms))
            .elem("ETag", &rec.etag)
            .elem("Type", rec.kind.as_str())
            .elem("Size", rec.size.to_string())
            .elem("StorageClass", "Standard");
        if fetch_owner {
            w.open("Owner")
                .elem("ID", "1000000000000000")
                .elem("DisplayName", "1000000000000000")
                .close("Owner");
        }
        w.close("Contents");
    }
    for p in &page.prefixes {
        w.open("CommonPrefixes")
            .elem("Prefix", enc(p))
            .close("CommonPrefixes");
    }
    xml_response(200, w.finish("ListBucketResult"))
}
