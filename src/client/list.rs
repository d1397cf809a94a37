//! ListObjectsV2 and DeleteMultipleObjects.
//!
//! Listing always asks for `encoding-type=url` (keys may contain characters XML 1.0
//! cannot carry) and decodes Key, Prefix and NextContinuationToken form-style like the Go
//! SDK. The continuation token is handed back to callers decoded and re-encoded by the
//! request builder on the next call.
//!
//! DeleteMultipleObjects takes at most 1000 keys per request; larger sets are split. It
//! requires `Content-MD5`. We ask for the verbose reply (Quiet=false) and report every
//! requested key that is missing from `<Deleted>` as failed (OSS lists keys that did not
//! exist as deleted, so a missing key really is a failure).

use std::collections::HashSet;

use base64::Engine;
use md5::{Digest, Md5};
use reqwest::Method;

use super::OssClient;
use super::request::{OssRequest, RequestBody, Target, validate_key};
use super::xml::{self, DeleteResult, ListBucketResult};
use crate::store::{ListEntry, ListPage, ListRequest, ObjectType, StoreError, StoreResult};

/// Keys per DeleteMultipleObjects request (the OSS limit).
pub(super) const DELETE_BATCH: usize = 1000;

/// Outcome of [`OssClient::delete_objects_detailed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteReport {
    pub deleted: Vec<String>,
    /// Keys the server did not confirm.
    pub failed: Vec<String>,
}

impl DeleteReport {
    /// Ok when every key was deleted; otherwise an error naming (up to 10 of) the others.
    pub fn into_result(self) -> StoreResult<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = self.failed.iter().take(10).map(String::as_str).collect();
        Err(StoreError::InvalidResponse {
            operation: "DeleteMultipleObjects".into(),
            message: format!(
                "{} of {} keys were not deleted: {}{}",
                self.failed.len(),
                self.failed.len() + self.deleted.len(),
                shown.join(", "),
                if self.failed.len() > 10 { ", …" } else { "" }
            ),
        })
    }
}

fn invalid(op: &str, message: String) -> StoreError {
    StoreError::InvalidResponse {
        operation: op.to_string(),
        message,
    }
}

fn parse_list_time(s: &str) -> Option<std::time::SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(Into::into)
}

impl OssClient {
    pub(crate) async fn list_objects_impl(&self, lr: &ListRequest) -> StoreResult<ListPage> {
        const OP: &str = "ListObjectsV2";
        let mut req = OssRequest::new(OP, Method::GET, Target::Bucket)
            .param("list-type", "2")
            .param("encoding-type", "url");
        if !lr.prefix.is_empty() {
            req = req.param("prefix", lr.prefix.clone());
        }
        if let Some(d) = lr.delimiter.as_ref().filter(|d| !d.is_empty()) {
            req = req.param("delimiter", d.clone());
        }
        if let Some(t) = lr.continuation_token.as_ref().filter(|t| !t.is_empty()) {
            req = req.param("continuation-token", t.clone());
        }
        if let Some(s) = lr.start_after.as_ref().filter(|s| !s.is_empty()) {
            req = req.param("start-after", s.clone());
        }
        if lr.max_keys > 0 {
            req = req.param("max-keys", lr.max_keys.min(1000).to_string());
        }
        let (_, r) = self.execute_xml::<ListBucketResult>(&req).await?;
        let enc = r.encoding_type.as_deref();
        let decode = |v: String| xml::maybe_decode(v, enc).map_err(|m| invalid(OP, m));
        let mut objects = Vec::with_capacity(r.contents.len());
        for c in r.contents {
            objects.push(ListEntry {
                key: decode(c.key)?,
                size: c.size,
                etag: c.etag,
                last_modified: c.last_modified.as_deref().and_then(parse_list_time),
                object_type: ObjectType::parse(c.object_type.as_deref().unwrap_or("Normal")),
            });
        }
        let common_prefixes = r
            .common_prefixes
            .into_iter()
            .map(|p| decode(p.prefix))
            .collect::<Result<Vec<_>, _>>()?;
        let next_continuation_token = if r.is_truncated {
            let t = r
                .next_continuation_token
                .map(decode)
                .transpose()?
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    invalid(OP, "truncated listing without NextContinuationToken".into())
                })?;
            if lr.continuation_token.as_deref() == Some(t.as_str()) {
                return Err(invalid(
                    OP,
                    "listing did not advance (same continuation token)".into(),
                ));
            }
            Some(t)
        } else {
            None
        };
        Ok(ListPage {
            objects,
            common_prefixes,
            next_continuation_token,
        })
    }

    /// DeleteMultipleObjects in batches of 1000, reporting which keys were not deleted.
    pub async fn delete_objects_detailed(&self, keys: &[String]) -> StoreResult<DeleteReport> {
        const OP: &str = "DeleteMultipleObjects";
        let mut report = DeleteReport::default();
        for k in keys {
            validate_key(k)?;
        }
        for batch in keys.chunks(DELETE_BATCH) {
            let body = xml::delete_body(batch);
            let md5 =
                base64::engine::general_purpose::STANDARD.encode(Md5::digest(body.as_bytes()));
            let req = OssRequest::new(OP, Method::POST, Target::Bucket)
                .bare("delete")
                .param("encoding-type", "url")
                .header("content-type", "application/xml")
                .header("content-md5", md5)
                .body(RequestBody::bytes(body.into()));
            let (_, r) = self.execute_xml::<DeleteResult>(&req).await?;
            let enc = r.encoding_type.as_deref();
            let deleted: HashSet<String> = r
                .deleted
                .into_iter()
                .map(|d| xml::maybe_decode(d.key, enc))
                .collect::<Result<_, _>>()
                .map_err(|m| invalid(OP, m))?;
            for k in batch {
                if deleted.contains(k) {
                    report.deleted.push(k.clone());
                } else {
                    report.failed.push(k.clone());
                }
            }
        }
        if !report.failed.is_empty() {
            tracing::warn!(
                failed = report.failed.len(),
                deleted = report.deleted.len(),
                "DeleteMultipleObjects left keys behind"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_error_names_failed_keys() {
        let r = DeleteReport {
            deleted: vec!["a".into()],
            failed: vec!["b c".into()],
        };
        let msg = r.into_result().unwrap_err().to_string();
        assert!(msg.contains("1 of 2") && msg.contains("b c"), "{msg}");
        assert!(DeleteReport::default().into_result().is_ok());
    }

    #[test]
    fn list_times() {
        assert!(parse_list_time("2024-01-02T03:04:05.000Z").is_some());
        assert!(parse_list_time("nope").is_none());
    }
}
