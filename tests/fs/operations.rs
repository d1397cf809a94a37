//! The filesystem core against MockStore, without the kernel: semantics and request costs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common;
use crate::common::core::{CTX, CoreEnv, core_env, n, readdir_all};
use ossmount::fs::{Ctx, FileKind, Filesystem, FsConfig, FsError, ROOT_INO, SetAttr, TimeSet};
use ossmount::store::{ObjectStore, ObjectType, StoreError};
use ossmount::write::UploadConfig;

type Env = CoreEnv;

fn env_with(f: impl FnOnce(&mut FsConfig)) -> Env {
    core_env(|cfg| {
        cfg.uid = 1000;
        cfg.gid = 1000;
        cfg.metadata_ttl = Duration::from_secs(60);
        cfg.upload = UploadConfig {
            part_size: 1 << 20,
            max_concurrency: 4,
            single_put_threshold: 1 << 20,
        };
        f(cfg);
    })
}

fn env() -> Env {
    env_with(|_| {})
}

async fn names(e: &Env, ino: u64) -> Vec<(String, FileKind)> {
    readdir_all(&e.fs, ino)
        .await
        .into_iter()
        .map(|d| (d.name, d.kind))
        .collect()
}

async fn write_file(e: &Env, parent: u64, name: &str, data: &[u8]) -> u64 {
    common::core::write_file(&e.fs, parent, name, data).await
}

async fn read_all(e: &Env, ino: u64) -> Vec<u8> {
    common::core::read_all(&e.fs, ino).await
}

#[tokio::test]
async fn lookup_is_one_head_plus_one_list_then_cached() {
    let e = env();
    e.store.put("a.txt", "hello");
    let attr = e.fs.lookup(ROOT_INO, n("a.txt")).await.expect("lookup");
    assert_eq!(attr.kind, FileKind::File);
    assert_eq!(attr.size, 5);
    assert_eq!(e.store.count("HeadObject"), 1);
    assert_eq!(e.store.count("ListObjectsV2"), 1);
    e.store.reset_counts();
    let again = e.fs.lookup(ROOT_INO, n("a.txt")).await.expect("lookup");
    assert_eq!(again.ino, attr.ino);
    e.fs.getattr(attr.ino).await.expect("getattr");
    assert_eq!(e.store.total_requests(), 0);
    // Negative answers are cached too.
    assert!(matches!(
        e.fs.lookup(ROOT_INO, n("missing")).await,
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        e.fs.lookup(ROOT_INO, n("missing")).await,
        Err(FsError::NotFound)
    ));
    assert_eq!(e.store.count("HeadObject"), 1);
}

/// An expired directory is revalidated by its LIST alone; only when the listing comes
/// back empty does a HEAD tell whether a file took its place.
#[tokio::test]
async fn known_directory_revalidates_with_one_list() {
    let e = env_with(|c| c.metadata_ttl = Duration::from_millis(50));
    e.store.put("d/a", "1");
    let dir = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
    assert_eq!(dir.kind, FileKind::Dir);
    tokio::time::sleep(Duration::from_millis(80)).await;
    e.store.reset_counts();
    let again = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
    assert_eq!((again.ino, again.kind), (dir.ino, FileKind::Dir));
    assert_eq!(e.store.count("ListObjectsV2"), 1, "{:?}", e.store.counts());
    assert_eq!(e.store.count("HeadObject"), 0, "{:?}", e.store.counts());
    // The directory is gone and a file of that name appeared.
    e.store.delete_object("d/a").await.expect("delete");
    e.store.put("d", "now a file");
    tokio::time::sleep(Duration::from_millis(80)).await;
    e.store.reset_counts();
    let file = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
    assert_eq!(file.kind, FileKind::File);
    assert_eq!(file.size, 10);
    assert_eq!(e.store.count("ListObjectsV2"), 1, "{:?}", e.store.counts());
    assert_eq!(e.store.count("HeadObject"), 1, "{:?}", e.store.counts());
}

#[tokio::test]
async fn ls_l_of_many_entries_costs_lists_only() {
    // readdir_check_size 0: small objects are not checked for being ossfs-style links.
    let e = env_with(|c| {
        c.readdir_optimize = true;
        c.readdir_check_size = 0;
    });
    for i in 0..2500 {
        e.store.put(&format!("big/f{i:05}"), vec![0u8; i % 7]);
    }
    e.store.put("big/sub/x", "1");
    e.store.reset_counts();
    let dir = e.fs.lookup(ROOT_INO, n("big")).await.expect("lookup");
    assert_eq!(dir.kind, FileKind::Dir);
    let listed = names(&e, dir.ino).await;
    assert_eq!(listed.len(), 2 + 2500 + 1);
    // ceil(2501 / 1000) LISTs, the lookup's included: its page was the first page. The
    // one HEAD is the lookup's check for a file named `big`.
    assert_eq!(e.store.count("ListObjectsV2"), 3, "{:?}", e.store.counts());
    assert_eq!(e.store.count("HeadObject"), 1, "{:?}", e.store.counts());
    e.store.reset_counts();
    // With readdir_optimize the stat of every entry is served from the listing.
    for i in [0usize, 1234, 2499] {
        let a =
            e.fs.lookup(dir.ino, n(&format!("f{i:05}")))
                .await
                .expect("lookup");
        assert_eq!(a.size, (i % 7) as u64);
        e.fs.getattr(a.ino).await.expect("getattr");
    }
    assert_eq!(e.store.count("HeadObject"), 0);
    assert_eq!(e.store.count("ListObjectsV2"), 0);
    // Listing again within the TTL replays the kept listing: no request.
    assert_eq!(names(&e, dir.ino).await.len(), 2 + 2500 + 1);
    assert_eq!(e.store.count("ListObjectsV2"), 0, "{:?}", e.store.counts());
}

/// The default mode: a listing's entries carry no stored attributes, so the first stat
/// of one fetches the stored attributes of it and of the listing entries after it (one
/// HEAD each, in parallel); the stats that follow are answered from the cache.
#[tokio::test]
async fn ls_l_fetches_stored_attributes_in_listing_batches() {
    let e = env();
    for i in 0..2500 {
        let mut meta = BTreeMap::new();
        meta.insert("mode".to_string(), (0o100600 + (i % 2) * 0o40).to_string());
        meta.insert("uid".to_string(), (2000 + i).to_string());
        e.store
            .put_with_meta(&format!("big/f{i:05}"), vec![0u8; i % 7], meta);
    }
    e.store.put("big/sub/x", "1");
    let dir = e.fs.lookup(ROOT_INO, n("big")).await.expect("lookup");
    assert_eq!(names(&e, dir.ino).await.len(), 2 + 2500 + 1);
    e.store.reset_counts();
    let a = e.fs.lookup(dir.ino, n("f00000")).await.expect("lookup");
    assert_eq!((a.perm, a.uid), (0o600, 2000), "the stored attributes");
    assert_eq!(e.store.count("HeadObject"), 1000, "{:?}", e.store.counts());
    for i in [1usize, 500, 999] {
        let a =
            e.fs.lookup(dir.ino, n(&format!("f{i:05}")))
                .await
                .expect("lookup");
        assert_eq!(a.perm, 0o600 + (i as u16 % 2) * 0o40, "f{i:05}");
        assert_eq!(a.uid, 2000 + i as u32);
        e.fs.getattr(a.ino).await.expect("getattr");
    }
    assert_eq!(e.store.count("HeadObject"), 1000, "cached");
    // The next batch starts at the entry asked for and takes files only; the
    // marker-less subdirectory is fetched when asked for: one HEAD of `sub/` (404: the
    // defaults are what is stored).
    let a = e.fs.lookup(dir.ino, n("f02499")).await.expect("lookup");
    assert_eq!(a.uid, 4499);
    assert_eq!(e.store.count("HeadObject"), 1001, "{:?}", e.store.counts());
    let s = e.fs.lookup(dir.ino, n("sub")).await.expect("lookup");
    assert_eq!(s.perm, 0o755);
    assert_eq!(e.store.count("HeadObject"), 1002);
    assert_eq!(e.store.count("ListObjectsV2"), 0);
    // Listing again within the TTL sends nothing.
    assert_eq!(names(&e, dir.ino).await.len(), 2 + 2500 + 1);
    assert_eq!(e.store.count("ListObjectsV2"), 0, "{:?}", e.store.counts());
}

