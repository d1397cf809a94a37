//! The durable write-back store (issue 18) on its own: journal replay after a reopen, torn
//! and corrupt records, compaction, the store lock (in one process and across processes),
//! permissions, conflicts, space reservations and tmpfs detection.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ossmount::write_back::{
    Expect, JournalRecord, NoSpace, PendingMeta, StoreOpenError, StoreOptions, WriteBackStore,
};

const MIB: u64 = 1024 * 1024;

fn store_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("store")
}

fn meta(mode: &str) -> PendingMeta {
    PendingMeta {
        headers: vec![("x-oss-meta-mode".into(), mode.into())],
    }
}

/// Writes `content` into a new data file and returns the Put that uploads it as `key`.
fn put(store: &WriteBackStore, key: &str, content: &[u8]) -> JournalRecord {
    let (data_id, mut f) = store.create_data_file().unwrap();
    f.write_all(content).unwrap();
    JournalRecord::Put {
        key: key.into(),
        data_id,
        size: content.len() as u64,
        meta: meta("33188"),
        expect: Expect::Absent,
    }
}

fn data_of(store: &WriteBackStore, rec: &JournalRecord) -> Vec<u8> {
    fs::read(store.data_path(rec.data_id().unwrap())).unwrap()
}

fn key_of(rec: &JournalRecord) -> &str {
    match rec {
        JournalRecord::Put { key, .. } => key,
        _ => panic!("not a Put: {rec:?}"),
    }
}

#[tokio::test]
async fn replay_after_reopen_returns_live_records_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let big = vec![7u8; 200 * 1024]; // above the inline limit: a synced data file
    let (expected, enq) = {
        let (store, live) = WriteBackStore::open(&dir, 100 * MIB).unwrap();
        assert!(live.is_empty());
        let a = put(&store, "a.txt", b"hello");
        let b = put(&store, "dir/b.bin", &big);
        let s1 = store.append(a.clone()).await.unwrap();
        let s2 = store.append(b.clone()).await.unwrap();
        let unlink = JournalRecord::Unlink {
            key: "a.txt".into(),
        };
        let rename = JournalRecord::Rename {
            from: "dir/".into(),
            to: "dir2/".into(),
        };
        let setmeta = JournalRecord::SetMeta {
            key: "dir2/b.bin".into(),
            meta: meta("33261"),
        };
        let s3 = store.append(unlink.clone()).await.unwrap();
        let s4 = store.append(rename.clone()).await.unwrap();
        let s5 = store.append(setmeta.clone()).await.unwrap();
        assert!(s1 < s2 && s2 < s3 && s3 < s4 && s4 < s5);
        assert_eq!(store.settled_seq(), s1);
        assert_eq!(store.enqueued_seq(), s5 + 1);
        (
            vec![(s1, a), (s2, b), (s3, unlink), (s4, rename), (s5, setmeta)],
            store.enqueued_seq(),
        )
    };
    let (store, live) = WriteBackStore::open(&dir, 100 * MIB).unwrap();
    assert_eq!(live, expected);
    assert_eq!(data_of(&store, &live[0].1), b"hello");
    assert_eq!(data_of(&store, &live[1].1), big);
    assert!(store.enqueued_seq() >= enq);
    assert_eq!(store.settled_seq(), expected[0].0);
    // The fs layer charged both files.
    assert_eq!(store.used_bytes(), 5 + big.len() as u64);
}

