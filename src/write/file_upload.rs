//! [`upload_file`]: upload a finished local staging file.
//!
//! Small files are one PutObject streamed from the file. Larger ones are a multipart
//! upload whose parts are `PutBody::File` slices (the client streams and, on retry,
//! re-reads them), at most `max_concurrency` in flight. The object appears only when
//! CompleteMultipartUpload succeeds; any failure aborts the upload.

use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::part_size::{MAX_OBJECT_SIZE, part_size_for};
use super::{QueueDepthGuard, UploadConfig, WriteError, sort_parts};
use crate::store::{ObjectStore, PartInfo, PutBody, PutOptions, PutResult, StoreError};

/// Uploads `size` bytes of `path` as `key` (see the module docs).
pub async fn upload_file(
    store: Arc<dyn ObjectStore>,
    cfg: &UploadConfig,
    key: &str,
    path: &Path,
    size: u64,
    opts: &PutOptions,
) -> Result<PutResult, WriteError> {
    if size <= cfg.single_put_threshold {
        let body = PutBody::File {
            path: path.to_path_buf(),
            offset: 0,
            len: size,
        };
        return Ok(store.put_object(key, body, opts).await?);
    }
    let part_size = part_size_for(size, cfg.part_size).ok_or(WriteError::TooLarge {
        size,
        max: MAX_OBJECT_SIZE,
    })?;
    let upload_id = store.initiate_multipart_upload(key, opts).await?;
    tracing::debug!(key, upload_id = %upload_id, size, part_size, "staged multipart upload");
    match upload_parts(&store, cfg, key, path, size, part_size, &upload_id).await {
        Ok(mut parts) => {
            sort_parts(&mut parts);
            match store
                .complete_multipart_upload(key, &upload_id, &parts)
                .await
            {
                Ok(r) => Ok(r),
                Err(e) => {
                    abort(&*store, key, &upload_id).await;
                    Err(e.into())
                }
            }
        }
        Err(e) => {
            abort(&*store, key, &upload_id).await;
            Err(e)
        }
    }
}

async fn abort(store: &dyn ObjectStore, key: &str, upload_id: &str) {
    crate::store::abort_upload_persistently(store, key, upload_id).await;
}

fn join_result(
    res: Result<Result<PartInfo, StoreError>, tokio::task::JoinError>,
) -> Result<PartInfo, WriteError> {
    match res {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(e.into()),
        Err(join) => Err(WriteError::Io(std::io::Error::other(format!(
            "part upload task failed: {join}"
        )))),
    }
}

/// Uploads every part with bounded parallelism; stops at the first error (dropping the
/// `JoinSet` cancels the rest).
async fn upload_parts(
    store: &Arc<dyn ObjectStore>,
    cfg: &UploadConfig,
    key: &str,
    path: &Path,
    size: u64,
    part_size: u64,
    upload_id: &str,
) -> Result<Vec<PartInfo>, WriteError> {
    let mut tasks: JoinSet<Result<PartInfo, StoreError>> = JoinSet::new();
    let mut parts = Vec::with_capacity(size.div_ceil(part_size) as usize);
    let mut offset = 0u64;
    let mut part_number = 1u32;
    while offset < size {
        while tasks.len() >= cfg.max_concurrency.max(1) {
            if let Some(res) = tasks.join_next().await {
                parts.push(join_result(res)?);
            }
        }
        let len = part_size.min(size - offset);
        let body = PutBody::File {
            path: path.to_path_buf(),
            offset,
            len,
        };
        let (store, key, upload_id) = (store.clone(), key.to_string(), upload_id.to_string());
        let guard = QueueDepthGuard::new();
        tasks.spawn(async move {
            let _guard = guard;
            store.upload_part(&key, &upload_id, part_number, body).await
        });
        offset += len;
        part_number += 1;
    }
    while let Some(res) = tasks.join_next().await {
        parts.push(join_result(res)?);
    }
    Ok(parts)
}
