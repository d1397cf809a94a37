//! Multipart uploads: Initiate, UploadPart, UploadPartCopy, Complete, Abort,
//! ListMultipartUploads, and [`OssClient::copy_object_multipart`] for copies beyond the
//! 1 GiB CopyObject limit.
//!
//! CRC: each UploadPart compares the CRC of the bytes sent with the server's header, and
//! Complete folds the part CRCs with [`crate::crc64::combine`] and compares the result with
//! the completed object's header (skipped when a part's CRC is unknown).
//!
//! Complete is not idempotent: if its reply is lost, the retry gets `NoSuchUpload`. When
//! that happens after a retry and we know the combined CRC, we HEAD the key and report success if the object has exactly
//! the expected size and CRC. Abort treats `NoSuchUpload` as done.

use std::ops::Range;

use reqwest::Method;

use super::OssClient;
use super::object::{
    SLOW_OP_TIMEOUT_FACTOR, apply_put_options, check_crc, copy_source, crc_of, etag_of,
};
use super::request::{OssRequest, RequestBody, validate_key};
use super::xml::{
    self, CompleteMultipartUploadResult, CopyResult, InitiateMultipartUploadResult,
    ListMultipartUploadsResult,
};
use crate::store::{
    MultipartUploadInfo, PartInfo, PutBody, PutOptions, PutResult, ServiceCode, StoreError,
    StoreResult,
};

/// OSS limits on part numbers.
pub(super) const MAX_PARTS: u32 = 10_000;

fn check_part_number(n: u32) -> StoreResult<()> {
    if (1..=MAX_PARTS).contains(&n) {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "part number {n} is outside 1..={MAX_PARTS}"
        )))
    }
}

/// Combined CRC of parts in order, if every part has one.
pub(crate) fn combined_crc(parts: &[PartInfo]) -> Option<u64> {
    let mut crc = 0u64;
    for p in parts {
        crc = crate::crc64::combine(crc, p.crc64?, p.size);
    }
    Some(crc)
}

fn invalid(op: &str, message: String) -> StoreError {
    StoreError::InvalidResponse {
        operation: op.to_string(),
        message,
    }
}