/// A second `ls -l` whose stats find the attributes expired (it started within the
/// TTL of the first one's listing, whose HEADs then expired under it) revalidates them
/// in a batch too, not one request at a time in the order it stats.
#[tokio::test]
async fn expired_attributes_of_a_listed_directory_are_revalidated_in_batches() {
    let ttl = Duration::from_millis(600);
    let e = env_with(|c| c.metadata_ttl = ttl);
    for i in 0..200 {
        let mut meta = BTreeMap::new();
        meta.insert("mode".to_string(), "33152".to_string()); // 0100600
        e.store
            .put_with_meta(&format!("d/f{i:03}"), vec![1u8; 10], meta);
    }
    let dir = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
    // Every file's lookup (what `ls -l` costs), checking the stored mode.
    let stat_all = || async {
        let mut inos = Vec::new();
        for i in 0..200 {
            let a =
                e.fs.lookup(dir.ino, n(&format!("f{i:03}")))
                    .await
                    .expect("lookup");
            assert_eq!(a.perm, 0o600, "f{i:03}: the stored mode");
            inos.push(a.ino);
        }
        inos
    };
    // One revalidation each, in parallel: one at a time would take 200 x 20 ms = 4 s,
    // in batches of 64 it takes 4 x 20 ms.
    let revalidated_in_batches = |started: std::time::Instant| {
        let took = started.elapsed();
        let sent = e.store.count("HeadObject") + e.store.count("GetObject");
        assert_eq!(sent, 200, "{:?}", e.store.counts());
        assert!(took < Duration::from_secs(1), "{took:?}");
    };
    assert_eq!(names(&e, dir.ino).await.len(), 202);
    stat_all().await;
    // The second `ls -l`: its readdir replays the kept listing, then its stats come
    // after the attributes expired.
    tokio::time::sleep(ttl / 3).await;
    assert_eq!(names(&e, dir.ino).await.len(), 202);
    e.store.reset_counts();
    tokio::time::sleep(ttl).await;
    e.store
        .set_op_latency("HeadObject", Duration::from_millis(20));
    e.store
        .set_op_latency("GetObject", Duration::from_millis(20));
    let t = std::time::Instant::now();
    let inos = stat_all().await;
    revalidated_in_batches(t);
    // The same through getattr (the kernel kept its dentries, not the attributes).
    assert_eq!(names(&e, dir.ino).await.len(), 202);
    tokio::time::sleep(ttl).await;
    e.store.reset_counts();
    let t = std::time::Instant::now();
    for ino in inos {
        let a = e.fs.getattr(ino).await.expect("getattr");
        assert_eq!(a.perm, 0o600);
    }
    revalidated_in_batches(t);
}

/// Another client's chmod is a CopyObject onto the object itself: new metadata, same
/// ETag. A listing (which shows only the ETag) must not keep the old mode valid past
/// its TTL, however often the directory is listed.
#[tokio::test]
async fn a_chmod_elsewhere_shows_after_the_ttl_even_when_the_directory_is_relisted() {
    let ttl = Duration::from_millis(300);
    let e = env_with(|c| c.metadata_ttl = ttl);
    let mut meta = BTreeMap::new();
    meta.insert("mode".to_string(), "33188".to_string()); // 0100644
    e.store.put_with_meta("d/f", vec![1u8; 10], meta.clone());
    let dir = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
    assert_eq!(names(&e, dir.ino).await.len(), 3);
    let a = e.fs.lookup(dir.ino, n("f")).await.expect("lookup");
    assert_eq!(a.perm, 0o644);
    let etag = e.store.object("d/f").expect("object").etag;
    meta.insert("mode".to_string(), "33152".to_string()); // 0100600
    assert!(e.store.set_user_meta("d/f", meta));
    assert_eq!(e.store.object("d/f").expect("object").etag, etag);
    // Listed again and again: each listing shows the same ETag.
    for _ in 0..4 {
        tokio::time::sleep(ttl / 2).await;
        assert_eq!(names(&e, dir.ino).await.len(), 3);
    }
    let a = e.fs.getattr(a.ino).await.expect("getattr");
    assert_eq!(
        a.perm, 0o600,
        "the stored mode, not the one of the first HEAD"
    );
    let a = e.fs.lookup(dir.ino, n("f")).await.expect("lookup");
    assert_eq!(a.perm, 0o600);
}

/// A kept lookup page never hides what this mount did after it was fetched: a file
/// written and closed and an unlink show in the listing that follows, with the right size.
#[tokio::test]
async fn lookup_page_is_not_used_after_local_changes() {
    let e = env();
    e.store.put("d/a", "1");
    e.store.put("d/old", "x");
    let dir = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
    write_file(&e, dir.ino, "b", b"hello").await;
    e.fs.unlink(dir.ino, n("old")).await.expect("unlink");
    e.store.reset_counts();
    let listed: Vec<String> = names(&e, dir.ino)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(listed, [".", "..", "a", "b"]);
    assert_eq!(e.store.count("ListObjectsV2"), 1, "{:?}", e.store.counts());
    let b = e.fs.lookup(dir.ino, n("b")).await.expect("lookup b");
    assert_eq!(b.size, 5);
}

/// A directory lookup's page is the first page of a listing only while it is fresh, and
/// it shows what was there at lookup time; later listings see later changes.
#[tokio::test]
async fn lookup_page_is_reused_only_while_fresh() {
    let e = env_with(|c| c.metadata_ttl = Duration::from_millis(100));
    e.store.put("d/a", "1");
    let dir = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
    e.store.reset_counts();
    let just_names = |v: Vec<(String, FileKind)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(just_names(names(&e, dir.ino).await), [".", "..", "a"]);
    assert_eq!(e.store.count("ListObjectsV2"), 0, "{:?}", e.store.counts());
    // Expired: the listing asks OSS again.
    tokio::time::sleep(Duration::from_millis(150)).await;
    e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
    e.store.put("d/b", "2");
    tokio::time::sleep(Duration::from_millis(150)).await;
    e.store.reset_counts();
    assert_eq!(just_names(names(&e, dir.ino).await), [".", "..", "a", "b"]);
    assert_eq!(e.store.count("ListObjectsV2"), 1, "{:?}", e.store.counts());
    // A known directory is revalidated with a one-key LIST (cheap path walks), which is
    // no first page: the listing right after it asks for its own.
    tokio::time::sleep(Duration::from_millis(150)).await;
    e.store.reset_counts();
    e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
    assert_eq!(just_names(names(&e, dir.ino).await), [".", "..", "a", "b"]);
    assert_eq!(e.store.count("ListObjectsV2"), 2, "{:?}", e.store.counts());
    assert_eq!(e.store.count("HeadObject"), 0, "{:?}", e.store.counts());
}

