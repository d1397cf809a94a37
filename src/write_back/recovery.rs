//! Recovery at mount: every file the journal still holds (a crash, `kill -9`, a second
//! SIGTERM left it) is uploaded before the mount serves anything.
//!
//! # Design
//! The live records (what the store returns at open: not settled) are replayed in
//! journal order into the state the previous mount showed:
//! - `Put{key}` makes `key` pending with that data file, metadata and expectation
//!   (a later `Put` of the same key supersedes an earlier one);
//! - `Unlink{key}` drops the pending `key` and deletes the key on the server (the old
//!   mount may have been killed between its DELETE and the record, or an upload in
//!   flight may have landed);
//! - `Rename{from,to}` moves the pending `from` (or every pending key below `from` when
//!   it ends in `/`, a directory) to `to`, and deletes the old keys on the server;
//! - `SetMeta{key,meta}` replaces the metadata the pending `key` is uploaded with.
//!
//! Then the deletes run, then every pending key is uploaded from its data file — never
//! by resuming an old multipart upload, whose id may have been aborted meanwhile — after
//! the conflict check of its expectation (`conflict`). Finally every live record is
//! settled. Uploads are repeated (they are idempotent), so a crash during recovery only
//! repeats work.
//!
//! Finishing this before the FUSE mount is simple and correct: nothing can touch these
//! keys meanwhile. The price is a slower mount after a crash with much pending data;
//! progress is logged per file, and a summary at the end.
//!
//! A file that keeps failing (after a few attempts with backoff) fails the mount with a
//! clear error: its records stay in the journal for the next attempt.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::store::ObjectStore;
use crate::write::{UploadConfig, upload_file};

