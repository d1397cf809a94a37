//! Inode lifecycle on the filesystem core (MockStore, no kernel): lookup counts, forget,
//! what pins a node, and that freed nodes never change what a name means.

use std::time::Duration;

use crate::common;
use crate::common::core::{CTX, CoreEnv, core_env, n, readdir_all};
use ossmount::fs::inode::IDLE_CAP;
use ossmount::fs::{FileKind, FsError, ROOT_INO};

type Env = CoreEnv;

fn env() -> Env {
    core_env(|cfg| cfg.metadata_ttl = Duration::from_secs(60))
}

/// Reads the whole directory through one handle; returns (name, ino) without . and ..
async fn list(e: &Env, ino: u64) -> Vec<(String, u64)> {
    readdir_all(&e.fs, ino)
        .await
        .into_iter()
        .filter(|d| d.name != "." && d.name != "..")
        .map(|d| (d.name, d.ino))
        .collect()
}

async fn read_all(e: &Env, ino: u64) -> Vec<u8> {
    common::core::read_all(&e.fs, ino).await
}

#[tokio::test]
async fn forgotten_nodes_are_freed_and_numbers_stay_while_referenced() {
    let e = env();
    e.store.put("d/a", "alpha");
    e.store.put("d/b", "beta");
    let start = e.fs.inode_count();
    let d = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup d");
    let a = e.fs.lookup(d.ino, n("a")).await.expect("lookup a");
    let a2 = e.fs.lookup(d.ino, n("a")).await.expect("lookup a again");
    assert_eq!(a.ino, a2.ino);
    assert_eq!(e.fs.inode_count(), start + 2);
    // One of two references forgotten: the number stays.
    e.fs.forget(a.ino, 1);
    assert_eq!(e.fs.lookup(d.ino, n("a")).await.unwrap().ino, a.ino);
    // The directory forgotten while its child is held: the child pins it, and the
    // child's key (built through the parent) still works.
    e.fs.forget(d.ino, 1);
    assert_eq!(e.fs.inode_count(), start + 2);
    assert_eq!(read_all(&e, a.ino).await, b"alpha");
    // Every reference forgotten: both go, the child first, then its parent.
    e.fs.forget_many(&[(a.ino, 2)]);
    assert_eq!(e.fs.inode_count(), start);
    assert!(matches!(e.fs.getattr(a.ino).await, Err(FsError::NotFound)));
    // Forgetting an unknown number is harmless.
    e.fs.forget(a.ino, 1);
    // Seen again, the name comes back with a new number and the same content.
    let d2 = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup d");
    let a3 = e.fs.lookup(d2.ino, n("a")).await.expect("lookup a");
    assert_ne!(a3.ino, a.ino);
    assert!(a3.ino > a.ino, "numbers are never reused");
    assert_eq!(read_all(&e, a3.ino).await, b"alpha");
}

#[tokio::test]
async fn handles_and_pending_writes_pin_forgotten_nodes() {
    let e = env();
    e.store.put("f", "content");
    let start = e.fs.inode_count();
    let f = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    let fh = e.fs.open(f.ino, libc::O_RDONLY).await.expect("open");
    e.fs.forget(f.ino, 1);
    assert_eq!(
        e.fs.inode_count(),
        start + 1,
        "an open handle pins the node"
    );
    assert_eq!(e.fs.getattr(f.ino).await.expect("getattr").size, 7);
    assert_eq!(&e.fs.read(fh, 0, 100).await.expect("read")[..], b"content");
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.fs.inode_count(), start, "freed at the last release");

    // A file being written: forgotten before its release, it stays (and is listed)
    // until its upload is done, then goes.
    let (attr, wfh) =
        e.fs.create(&CTX, ROOT_INO, n("new"), 0o100644, 0o022, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(wfh, 0, b"pending").await.expect("write");
    e.fs.forget(attr.ino, 1);
    let names: Vec<String> = list(&e, ROOT_INO).await.into_iter().map(|x| x.0).collect();
    assert!(names.contains(&"new".to_string()), "{names:?}");
    assert_eq!(e.fs.getattr(attr.ino).await.expect("getattr").size, 7);
    e.fs.flush(wfh).await.expect("flush");
    e.fs.release(wfh).await.expect("release");
    assert_eq!(e.store.get("new").as_deref(), Some(&b"pending"[..]));
    assert!(matches!(
        e.fs.getattr(attr.ino).await,
        Err(FsError::NotFound)
    ));
    let again = e.fs.lookup(ROOT_INO, n("new")).await.expect("lookup");
    assert_eq!(again.size, 7);
}