/// Small files read one after another in listing order are fetched ahead (what the FUSE
/// adapter does after each open), in parallel, and each still costs exactly one GET.
#[tokio::test]
async fn small_files_read_in_listing_order_are_fetched_ahead() {
    // Default mode: the first lookup fetches the stored attributes of the listed entries
    // (one HEAD each, in one parallel batch); the reads are what this test is about.
    let e = env();
    let content = |i: usize| format!("file {i} ").repeat(100 + i).into_bytes();
    for i in 0..20 {
        e.store.put(&format!("d/f{i:02}"), content(i));
    }
    e.store.put("d/zbig", vec![7u8; 4 << 20]);
    let dir = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup").ino;
    names(&e, dir).await;
    e.store.reset_counts();
    let mut gets_before_open = Vec::new();
    for i in 0..20 {
        let ino =
            e.fs.lookup(dir, n(&format!("f{i:02}")))
                .await
                .expect("lookup")
                .ino;
        gets_before_open.push(e.store.count("GetObject"));
        let fh = e.fs.open(ino, libc::O_RDONLY).await.expect("open");
        if let Some((d, ahead)) = e.fs.read_ahead_plan(ino, libc::O_RDONLY) {
            e.fs.read_ahead(d, ahead).await;
        }
        let got = e.fs.read(fh, 0, 1 << 20).await.expect("read");
        assert_eq!(got[..], content(i)[..], "f{i:02}");
        e.fs.release(fh).await.expect("release");
    }
    assert_eq!(e.store.count("GetObject"), 20, "{:?}", e.store.counts());
    assert_eq!(
        e.store.count("HeadObject"),
        21,
        "one batch: 20 files and zbig"
    );
    // The first two opens fetch for themselves; the second starts the read-ahead, which
    // fetched f02..f09 before f02 was opened.
    assert_eq!(gets_before_open[2], 2 + 8, "{gets_before_open:?}");

    // Random order: no read-ahead, one GET per file read.
    let e = env();
    for i in 0..20 {
        e.store.put(&format!("d/f{i:02}"), content(i));
    }
    let dir = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup").ino;
    names(&e, dir).await;
    e.store.reset_counts();
    for i in [5usize, 2, 17, 9, 11, 0] {
        let ino =
            e.fs.lookup(dir, n(&format!("f{i:02}")))
                .await
                .expect("lookup")
                .ino;
        assert_eq!(e.fs.read_ahead_plan(ino, libc::O_RDONLY), None);
    }
    assert_eq!(e.store.count("GetObject"), 0);
}

#[tokio::test]
async fn directory_wins_and_bad_keys_are_hidden() {
    let e = env();
    e.store.put("x", "file");
    e.store.put("x-1", "between");
    e.store.put("x/y", "child");
    e.store.put("a//b", "empty component");
    e.store.put("./dot", "dot");
    e.store.put(&"L".repeat(300), "too long");
    e.store.put("ok", "fine");
    let listed = names(&e, ROOT_INO).await;
    let mut names_only: Vec<&str> = listed.iter().map(|(s, _)| s.as_str()).collect();
    names_only.sort();
    // `a` is a directory (prefix `a/`) whose only key `a//b` is hidden.
    assert_eq!(names_only, vec![".", "..", "a", "ok", "x", "x-1"]);
    assert!(listed.contains(&("x".to_string(), FileKind::Dir)));
    let x = e.fs.lookup(ROOT_INO, n("x")).await.expect("lookup");
    assert_eq!(x.kind, FileKind::Dir);
    let a = e.fs.lookup(ROOT_INO, n("a")).await.expect("a is a prefix");
    assert_eq!(names(&e, a.ino).await.len(), 2, "a//b is hidden");
}

#[tokio::test]
async fn new_file_is_invisible_until_flush_and_reread_is_cached() {
    let e = env();
    let (attr, fh) =
        e.fs.create(&CTX, ROOT_INO, n("new.bin"), 0o100640, 0o022, libc::O_RDWR)
            .await
            .expect("create");
    assert_eq!(attr.perm, 0o640);
    e.fs.write(fh, 0, b"hello ").await.expect("write");
    e.fs.write(fh, 6, b"world").await.expect("write");
    assert!(!e.store.contains("new.bin"), "nothing visible before close");
    assert_eq!(e.fs.getattr(attr.ino).await.expect("getattr").size, 11);
    // It is listed while being written.
    assert!(
        names(&e, ROOT_INO)
            .await
            .iter()
            .any(|(s, _)| s == "new.bin")
    );
    e.fs.flush(fh).await.expect("flush");
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.get("new.bin").as_deref(), Some(&b"hello world"[..]));
    assert_eq!(e.store.count("PutObject"), 1);
    let meta = e.store.object("new.bin").expect("object").user_meta;
    assert_eq!(meta["mode"], (libc::S_IFREG | 0o640).to_string());
    assert!(meta.contains_key("mtime"));

    e.store.reset_counts();
    assert_eq!(read_all(&e, attr.ino).await, b"hello world");
    let gets = e.store.count("GetObject");
    assert!(gets >= 1);
    assert_eq!(read_all(&e, attr.ino).await, b"hello world");
    assert_eq!(
        e.store.count("GetObject"),
        gets,
        "second read served from cache"
    );
}

#[tokio::test]
async fn large_sequential_file_streams_as_multipart() {
    let e = env();
    let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
    let ino = write_file(&e, ROOT_INO, "big.bin", &data).await;
    assert_eq!(e.store.get("big.bin").as_deref(), Some(&data[..]));
    assert!(e.store.count("UploadPart") >= 3);
    assert_eq!(e.store.count("CompleteMultipartUpload"), 1);
    assert_eq!(e.store.pending_uploads(), 0);
    assert_eq!(read_all(&e, ino).await, data);
}

/// `cmd > file`: the shell's dup2+close flushes the new file once (an empty PUT) before
/// the first write. The writes must still stream, not fall back to a local staging copy.
#[tokio::test]
async fn shell_redirect_flush_before_first_write_still_streams() {
    let e = env();
    let (_, fh) =
        e.fs.create(&CTX, ROOT_INO, n("redir"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.flush(fh)
        .await
        .expect("flush of the dup'ed descriptor");
    assert_eq!(e.store.count("PutObject"), 1);
    let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 253) as u8).collect();
    let mut off = 0;
    for chunk in data.chunks(128 * 1024) {
        e.fs.write(fh, off, chunk).await.expect("write");
        off += chunk.len() as u64;
    }
    // Streaming starts the multipart upload while the application writes; staging
    // would start it only at flush.
    assert_eq!(
        e.store.count("InitiateMultipartUpload"),
        1,
        "{:?}",
        e.store.counts()
    );
    e.fs.flush(fh).await.expect("flush");
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.get("redir").as_deref(), Some(&data[..]));
    assert_eq!(
        e.store.count("GetObject"),
        0,
        "no download of the empty object"
    );
    assert_eq!(e.store.count("PutObject"), 1);
}

