//! Read-after-write across handles (issue 13): what one descriptor wrote is read by every
//! other descriptor of the inode at once, whatever the write path (streamed, staged,
//! server-side append); renames of files being written publish nothing at the old name;
//! upload errors keep their errno through every later flush, fsync and close.

use std::time::Duration;

use crate::common::core::{CTX, CoreEnv, core_env, n};
use ossmount::fs::{Filesystem, ROOT_INO};
use ossmount::store::{ObjectStore, StoreError};
use ossmount::write::UploadConfig;

const MIB: usize = 1 << 20;

/// Parts of 1 MiB (the smallest), so a few MiB cross several parts.
fn env() -> CoreEnv {
    core_env(|cfg| {
        cfg.metadata_ttl = Duration::from_secs(60);
        cfg.upload = UploadConfig {
            part_size: MIB as u64,
            max_concurrency: 4,
            single_put_threshold: MIB as u64,
        };
    })
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Reads `len` bytes at `off` through `fh` (several reads, as the kernel splits them).
async fn read_range(fs: &Filesystem, fh: u64, off: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        let want = (len - out.len()).min(128 * 1024) as u32;
        let b = fs
            .read(fh, off + out.len() as u64, want)
            .await
            .expect("read");
        if b.is_empty() {
            break;
        }
        out.extend_from_slice(&b);
    }
    out
}

async fn write_all(fs: &Filesystem, fh: u64, off: u64, data: &[u8]) {
    let mut at = off;
    for chunk in data.chunks(256 * 1024) {
        fs.write(fh, at, chunk).await.expect("write");
        at += chunk.len() as u64;
    }
}

fn access_denied() -> StoreError {
    StoreError::from_service(403, "AccessDenied", "denied")
}

#[tokio::test]
async fn second_handle_reads_a_new_file_being_written() {
    let e = env();
    let (attr, w) =
        e.fs.create(
            &CTX,
            ROOT_INO,
            n("new"),
            0o644,
            0,
            libc::O_RDWR | libc::O_CREAT,
        )
        .await
        .expect("create");
    let data = pattern(1000, 1);
    e.fs.write(w, 0, &data).await.expect("write");
    let r = e.fs.open(attr.ino, libc::O_RDONLY).await.expect("open");
    assert_eq!(read_range(&e.fs, r, 0, 4096).await, data);
    assert_eq!(e.fs.getattr(attr.ino).await.expect("stat").size, 1000);
    // Any offset.
    assert_eq!(read_range(&e.fs, r, 900, 4096).await, data[900..]);
    // Nothing is in OSS yet: the bytes came from the local copy.
    assert!(!e.store.contains("new"));
    e.fs.release(w).await.expect("close writer");
    assert_eq!(e.store.get("new").as_deref(), Some(&data[..]));
    assert_eq!(read_range(&e.fs, r, 0, 4096).await, data);
    e.fs.release(r).await.expect("close reader");
}

