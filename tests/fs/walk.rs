//! Tree walks on the filesystem core (MockStore with a LIST latency, no kernel): the
//! listings of sub-directories are fetched ahead of a depth-first walk, bounded, and a
//! plain listing of one directory sends nothing extra.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use crate::common::core::{CoreEnv, core_env, readdir_all};
use ossmount::fs::{FileKind, ROOT_INO};

type Env = CoreEnv;

fn env() -> Env {
    env_with(false)
}

fn env_with(readdir_optimize: bool) -> Env {
    core_env(|cfg| {
        cfg.readdir_optimize = readdir_optimize;
        // The walk counts LISTs: no HEAD of small objects for ossfs-style links.
        cfg.readdir_check_size = 0;
    })
}

/// Lists `ino` through one handle: (name, ino, kind) without . and ..
async fn list(e: &Env, ino: u64) -> Vec<(String, u64, FileKind)> {
    readdir_all(&e.fs, ino)
        .await
        .into_iter()
        .filter(|d| d.name != "." && d.name != "..")
        .map(|d| (d.name, d.ino, d.kind))
        .collect()
}

/// What `find` does: list a directory, then each sub-directory in order, depth first.
async fn walk(e: &Env, dir: u64) -> usize {
    let mut n = 0;
    for (name, _, kind) in list(e, dir).await {
        n += 1;
        if kind == FileKind::Dir {
            let child = e.fs.lookup(dir, OsStr::new(&name)).await.expect("lookup");
            n += Box::pin(walk(e, child.ino)).await;
        }
    }
    n
}

/// 10 top directories × 10 sub-directories × 3 files: 110 directories.
fn tree(e: &Env) -> usize {
    for a in 0..10 {
        for b in 0..10 {
            for f in 0..3 {
                e.store.put(&format!("t/d{a}/s{b}/f{f}"), "x");
            }
        }
    }
    10 + 100 + 300
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_lists_ahead_within_twice_the_lists() {
    walk_lists_ahead(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_lists_ahead_with_readdir_optimize() {
    walk_lists_ahead(true).await;
}

/// In the default mode the stored attributes of each directory the walk enters are
/// fetched (a HEAD of its marker, batched by `attr_fanout`), never those of files; with
/// `readdir_optimize` nothing but LISTs.
async fn walk_lists_ahead(readdir_optimize: bool) {
    let e = env_with(readdir_optimize);
    let entries = tree(&e);
    let t =
        e.fs.lookup(ROOT_INO, OsStr::new("t"))
            .await
            .expect("lookup");
    // 20 ms per LIST: a directory-by-directory walk of 111 directories takes ≥ 2.2 s.
    e.store
        .set_op_latency("ListObjectsV2", Duration::from_millis(20));
    e.store.reset_counts();
    let start = Instant::now();
    assert_eq!(walk(&e, t.ino).await, entries);
    let took = start.elapsed();
    let lists = e.store.count("ListObjectsV2");
    eprintln!("walk of 111 directories: {took:?}, {lists} LISTs");
    // The first listing of `t` used the lookup's page; the other 110 directories were
    // listed once each, plus at most what was fetched ahead and left unused.
    assert!(lists >= 110, "{lists} LISTs");
    assert!(lists <= 2 * 111, "{lists} LISTs, {:?}", e.store.counts());
    let heads = e.store.count("HeadObject");
    if readdir_optimize {
        assert_eq!(heads, 0, "{:?}", e.store.counts());
    } else {
        assert!(
            heads <= 110,
            "more HEADs than directories: {:?}",
            e.store.counts()
        );
    }
    assert!(
        took < Duration::from_millis(1100),
        "walk took {took:?} with {lists} LISTs"
    );
}

#[tokio::test]
async fn listing_one_directory_sends_nothing_extra() {
    let e = env();
    tree(&e);
    let t =
        e.fs.lookup(ROOT_INO, OsStr::new("t"))
            .await
            .expect("lookup");
    let d0 = e.fs.lookup(t.ino, OsStr::new("d0")).await.expect("lookup");
    e.store.reset_counts();
    // `ls t/d0`: its lookup's page is the listing; its ten sub-directories are not
    // listed ahead.
    assert_eq!(list(&e, d0.ino).await.len(), 10);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(e.store.total_requests(), 0, "{:?}", e.store.counts());
}