/// A live process other than this one, killed on drop.
struct OtherProcess(std::process::Child);

impl OtherProcess {
    fn start() -> OtherProcess {
        OtherProcess(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("spawn"),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for OtherProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn flush_by_another_process_commits_nothing() {
    let e = env();
    let me = Ctx {
        pid: std::process::id(),
        ..CTX
    };
    // The kernel reports a child's pid when its exec or exit closes a descriptor it
    // inherited from the writer.
    let child = OtherProcess::start();
    let (_, fh) =
        e.fs.create(&me, ROOT_INO, n("log"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh, 0, b"first half, ").await.expect("write");
    e.fs.flush_as(child.pid(), fh)
        .await
        .expect("a foreign flush succeeds");
    assert_eq!(e.store.get("log"), None, "{:?}", e.store.counts());
    assert_eq!(e.store.count("PutObject"), 0);
    e.fs.write(fh, 12, b"second half").await.expect("write");
    // A thread of the writer's process (here: this one) is the writer.
    e.fs.flush_as(me.pid, fh).await.expect("flush");
    let first = &b"first half, second half"[..];
    assert_eq!(e.store.get("log").as_deref(), Some(first));
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.count("PutObject"), 1);

    // Nothing but a foreign flush before release: release commits.
    let ino = e.fs.lookup(ROOT_INO, n("log")).await.expect("lookup").ino;
    let trunc = libc::O_WRONLY | libc::O_TRUNC;
    let fh = e.fs.open_as(me.pid, ino, trunc).await.expect("open");
    e.fs.write(fh, 0, b"v2").await.expect("write");
    e.fs.flush_as(child.pid(), fh).await.expect("foreign flush");
    assert_eq!(e.store.get("log").as_deref(), Some(first));
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.get("log").as_deref(), Some(&b"v2"[..]));

    // Hand-over: a child that writes becomes a writer; its close commits.
    let fh = e.fs.open_as(me.pid, ino, trunc).await.expect("open");
    e.fs.write_as(
        child.pid(),
        fh,
        0,
        bytes::Bytes::from_static(b"from the child"),
    )
    .await
    .expect("child write");
    e.fs.flush_as(child.pid(), fh).await.expect("child flush");
    assert_eq!(e.store.get("log").as_deref(), Some(&b"from the child"[..]));
    e.fs.release(fh).await.expect("release");
}

#[tokio::test]
async fn seek_back_early_in_new_file_falls_back_to_staging() {
    let e = env();
    let (attr, fh) =
        e.fs.create(&CTX, ROOT_INO, n("hdr"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh, 0, b"XXXXbody").await.expect("write");
    e.fs.write(fh, 0, b"HEAD").await.expect("seek back");
    e.fs.write(fh, 10, b"!").await.expect("hole");
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.get("hdr").as_deref(), Some(&b"HEADbody\0\0!"[..]));
    assert_eq!(e.fs.getattr(attr.ino).await.expect("getattr").size, 11);
}

#[tokio::test]
async fn overwrite_in_place_keeps_the_rest_and_metadata() {
    let e = env();
    let mut meta = BTreeMap::new();
    meta.insert("mode".to_string(), (libc::S_IFREG | 0o600).to_string());
    meta.insert("foreign".to_string(), "kept".to_string());
    e.store.put_with_meta("f", "0123456789", meta);
    let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    assert_eq!(a.perm, 0o600);
    let fh = e.fs.open(a.ino, libc::O_RDWR).await.expect("open");
    e.fs.write(fh, 2, b"ab").await.expect("write");
    assert_eq!(
        &e.fs.read(fh, 0, 100).await.expect("read")[..],
        b"01ab456789"
    );
    e.fs.flush(fh).await.expect("flush");
    e.fs.release(fh).await.expect("release");
    let obj = e.store.object("f").expect("object");
    assert_eq!(&obj.data[..], b"01ab456789");
    assert_eq!(obj.user_meta["foreign"], "kept");
    assert_eq!(obj.user_meta["mode"], (libc::S_IFREG | 0o600).to_string());
}

#[tokio::test]
async fn o_trunc_replaces_without_download() {
    let e = env();
    e.store.put("t", "old content that is long");
    let a = e.fs.lookup(ROOT_INO, n("t")).await.expect("lookup");
    e.store.reset_counts();
    let fh =
        e.fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .expect("open");
    e.fs.write(fh, 0, b"new").await.expect("write");
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.get("t").as_deref(), Some(&b"new"[..]));
    assert_eq!(e.store.count("GetObject"), 0);
    assert_eq!(e.store.count("PutObject"), 1);
    // O_TRUNC and close without writing leaves an empty file.
    let fh =
        e.fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .expect("open");
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.get("t").as_deref(), Some(&b""[..]));
}

#[tokio::test]
async fn truncate_without_handle() {
    let e = env();
    e.store.put("t", "0123456789");
    let a = e.fs.lookup(ROOT_INO, n("t")).await.expect("lookup");
    let set = SetAttr {
        size: Some(4),
        ..Default::default()
    };
    assert_eq!(e.fs.setattr(a.ino, set).await.expect("truncate").size, 4);
    assert_eq!(e.store.get("t").as_deref(), Some(&b"0123"[..]));
    let set = SetAttr {
        size: Some(6),
        ..Default::default()
    };
    e.fs.setattr(a.ino, set).await.expect("extend");
    assert_eq!(e.store.get("t").as_deref(), Some(&b"0123\0\0"[..]));
    let set = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    e.fs.setattr(a.ino, set).await.expect("truncate 0");
    assert_eq!(e.store.get("t").as_deref(), Some(&b""[..]));
}

#[tokio::test]
async fn append_to_appendable_object_uses_append_object() {
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
    e.store.reset_counts();
    let fh =
        e.fs.open(a.ino, libc::O_WRONLY | libc::O_APPEND)
            .await
            .expect("open");
    e.fs.write(fh, 6, b"line2\n").await.expect("append");
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.get("log").as_deref(), Some(&b"line1\nline2\n"[..]));
    assert_eq!(e.store.count("AppendObject"), 1);
    assert_eq!(e.store.count("GetObject"), 0);
    assert_eq!(
        e.store.object("log").map(|o| o.object_type),
        Some(ObjectType::Appendable)
    );
}

#[tokio::test]
async fn append_to_normal_object_is_staged() {
    let e = env();
    e.store.put("n", "abc");
    let a = e.fs.lookup(ROOT_INO, n("n")).await.expect("lookup");
    let fh =
        e.fs.open(a.ino, libc::O_WRONLY | libc::O_APPEND)
            .await
            .expect("open");
    e.fs.write(fh, 3, b"def").await.expect("append");
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.get("n").as_deref(), Some(&b"abcdef"[..]));
}