/// A streamed file read by another handle past its first uploaded parts, and rewritten
/// at an offset already uploaded (once `ENOTSUP`): it goes on from the local copy.
#[tokio::test]
async fn streamed_file_reads_past_uploaded_parts_and_seeks_back() {
    let e = env();
    let (attr, w) =
        e.fs.create(&CTX, ROOT_INO, n("big"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    let mut data = pattern(3 * MIB + 12345, 2);
    write_all(&e.fs, w, 0, &data).await;
    assert_eq!(
        e.store.count("InitiateMultipartUpload"),
        1,
        "the file streams as a multipart upload: {:?}",
        e.store.counts()
    );
    let r = e.fs.open(attr.ino, libc::O_RDONLY).await.expect("open");
    assert_eq!(read_range(&e.fs, r, 0, data.len()).await, data);
    assert_eq!(
        read_range(&e.fs, r, MIB as u64 + 7, 100).await,
        data[MIB + 7..MIB + 107]
    );
    // Seek back into the uploaded first part.
    e.fs.write(w, 10, b"header").await.expect("seek back");
    data[10..16].copy_from_slice(b"header");
    assert_eq!(read_range(&e.fs, r, 0, 64).await, data[..64]);
    e.fs.release(w).await.expect("close");
    assert_eq!(e.store.get("big").as_deref(), Some(&data[..]));
    assert_eq!(
        e.store.pending_uploads(),
        0,
        "the streaming upload was aborted"
    );
    assert_eq!(read_range(&e.fs, r, 0, data.len()).await, data);
    e.fs.release(r).await.expect("close reader");
}

/// An existing file extended through one handle is read whole through another that was
/// already reading it, before and after the commit (the new ETag is followed, no
/// `ESTALE`, no "no data for offset").
#[tokio::test]
async fn existing_file_extended_is_read_by_another_handle() {
    for (base_len, flags) in [
        (2 * MIB, libc::O_WRONLY),                  // server-side append path
        (2 * MIB, libc::O_WRONLY | libc::O_APPEND), // O_APPEND
        (3000, libc::O_WRONLY),                     // staged (downloaded) path
        (3000, libc::O_WRONLY | libc::O_APPEND),
    ] {
        let e = env();
        let base = pattern(base_len, 3);
        e.store.put("f", base.clone());
        let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
        let r = e.fs.open(a.ino, libc::O_RDONLY).await.expect("open reader");
        assert_eq!(read_range(&e.fs, r, 0, 100).await, base[..100]);
        let w = e.fs.open(a.ino, flags).await.expect("open writer");
        let tail = pattern(5000, 4);
        e.fs.write(w, base_len as u64, &tail).await.expect("append");
        let mut whole = base.clone();
        whole.extend_from_slice(&tail);
        assert_eq!(
            e.fs.getattr(a.ino).await.expect("stat").size,
            whole.len() as u64
        );
        assert_eq!(
            read_range(&e.fs, r, base_len as u64 - 10, 6000).await,
            whole[base_len - 10..],
            "base {base_len} flags {flags:#o}"
        );
        e.fs.release(w).await.expect("close writer");
        assert_eq!(e.store.get("f").as_deref(), Some(&whole[..]));
        if base_len >= MIB {
            // The reads did not turn the server-side append into a whole upload.
            assert_eq!(e.store.count("UploadPartCopy"), 1, "{:?}", e.store.counts());
        }
        assert_eq!(read_range(&e.fs, r, 0, whole.len()).await, whole);
        e.fs.release(r).await.expect("close reader");
    }
}

/// Appends to an Appendable object (AppendObject at each write) are read by another
/// handle that was already reading it.
#[tokio::test]
async fn appendable_object_appends_are_read_by_another_handle() {
    let e = env();
    e.store
        .append_object(
            "log",
            0,
            bytes::Bytes::from_static(b"line1\n"),
            None,
            &Default::default(),
        )
        .await
        .expect("seed");
    let a = e.fs.lookup(ROOT_INO, n("log")).await.expect("lookup");
    let r = e.fs.open(a.ino, libc::O_RDONLY).await.expect("open reader");
    assert_eq!(read_range(&e.fs, r, 0, 100).await, b"line1\n");
    let w =
        e.fs.open(a.ino, libc::O_WRONLY | libc::O_APPEND)
            .await
            .expect("open");
    e.fs.write(w, 6, b"line2\n").await.expect("append");
    assert_eq!(read_range(&e.fs, r, 0, 100).await, b"line1\nline2\n");
    e.fs.write(w, 12, b"line3\n").await.expect("append");
    assert_eq!(read_range(&e.fs, r, 6, 100).await, b"line2\nline3\n");
    e.fs.release(w).await.expect("close");
    assert_eq!(read_range(&e.fs, r, 0, 100).await, b"line1\nline2\nline3\n");
    e.fs.release(r).await.expect("close reader");
}

/// Two writers of one file see each other's writes; the first close commits both, and
/// the other's later writes and close are not lost.
#[tokio::test]
async fn two_writers_share_the_pending_data() {
    let e = env();
    let (attr, a) =
        e.fs.create(&CTX, ROOT_INO, n("two"), 0o644, 0, libc::O_RDWR)
            .await
            .expect("create");
    let b = e.fs.open(attr.ino, libc::O_RDWR).await.expect("open b");
    e.fs.write(a, 0, b"aaaa").await.expect("write a");
    e.fs.write(b, 2, b"bbbb").await.expect("write b");
    assert_eq!(read_range(&e.fs, a, 0, 100).await, b"aabbbb");
    assert_eq!(read_range(&e.fs, b, 0, 100).await, b"aabbbb");
    e.fs.release(a).await.expect("close a");
    assert_eq!(e.store.get("two").as_deref(), Some(&b"aabbbb"[..]));
    e.fs.write(b, 6, b"cc").await.expect("write b again");
    assert_eq!(read_range(&e.fs, b, 0, 100).await, b"aabbbbcc");
    e.fs.release(b).await.expect("close b");
    assert_eq!(e.store.get("two").as_deref(), Some(&b"aabbbbcc"[..]));
}

/// O_TRUNC by a second open empties the file for every handle.
#[tokio::test]
async fn o_trunc_by_another_open_empties_the_pending_data() {
    let e = env();
    let (attr, a) =
        e.fs.create(&CTX, ROOT_INO, n("t"), 0o644, 0, libc::O_RDWR)
            .await
            .expect("create");
    e.fs.write(a, 0, b"old data").await.expect("write");
    let b =
        e.fs.open(attr.ino, libc::O_RDWR | libc::O_TRUNC)
            .await
            .expect("open trunc");
    assert_eq!(read_range(&e.fs, a, 0, 100).await, b"");
    e.fs.write(b, 0, b"new").await.expect("write b");
    e.fs.release(b).await.expect("close b");
    e.fs.release(a).await.expect("close a");
    assert_eq!(e.store.get("t").as_deref(), Some(&b"new"[..]));
}

/// Log rotation: write app.log, rename it to app.log.1 while still open, create a new
/// app.log, write both, close both. Nothing is published at the old name by the first
/// writer; each name ends with its own content.
#[tokio::test]
async fn log_rotation_of_a_streamed_file() {
    for flush_first in [false, true] {
        let e = env();
        let (attr, old) =
            e.fs.create(&CTX, ROOT_INO, n("app.log"), 0o644, 0, libc::O_WRONLY)
                .await
                .expect("create");
        if flush_first {
            // `touch`-like: an empty object exists at the old name.
            e.fs.flush(old).await.expect("flush");
        }
        let first = pattern(2 * MIB + 77, 5);
        write_all(&e.fs, old, 0, &first).await;
        e.fs.rename(ROOT_INO, n("app.log"), ROOT_INO, n("app.log.1"), 0)
            .await
            .expect("rename");
        assert!(!e.store.contains("app.log"), "nothing left at the old name");
        let (_, new) =
            e.fs.create(&CTX, ROOT_INO, n("app.log"), 0o644, 0, libc::O_WRONLY)
                .await
                .expect("recreate");
        e.fs.write(new, 0, b"fresh").await.expect("write new");
        let more = pattern(1000, 6);
        e.fs.write(old, first.len() as u64, &more)
            .await
            .expect("write old");
        e.fs.release(new).await.expect("close new");
        e.fs.release(old).await.expect("close old");
        let mut whole = first.clone();
        whole.extend_from_slice(&more);
        assert_eq!(e.store.get("app.log").as_deref(), Some(&b"fresh"[..]));
        assert_eq!(e.store.get("app.log.1").as_deref(), Some(&whole[..]));
        assert_eq!(e.store.pending_uploads(), 0);
        let r = e.fs.open(attr.ino, libc::O_RDONLY).await.expect("reopen");
        assert_eq!(read_range(&e.fs, r, 0, whole.len()).await, whole);
        e.fs.release(r).await.expect("close");
    }
}

/// Rename of an uploaded file being written, when the upload under the new name or the
/// delete of the old one fails: the error keeps its errno, the new name is absent or
/// complete (never empty), and the data ends up under the name the file has.
#[tokio::test]
async fn rename_of_a_file_being_written_when_the_store_fails() {
    // The upload under the new name fails: the new name stays absent.
    let e = env();
    let (_, fh) =
        e.fs.create(&CTX, ROOT_INO, n("a"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.flush(fh).await.expect("flush (empty object at a)");
    let data = pattern(300_000, 7);
    write_all(&e.fs, fh, 0, &data).await;
    e.store.fail_next("PutObject", vec![access_denied()]);
    let err =
        e.fs.rename(ROOT_INO, n("a"), ROOT_INO, n("b"), 0)
            .await
            .expect_err("upload refused");
    assert_eq!(err.errno(), libc::EACCES);
    assert!(!e.store.contains("b"));
    e.fs.release(fh).await.expect("close");
    assert_eq!(e.store.get("a").as_deref(), Some(&data[..]));
    assert!(!e.store.contains("b"));

    // The delete of the old name fails: the new name is complete, the file stays at the
    // old name and its close uploads the data there.
    let e = env();
    let (_, fh) =
        e.fs.create(&CTX, ROOT_INO, n("a"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.flush(fh).await.expect("flush");
    write_all(&e.fs, fh, 0, &data).await;
    e.store.fail_next("DeleteObject", vec![access_denied()]);
    let err =
        e.fs.rename(ROOT_INO, n("a"), ROOT_INO, n("b"), 0)
            .await
            .expect_err("delete refused");
    assert_eq!(err.errno(), libc::EACCES);
    assert_eq!(e.store.get("b").as_deref(), Some(&data[..]));
    e.fs.write(fh, data.len() as u64, b"!")
        .await
        .expect("write");
    e.fs.release(fh).await.expect("close");
    let mut whole = data.clone();
    whole.push(b'!');
    assert_eq!(e.store.get("a").as_deref(), Some(&whole[..]));

    // A file not written through this handle (nothing pending): the copy fails, the new
    // name stays absent.
    let e = env();
    e.store.put("c", "content");
    let a = e.fs.lookup(ROOT_INO, n("c")).await.expect("lookup");
    let fh = e.fs.open(a.ino, libc::O_WRONLY).await.expect("open");
    e.store.fail_next("CopyObject", vec![access_denied()]);
    let err =
        e.fs.rename(ROOT_INO, n("c"), ROOT_INO, n("d"), 0)
            .await
            .expect_err("copy refused");
    assert_eq!(err.errno(), libc::EACCES);
    assert!(!e.store.contains("d"));
    e.fs.release(fh).await.expect("close");
    assert_eq!(e.store.get("c").as_deref(), Some(&b"content"[..]));
}

/// A failed streaming upload: every later write, flush, fsync and close of the handle
/// reports the first error's errno (not EIO), and nothing is published.
#[tokio::test]
async fn upload_error_keeps_its_errno_through_every_later_call() {
    let e = env();
    e.store.put("f", "previous");
    let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    let fh =
        e.fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .expect("open");
    e.store
        .fail_next("UploadPart", (0..16).map(|_| access_denied()).collect());
    let chunk = pattern(MIB, 8);
    let mut first = None;
    for i in 0..4u64 {
        if let Err(err) = e.fs.write(fh, i * MIB as u64, &chunk).await {
            first = Some(err.errno());
            break;
        }
    }
    let first = match first {
        Some(errno) => errno,
        None => e.fs.flush(fh).await.expect_err("flush").errno(),
    };
    assert_eq!(first, libc::EACCES);
    assert_eq!(
        e.fs.write(fh, 4 * MIB as u64, b"x")
            .await
            .expect_err("write")
            .errno(),
        libc::EACCES
    );
    assert_eq!(
        e.fs.flush(fh).await.expect_err("flush").errno(),
        libc::EACCES
    );
    assert_eq!(
        e.fs.fsync(fh).await.expect_err("fsync").errno(),
        libc::EACCES
    );
    assert_eq!(
        e.fs.release(fh).await.expect_err("close").errno(),
        libc::EACCES
    );
    assert_eq!(e.store.get("f").as_deref(), Some(&b"previous"[..]));
    assert_eq!(e.store.pending_uploads(), 0);
}

/// The handle stays counted as open (what the shutdown waits for) until its upload at
/// release is over.
#[tokio::test]
async fn release_counts_the_handle_until_its_upload_is_done() {
    let e = env();
    let (_, fh) =
        e.fs.create(&CTX, ROOT_INO, n("slow"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh, 0, b"data").await.expect("write");
    e.store
        .set_op_latency("PutObject", Duration::from_millis(300));
    let fs = &e.fs;
    let release = fs.release(fh);
    tokio::pin!(release);
    // Let the release start its upload.
    tokio::select! {
        _ = &mut release => panic!("release finished before its upload"),
        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
    }
    assert_eq!(fs.open_handles(), 1, "still counted while uploading");
    release.await.expect("release");
    assert_eq!(fs.open_handles(), 0);
    assert_eq!(e.store.get("slow").as_deref(), Some(&b"data"[..]));
}

/// A file being streamed inside a directory that is renamed: its upload lands under the
/// new directory only.
#[tokio::test]
async fn rename_of_the_directory_of_a_streamed_file() {
    let e = env();
    let d =
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o755, 0)
            .await
            .expect("mkdir");
    let (_, fh) =
        e.fs.create(&CTX, d.ino, n("f"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    let data = pattern(2 * MIB + 5, 9);
    write_all(&e.fs, fh, 0, &data).await;
    e.fs.rename(ROOT_INO, n("d"), ROOT_INO, n("e"), 0)
        .await
        .expect("rename dir");
    e.fs.write(fh, data.len() as u64, b"end")
        .await
        .expect("write");
    e.fs.release(fh).await.expect("close");
    let mut whole = data.clone();
    whole.extend_from_slice(b"end");
    assert!(!e.store.contains("d/f"));
    assert_eq!(e.store.get("e/f").as_deref(), Some(&whole[..]));
    assert_eq!(e.store.pending_uploads(), 0);
}
