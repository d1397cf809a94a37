//! Server-side copies of any size (rename, metadata updates).
//!
//! CopyObject handles objects up to 1 GiB. Larger objects are copied with a multipart
//! upload whose parts are UploadPartCopy ranges of the source (parts of at least
//! 256 MiB, more when needed to stay within 10 000 parts), a few in flight at once. The
//! destination appears only when CompleteMultipartUpload succeeds; on any error the
//! upload is aborted and the source is untouched.
//!
//! Pitfall: a multipart copy with `replace_meta == None` must still carry the source's
//! metadata (InitiateMultipartUpload does not copy it), so the source is HEADed first.

use futures::{StreamExt, TryStreamExt};

use crate::store::{PartInfo, PutOptions, PutResult};

use super::error::{FsError, not_found_or};
use super::{Filesystem, FsResult};

/// Largest object CopyObject accepts.
pub(crate) const COPY_OBJECT_MAX: u64 = 1 << 30;
const MIN_COPY_PART: u64 = 256 << 20;
const MAX_PARTS: u64 = 10_000;
const COPY_PARALLELISM: usize = 4;

impl Filesystem {
    /// Copies `src` to `dst` (`size` = size of `src`), replacing metadata when given.
    pub(crate) async fn copy_any(
        &self,
        src: &str,
        dst: &str,
        size: u64,
        replace_meta: Option<&PutOptions>,
    ) -> FsResult<PutResult> {
        self.copy_with_limits(src, dst, size, replace_meta, COPY_OBJECT_MAX, MIN_COPY_PART)
            .await
    }

    /// [`Self::copy_any`] with explicit limits (small ones let tests take the multipart
    /// path without gigabytes of data).
    pub(crate) async fn copy_with_limits(
        &self,
        src: &str,
        dst: &str,
        size: u64,
        replace_meta: Option<&PutOptions>,
        single_copy_max: u64,
        min_part: u64,
    ) -> FsResult<PutResult> {
        if size <= single_copy_max {
            return self
                .store
                .copy_object(src, dst, replace_meta)
                .await
                .map_err(|e| not_found_or("CopyObject", src, e));
        }
        let opts = match replace_meta {
            Some(o) => o.clone(),
            None => {
                let meta = self
                    .store
                    .head_object(src)
                    .await
                    .map_err(|e| not_found_or("HeadObject", src, e))?;
                PutOptions {
                    content_type: meta.content_type,
                    user_meta: meta.user_meta,
                    forbid_overwrite: false,
                }
            }
        };
        let part_size = min_part.max(size.div_ceil(MAX_PARTS));
        let upload_id = self
            .store
            .initiate_multipart_upload(dst, &opts)
            .await
            .map_err(|e| FsError::store("InitiateMultipartUpload", dst, e))?;
        let ranges: Vec<(u32, std::ops::Range<u64>)> = (0..size.div_ceil(part_size))
            .map(|i| {
                let start = i * part_size;
                ((i + 1) as u32, start..(start + part_size).min(size))
            })
            .collect();
        let store = &self.store;
        let upload_id_ref = upload_id.as_str();
        let parts: Result<Vec<PartInfo>, FsError> = futures::stream::iter(ranges)
            .map(|(n, r)| async move {
                store
                    .upload_part_copy(src, dst, upload_id_ref, n, r)
                    .await
                    .map_err(|e| FsError::store("UploadPartCopy", dst, e))
            })
            .buffer_unordered(COPY_PARALLELISM)
            .try_collect()
            .await;
        let result = match parts {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.part_number);
                self.store
                    .complete_multipart_upload(dst, &upload_id, &parts)
                    .await
                    .map_err(|e| FsError::store("CompleteMultipartUpload", dst, e))
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            crate::store::abort_upload_persistently(&*self.store, dst, &upload_id).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fs::FsConfig;
    use crate::store::mock::MockStore;

    #[tokio::test]
    async fn large_copies_use_upload_part_copy_and_keep_metadata() {
        let store = Arc::new(MockStore::new("b"));
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("mode".to_string(), "33188".to_string());
        store.put_with_meta("src", data.clone(), meta);
        let fs = Filesystem::new(
            store.clone(),
            FsConfig::default(),
            tokio::runtime::Handle::current(),
        );
        fs.copy_with_limits("src", "dst", 300_000, None, 100_000, 128 * 1024)
            .await
            .expect("copy");
        let out = store.object("dst").expect("copied");
        assert!(out.data[..] == data[..]);
        assert_eq!(out.user_meta["mode"], "33188");
        assert_eq!(store.count("UploadPartCopy"), 3);
        assert_eq!(store.count("CopyObject"), 0);
        assert_eq!(store.pending_uploads(), 0);

        // A failing part aborts the upload and leaves no destination.
        store.fail_next(
            "UploadPartCopy",
            vec![crate::store::StoreError::from_service(
                500,
                "InternalError",
                "",
            )],
        );
        let err = fs
            .copy_with_limits("src", "dst2", 300_000, None, 100_000, 128 * 1024)
            .await
            .expect_err("fails");
        assert_eq!(err.errno(), libc::EIO);
        assert!(!store.contains("dst2"));
        assert_eq!(store.pending_uploads(), 0);
    }
}