#[tokio::test]
async fn mkdir_rmdir_unlink() {
    let e = env();
    let d =
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o750, 0o022)
            .await
            .expect("mkdir");
    assert_eq!(d.kind, FileKind::Dir);
    assert_eq!(d.perm, 0o750);
    assert!(e.store.contains("d/"));
    assert!(matches!(
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o755, 0).await,
        Err(FsError::Exists)
    ));
    write_file(&e, d.ino, "f", b"x").await;
    assert!(e.store.contains("d/f"));
    let err = e.fs.rmdir(ROOT_INO, n("d")).await.expect_err("not empty");
    assert_eq!(err.errno(), libc::ENOTEMPTY);
    e.fs.unlink(d.ino, n("f")).await.expect("unlink");
    assert!(!e.store.contains("d/f"));
    assert!(matches!(
        e.fs.lookup(d.ino, n("f")).await,
        Err(FsError::NotFound)
    ));
    e.fs.rmdir(ROOT_INO, n("d")).await.expect("rmdir");
    assert!(e.store.keys().is_empty());
}

#[tokio::test]
async fn rename_file_and_directory() {
    let e = env();
    let mut meta = BTreeMap::new();
    meta.insert("mode".to_string(), (libc::S_IFREG | 0o700).to_string());
    e.store.put_with_meta("src.txt", "data", meta);
    e.store.put("dir/", "");
    e.store.put("dir/a", "A");
    e.store.put("dir/sub/b", "B");
    e.fs.lookup(ROOT_INO, n("src.txt")).await.expect("lookup");
    e.fs.rename(ROOT_INO, n("src.txt"), ROOT_INO, n("dst.txt"), 0)
        .await
        .expect("rename file");
    assert!(!e.store.contains("src.txt"));
    let obj = e.store.object("dst.txt").expect("dst");
    assert_eq!(&obj.data[..], b"data");
    assert_eq!(obj.user_meta["mode"], (libc::S_IFREG | 0o700).to_string());

    let d = e.fs.lookup(ROOT_INO, n("dir")).await.expect("dir");
    let a = e.fs.lookup(d.ino, n("a")).await.expect("a");
    e.fs.rename(ROOT_INO, n("dir"), ROOT_INO, n("moved"), 0)
        .await
        .expect("rename dir");
    assert_eq!(
        e.store.keys(),
        vec!["dst.txt", "moved/", "moved/a", "moved/sub/b"]
    );
    // Inode numbers survive the move.
    let moved = e.fs.lookup(ROOT_INO, n("moved")).await.expect("moved");
    assert_eq!(moved.ino, d.ino);
    assert_eq!(read_all(&e, a.ino).await, b"A");

    e.store.put("other", "o");
    let err =
        e.fs.rename(
            ROOT_INO,
            n("dst.txt"),
            ROOT_INO,
            n("other"),
            libc::RENAME_NOREPLACE,
        )
        .await
        .expect_err("noreplace");
    assert_eq!(err.errno(), libc::EEXIST);
    let err =
        e.fs.rename(ROOT_INO, n("moved"), moved.ino, n("inside"), 0)
            .await
            .expect_err("into itself");
    assert_eq!(err.errno(), libc::EINVAL);
}

#[tokio::test]
async fn chmod_chown_utimens_persist_in_ossfs_format() {
    let e = env();
    e.store.put("m", "x");
    let a = e.fs.lookup(ROOT_INO, n("m")).await.expect("lookup");
    let when = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let set = SetAttr {
        mode: Some(0o100751),
        uid: Some(42),
        gid: Some(43),
        mtime: Some(TimeSet::At(when)),
        ..Default::default()
    };
    let out = e.fs.setattr(a.ino, set).await.expect("setattr");
    assert_eq!(
        (out.perm, out.uid, out.gid, out.mtime),
        (0o751, 42, 43, when)
    );
    let obj = e.store.object("m").expect("object");
    assert_eq!(&obj.data[..], b"x");
    assert_eq!(obj.user_meta["mode"], "33257");
    assert_eq!(obj.user_meta["uid"], "42");
    assert_eq!(obj.user_meta["gid"], "43");
    assert_eq!(obj.user_meta["mtime"], "1600000000");
    assert_eq!(e.store.count("CopyObject"), 1);

    // A fresh mount reads them back.
    let e2 = Env {
        fs: Filesystem::new(
            e.store.clone(),
            FsConfig::default(),
            tokio::runtime::Handle::current(),
        ),
        store: e.store.clone(),
        staging: tempfile::tempdir().expect("tempdir"),
    };
    let b = e2.fs.lookup(ROOT_INO, n("m")).await.expect("lookup");
    assert_eq!((b.perm, b.uid, b.gid, b.mtime), (0o751, 42, 43, when));
}

#[tokio::test]
async fn symlinks() {
    let e = env();
    let l =
        e.fs.symlink(&CTX, ROOT_INO, n("link"), Path::new("target/file"))
            .await
            .expect("symlink");
    assert_eq!(l.kind, FileKind::Symlink);
    assert_eq!(l.size, 11);
    assert_eq!(
        e.store.object("link").map(|o| o.object_type),
        Some(ObjectType::Symlink)
    );
    assert_eq!(e.fs.readlink(l.ino).await.expect("readlink"), "target/file");
    // Seen by another mount: dangling link still a link.
    let e2 = env_with(|_| {});
    e2.store
        .put_symlink("l2", "nowhere", &Default::default())
        .await
        .expect("put");
    let a = e2.fs.lookup(ROOT_INO, n("l2")).await.expect("lookup");
    assert_eq!(a.kind, FileKind::Symlink);
    assert_eq!(e2.fs.readlink(a.ino).await.expect("readlink"), "nowhere");
    assert!(
        names(&e2, ROOT_INO)
            .await
            .contains(&("l2".to_string(), FileKind::Symlink))
    );
}

#[tokio::test]
async fn read_only_mount_refuses_changes() {
    let e = env_with(|c| c.read_only = true);
    e.store.put("f", "x");
    let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    let errs = [
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o755, 0)
            .await
            .map(|_| ()),
        e.fs.unlink(ROOT_INO, n("f")).await,
        e.fs.create(&CTX, ROOT_INO, n("g"), 0o644, 0, libc::O_WRONLY)
            .await
            .map(|_| ()),
        e.fs.open(a.ino, libc::O_WRONLY).await.map(|_| ()),
        e.fs.setattr(
            a.ino,
            SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
        )
        .await
        .map(|_| ()),
        e.fs.rename(ROOT_INO, n("f"), ROOT_INO, n("h"), 0).await,
    ];
    for r in errs {
        assert_eq!(r.expect_err("must fail").errno(), libc::EROFS);
    }
    assert_eq!(read_all(&e, a.ino).await, b"x");
}

#[tokio::test]
async fn changed_object_under_open_handle_is_estale() {
    let e = env();
    e.store.put("s", vec![1u8; 3 << 20]);
    let a = e.fs.lookup(ROOT_INO, n("s")).await.expect("lookup");
    let fh = e.fs.open(a.ino, libc::O_RDONLY).await.expect("open");
    e.fs.read(fh, 0, 4096).await.expect("first read");
    e.store.mutate("s", vec![2u8; 3 << 20]);
    let err = e.fs.read(fh, 2 << 20, 4096).await.expect_err("stale");
    assert_eq!(err.errno(), libc::ESTALE);
    e.fs.release(fh).await.expect("release");
}

