//! Pre-mount checks that talk to OSS: the bucket answers and the credentials are accepted,
//! and abandoned multipart uploads are reported (and aborted by `ossmount cleanup`).
//!
//! Both work on any [`ObjectStore`], so they are tested against the in-memory store.
//!
//! The reachability probe is a one-key ListObjectsV2 under the mount prefix: it is the
//! first thing the filesystem does anyway (listing the root), needs only
//! `oss:ListObjects`, and fails with exactly the errors users need explained
//! (NoSuchBucket, AccessDenied, signature problems, network).

use std::time::{Duration, SystemTime};

use crate::store::{ListRequest, MultipartUploadInfo, ObjectStore, ServiceCode, StoreError};

/// The result of probing the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// True when at least one object or sub-prefix exists under the prefix.
    pub prefix_has_entries: bool,
}

/// Lists one key under `prefix` to prove that the bucket exists and the credentials work.
pub async fn probe_bucket(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<ProbeResult, StoreError> {
    let page = store
        .list_objects(&ListRequest {
            prefix: prefix.to_string(),
            delimiter: Some("/".to_string()),
            max_keys: 1,
            ..Default::default()
        })
        .await?;
    Ok(ProbeResult {
        prefix_has_entries: !page.is_empty(),
    })
}

/// In-progress multipart uploads under `prefix` initiated more than `older_than` ago
/// (all of them when `older_than` is zero). Uploads without an initiation time are
/// included only when `older_than` is zero: we cannot tell that they are abandoned.
pub async fn stale_uploads(
    store: &dyn ObjectStore,
    prefix: &str,
    older_than: Duration,
    now: SystemTime,
) -> Result<Vec<MultipartUploadInfo>, StoreError> {
    let uploads = store.list_multipart_uploads(prefix).await?;
    Ok(uploads
        .into_iter()
        .filter(|u| {
            older_than.is_zero()
                || u.initiated
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age >= older_than)
        })
        .collect())
}

/// What `cleanup` did.
#[derive(Debug, Default)]
pub struct CleanupReport {
    pub aborted: Vec<MultipartUploadInfo>,
    /// Uploads whose abort failed, with the error text.
    pub failed: Vec<(MultipartUploadInfo, String)>,
}

/// Aborts every upload in `uploads`; failures are collected, not fatal (NoSuchUpload means
/// someone else finished or aborted it meanwhile and counts as done).
pub async fn abort_uploads(
    store: &dyn ObjectStore,
    uploads: Vec<MultipartUploadInfo>,
) -> CleanupReport {
    let mut report = CleanupReport::default();
    for upload in uploads {
        match store
            .abort_multipart_upload(&upload.key, &upload.upload_id)
            .await
        {
            Ok(()) => report.aborted.push(upload),
            Err(e) if e.has_code(&ServiceCode::NoSuchUpload) => report.aborted.push(upload),
            Err(e) => report.failed.push((upload, e.to_string())),
        }
    }
    report
}

/// "3h ago"-style age for listings.
pub fn format_age(initiated: Option<SystemTime>, now: SystemTime) -> String {
    let Some(age) = initiated.and_then(|t| now.duration_since(t).ok()) else {
        return "unknown age".to_string();
    };
    let secs = age.as_secs();
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ago = |s: u64| Some(now - Duration::from_secs(s));
        assert_eq!(format_age(ago(5), now), "5s ago");
        assert_eq!(format_age(ago(600), now), "10m ago");
        assert_eq!(format_age(ago(3 * 3600), now), "3h ago");
        assert_eq!(format_age(ago(3 * 86_400), now), "3d ago");
        assert_eq!(format_age(None, now), "unknown age");
    }
}
