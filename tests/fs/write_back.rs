//! Durable write-back (`--write-back`) in the core, over the mock store: close returns
//! before the upload, pending files show as written, fsync reports upload errors, the
//! order of unlink/rename/chmod of pending files, recovery after a crash, conflicts and
//! backpressure.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ossmount::fs::{FileKind, Filesystem, FsConfig, ROOT_INO, SetAttr};
use ossmount::store::ObjectStore;
use ossmount::store::StoreError;
use ossmount::store::fault::{FaultConfig, FaultStore};
use ossmount::store::mock::MockStore;
use ossmount::write_back::{WriteBackQueue, WriteBackStore};

use crate::common::core::{CTX, n, read_all, readdir_all};

/// A core with write-back into a store in `dir`, whose cache dir is `staging`.
fn wb_core(
    objects: Arc<dyn ObjectStore>,
    dir: &Path,
    staging: &Path,
    max_size: u64,
) -> Arc<Filesystem> {
    let (wb, live) = WriteBackStore::open(dir, max_size).expect("open store");
    assert!(live.is_empty(), "a fresh store has nothing live");
    let cfg = FsConfig {
        cache_dir: staging.to_path_buf(),
        ..FsConfig::default()
    };
    Filesystem::with_write_back(
        objects,
        cfg,
        tokio::runtime::Handle::current(),
        Arc::new(wb),
    )
}

fn queue(fs: &Filesystem) -> Arc<dyn WriteBackQueue> {
    fs.write_back_queue().expect("write-back is on")
}

/// Waits (bounded) until nothing is pending.
async fn drained(fs: &Filesystem) {
    let mut rx = queue(fs).watch();
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| s.drained()))
        .await
        .expect("the queue drains")
        .expect("queue alive");
}

/// create + write + flush + release; returns the inode.
async fn put_file(fs: &Filesystem, parent: u64, name: &str, data: &[u8]) -> u64 {
    let (attr, fh) = fs
        .create(&CTX, parent, n(name), 0o100644, 0o022, libc::O_WRONLY)
        .await
        .expect("create");
    if !data.is_empty() {
        fs.write(fh, 0, data).await.expect("write");
    }
    fs.flush(fh).await.expect("flush");
    fs.release(fh).await.expect("release");
    attr.ino
}

struct Env {
    mock: Arc<MockStore>,
    fs: Arc<Filesystem>,
    dir: tempfile::TempDir,
    _staging: tempfile::TempDir,
}

fn env(max_size: u64) -> Env {
    let mock = Arc::new(MockStore::new("bkt"));
    let dir = tempfile::tempdir().expect("tmp");
    let staging = tempfile::tempdir().expect("tmp");
    let fs = wb_core(
        mock.clone(),
        &dir.path().join("wb"),
        staging.path(),
        max_size,
    );
    Env {
        mock,
        fs,
        dir,
        _staging: staging,
    }
}

#[tokio::test]
async fn close_returns_before_the_upload_and_pending_files_show_as_written() {
    let e = env(64 << 20);
    let put_latency = Duration::from_millis(1500);
    e.mock.set_op_latency("PutObject", put_latency);
    let data = vec![7u8; 16 * 1024];
    let t = Instant::now();
    let ino = put_file(&e.fs, ROOT_INO, "a.bin", &data).await;
    assert!(
        t.elapsed() < put_latency,
        "close waited for the upload ({:?})",
        t.elapsed()
    );
    assert!(!e.mock.contains("a.bin"), "not uploaded yet");
    let status = queue(&e.fs).status();
    assert_eq!(status.pending_files, 1);
    assert_eq!(status.pending_bytes, data.len() as u64);

    // Lookup, stat, readdir and read show the pending file.
    let attr = e.fs.lookup(ROOT_INO, n("a.bin")).await.expect("lookup");
    assert_eq!(attr.ino, ino);
    assert_eq!(attr.size, data.len() as u64);
    assert_eq!(
        e.fs.getattr(ino).await.expect("getattr").size,
        data.len() as u64
    );
    let names: Vec<String> = readdir_all(&e.fs, ROOT_INO)
        .await
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert!(names.contains(&"a.bin".to_string()), "{names:?}");
    assert_eq!(read_all(&e.fs, ino).await, data);

    drained(&e.fs).await;
    assert_eq!(e.mock.get("a.bin").as_deref(), Some(&data[..]));
    let status = queue(&e.fs).status();
    assert_eq!(status.uploaded_files, 1);
    assert_eq!(status.pending_files, 0);
    // Clean now: the inode carries the upload's ETag.
    assert_eq!(read_all(&e.fs, ino).await, data);
}

#[tokio::test]
async fn reopening_a_pending_file_continues_from_its_local_copy() {
    let e = env(64 << 20);
    e.mock
        .set_op_latency("PutObject", Duration::from_millis(800));
    let ino = put_file(&e.fs, ROOT_INO, "f", b"hello").await;
    let fh = e.fs.open(ino, libc::O_WRONLY).await.expect("open");
    e.fs.write(fh, 5, b" world").await.expect("write");
    e.fs.flush(fh).await.expect("flush");
    e.fs.release(fh).await.expect("release");
    assert_eq!(read_all(&e.fs, ino).await, b"hello world");
    drained(&e.fs).await;
    assert_eq!(e.mock.get("f").as_deref(), Some(&b"hello world"[..]));
}