#[tokio::test]
async fn upload_errors_reach_close_and_nothing_partial_appears() {
    let e = env();
    e.store.fail_next(
        "PutObject",
        vec![StoreError::from_service(500, "InternalError", "boom")],
    );
    let (_, fh) =
        e.fs.create(&CTX, ROOT_INO, n("f"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh, 0, b"data").await.expect("write");
    let err = e.fs.flush(fh).await.expect_err("flush fails");
    assert_eq!(err.errno(), libc::EIO);
    // Release must not upload an empty object in place of the lost data.
    assert!(e.fs.release(fh).await.is_err());
    assert!(!e.store.contains("f"));
    assert!(matches!(
        e.fs.lookup(ROOT_INO, n("f")).await,
        Err(FsError::NotFound)
    ));

    // Staged uploads keep their data and retry at release.
    e.store.put("g", "0123");
    let a = e.fs.lookup(ROOT_INO, n("g")).await.expect("lookup");
    let fh = e.fs.open(a.ino, libc::O_RDWR).await.expect("open");
    e.fs.write(fh, 1, b"X").await.expect("write");
    e.store.fail_next(
        "PutObject",
        vec![StoreError::from_service(503, "ServiceUnavailable", "")],
    );
    assert!(e.fs.flush(fh).await.is_err());
    e.fs.release(fh).await.expect("retry succeeds");
    assert_eq!(e.store.get("g").as_deref(), Some(&b"0X23"[..]));
}

#[tokio::test]
async fn unlink_while_writing_drops_the_upload() {
    let e = env();
    let (_, fh) =
        e.fs.create(&CTX, ROOT_INO, n("tmp"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh, 0, b"scratch").await.expect("write");
    e.fs.unlink(ROOT_INO, n("tmp")).await.expect("unlink");
    e.fs.release(fh).await.expect("release");
    assert!(!e.store.contains("tmp"));
    assert_eq!(e.store.count("PutObject"), 0);
}

#[tokio::test]
async fn rename_while_writing_uploads_to_the_new_name() {
    let e = env();
    let (_, fh) =
        e.fs.create(&CTX, ROOT_INO, n("a.tmp"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh, 0, b"content").await.expect("write");
    e.fs.rename(ROOT_INO, n("a.tmp"), ROOT_INO, n("a"), 0)
        .await
        .expect("rename");
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.keys(), vec!["a"]);
    assert_eq!(e.store.get("a").as_deref(), Some(&b"content"[..]));
}

#[tokio::test]
async fn prefix_mount_sees_only_its_prefix() {
    let e = env_with(|c| c.prefix = "team/data".into());
    e.store.put("team/data/one", "1");
    e.store.put("team/other", "no");
    e.store.put("elsewhere", "no");
    let listed = names(&e, ROOT_INO).await;
    assert_eq!(
        listed,
        vec![
            (".".to_string(), FileKind::Dir),
            ("..".to_string(), FileKind::Dir),
            ("one".to_string(), FileKind::File)
        ]
    );
    write_file(&e, ROOT_INO, "two", b"2").await;
    assert!(e.store.contains("team/data/two"));
}

#[tokio::test]
async fn regular_mknod_works_and_hard_links_are_refused() {
    let e = env();
    let f =
        e.fs.mknod(&CTX, ROOT_INO, n("reg"), libc::S_IFREG | 0o644, 0, 0)
            .await
            .expect("regular mknod");
    assert!(e.store.contains("reg"));
    let err =
        e.fs.link(f.ino, ROOT_INO, n("hard"))
            .await
            .expect_err("link");
    assert_eq!(err.errno(), libc::EPERM);
    let err =
        e.fs.lookup(ROOT_INO, n(&"n".repeat(256)))
            .await
            .expect_err("long");
    assert_eq!(err.errno(), libc::ENAMETOOLONG);
}

#[tokio::test]
async fn listing_mtime_yields_to_head_metadata() {
    let e = env();
    let mut meta = BTreeMap::new();
    meta.insert("mtime".to_string(), "1500000000".to_string());
    e.store.put_with_meta("f", "x", meta);
    let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    let want = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    assert_eq!(a.mtime, want);
    // A later listing (LastModified = now) does not override what HEAD said.
    names(&e, ROOT_INO).await;
    assert_eq!(e.fs.getattr(a.ino).await.expect("getattr").mtime, want);
    assert!(SystemTime::now() > want);
}

#[tokio::test]
async fn append_to_large_object_copies_server_side() {
    let e = env();
    let base: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 241) as u8).collect();
    let mut meta = BTreeMap::new();
    meta.insert("foreign".to_string(), "kept".to_string());
    e.store.put_with_meta("big.log", base.clone(), meta);
    let a = e.fs.lookup(ROOT_INO, n("big.log")).await.expect("lookup");
    e.store.reset_counts();
    let fh =
        e.fs.open(a.ino, libc::O_WRONLY | libc::O_APPEND)
            .await
            .expect("open");
    let size = base.len() as u64;
    e.fs.write(fh, size, b"line one\n").await.expect("append");
    e.fs.write(fh, size + 9, b"line two\n")
        .await
        .expect("append");
    assert_eq!(e.fs.getattr(a.ino).await.expect("getattr").size, size + 18);
    e.fs.flush(fh).await.expect("flush");
    e.fs.release(fh).await.expect("release");
    let obj = e.store.object("big.log").expect("object");
    let mut want = base.clone();
    want.extend_from_slice(b"line one\nline two\n");
    assert!(obj.data[..] == want[..], "content after server-side append");
    assert_eq!(obj.user_meta["foreign"], "kept");
    assert_eq!(e.store.count("GetObject"), 0, "{:?}", e.store.counts());
    assert_eq!(e.store.count("UploadPartCopy"), 1);
    assert_eq!(e.store.pending_uploads(), 0);

    // A write before the end falls back to a full local copy and stays correct.
    let fh = e.fs.open(a.ino, libc::O_RDWR).await.expect("open");
    let end = want.len() as u64;
    e.fs.write(fh, end, b"tail").await.expect("append");
    e.fs.write(fh, 0, b"HEAD").await.expect("overwrite start");
    e.fs.release(fh).await.expect("release");
    want.extend_from_slice(b"tail");
    want[..4].copy_from_slice(b"HEAD");
    assert!(e.store.get("big.log").as_deref() == Some(&want[..]));

    // The object changed behind our back: the append is refused, nothing is mixed.
    let fh =
        e.fs.open(a.ino, libc::O_WRONLY | libc::O_APPEND)
            .await
            .expect("open");
    e.fs.write(fh, want.len() as u64, b"late")
        .await
        .expect("append");
    e.store.mutate("big.log", vec![9u8; 2 << 20]);
    let err = e.fs.flush(fh).await.expect_err("stale");
    assert_eq!(err.errno(), libc::ESTALE);
    let _ = e.fs.release(fh).await;
    assert!(e.store.get("big.log").as_deref() == Some(&vec![9u8; 2 << 20][..]));
}