#[tokio::test]
async fn settled_records_disappear_and_their_data_files_go() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let (store, _) = WriteBackStore::open(&dir, 100 * MIB).unwrap();
    let a = put(&store, "a", b"aaa");
    let b = put(&store, "b", &vec![1u8; 100 * 1024]);
    let c = put(&store, "c", b"ccc");
    let sa = store.append(a.clone()).await.unwrap();
    let sb = store.append(b.clone()).await.unwrap();
    // An unlink after a and b only: moot once both are settled.
    let su = store
        .append(JournalRecord::Unlink { key: "a".into() })
        .await
        .unwrap();
    let sc = store.append(c.clone()).await.unwrap();
    store.settle(sa).await.unwrap();
    assert_eq!(store.settled_seq(), sb);
    store.settle(sb).await.unwrap();
    // Every record is live until settled, the unlink too.
    assert_eq!(store.settled_seq(), su);
    store.settle(su).await.unwrap();
    assert_eq!(store.settled_seq(), sc);
    store.flush().await.unwrap();
    assert!(!store.data_path(a.data_id().unwrap()).exists());
    assert!(!store.data_path(b.data_id().unwrap()).exists());
    assert!(store.data_path(c.data_id().unwrap()).exists());
    assert_eq!(store.used_bytes(), 3);
    // Settling twice or an unknown record is harmless.
    store.settle(sa).await.unwrap();
    store.settle(123_456).await.unwrap();
    drop(store);

    let (store, live) = WriteBackStore::open(&dir, 100 * MIB).unwrap();
    assert_eq!(live, vec![(sc, c.clone())]);
    store.settle(sc).await.unwrap();
    assert_eq!(store.settled_seq(), store.enqueued_seq());
    store.flush().await.unwrap();
    drop(store);
    let (store, live) = WriteBackStore::open(&dir, 100 * MIB).unwrap();
    assert!(live.is_empty());
    assert_eq!(fs::read_dir(dir.join("data")).unwrap().count(), 0);
    // Compaction on open leaves only the header.
    assert_eq!(store.journal_len(), 32);
    assert_eq!(fs::metadata(dir.join("journal")).unwrap().len(), 32);
}

#[tokio::test]
async fn unjournaled_data_files_are_removed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let orphan = {
        let (store, _) = WriteBackStore::open(&dir, 100 * MIB).unwrap();
        let (id, mut f) = store.create_data_file().unwrap();
        f.write_all(b"never closed").unwrap();
        store.data_path(id)
    };
    assert!(orphan.exists());
    let (store, live) = WriteBackStore::open(&dir, 100 * MIB).unwrap();
    assert!(live.is_empty());
    assert!(!orphan.exists());
    // New ids do not reuse the orphan's.
    let (id, _) = store.create_data_file().unwrap();
    assert_ne!(store.data_path(id), orphan);
}

/// Builds a store with three live Puts, returns the journal bytes and the offset where the
/// last frame starts.
async fn journal_with_three(dir: &Path) -> (Vec<(u64, JournalRecord)>, Vec<u8>, usize) {
    let (store, _) = WriteBackStore::open(dir, 100 * MIB).unwrap();
    let mut recs = Vec::new();
    let mut before_last = 0;
    for (i, key) in ["one", "two", "three"].iter().enumerate() {
        if i == 2 {
            before_last = store.journal_len() as usize;
        }
        let r = put(&store, key, format!("content of {key}").as_bytes());
        let s = store.append(r.clone()).await.unwrap();
        recs.push((s, r));
    }
    let end = store.journal_len() as usize;
    drop(store);
    // The file goes on with preallocated zeros after the records.
    let mut bytes = fs::read(dir.join("journal")).unwrap();
    assert!(bytes[end..].iter().all(|&b| b == 0));
    bytes.truncate(end);
    assert!(before_last > 32 && before_last < bytes.len());
    (recs, bytes, before_last)
}

#[tokio::test]
async fn torn_tail_at_every_byte_of_the_last_record_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let (recs, bytes, last) = journal_with_three(&dir).await;
    // Every truncation point inside the last frame; the rest of the file missing, garbage,
    // or the preallocated zeros.
    for cut in last..bytes.len() {
        for tail in [None, Some(0xA5u8), Some(0)] {
            let mut j = bytes[..cut].to_vec();
            if let Some(b) = tail {
                j.extend(std::iter::repeat_n(b, 4096));
            }
            let garbage = tail;
            fs::write(dir.join("journal"), &j).unwrap();
            let (store, live) = WriteBackStore::open(&dir, 100 * MIB)
                .unwrap_or_else(|e| panic!("cut at {cut} (tail {garbage:?}): {e}"));
            assert_eq!(live, recs[..2].to_vec(), "cut at {cut} (tail {garbage:?})");
            assert_eq!(data_of(&store, &live[1].1), b"content of two");
            // The tail was cut off: the journal now ends after the second record.
            assert_eq!(
                fs::metadata(dir.join("journal")).unwrap().len(),
                last as u64,
                "cut at {cut}"
            );
            drop(store);
        }
    }
    // The complete journal still replays all three (the orphaned data file of "three" was
    // deleted by the opens above, and its inline copy restores it).
    fs::write(dir.join("journal"), &bytes).unwrap();
    let (store, live) = WriteBackStore::open(&dir, 100 * MIB).unwrap();
    assert_eq!(live, recs);
    assert_eq!(data_of(&store, &live[2].1), b"content of three");
}