#[tokio::test]
async fn fsync_waits_for_the_upload_and_reports_its_error() {
    let e = env(64 << 20);
    // Two failures: the retry after the first backoff fails too, so the second fsync
    // below sees a failed attempt whatever the timing.
    e.mock.fail_next(
        "PutObject",
        vec![
            StoreError::from_service(500, "InternalError", "injected"),
            StoreError::from_service(500, "InternalError", "injected"),
        ],
    );
    let (attr, fh) =
        e.fs.create(&CTX, ROOT_INO, n("x"), 0o100644, 0o022, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh, 0, b"payload").await.expect("write");
    let err = e.fs.fsync(fh).await.expect_err("the upload failed");
    assert_eq!(err.errno(), libc::EIO, "{err}");
    let status = queue(&e.fs).status();
    assert_eq!(status.failing_files, 1);
    assert!(status.last_error.is_some());
    // The retry (after its backoff) succeeds; a second fsync waits for it.
    e.fs.fsync(fh)
        .await
        .expect_err("still the failed attempt's error");
    e.fs.release(fh).await.expect("release");
    drained(&e.fs).await;
    assert_eq!(e.mock.get("x").as_deref(), Some(&b"payload"[..]));
    let fh = e.fs.open(attr.ino, libc::O_RDWR).await.expect("open");
    e.fs.fsync(fh).await.expect("nothing pending");
    e.fs.release(fh).await.expect("release");
}

#[tokio::test]
async fn unlink_rename_and_chmod_of_pending_files_end_on_the_server_as_shown() {
    let e = env(64 << 20);
    e.mock
        .set_op_latency("PutObject", Duration::from_millis(300));
    e.mock.put("old", b"server copy".to_vec());
    let d =
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o755, 0)
            .await
            .expect("mkdir");
    put_file(&e.fs, ROOT_INO, "gone", b"1").await;
    put_file(&e.fs, ROOT_INO, "moved", b"2").await;
    let c = put_file(&e.fs, ROOT_INO, "chmodded", b"3").await;
    put_file(&e.fs, d.ino, "inner", b"4").await;
    // Overwrite of an existing object, then renamed while pending.
    let old = e.fs.lookup(ROOT_INO, n("old")).await.expect("lookup").ino;
    let fh =
        e.fs.open(old, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .expect("open");
    e.fs.write(fh, 0, b"new content").await.expect("write");
    e.fs.release(fh).await.expect("release");

    e.fs.unlink(ROOT_INO, n("gone")).await.expect("unlink");
    e.fs.rename(ROOT_INO, n("moved"), d.ino, n("moved2"), 0)
        .await
        .expect("rename");
    e.fs.setattr(
        c,
        SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .expect("chmod");
    e.fs.rename(ROOT_INO, n("d"), ROOT_INO, n("e"), 0)
        .await
        .expect("rename dir");
    e.fs.rename(ROOT_INO, n("old"), ROOT_INO, n("renamed_old"), 0)
        .await
        .expect("rename overwritten");
    // What the mount shows...
    let e_ino = e.fs.lookup(ROOT_INO, n("e")).await.expect("e").ino;
    let mut shown: Vec<String> = readdir_all(&e.fs, e_ino)
        .await
        .into_iter()
        .filter(|d| d.kind == FileKind::File)
        .map(|d| d.name)
        .collect();
    shown.sort();
    assert_eq!(shown, ["inner", "moved2"]);
    assert_eq!(e.fs.getattr(c).await.expect("getattr").perm & 0o777, 0o600);
    drained(&e.fs).await;
    // ...is what the server ends with.
    let mut keys = e.mock.keys();
    keys.retain(|k| !k.ends_with('/'));
    keys.sort();
    assert_eq!(keys, ["chmodded", "e/inner", "e/moved2", "renamed_old"]);
    assert_eq!(e.mock.get("e/moved2").as_deref(), Some(&b"2"[..]));
    assert_eq!(
        e.mock.get("renamed_old").as_deref(),
        Some(&b"new content"[..])
    );
    let meta = e.mock.object("chmodded").expect("object").user_meta;
    let mode: u32 = meta
        .get("mode")
        .expect("mode stored")
        .parse()
        .expect("number");
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_crash_leaves_everything_in_the_journal_for_the_next_mount() {
    let mock = Arc::new(MockStore::new("bkt"));
    let fault = Arc::new(FaultStore::new(
        mock.clone(),
        FaultConfig {
            error_probability: 1.0,
            ops: vec!["PutObject".to_string()],
            ..Default::default()
        },
    ));
    let dir = tempfile::tempdir().expect("tmp");
    let staging = tempfile::tempdir().expect("tmp");
    let store_dir = dir.path().join("wb");
    let fs = wb_core(fault.clone(), &store_dir, staging.path(), 64 << 20);
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("f{i}"), vec![i as u8; 1000 + i * 5000]))
        .collect();
    for (name, data) in &files {
        put_file(&fs, ROOT_INO, name, data).await;
    }
    let status = queue(&fs).status();
    assert_eq!(status.pending_files, files.len() as u64);
    // "kill -9": the core goes away without draining.
    let q = Arc::downgrade(&fs.write_back_queue().expect("queue"));
    drop(fs);
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        while q.upgrade().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the queue and its store are released");
    assert!(mock.keys().is_empty(), "nothing was uploaded");

    // The next mount: every pending file lands before it serves.
    fault.set_enabled(false);
    let (wb, live) = WriteBackStore::open(&store_dir, 64 << 20).expect("reopen");
    assert_eq!(
        live.iter()
            .filter(|(_, r)| matches!(r, ossmount::write_back::JournalRecord::Put { .. }))
            .count(),
        files.len()
    );
    let done = ossmount::write_back::recovery::recover(
        &wb,
        fault.clone(),
        &ossmount::write::UploadConfig::default(),
        live,
    )
    .await
    .expect("recovery");
    assert_eq!(done.uploaded_files, files.len() as u64);
    for (name, data) in &files {
        assert_eq!(mock.get(name).as_deref(), Some(&data[..]), "{name}");
    }
    drop(wb);
    let (_, live) = WriteBackStore::open(&store_dir, 64 << 20).expect("reopen");
    assert!(live.is_empty(), "everything settled");
}