use super::conflict::{Check, check, holds_content, is_conflict, options_of};
use super::{Expect, JournalRecord, PendingMeta, WriteBackStore};

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    pub deleted: u64,
    pub conflicts: u64,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot finish the upload of {key} from the write-back store {store}: {reason} (it stays queued; the next mount retries)"
)]
pub struct RecoveryError {
    pub key: String,
    pub store: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
struct PendingPut {
    data_id: u64,
    size: u64,
    meta: PendingMeta,
    expect: Expect,
}

/// The replay of `live` (see the module docs): pending puts by key, and keys to delete.
fn replay(live: &[(u64, JournalRecord)]) -> (BTreeMap<String, PendingPut>, Vec<String>) {
    let mut puts: BTreeMap<String, PendingPut> = BTreeMap::new();
    let mut deletes: Vec<String> = Vec::new();
    for (_, rec) in live {
        match rec {
            JournalRecord::Put {
                key,
                data_id,
                size,
                meta,
                expect,
            } => {
                deletes.retain(|k| k != key);
                puts.insert(
                    key.clone(),
                    PendingPut {
                        data_id: *data_id,
                        size: *size,
                        meta: meta.clone(),
                        expect: expect.clone(),
                    },
                );
            }
            JournalRecord::Unlink { key } => {
                puts.remove(key);
                if !deletes.contains(key) {
                    deletes.push(key.clone());
                }
            }
            JournalRecord::Rename { from, to } => {
                let moved: Vec<String> = puts
                    .keys()
                    .filter(|k| *k == from || (from.ends_with('/') && k.starts_with(from.as_str())))
                    .cloned()
                    .collect();
                for old in moved {
                    let new = format!("{to}{}", &old[from.len()..]);
                    if let Some(mut p) = puts.remove(&old) {
                        // The mount replaced whatever was at the new name knowingly.
                        p.expect = Expect::Any;
                        deletes.retain(|k| *k != new);
                        puts.insert(new, p);
                    }
                    if !deletes.contains(&old) {
                        deletes.push(old);
                    }
                }
            }
            JournalRecord::SetMeta { key, meta } => {
                if let Some(p) = puts.get_mut(key) {
                    p.meta = meta.clone();
                }
            }
            JournalRecord::Settled { .. } => {}
        }
    }
    deletes.retain(|k| !puts.contains_key(k));
    (puts, deletes)
}

const ATTEMPTS: u32 = 5;

/// Uploads everything `live` leaves pending (see the module docs), then settles it.
pub async fn recover(
    store: &WriteBackStore,
    objects: Arc<dyn ObjectStore>,
    upload: &UploadConfig,
    live: Vec<(u64, JournalRecord)>,
) -> Result<Recovered, RecoveryError> {
    let mut done = Recovered::default();
    if live.is_empty() {
        return Ok(done);
    }
    let (puts, deletes) = replay(&live);
    let err = |key: &str, reason: String| RecoveryError {
        key: key.to_string(),
        store: store.dir().display().to_string(),
        reason,
    };
    tracing::info!(
        files = puts.len(),
        deletes = deletes.len(),
        store = %store.dir().display(),
        "write-back: finishing what the previous mount left pending"
    );
    for key in &deletes {
        retry(key, || async {
            match objects.delete_object(key).await {
                Ok(()) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .map_err(|r| err(key, r))?;
        done.deleted += 1;
    }
    for (key, p) in &puts {
        let path = store.data_path(p.data_id);
        let outcome = retry(key, || async {
            let forbid = match check(&*objects, key, &p.expect).await {
                Ok(Check::Proceed { forbid_overwrite }) => forbid_overwrite,
                Ok(Check::Conflict(why)) => return Ok(Some(why)),
                Err(e) => return Err(e.to_string()),
            };
            let mut opts = options_of(&p.meta);
            opts.forbid_overwrite = forbid;
            match upload_file(objects.clone(), upload, key, &path, p.size, &opts).await {
                Ok(_) => Ok(None),
                Err(crate::write::WriteError::Store(e)) if is_conflict(&e) => {
                    Ok(Some("created on the server meanwhile".to_string()))
                }
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .map_err(|r| err(key, r))?;
        // Our own upload landed before the crash (not settled): not a conflict.
        let outcome = match outcome {
            Some(why) => match holds_content(&*objects, key, &path, p.size).await {
                Ok(Some(_)) => None,
                _ => Some(why),
            },
            None => None,
        };
        match outcome {
            None => {
                tracing::info!(key, bytes = p.size, "write-back: recovered upload done");
                done.uploaded_files += 1;
                done.uploaded_bytes += p.size;
            }
            Some(why) => {
                let kept = store.keep_conflict(p.data_id, key);
                tracing::warn!(key, reason = %why, kept = ?kept.as_ref().map(|p| p.display().to_string()), "write-back conflict: the local copy is kept, the server's object stays");
                done.conflicts += 1;
            }
        }
    }
    for (seq, _) in &live {
        if let Err(e) = store.settle(*seq).await {
            return Err(err("(journal)", format!("cannot settle record {seq}: {e}")));
        }
    }
    tracing::info!(
        uploaded = done.uploaded_files,
        bytes = done.uploaded_bytes,
        deleted = done.deleted,
        conflicts = done.conflicts,
        "write-back: recovery done"
    );
    Ok(done)
}

async fn retry<T, F, Fut>(key: &str, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::warn!(key, attempt, error = %e, "write-back recovery: retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, id: u64) -> JournalRecord {
        JournalRecord::Put {
            key: key.into(),
            data_id: id,
            size: 1,
            meta: PendingMeta { headers: vec![] },
            expect: Expect::Absent,
        }
    }

    #[test]
    fn replay_applies_records_in_order() {
        let live = vec![
            (1, put("a", 1)),
            (2, put("d/x", 2)),
            (3, put("gone", 3)),
            (4, JournalRecord::Unlink { key: "gone".into() }),
            (
                5,
                JournalRecord::Rename {
                    from: "d/".into(),
                    to: "e/".into(),
                },
            ),
            (
                6,
                JournalRecord::SetMeta {
                    key: "a".into(),
                    meta: PendingMeta {
                        headers: vec![("x-oss-meta-mode".into(), "1".into())],
                    },
                },
            ),
            (7, put("a", 4)),
        ];
        let (puts, deletes) = replay(&live);
        assert_eq!(puts.keys().collect::<Vec<_>>(), ["a", "e/x"]);
        assert_eq!(puts["a"].data_id, 4);
        assert_eq!(puts["e/x"].expect, Expect::Any);
        assert_eq!(deletes, ["gone", "d/x"]);
    }
}