#[tokio::test]
async fn corrupt_middle_record_stops_replay_and_keeps_a_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let (recs, mut bytes, last) = journal_with_three(&dir).await;
    // Flip a byte inside the second frame's payload.
    bytes[last - 3] ^= 0x55;
    fs::write(dir.join("journal"), &bytes).unwrap();
    let (_store, live) = WriteBackStore::open(&dir, 100 * MIB).unwrap();
    assert_eq!(live, recs[..1].to_vec());
    let copies: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("journal.corrupt-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(fs::read(dir.join(&copies[0])).unwrap(), bytes);
}

#[tokio::test]
async fn a_journal_of_another_format_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    drop(WriteBackStore::open(&dir, MIB).unwrap());
    let junk = b"this is not a journal, and it is longer than a header".to_vec();
    fs::write(dir.join("journal"), &junk).unwrap();
    let err = WriteBackStore::open(&dir, MIB).unwrap_err();
    assert!(matches!(err, StoreOpenError::Journal { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("not an ossmount write-back journal"),
        "{err}"
    );
    assert_eq!(fs::read(dir.join("journal")).unwrap(), junk);
}

#[tokio::test]
async fn runtime_compaction_keeps_live_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let (store, _) = WriteBackStore::open(&dir, 1024 * MIB).unwrap();
    // One record stays live; 40 MiB of inline records settle. Journal > 1 MiB and
    // everything settled except the first: not yet compacted (needs > 64 MiB and 4x live)
    // -- so settle the first one last and watch the journal shrink to the header.
    let keep = put(&store, "keep", b"kept");
    let sk = store.append(keep.clone()).await.unwrap();
    let chunk = vec![3u8; 60 * 1024];
    for i in 0..40 {
        let r = put(&store, &format!("f{i}"), &chunk);
        let s = store.append(r).await.unwrap();
        store.settle(s).await.unwrap();
    }
    store.flush().await.unwrap();
    assert!(store.journal_len() > 2 * MIB);
    let later = put(&store, "later", b"later");
    let sl = store.append(later.clone()).await.unwrap();
    drop(store);
    let (store, live) = WriteBackStore::open(&dir, 1024 * MIB).unwrap();
    assert_eq!(live, vec![(sk, keep.clone()), (sl, later.clone())]);
    assert!(store.journal_len() < 4096, "{}", store.journal_len());
    store.settle(sk).await.unwrap();
    store.settle(sl).await.unwrap();
    for i in 0..30 {
        let r = put(&store, &format!("g{i}"), &chunk);
        let s = store.append(r).await.unwrap();
        store.settle(s).await.unwrap();
    }
    store.flush().await.unwrap();
    // Everything settled and the journal passed 1 MiB: truncated to its header.
    assert!(store.journal_len() < MIB, "{}", store.journal_len());
    let next = put(&store, "next", b"next");
    let sn = store.append(next.clone()).await.unwrap();
    drop(store);
    let (_store, live) = WriteBackStore::open(&dir, 1024 * MIB).unwrap();
    assert_eq!(live, vec![(sn, next)]);
}