#[tokio::test]
async fn a_conflict_keeps_the_local_copy_and_reports_it() {
    let e = env(64 << 20);
    e.mock.put("shared", b"base".to_vec());
    let ino =
        e.fs.lookup(ROOT_INO, n("shared"))
            .await
            .expect("lookup")
            .ino;
    let fh =
        e.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .expect("open");
    e.fs.write(fh, 0, b"mine").await.expect("write");
    // Someone else changes the object while it is open here.
    e.mock.put("shared", b"theirs".to_vec());
    // And creates a name this mount is creating too.
    let (_, fh2) =
        e.fs.create(&CTX, ROOT_INO, n("both"), 0o100644, 0o022, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh2, 0, b"mine too").await.expect("write");
    e.mock.put("both", b"theirs too".to_vec());
    e.fs.release(fh).await.expect("release");
    e.fs.release(fh2).await.expect("release");
    drained(&e.fs).await;
    assert_eq!(e.mock.get("shared").as_deref(), Some(&b"theirs"[..]));
    assert_eq!(e.mock.get("both").as_deref(), Some(&b"theirs too"[..]));
    assert_eq!(queue(&e.fs).status().conflicts, 2);
    let kept: Vec<Vec<u8>> = std::fs::read_dir(e.dir.path().join("wb/conflicts"))
        .expect("conflicts dir")
        .map(|f| std::fs::read(f.expect("entry").path()).expect("read"))
        .collect();
    assert_eq!(kept.len(), 2);
    assert!(kept.contains(&b"mine".to_vec()) && kept.contains(&b"mine too".to_vec()));
    // The mount shows the server's object again.
    assert_eq!(read_all(&e.fs, ino).await, b"theirs");
}

#[tokio::test]
async fn a_full_store_makes_writers_wait_and_too_big_writes_fail_with_enospc() {
    let e = env(256 * 1024);
    e.mock
        .set_op_latency("PutObject", Duration::from_millis(400));
    let chunk = vec![1u8; 160 * 1024];
    put_file(&e.fs, ROOT_INO, "first", &chunk).await;
    // The second file does not fit until the first is uploaded: its write waits.
    let t = Instant::now();
    put_file(&e.fs, ROOT_INO, "second", &chunk).await;
    assert!(
        e.mock.contains("first"),
        "the write waited for the first upload ({:?})",
        t.elapsed()
    );
    // Larger than the whole store: ENOSPC at write time, the file stays as it was.
    let (attr, fh) =
        e.fs.create(&CTX, ROOT_INO, n("huge"), 0o100644, 0o022, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh, 0, b"kept").await.expect("small write");
    let err =
        e.fs.write(fh, 4, &vec![2u8; 300 * 1024])
            .await
            .expect_err("too big");
    assert_eq!(err.errno(), libc::ENOSPC);
    e.fs.release(fh).await.expect("release");
    drained(&e.fs).await;
    assert_eq!(e.mock.get("second").as_deref(), Some(&chunk[..]));
    assert_eq!(e.mock.get("huge").as_deref(), Some(&b"kept"[..]));
    assert_eq!(read_all(&e.fs, attr.ino).await, b"kept");
}

#[tokio::test]
async fn two_cores_cannot_share_one_store() {
    let e = env(64 << 20);
    let err = WriteBackStore::open(&e.dir.path().join("wb"), 64 << 20)
        .expect_err("locked by the first core");
    assert!(
        err.to_string().contains("lock") || err.to_string().contains("use"),
        "{err}"
    );
}
