//! Conflict detection before a write-back upload, and the metadata a journal record
//! carries.
//!
//! A file is uploaded long after it was opened; another client may have changed the
//! object meanwhile. Each `Put` record keeps what the mount saw when the file was opened
//! or created ([`Expect`]):
//! - `Absent` (created here): the upload carries `x-oss-forbid-overwrite: true`, and a
//!   409 `FileAlreadyExists` means someone else created the key — no extra request;
//! - `ETag(e)` (an existing object was opened for writing): a HEAD first; a different
//!   ETag (or no object) is a conflict;
//! - `Any`: no check (the mount replaced the object knowingly, e.g. a rename onto it).
//!
//! OSS has no conditional PUT for overwrites (no `If-Match` on PutObject), so the HEAD
//! narrows the race to the time between the HEAD and the PUT without closing it.
//!
//! On a conflict the local copy is kept in the store's `conflicts/` directory, the record
//! is settled, and the mount shows the server's object.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::store::{ObjectStore, PutOptions, StoreError};

use super::{Expect, PendingMeta};

/// What the check before an upload decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Upload; with `x-oss-forbid-overwrite` when `forbid_overwrite`.
    Proceed { forbid_overwrite: bool },
    /// The object is not what the mount saw: why.
    Conflict(String),
}

/// The check for `expect` on `key` (a HEAD for `ETag`, nothing otherwise).
pub async fn check(
    objects: &dyn ObjectStore,
    key: &str,
    expect: &Expect,
) -> Result<Check, StoreError> {
    match expect {
        Expect::Absent => Ok(Check::Proceed {
            forbid_overwrite: true,
        }),
        Expect::Any => Ok(Check::Proceed {
            forbid_overwrite: false,
        }),
        Expect::ETag(e) => match objects.head_object(key).await {
            Ok(m) if same_etag(&m.etag, e) => Ok(Check::Proceed {
                forbid_overwrite: false,
            }),
            Ok(m) => Ok(Check::Conflict(format!(
                "changed on the server (ETag {} instead of {e})",
                m.etag
            ))),
            Err(err) if err.is_not_found() => {
                Ok(Check::Conflict("deleted on the server".to_string()))
            }
            Err(err) => Err(err),
        },
    }
}

fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"')
        .eq_ignore_ascii_case(b.trim_matches('"'))
}

/// The ETag of `key` when the server already holds exactly the `size` bytes of `path`
/// (same size and CRC-64): an earlier upload of this very record landed, but its answer
/// was lost or the process died before settling it. Not a conflict then.
pub async fn holds_content(
    objects: &dyn ObjectStore,
    key: &str,
    path: &Path,
    size: u64,
) -> Result<Option<String>, StoreError> {
    let head = match objects.head_object(key).await {
        Ok(h) => h,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(remote) = head.crc64.filter(|_| head.size == size) else {
        return Ok(None);
    };
    let path = path.to_path_buf();
    let local = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let mut f = std::fs::File::open(path)?;
        let mut h = crate::crc64::Crc64Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match f.read(&mut buf)? {
                0 => return Ok(h.finish()),
                n => h.update(&buf[..n]),
            }
        }
    })
    .await;
    Ok(match local {
        Ok(Ok(crc)) if crc == remote => Some(head.etag),
        _ => None,
    })
}

/// Whether an upload with `x-oss-forbid-overwrite` failed because the key exists.
pub fn is_conflict(e: &StoreError) -> bool {
    e.status() == Some(409) && e.code() == Some("FileAlreadyExists")
}

const META_PREFIX: &str = "x-oss-meta-";

/// The headers of a `Put`/`SetMeta` record for an upload with `opts`.
pub fn meta_of(opts: &PutOptions) -> PendingMeta {
    let mut headers = Vec::with_capacity(opts.user_meta.len() + 1);
    if let Some(ct) = &opts.content_type {
        headers.push(("content-type".to_string(), ct.clone()));
    }
    for (k, v) in &opts.user_meta {
        headers.push((format!("{META_PREFIX}{k}"), v.clone()));
    }
    PendingMeta { headers }
}

/// The upload options a record's headers stand for.
pub fn options_of(meta: &PendingMeta) -> PutOptions {
    let mut user_meta = BTreeMap::new();
    let mut content_type = None;
    for (k, v) in &meta.headers {
        let k = k.to_ascii_lowercase();
        if k == "content-type" {
            content_type = Some(v.clone());
        } else if let Some(name) = k.strip_prefix(META_PREFIX) {
            user_meta.insert(name.to_string(), v.clone());
        }
    }
    PutOptions {
        content_type,
        user_meta,
        forbid_overwrite: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let opts = PutOptions {
            content_type: Some("text/plain".into()),
            user_meta: [("mode".to_string(), "33188".to_string())].into(),
            forbid_overwrite: false,
        };
        assert_eq!(options_of(&meta_of(&opts)), opts);
    }

    #[test]
    fn etags_compare_without_quotes() {
        assert!(same_etag("\"ABC\"", "abc"));
        assert!(!same_etag("\"ABC\"", "abd"));
    }
}