#[test]
fn a_second_open_in_the_same_process_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let (first, _) = WriteBackStore::open(&dir, MIB).unwrap();
    let err = WriteBackStore::open(&dir, MIB).unwrap_err();
    match &err {
        StoreOpenError::Locked { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
        other => panic!("expected Locked, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    assert!(msg.contains("cannot share"), "{msg}");
    drop(first);
    WriteBackStore::open(&dir, MIB).expect("the lock is released with the store");
}

const CHILD_DIR: &str = "OSSMOUNT_WB_LOCK_PROBE_DIR";
const CHILD_EXPECT_PID: &str = "OSSMOUNT_WB_LOCK_PROBE_PID";

/// Not a test on its own: the child process of
/// `a_second_open_in_another_process_is_refused`.
#[test]
#[ignore = "child process of a_second_open_in_another_process_is_refused"]
fn lock_probe_child() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("run by the parent test"));
    match std::env::var(CHILD_EXPECT_PID) {
        Ok(pid) => match WriteBackStore::open(&dir, MIB) {
            Err(StoreOpenError::Locked { pid: Some(p), .. }) => {
                assert_eq!(p.to_string(), pid)
            }
            Err(e) => panic!("expected Locked naming pid {pid}, got {e}"),
            Ok(_) => panic!("opened a store another process holds"),
        },
        Err(_) => {
            WriteBackStore::open(&dir, MIB).expect("free store opens");
        }
    }
}

#[test]
fn a_second_open_in_another_process_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let run_child = |expect_pid: Option<u32>| {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "lock_probe_child", "--ignored", "--nocapture"])
            .env(CHILD_DIR, &dir);
        match expect_pid {
            Some(p) => cmd.env(CHILD_EXPECT_PID, p.to_string()),
            None => cmd.env_remove(CHILD_EXPECT_PID),
        };
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {text}");
        assert!(
            text.contains("1 passed"),
            "child did not run the probe: {text}"
        );
    };
    let (held, _) = WriteBackStore::open(&dir, MIB).unwrap();
    run_child(Some(std::process::id()));
    drop(held);
    run_child(None);
}

#[tokio::test]
async fn store_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let (store, _) = WriteBackStore::open(&dir, MIB).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("data")), 0o700);
    assert_eq!(mode(&dir.join("conflicts")), 0o700);
    assert_eq!(mode(&dir.join("journal")), 0o600);
    assert_eq!(mode(&dir.join("lock")), 0o600);
    let (id, _) = store.create_data_file().unwrap();
    assert_eq!(mode(&store.data_path(id)), 0o600);
    assert_eq!(
        fs::read_to_string(dir.join("lock")).unwrap().trim(),
        std::process::id().to_string()
    );
    drop(store);

    // An existing directory that others can read is refused, not fixed.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let err = WriteBackStore::open(&dir, MIB).unwrap_err();
    assert!(
        matches!(err, StoreOpenError::Insecure { mode: 0o755, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 700"), "{err}");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();

    // Owned by another user: refused (we run as root in CI; skip where chown is denied).
    if nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).is_ok() {
        let err = WriteBackStore::open(&dir, MIB).unwrap_err();
        assert!(
            matches!(err, StoreOpenError::NotOwned { owner: 65534, .. }),
            "{err}"
        );
        nix::unistd::chown(&dir, Some(nix::unistd::geteuid()), None).unwrap();
    }
    // A file where the directory should be.
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        WriteBackStore::open(&file, MIB).unwrap_err(),
        StoreOpenError::NotADirectory { .. }
    ));
    WriteBackStore::open(&dir, MIB).unwrap();
}