#[tokio::test]
async fn directory_marker_metadata_is_honoured() {
    let e = env();
    let mut meta = BTreeMap::new();
    meta.insert("mode".to_string(), (libc::S_IFDIR | 0o700).to_string());
    meta.insert("uid".to_string(), "4242".to_string());
    e.store.put_with_meta("private/", "", meta);
    e.store.put("private/secret", "s");
    e.store.put("implicit/x", "x");
    let d = e.fs.lookup(ROOT_INO, n("private")).await.expect("lookup");
    assert_eq!((d.kind, d.perm, d.uid), (FileKind::Dir, 0o700, 4242));
    // A listing of the parent does not reset what the marker said.
    names(&e, ROOT_INO).await;
    assert_eq!(e.fs.getattr(d.ino).await.expect("getattr").perm, 0o700);
    let i = e.fs.lookup(ROOT_INO, n("implicit")).await.expect("lookup");
    assert_eq!(i.perm, 0o755);
    // Without a marker: the mount defaults, and no extra HEAD. (Not in the root: its
    // listing above made it complete, so a name added behind our back since then stays
    // invisible for one TTL.)
    e.store.put("implicit/fresh/x", "x");
    e.store.reset_counts();
    let f = e.fs.lookup(i.ino, n("fresh")).await.expect("lookup");
    assert_eq!((f.kind, f.perm), (FileKind::Dir, 0o755));
    assert_eq!(e.store.count("HeadObject"), 1);
    assert_eq!(e.store.count("ListObjectsV2"), 1);
}

/// A directory made here is complete: creating files in it needs no negative lookup
/// (HEAD+LIST per name), only the PUT of each file.
#[tokio::test]
async fn creating_files_in_a_new_directory_costs_one_put_each() {
    let e = env();
    let d =
        e.fs.mkdir(&CTX, ROOT_INO, n("new"), 0o755, 0)
            .await
            .expect("mkdir");
    e.store.reset_counts();
    for i in 0..20 {
        let name = format!("f{i}");
        assert_eq!(
            e.fs.lookup(d.ino, n(&name))
                .await
                .map(|_| ())
                .unwrap_err()
                .errno(),
            libc::ENOENT
        );
        write_file(&e, d.ino, &name, b"data").await;
    }
    assert_eq!(e.store.count("PutObject"), 20, "{:?}", e.store.counts());
    assert_eq!(e.store.count("HeadObject"), 0, "{:?}", e.store.counts());
    assert_eq!(e.store.count("ListObjectsV2"), 0, "{:?}", e.store.counts());
}

/// Completeness lasts one TTL; after it a miss in a small directory re-lists it once
/// (one LIST, no HEAD), which shows what other clients added and renews it.
#[tokio::test]
async fn expired_complete_directory_is_relisted_once_per_ttl() {
    let e = env_with(|c| c.metadata_ttl = Duration::from_millis(200));
    e.store.put("dir/a", "a");
    let d = e.fs.lookup(ROOT_INO, n("dir")).await.expect("lookup dir");
    assert_eq!(names(&e, d.ino).await.len(), 3, ". .. a");
    // Added behind our back: hidden while the listing is fresh…
    e.store.put("dir/b", "bb");
    e.store.put("dir/sub/x", "x");
    e.store
        .put("dir/sub", "file and directory: the directory wins");
    assert!(e.fs.lookup(d.ino, n("b")).await.is_err());
    tokio::time::sleep(Duration::from_millis(250)).await;
    // …and found once it expired: one LIST of the directory, then the usual HEAD+LIST
    // for the name that exists (a listing lacks the metadata a lookup reports).
    e.store.reset_counts();
    let b = e.fs.lookup(d.ino, n("b")).await.expect("b after the TTL");
    assert_eq!(b.size, 2);
    assert_eq!(e.store.count("ListObjectsV2"), 2, "{:?}", e.store.counts());
    assert_eq!(e.store.count("HeadObject"), 1, "{:?}", e.store.counts());
    let sub = e.fs.lookup(d.ino, n("sub")).await.expect("sub");
    assert_eq!(sub.kind, FileKind::Dir);
    // The re-list renewed the directory: misses are free again.
    e.store.reset_counts();
    assert!(e.fs.lookup(d.ino, n("missing")).await.is_err());
    assert!(e.fs.lookup(d.ino, n("missing2")).await.is_err());
    assert_eq!(
        e.store.counts().values().sum::<u64>(),
        0,
        "{:?}",
        e.store.counts()
    );
}

/// A directory never listed to the end is not complete: misses ask OSS per name.
#[tokio::test]
async fn unknown_directory_still_asks_per_name() {
    let e = env();
    e.store.put("big/a", "a");
    let d = e.fs.lookup(ROOT_INO, n("big")).await.expect("lookup dir");
    e.store.reset_counts();
    assert!(e.fs.lookup(d.ino, n("zzz")).await.is_err());
    assert_eq!(e.store.count("HeadObject"), 1);
    assert_eq!(e.store.count("ListObjectsV2"), 1);
}

/// An expired small file is revalidated with one GET (not a HEAD), whose content then
/// serves the read: lookup + read of a small file cost one request together.
#[tokio::test]
async fn small_file_revalidation_fetches_the_content_once() {
    let e = env_with(|c| c.metadata_ttl = Duration::from_millis(100));
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 249) as u8).collect();
    let ino = write_file(&e, ROOT_INO, "small", &data).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    e.store.reset_counts();
    let a = e.fs.getattr(ino).await.expect("getattr");
    assert_eq!(a.size, data.len() as u64);
    assert_eq!(read_all(&e, ino).await, data);
    assert_eq!(e.store.count("GetObject"), 1, "{:?}", e.store.counts());
    assert_eq!(e.store.count("HeadObject"), 0, "{:?}", e.store.counts());
    // Changed behind our back: the revalidation sees the new size and content.
    e.store.mutate("small", vec![7u8; 1000]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let a = e.fs.getattr(ino).await.expect("getattr");
    assert_eq!(a.size, 1000);
    assert_eq!(read_all(&e, ino).await, vec![7u8; 1000]);
    // Large files keep using HEAD.
    let big = vec![1u8; 300 * 1024];
    let bino = write_file(&e, ROOT_INO, "big", &big).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    e.store.reset_counts();
    e.fs.getattr(bino).await.expect("getattr");
    assert_eq!(e.store.count("HeadObject"), 1, "{:?}", e.store.counts());
    assert_eq!(e.store.count("GetObject"), 0, "{:?}", e.store.counts());
}

/// `cp` stats the file after close: the attributes our own upload produced are exact, so
/// that costs no request.
#[tokio::test]
async fn getattr_after_close_is_served_from_the_upload() {
    let e = env();
    let d =
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o755, 0)
            .await
            .expect("mkdir");
    e.store.reset_counts();
    let ino = write_file(&e, d.ino, "f", b"0123456789").await;
    assert_eq!(e.fs.getattr(ino).await.expect("getattr").size, 10);
    assert_eq!(
        e.store.counts().values().sum::<u64>(),
        1,
        "{:?}",
        e.store.counts()
    );
}

/// An expired lookup of a name known as a file is one request (its HEAD), not HEAD+LIST.
#[tokio::test]
async fn expired_known_file_lookup_is_one_request() {
    let e = env_with(|c| c.metadata_ttl = Duration::from_millis(100));
    e.store.put("d/big", vec![5u8; 200 * 1024]);
    let d = e.fs.lookup(ROOT_INO, n("d")).await.expect("d");
    e.fs.lookup(d.ino, n("big")).await.expect("first lookup");
    tokio::time::sleep(Duration::from_millis(150)).await;
    e.store.reset_counts();
    let a = e.fs.lookup(d.ino, n("big")).await.expect("revalidation");
    assert_eq!(a.size, 200 * 1024);
    assert_eq!(
        e.store.counts().values().sum::<u64>(),
        1,
        "{:?}",
        e.store.counts()
    );
    // Gone: the full check (HEAD + LIST) says so.
    e.store.remove("d/big");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(e.fs.lookup(d.ino, n("big")).await.is_err());
}