#[tokio::test]
async fn rename_and_unlink_of_forgotten_nodes() {
    let e = env();
    e.store.put("dir/x", "xx");
    e.store.put("dir/sub/y", "yy");
    let dir = e.fs.lookup(ROOT_INO, n("dir")).await.expect("lookup");
    let x = e.fs.lookup(dir.ino, n("x")).await.expect("lookup");
    let sub = e.fs.lookup(dir.ino, n("sub")).await.expect("lookup");
    e.fs.forget_many(&[(x.ino, 1), (sub.ino, 1)]);
    // Rename a forgotten file and a forgotten directory: looked up again by name.
    e.fs.rename(dir.ino, n("x"), dir.ino, n("x2"), 0)
        .await
        .expect("rename file");
    e.fs.rename(dir.ino, n("sub"), ROOT_INO, n("moved"), 0)
        .await
        .expect("rename dir");
    assert!(e.store.contains("dir/x2") && !e.store.contains("dir/x"));
    assert!(e.store.contains("moved/y") && !e.store.contains("dir/sub/y"));
    assert!(matches!(
        e.fs.lookup(dir.ino, n("x")).await,
        Err(FsError::NotFound)
    ));
    let x2 = e.fs.lookup(dir.ino, n("x2")).await.expect("lookup x2");
    assert_eq!(read_all(&e, x2.ino).await, b"xx");
    // Unlink of a forgotten name, and of one forgotten after the unlink.
    e.fs.forget(x2.ino, 1);
    e.fs.unlink(dir.ino, n("x2"))
        .await
        .expect("unlink forgotten");
    let moved = e.fs.lookup(ROOT_INO, n("moved")).await.expect("lookup");
    let y = e.fs.lookup(moved.ino, n("y")).await.expect("lookup");
    let before = e.fs.inode_count();
    e.fs.unlink(moved.ino, n("y")).await.expect("unlink");
    assert_eq!(e.fs.inode_count(), before, "the kernel still holds y");
    e.fs.forget(y.ino, 1);
    assert_eq!(e.fs.inode_count(), before - 1);
    assert!(
        e.store
            .keys()
            .iter()
            .all(|k| k != "moved/y" && k != "dir/x2")
    );
}

/// Names a listing registered but the kernel never looked up are bounded, and freeing
/// them never makes their (complete) directory answer "no such file".
#[tokio::test]
async fn unreferenced_listing_nodes_are_bounded_and_never_read_as_missing() {
    let e = env();
    let count = IDLE_CAP + 500;
    for i in 0..count {
        e.store.put(&format!("big/f{i:06}"), "z");
    }
    e.store.put("small/only", "1");
    let big = e.fs.lookup(ROOT_INO, n("big")).await.expect("lookup");
    let listed = list(&e, big.ino).await;
    assert_eq!(listed.len(), count);
    assert!(
        e.fs.inode_count() <= IDLE_CAP + 8,
        "{} inodes after listing {count} names",
        e.fs.inode_count()
    );
    // The first names were freed: they are looked up again (a new number), never
    // answered "no such file" from the directory's completeness.
    e.store.reset_counts();
    let first = e.fs.lookup(big.ino, n("f000000")).await.expect("lookup");
    assert_eq!(first.kind, FileKind::File);
    assert_ne!(first.ino, listed[0].1);
    assert!(e.store.total_requests() > 0);
    // A complete small directory whose child is freed asks OSS again for that name.
    let small = e.fs.lookup(ROOT_INO, n("small")).await.expect("lookup");
    assert_eq!(list(&e, small.ino).await.len(), 1);
    let only = e.fs.lookup(small.ino, n("only")).await.expect("lookup");
    e.fs.forget(only.ino, 1);
    let again =
        e.fs.lookup(small.ino, n("only"))
            .await
            .expect("lookup again");
    assert_eq!(again.size, 1);
    // ...and unknown names in it are still answered.
    assert!(matches!(
        e.fs.lookup(small.ino, n("nope")).await,
        Err(FsError::NotFound)
    ));
}

/// A listing kept for the TTL (`listing_cache`) whose entries' nodes were freed since is
/// replayed with those entries registered again from what the listing said (as a new
/// LIST would), never with them missing (found when the attributes and lifecycle work
/// met: `find` after `drop_caches` saw an empty tree), and without a request.
#[tokio::test]
async fn kept_listing_with_freed_entries_registers_them_again() {
    let e = env();
    for i in 0..5 {
        e.store.put(&format!("d/f{i}"), "x");
    }
    let d = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup d");
    let first = list(&e, d.ino).await;
    assert_eq!(first.len(), 5);
    // The kernel looks each entry up (as `find -size` does), then forgets them all.
    let mut held = Vec::new();
    for (name, _) in &first {
        held.push(e.fs.lookup(d.ino, n(name)).await.expect("lookup").ino);
    }
    let before = e.fs.inode_count();
    e.fs.forget_many(&held.iter().map(|&i| (i, 1)).collect::<Vec<_>>());
    assert!(e.fs.inode_count() < before, "the children were not freed");
    e.store.reset_counts();
    let again = list(&e, d.ino).await;
    let mut names: Vec<&str> = again.iter().map(|(s, _)| s.as_str()).collect();
    names.sort();
    assert_eq!(names, ["f0", "f1", "f2", "f3", "f4"]);
    assert_eq!(e.store.total_requests(), 0, "{:?}", e.store.counts());
    // Under new numbers, which the table knows.
    for (name, ino) in &again {
        assert!(!held.contains(ino), "{name} replayed under a freed number");
        let attr = e.fs.getattr(*ino).await.expect("getattr");
        assert_eq!(attr.size, 1);
    }
}