#[tokio::test]
async fn conflicts_are_kept_privately() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let (store, _) = WriteBackStore::open(&dir, MIB).unwrap();
    let r = put(&store, "dir/sub file.txt", b"local version");
    let s = store.append(r.clone()).await.unwrap();
    let kept = store
        .keep_conflict(r.data_id().unwrap(), "dir/sub file.txt")
        .unwrap();
    assert_eq!(kept.parent().unwrap(), dir.join("conflicts"));
    let name = kept.file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with("-dir%2Fsub%20file.txt"), "{name}");
    assert_eq!(fs::read(&kept).unwrap(), b"local version");
    assert_eq!(
        fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(store.conflicts_count(), 1);
    assert_eq!(store.used_bytes(), 0);
    store.settle(s).await.unwrap();

    // Two conflicts of the same key in the same millisecond get distinct names; a data
    // file still used by a later Put is copied, not moved.
    let r2 = put(&store, "k", b"v1");
    let s2 = store.append(r2.clone()).await.unwrap();
    let JournalRecord::Put { data_id, .. } = r2 else {
        unreachable!()
    };
    let again = JournalRecord::Put {
        key: "k".into(),
        data_id,
        size: 2,
        meta: meta("33188"),
        expect: Expect::Any,
    };
    let s3 = store.append(again).await.unwrap();
    let k1 = store.keep_conflict(data_id, "k").unwrap();
    let k2 = store.keep_conflict(data_id, "k").unwrap();
    assert_ne!(k1, k2);
    assert!(store.data_path(data_id).exists());
    store.settle(s2).await.unwrap();
    store.settle(s3).await.unwrap();
    drop(store);
    let (store, live) = WriteBackStore::open(&dir, MIB).unwrap();
    assert!(live.is_empty());
    assert_eq!(store.conflicts_count(), 3);
    assert_eq!(key_of(&r), "dir/sub file.txt");
}

#[tokio::test]
async fn reservations_wait_for_uploads_and_fail_when_they_can_never_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let (store, _) = WriteBackStore::open(&dir, 1000).unwrap();
    let store = std::sync::Arc::new(store);
    assert_eq!(store.max_size(), 1000);

    assert!(matches!(
        store.reserve(1001).await,
        Err(NoSpace::TooLarge {
            bytes: 1001,
            max: 1000
        })
    ));

    // A pending upload of 600 bytes, written under a reservation.
    let res = store.reserve(600).await.unwrap();
    assert_eq!(store.used_bytes(), 600);
    let r = put(&store, "pending", &[9u8; 600]);
    let seq = store.append(r).await.unwrap();
    drop(res);
    assert_eq!(store.used_bytes(), 600);

    // 500 more do not fit now but will once the upload is done: the writer waits.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.reserve(500).await })
    };
    // Until the waiter is registered as waiting, is_full only reflects the bytes.
    while !store.is_full() {
        tokio::task::yield_now().await;
    }
    // A writer holding 300 reserved bytes and asking for 800 more can never fit (only it
    // could release them): refused at once, no deadlock.
    let held = store.reserve(300).await;
    match held {
        // 600 charged + 300 reserved fits in 1000.
        Ok(held) => {
            assert!(matches!(
                store.reserve(800).await,
                Err(NoSpace::HeldByOpenFiles { .. })
            ));
            drop(held);
        }
        Err(e) => panic!("300 bytes should fit: {e}"),
    }
    assert!(!waiter.is_finished());
    // The upload finishes: its data file is deleted and the waiter gets its space.
    store.settle(seq).await.unwrap();
    let granted = waiter.await.unwrap().unwrap();
    assert_eq!(granted.bytes(), 500);
    assert_eq!(store.used_bytes(), 500);
    assert!(!store.is_full());
    drop(granted);
    assert_eq!(store.used_bytes(), 0);
}

#[tokio::test]
async fn reservations_merge_and_release() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = WriteBackStore::open(&store_dir(&tmp), 1000).unwrap();
    let mut a = store.reserve(100).await.unwrap();
    a.merge(store.reserve(200).await.unwrap());
    assert_eq!(a.bytes(), 300);
    assert_eq!(store.used_bytes(), 300);
    a.release();
    assert_eq!(store.used_bytes(), 0);
}

#[tokio::test]
async fn a_reservation_larger_than_the_free_disk_space_fails() {
    // /dev/shm is small next to u64::MAX / 2 bytes whatever the machine.
    let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
    let (store, _) = WriteBackStore::open(&store_dir(&tmp), u64::MAX).unwrap();
    assert!(matches!(
        store.reserve(u64::MAX / 2).await,
        Err(NoSpace::DiskFull { .. })
    ));
}