/// A seek back into a streamed file's uploaded parts (once refused with ENOTSUP) goes on
/// from the local copy: the close commits exactly what was written.
#[tokio::test]
async fn seek_back_past_uploaded_parts_of_a_streamed_file() {
    let e = env();
    e.store.put("f", "previous");
    let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    let fh =
        e.fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .expect("open");
    let chunk = vec![3u8; 1 << 20];
    for i in 0..9u64 {
        e.fs.write(fh, i << 20, &chunk)
            .await
            .expect("sequential write");
    }
    e.fs.write(fh, 0, b"header").await.expect("seek back");
    e.fs.flush(fh).await.expect("flush");
    e.fs.release(fh).await.expect("release");
    let mut want = vec![3u8; 9 << 20];
    want[..6].copy_from_slice(b"header");
    assert_eq!(e.store.get("f").as_deref(), Some(&want[..]));
    assert_eq!(e.store.pending_uploads(), 0);
}

/// New entries belong to the requesting user and group (set-group-ID directories give
/// their group, and their bit to subdirectories); the directory's mtime, ctime and link
/// count follow entries created and removed in it.
#[tokio::test]
async fn new_entries_take_the_requesting_owner_and_move_their_directory() {
    let e = env();
    let user = Ctx {
        uid: 4321,
        gid: 8765,
        pid: 1,
    };
    let d =
        e.fs.mkdir(&user, ROOT_INO, n("d"), 0o2775, 0o022)
            .await
            .expect("mkdir");
    assert_eq!((d.uid, d.gid, d.perm), (4321, 8765, 0o2755));
    assert_eq!(d.nlink, 2);
    let meta = e.store.object("d/").expect("marker").user_meta;
    assert_eq!(
        (meta["uid"].as_str(), meta["gid"].as_str()),
        ("4321", "8765")
    );
    assert_eq!(meta["mode"], (libc::S_IFDIR | 0o2755).to_string());

    let other = Ctx {
        uid: 1111,
        gid: 2222,
        pid: 1,
    };
    let before = e.fs.getattr(d.ino).await.expect("getattr");
    std::thread::sleep(Duration::from_millis(5));
    let (f, fh) =
        e.fs.create(&other, d.ino, n("f"), 0o640, 0o022, libc::O_WRONLY)
            .await
            .expect("create");
    assert_eq!(
        (f.uid, f.gid),
        (1111, 8765),
        "the set-group-ID directory's group"
    );
    e.fs.write(fh, 0, b"x").await.expect("write");
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.object("d/f").expect("f").user_meta["uid"], "1111");
    let sub =
        e.fs.mkdir(&other, d.ino, n("sub"), 0o755, 0)
            .await
            .expect("mkdir");
    assert_eq!(
        (sub.gid, sub.perm & 0o2000),
        (8765, 0o2000),
        "inherits the bit"
    );
    let after = e.fs.getattr(d.ino).await.expect("getattr");
    assert!(after.mtime > before.mtime && after.ctime > before.ctime);
    assert_eq!(after.nlink, 3, "one subdirectory");
    e.fs.rmdir(d.ino, n("sub")).await.expect("rmdir");
    assert_eq!(e.fs.getattr(d.ino).await.expect("getattr").nlink, 2);
}

/// chmod moves ctime; mtime nanoseconds are stored next to ossfs's whole seconds and
/// read back by a fresh mount.
#[tokio::test]
async fn ctime_moves_and_mtime_keeps_its_nanoseconds() {
    let e = env();
    let ino = write_file(&e, ROOT_INO, "f", b"data").await;
    let a = e.fs.getattr(ino).await.expect("getattr");
    std::thread::sleep(Duration::from_millis(5));
    let when = UNIX_EPOCH + Duration::new(1_600_000_000, 987_654_321);
    let set = SetAttr {
        mode: Some(0o600),
        mtime: Some(TimeSet::At(when)),
        ..SetAttr::default()
    };
    let b = e.fs.setattr(ino, set).await.expect("setattr");
    assert!(b.ctime > a.ctime, "ctime moves on chmod");
    let meta = e.store.object("f").expect("f").user_meta;
    assert_eq!(meta["mtime"], "1600000000");
    assert_eq!(meta["mtime-nsec"], "987654321");
    let fresh = Filesystem::new(
        e.store.clone(),
        e.fs.config().clone(),
        tokio::runtime::Handle::current(),
    );
    let c = fresh.lookup(ROOT_INO, n("f")).await.expect("lookup");
    assert_eq!((c.perm, c.mtime), (0o600, when));
}

/// The ctime is that of the last write, not of the upload that lands after close: a
/// revalidation (HEAD after the TTL) of the unchanged object keeps it. pjdfstest checks
/// that a failed rename leaves ctime alone; an upload slower than its `sleep 1` made the
/// ctime jump under load.
#[tokio::test]
async fn upload_landing_later_does_not_move_ctime() {
    let e = env_with(|c| c.metadata_ttl = Duration::from_millis(1));
    let (attr, fh) =
        e.fs.create(&CTX, ROOT_INO, n("late"), 0o100644, 0o022, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh, 0, b"payload").await.expect("write");
    let written = e.fs.getattr(attr.ino).await.expect("getattr").ctime;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    e.fs.flush(fh).await.expect("flush");
    e.fs.release(fh).await.expect("release");
    assert!(e.store.object("late").is_some(), "uploaded at close");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let after = e.fs.lookup(ROOT_INO, n("late")).await.expect("lookup");
    assert_eq!(after.ctime, written, "the upload moved the ctime");
    // A change made elsewhere (new ETag) still moves it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    e.store.put("late", &b"other writer"[..]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let changed = e.fs.lookup(ROOT_INO, n("late")).await.expect("lookup");
    assert!(changed.ctime > written, "a new object moves the ctime");
}

/// Bytes appended after the end of an existing object are held for a server-side join;
/// when a truncate through the same handle cannot restage them (the base download
/// fails), they are lost: the close must report it, not succeed leaving the object
/// without them.
#[tokio::test]
async fn truncate_that_loses_appended_bytes_fails_the_close() {
    let e = env();
    let base = vec![7u8; 2 << 20];
    e.store.put("big", base.clone());
    let a = e.fs.lookup(ROOT_INO, n("big")).await.expect("lookup");
    let fh = e.fs.open(a.ino, libc::O_WRONLY).await.expect("open");
    e.fs.write(fh, 2 << 20, b"tail").await.expect("append");
    let errors = (0..8)
        .map(|_| StoreError::from_service(500, "InternalError", "boom"))
        .collect();
    e.store.fail_next("GetObject", errors);
    let set = SetAttr {
        size: Some(1 << 20),
        fh: Some(fh),
        ..SetAttr::default()
    };
    e.fs.setattr(a.ino, set).await.expect_err("truncate fails");
    e.fs.flush(fh)
        .await
        .expect_err("the close reports the lost bytes");
    assert!(e.fs.release(fh).await.is_err());
    assert_eq!(
        e.store.get("big").as_deref(),
        Some(&base[..]),
        "object untouched"
    );
}