impl OssClient {
    pub(crate) async fn initiate_multipart_upload_impl(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> StoreResult<String> {
        validate_key(key)?;
        let req = apply_put_options(
            OssRequest::object("InitiateMultipartUpload", Method::POST, key).bare("uploads"),
            opts,
        );
        let (_, r) = self
            .execute_xml::<InitiateMultipartUploadResult>(&req)
            .await?;
        if r.upload_id.is_empty() {
            return Err(invalid("InitiateMultipartUpload", "empty UploadId".into()));
        }
        Ok(r.upload_id)
    }

    pub(crate) async fn upload_part_impl(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: PutBody,
    ) -> StoreResult<PartInfo> {
        validate_key(key)?;
        check_part_number(part_number)?;
        let size = body.len();
        let req = OssRequest::object("UploadPart", Method::PUT, key)
            .param("partNumber", part_number.to_string())
            .param("uploadId", upload_id)
            .body(RequestBody::from(body));
        let sent = self.execute(&req).await?;
        let h = sent.resp.headers();
        let server = crc_of(h);
        check_crc(key, sent.body_crc, server)?;
        Ok(PartInfo {
            part_number,
            etag: etag_of(h),
            size,
            crc64: sent.body_crc.or(server),
        })
    }

    pub(crate) async fn complete_multipart_upload_impl(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> StoreResult<PutResult> {
        validate_key(key)?;
        if parts.is_empty() {
            return Err(StoreError::InvalidArgument(
                "CompleteMultipartUpload needs at least one part".into(),
            ));
        }
        let mut sorted = parts.to_vec();
        sorted.sort_by_key(|p| p.part_number);
        if sorted
            .windows(2)
            .any(|w| w[0].part_number == w[1].part_number)
        {
            return Err(StoreError::InvalidArgument(
                "duplicate part numbers in CompleteMultipartUpload".into(),
            ));
        }
        let expected_crc = combined_crc(&sorted);
        let total: u64 = sorted.iter().map(|p| p.size).sum();
        let body: Vec<(u32, &str)> = sorted
            .iter()
            .map(|p| (p.part_number, p.etag.as_str()))
            .collect();
        let mut req = OssRequest::object("CompleteMultipartUpload", Method::POST, key)
            .param("uploadId", upload_id)
            .header("content-type", "application/xml")
            .body(RequestBody::bytes(
                xml::complete_multipart_body(&body).into(),
            ));
        req.response_timeout = Some(self.inner.cfg.read_timeout * SLOW_OP_TIMEOUT_FACTOR);
        let (result, attempts) = self
            .execute_xml_counted::<CompleteMultipartUploadResult>(&req)
            .await;
        match result {
            Ok((h, r)) => {
                let server = crc_of(&h);
                check_crc(key, expected_crc, server)?;
                Ok(PutResult {
                    etag: r.etag,
                    crc64: server.or(expected_crc),
                })
            }
            Err(e)
                if attempts > 1
                    && e.has_code(&ServiceCode::NoSuchUpload)
                    && expected_crc.is_some() =>
            {
                let meta = self
                    .head_object_impl(key)
                    .await
                    .map_err(|_| clone_service(&e))?;
                if meta.size == total && meta.crc64 == expected_crc {
                    tracing::info!(
                        key,
                        "CompleteMultipartUpload reply was lost but the object is complete"
                    );
                    Ok(PutResult {
                        etag: meta.etag,
                        crc64: meta.crc64,
                    })
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn abort_multipart_upload_impl(
        &self,
        key: &str,
        upload_id: &str,
    ) -> StoreResult<()> {
        validate_key(key)?;
        let req = OssRequest::object("AbortMultipartUpload", Method::DELETE, key)
            .param("uploadId", upload_id);
        match self.execute(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.has_code(&ServiceCode::NoSuchUpload) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn list_multipart_uploads_impl(
        &self,
        prefix: &str,
    ) -> StoreResult<Vec<MultipartUploadInfo>> {
        let mut out = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut upload_id_marker: Option<String> = None;
        loop {
            let mut req = OssRequest::new(
                "ListMultipartUploads",
                Method::GET,
                super::request::Target::Bucket,
            )
            .bare("uploads")
            .param("encoding-type", "url")
            .param("max-uploads", "1000");
            if !prefix.is_empty() {
                req = req.param("prefix", prefix);
            }
            if let Some(m) = &key_marker {
                req = req.param("key-marker", m.clone());
            }
            if let Some(m) = &upload_id_marker {
                req = req.param("upload-id-marker", m.clone());
            }
            let (_, page) = self.execute_xml::<ListMultipartUploadsResult>(&req).await?;
            let enc = page.encoding_type.as_deref();
            for u in page.upload {
                out.push(MultipartUploadInfo {
                    key: xml::maybe_decode(u.key, enc)
                        .map_err(|m| invalid("ListMultipartUploads", m))?,
                    upload_id: u.upload_id,
                    initiated: u
                        .initiated
                        .as_deref()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(Into::into),
                });
            }
            if !page.is_truncated {
                return Ok(out);
            }
            let next_key = page
                .next_key_marker
                .map(|m| xml::maybe_decode(m, enc))
                .transpose()
                .map_err(|m| invalid("ListMultipartUploads", m))?;
            if next_key.is_none() && page.next_upload_id_marker.is_none() {
                return Err(invalid(
                    "ListMultipartUploads",
                    "truncated listing without next markers".into(),
                ));
            }
            if next_key == key_marker && page.next_upload_id_marker == upload_id_marker {
                return Err(invalid(
                    "ListMultipartUploads",
                    "listing did not advance (same markers twice)".into(),
                ));
            }
            key_marker = next_key;
            upload_id_marker = page.next_upload_id_marker;
        }
    }

    pub(crate) async fn upload_part_copy_impl(
        &self,
        src_key: &str,
        dst_key: &str,
        upload_id: &str,
        part_number: u32,
        range: Range<u64>,
    ) -> StoreResult<PartInfo> {
        self.upload_part_copy_pinned(src_key, dst_key, upload_id, part_number, range, None)
            .await
    }

    /// UploadPartCopy; `source_etag` adds `x-oss-copy-source-if-match`.
    async fn upload_part_copy_pinned(
        &self,
        src_key: &str,
        dst_key: &str,
        upload_id: &str,
        part_number: u32,
        range: Range<u64>,
        source_etag: Option<&str>,
    ) -> StoreResult<PartInfo> {
        validate_key(src_key)?;
        validate_key(dst_key)?;
        check_part_number(part_number)?;
        if range.start >= range.end {
            return Err(StoreError::InvalidArgument(format!(
                "UploadPartCopy range {}..{} is empty",
                range.start, range.end
            )));
        }
        let mut req = OssRequest::object("UploadPartCopy", Method::PUT, dst_key)
            .param("partNumber", part_number.to_string())
            .param("uploadId", upload_id)
            .header(
                "x-oss-copy-source",
                copy_source(&self.inner.cfg.bucket, src_key),
            )
            .header(
                "x-oss-copy-source-range",
                format!("bytes={}-{}", range.start, range.end - 1),
            );
        if let Some(etag) = source_etag.filter(|e| !e.is_empty()) {
            req = req.header("x-oss-copy-source-if-match", etag);
        }
        req.response_timeout = Some(self.inner.cfg.read_timeout * SLOW_OP_TIMEOUT_FACTOR);
        let (h, r) = self.execute_xml::<CopyResult>(&req).await?;
        Ok(PartInfo {
            part_number,
            etag: if r.etag.is_empty() {
                etag_of(&h)
            } else {
                r.etag
            },
            size: range.end - range.start,
            crc64: crc_of(&h),
        })
    }

    /// Copies `src` to `dst` with UploadPartCopy in parts of `part_size` (for sources over
    /// CopyObject's 1 GiB limit). `opts` = None keeps the source's content type and user
    /// metadata. On failure the upload is aborted and the error returned.
    pub async fn copy_object_multipart(
        &self,
        src: &str,
        dst: &str,
        opts: Option<&PutOptions>,
        part_size: u64,
    ) -> StoreResult<PutResult> {
        if part_size < 100 * 1024 {
            return Err(StoreError::InvalidArgument(
                "part size must be at least 100 KiB".into(),
            ));
        }
        let meta = self.head_object_impl(src).await?;
        if meta.size == 0 {
            return self.copy_object_impl(src, dst, opts).await;
        }
        let parts_needed = meta.size.div_ceil(part_size);
        if parts_needed > u64::from(MAX_PARTS) {
            return Err(StoreError::InvalidArgument(format!(
                "{} bytes in parts of {part_size} needs {parts_needed} parts; OSS allows {MAX_PARTS}",
                meta.size
            )));
        }
        let source_opts = PutOptions {
            content_type: meta.content_type.clone(),
            user_meta: meta.user_meta.clone(),
            forbid_overwrite: false,
        };
        let opts = opts.unwrap_or(&source_opts);
        let upload_id = self.initiate_multipart_upload_impl(dst, opts).await?;
        let result = async {
            let mut parts = Vec::with_capacity(parts_needed as usize);
            for i in 0..parts_needed {
                let start = i * part_size;
                let end = (start + part_size).min(meta.size);
                // Pin the source version: a source changed mid-copy must fail, not mix.
                let part = self
                    .upload_part_copy_pinned(
                        src,
                        dst,
                        &upload_id,
                        (i + 1) as u32,
                        start..end,
                        Some(&meta.etag),
                    )
                    .await?;
                parts.push(part);
            }
            let res = self
                .complete_multipart_upload_impl(dst, &upload_id, &parts)
                .await?;
            check_crc(dst, meta.crc64, res.crc64)?;
            Ok::<_, StoreError>(res)
        }
        .await;
        if let Err(e) = &result {
            tracing::warn!(src, dst, error = %e, "multipart copy failed; aborting the upload");
            crate::store::abort_upload_persistently(self, dst, &upload_id).await;
        }
        result
    }
}

/// Clone of a service error (StoreError is not Clone because of io::Error).
fn clone_service(e: &StoreError) -> StoreError {
    match e {
        StoreError::Service(s) => StoreError::Service(s.clone()),
        other => StoreError::InvalidResponse {
            operation: String::new(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_crc_matches_whole() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let parts: Vec<PartInfo> = data
            .chunks(100_000)
            .enumerate()
            .map(|(i, c)| PartInfo {
                part_number: i as u32 + 1,
                etag: String::new(),
                size: c.len() as u64,
                crc64: Some(crate::crc64::crc64(c)),
            })
            .collect();
        assert_eq!(combined_crc(&parts), Some(crate::crc64::crc64(&data)));
        let mut missing = parts.clone();
        missing[1].crc64 = None;
        assert_eq!(combined_crc(&missing), None);
    }

    #[test]
    fn part_numbers() {
        assert!(check_part_number(0).is_err());
        assert!(check_part_number(1).is_ok());
        assert!(check_part_number(10_000).is_ok());
        assert!(check_part_number(10_001).is_err());
    }
}