#[test]
fn tmpfs_is_detected() {
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let (store, _) = WriteBackStore::open(&store_dir(&shm), MIB).unwrap();
    assert!(store.on_tmpfs());
    drop(store);
    // The crate's target dir is on a real disk.
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (store, _) = WriteBackStore::open(&store_dir(&disk), MIB).unwrap();
    assert!(!store.on_tmpfs());
}

#[tokio::test]
async fn pinned_data_files_survive_settling() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = WriteBackStore::open(&store_dir(&tmp), MIB).unwrap();
    let r = put(&store, "p", b"v1");
    let id = r.data_id().unwrap();
    let s = store.append(r).await.unwrap();
    let pin = store.pin_data(id);
    store.settle(s).await.unwrap();
    store.flush().await.unwrap();
    assert!(store.data_path(id).exists());
    drop(pin);
    store.flush().await.unwrap();
    assert!(!store.data_path(id).exists());
    // Discarding a never-journaled data file.
    let (id, _) = store.create_data_file().unwrap();
    store.discard_data_file(id);
    store.flush().await.unwrap();
    assert!(!store.data_path(id).exists());
}

#[tokio::test]
async fn a_put_must_describe_its_whole_data_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = WriteBackStore::open(&store_dir(&tmp), MIB).unwrap();
    let (data_id, mut f) = store.create_data_file().unwrap();
    f.write_all(b"12345").unwrap();
    let err = store
        .append(JournalRecord::Put {
            key: "k".into(),
            data_id,
            size: 4,
            meta: PendingMeta::default(),
            expect: Expect::Any,
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    // Nothing was queued.
    assert_eq!(store.settled_seq(), store.enqueued_seq());
    assert!(
        store
            .append(JournalRecord::Settled { seq: 1 })
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_fsyncs_and_all_replay() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = store_dir(&tmp);
    let (store, _) = WriteBackStore::open(&dir, 1024 * MIB).unwrap();
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..25 {
                let r = put(&store, &format!("t{t}/f{i}"), &vec![t as u8; 16 * 1024]);
                out.push((store.append(r.clone()).await.unwrap(), r));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by_key(|(s, _)| *s);
    drop(std::sync::Arc::try_unwrap(store).unwrap());
    let (store, live) = WriteBackStore::open(&dir, 1024 * MIB).unwrap();
    assert_eq!(live, all);
    for (_, r) in &live {
        assert_eq!(data_of(&store, r).len(), 16 * 1024);
    }
}

/// Figures for the close path: ms per durable append of a new 16 KiB file, serial (what
/// one `cp -r` sees) and 8 concurrent writers, with and without inlining. Run with
/// `cargo test --release --test write_back_store -- --ignored --nocapture bench_`.
/// `OSSMOUNT_WB_BENCH_DIR` picks the filesystem (default: the target dir).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: prints figures"]
async fn bench_durable_append() {
    let base = std::env::var("OSSMOUNT_WB_BENCH_DIR")
        .unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    let n = 300;
    // Baselines: the bare system calls, same filesystem, same moment.
    {
        use std::os::unix::fs::FileExt;
        let tmp = tempfile::tempdir_in(&base).unwrap();
        let record = vec![0x5Au8; 16 * 1024 + 200];
        for prealloc in [false, true] {
            let f = fs::File::create(tmp.path().join(format!("j{prealloc}"))).unwrap();
            if prealloc {
                f.write_all_at(&vec![0u8; n * record.len()], 0).unwrap();
                f.sync_all().unwrap();
            }
            let start = Instant::now();
            for i in 0..n {
                f.write_all_at(&record, (i * record.len()) as u64).unwrap();
                f.sync_data().unwrap();
            }
            let ms = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
            println!(
                "baseline: pwrite of a 16 KiB record + fdatasync, {}: {ms:.3} ms",
                if prealloc {
                    "into preallocated zeros"
                } else {
                    "appending"
                }
            );
        }
        let start = Instant::now();
        for i in 0..n {
            let mut f = fs::File::create_new(tmp.path().join(format!("d{i}"))).unwrap();
            f.write_all(&record[..16 * 1024]).unwrap();
            f.sync_data().unwrap();
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
        println!("baseline: new 16 KiB file + fdatasync: {ms:.3} ms");
    }
    for inline_max in [64 * 1024, 0] {
        let tmp = tempfile::tempdir_in(&base).unwrap();
        let options = StoreOptions {
            inline_max,
            ..StoreOptions::new(1024 * MIB)
        };
        let (store, _) = WriteBackStore::open_with(&store_dir(&tmp), options.clone()).unwrap();
        let content = vec![0x5Au8; 16 * 1024];
        let start = Instant::now();
        let mut appends = Vec::with_capacity(n);
        for i in 0..n {
            let (data_id, mut f) = store.create_data_file().unwrap();
            f.write_all(&content).unwrap();
            drop(f);
            let t = Instant::now();
            store
                .append(JournalRecord::Put {
                    key: format!("f{i}"),
                    data_id,
                    size: content.len() as u64,
                    meta: meta("33188"),
                    expect: Expect::Absent,
                })
                .await
                .unwrap();
            appends.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let serial = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
        appends.sort_by(f64::total_cmp);
        let (p50, p90) = (appends[n / 2], appends[n * 9 / 10]);
        let mean = appends.iter().sum::<f64>() / n as f64;

        let store = std::sync::Arc::new(store);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            let content = content.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..n / 8 {
                    let (data_id, mut f) = store.create_data_file().unwrap();
                    f.write_all(&content).unwrap();
                    drop(f);
                    store
                        .append(JournalRecord::Put {
                            key: format!("c{t}/{i}"),
                            data_id,
                            size: content.len() as u64,
                            meta: meta("33188"),
                            expect: Expect::Absent,
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let concurrent = start.elapsed().as_secs_f64() * 1000.0 / (n / 8 * 8) as f64;
        println!(
            "write-back append, 16 KiB files, inline_max {inline_max}: serial {serial:.3} ms/file \
             (append() alone: mean {mean:.3}, median {p50:.3}, p90 {p90:.3}), 8 writers {concurrent:.3} ms/file \
             (on {base})"
        );
    }
}

const CRASH_DIR: &str = "OSSMOUNT_WB_CRASH_CHILD_DIR";

/// Content of the crash test's file `i`: sizes on both sides of the inline limit.
fn crash_content(i: u64) -> Vec<u8> {
    let len = if i.is_multiple_of(2) {
        16 * 1024
    } else {
        100 * 1024 + i as usize
    };
    (0..len).map(|b| (b as u64 * 31 + i) as u8).collect()
}

/// Not a test on its own: the child of `acknowledged_appends_survive_kill_9`. Appends
/// files until killed, printing each acknowledged one, settling every third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of acknowledged_appends_survive_kill_9"]
async fn crash_child() {
    let dir = PathBuf::from(std::env::var(CRASH_DIR).expect("run by the parent test"));
    let (store, _) = WriteBackStore::open(&dir, 1024 * MIB).unwrap();
    for i in 0.. {
        let r = put(&store, &format!("file-{i}"), &crash_content(i));
        let seq = store.append(r).await.unwrap();
        println!("ACK {seq} {i}");
        if i.is_multiple_of(3) {
            store.settle(seq).await.unwrap();
        }
    }
}

#[test]
fn acknowledged_appends_survive_kill_9() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = store_dir(&tmp);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture"])
        .env(CRASH_DIR, &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 60 {
        let line = lines.next().expect("child exited early").unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let mut it = rest.split(' ').map(|n| n.parse::<u64>().unwrap());
            acked.push((it.next().unwrap(), it.next().unwrap()));
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    // Lines already printed were acknowledged before the kill.
    for line in lines {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let mut it = rest.split(' ').map(|n| n.parse::<u64>().unwrap());
            acked.push((it.next().unwrap(), it.next().unwrap()));
        }
    }

    let (store, live) = WriteBackStore::open(&dir, 1024 * MIB).unwrap();
    let live_seqs: std::collections::HashMap<u64, &JournalRecord> =
        live.iter().map(|(s, r)| (*s, r)).collect();
    for (seq, i) in &acked {
        if i.is_multiple_of(3) {
            continue; // settled (lazily): may or may not be live
        }
        let rec = live_seqs
            .get(seq)
            .unwrap_or_else(|| panic!("acknowledged record {seq} (file {i}) lost"));
        assert_eq!(key_of(rec), format!("file-{i}"));
    }
    // Every live record, acknowledged or not, has its exact content.
    for (_, rec) in &live {
        let i: u64 = key_of(rec).strip_prefix("file-").unwrap().parse().unwrap();
        assert_eq!(data_of(&store, rec), crash_content(i), "file {i}");
    }
    assert!(live.len() >= acked.len() * 2 / 3 - 1);
}

#[tokio::test]
async fn empty_files_need_no_data_sync_and_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let (store, _) = WriteBackStore::open(&dir, MIB).unwrap();
    let r = put(&store, "empty", b"");
    let s = store.append(r.clone()).await.unwrap();
    fs::remove_file(store.data_path(r.data_id().unwrap())).unwrap();
    drop(store);
    let (store, live) = WriteBackStore::open(&dir, MIB).unwrap();
    assert_eq!(live, vec![(s, r.clone())]);
    assert_eq!(data_of(&store, &r), b"");
}

#[tokio::test]
async fn records_without_a_pending_put_stay_live_until_settled() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let (store, _) = WriteBackStore::open(&dir, MIB).unwrap();
    let r = put(&store, "a", b"a");
    let sp = store.append(r).await.unwrap();
    // The upload lands, then the unlink that raced it is journaled: the server delete is
    // still owed.
    store.settle(sp).await.unwrap();
    let unlink = JournalRecord::Unlink { key: "a".into() };
    let su = store.append(unlink.clone()).await.unwrap();
    assert_eq!(store.settled_seq(), su);
    drop(store);
    let (store, live) = WriteBackStore::open(&dir, MIB).unwrap();
    assert_eq!(live, vec![(su, unlink)]);
    store.settle(su).await.unwrap();
    assert_eq!(store.settled_seq(), store.enqueued_seq());
    drop(store);
    let (_store, live) = WriteBackStore::open(&dir, MIB).unwrap();
    assert!(live.is_empty());
}

#[tokio::test]
async fn runtime_compaction_with_live_records_keeps_them_findable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store_dir(&tmp);
    let options = StoreOptions {
        compact_above: 256 * 1024,
        ..StoreOptions::new(1024 * MIB)
    };
    let (store, _) = WriteBackStore::open_with(&dir, options.clone()).unwrap();
    let chunk = vec![5u8; 30 * 1024];
    let mut kept = Vec::new();
    let mut max_len = 0;
    let mut compactions = 0;
    for i in 0..100 {
        let r = put(&store, &format!("f{i}"), &chunk);
        let s = store.append(r.clone()).await.unwrap();
        // Every tenth stays live, with a SetMeta after it.
        if i % 10 == 0 {
            kept.push((s, r));
            let m = JournalRecord::SetMeta {
                key: format!("f{i}"),
                meta: meta("33261"),
            };
            kept.push((store.append(m.clone()).await.unwrap(), m));
        } else {
            store.settle(s).await.unwrap();
        }
        store.flush().await.unwrap();
        let len = store.journal_len();
        if len < max_len {
            compactions += 1;
        }
        max_len = len;
    }
    assert!(compactions >= 2, "{compactions} compactions");
    // Live records keep their place across compactions: settle some now (their frames
    // were moved), then reopen.
    store.settle(kept[0].0).await.unwrap();
    store.settle(kept[1].0).await.unwrap();
    store.flush().await.unwrap();
    drop(store);
    let (store, live) = WriteBackStore::open_with(&dir, options).unwrap();
    assert_eq!(live, kept[2..].to_vec());
    for (_, r) in &live {
        if r.data_id().is_some() {
            assert_eq!(data_of(&store, r), chunk);
        }
    }
}
