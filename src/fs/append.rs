//! Appending to an existing (non-appendable) object without downloading it.
//!
//! `echo line >> big.log` on a Normal or Multipart object would otherwise download the
//! whole object into a staging file and upload it again. Instead, writes that continue
//! exactly at the end of an object of at least 1 MiB are collected in a small staging
//! file holding only the new bytes, and the commit builds the new object server-side:
//! a multipart upload whose first parts are UploadPartCopy ranges of the existing object
//! (≤ 1 GiB each, all well above the 100 KiB part minimum) followed by the new bytes as
//! ordinary parts. The object is replaced only when CompleteMultipartUpload succeeds;
//! any failure aborts the upload and keeps the new bytes for a retry.
//!
//! Pitfalls:
//! - UploadPartCopy cannot be pinned to an ETag through the store trait, so the object is
//!   HEADed right before the copy and the commit fails with `ESTALE` if it changed since
//!   open. A change in the short window between that HEAD and the copies is not caught.
//! - Any write before the old end, a truncate or a read on the handle first materialises
//!   the whole file locally (download + new bytes) and continues as an ordinary staged
//!   file, so the semantics stay those of a local file.

use futures::{StreamExt, TryStreamExt};

use crate::store::{PartInfo, PutBody, PutOptions, PutResult};

use super::error::{FsError, not_found_or};
use super::staging_file::StagingFile;
use super::{Filesystem, FsResult};

/// Smallest object extended server-side (below, downloading it is cheaper).
pub(crate) const SERVER_APPEND_MIN: u64 = 1 << 20;
/// Largest UploadPartCopy range used for the existing bytes.
const COPY_PART_MAX: u64 = 1 << 30;
const MAX_PARTS: u64 = 10_000;
const PARALLELISM: usize = 4;

/// Bytes appended after the end of an existing object, not yet committed.
#[derive(Debug)]
pub(crate) struct PendingAppend {
    pub base_size: u64,
    pub base_etag: String,
    /// The new bytes; offset 0 here is offset `base_size` in the file.
    pub tail: StagingFile,
}

impl PendingAppend {
    pub(crate) fn end(&self) -> u64 {
        self.base_size + self.tail.size()
    }
}

impl Filesystem {
    /// Replaces `key` with its old content followed by `p.tail` (see the module docs).
    pub(crate) async fn commit_append(
        &self,
        key: &str,
        p: &PendingAppend,
        opts: &PutOptions,
    ) -> FsResult<PutResult> {
        let head = self
            .store
            .head_object(key)
            .await
            .map_err(|e| not_found_or("HeadObject", key, e))?;
        if head.etag != p.base_etag || head.size != p.base_size {
            return Err(FsError::Stale {
                key: key.to_string(),
            });
        }
        let upload_id = self
            .store
            .initiate_multipart_upload(key, opts)
            .await
            .map_err(|e| FsError::store("InitiateMultipartUpload", key, e))?;
        let result = self.append_parts(key, &upload_id, p).await;
        let result = match result {
            Ok(mut parts) => {
                parts.sort_by_key(|x| x.part_number);
                self.store
                    .complete_multipart_upload(key, &upload_id, &parts)
                    .await
                    .map_err(|e| FsError::store("CompleteMultipartUpload", key, e))
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            crate::store::abort_upload_persistently(&*self.store, key, &upload_id).await;
        }
        result
    }

    async fn append_parts(
        &self,
        key: &str,
        upload_id: &str,
        p: &PendingAppend,
    ) -> FsResult<Vec<PartInfo>> {
        let copies = p.base_size.div_ceil(COPY_PART_MAX).max(1);
        let copy_chunk = p.base_size.div_ceil(copies);
        let tail_len = p.tail.size();
        let tail_part = self
            .upload_cfg
            .part_size
            .max(tail_len.div_ceil(MAX_PARTS - copies))
            .max(1);
        let path = p.tail.path();
        let mut jobs: Vec<(u32, PartJob)> = (0..copies)
            .map(|i| {
                let start = i * copy_chunk;
                let end = (start + copy_chunk).min(p.base_size);
                ((i + 1) as u32, PartJob::Copy(start..end))
            })
            .collect();
        let tails = tail_len.div_ceil(tail_part);
        jobs.extend((0..tails).map(|j| {
            let offset = j * tail_part;
            let len = tail_part.min(tail_len - offset);
            (
                (copies + j + 1) as u32,
                PartJob::Upload(PutBody::File {
                    path: path.clone(),
                    offset,
                    len,
                }),
            )
        }));
        futures::stream::iter(jobs)
            .map(|(n, job)| async move {
                match job {
                    PartJob::Copy(range) => self
                        .store
                        .upload_part_copy(key, key, upload_id, n, range)
                        .await
                        .map_err(|e| FsError::store("UploadPartCopy", key, e)),
                    PartJob::Upload(body) => self
                        .store
                        .upload_part(key, upload_id, n, body)
                        .await
                        .map_err(|e| FsError::store("UploadPart", key, e)),
                }
            })
            .buffer_unordered(PARALLELISM)
            .try_collect()
            .await
    }

    /// The whole file as a staging file: the old object (pinned to its ETag) plus the
    /// pending new bytes.
    pub(crate) async fn materialize_append(
        &self,
        key: &str,
        p: PendingAppend,
    ) -> FsResult<StagingFile> {
        let mut file = StagingFile::download(
            &self.cfg.cache_dir,
            &*self.store,
            key,
            &p.base_etag,
            p.base_size,
        )
        .await?;
        const CHUNK: u32 = 8 << 20;
        let mut off = 0u64;
        while off < p.tail.size() {
            let data = p.tail.read_at(off, CHUNK).await?;
            if data.is_empty() {
                break;
            }
            let n = data.len() as u64;
            file.write_at(p.base_size + off, data).await?;
            off += n;
        }
        Ok(file)
    }
}

enum PartJob {
    Copy(std::ops::Range<u64>),
    Upload(PutBody),
}
