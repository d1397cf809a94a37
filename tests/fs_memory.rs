//! Heap use of the filesystem core over a walk the kernel then forgets (MockStore, no
//! kernel): a counting global allocator (this test binary's own) measures the bytes
//! live after the walk and after the last forget, so whatever keeps memory per object
//! once nothing refers to the objects any more (a map at its peak capacity, a cache keyed
//! by names, per-directory leftovers) shows up as bytes, not as a guess from RSS.
//!
//! One test per binary: the counter is process-wide, so nothing else may allocate
//! meanwhile.

#[path = "common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use common::core::{core_env, readdir_all};
use ossmount::fs::{FileKind, ROOT_INO};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const TOP: usize = 20;
const SUB: usize = 10;
const FILES: usize = 100;

/// What `find -size` does: list a directory, look up every entry (the kernel's
/// reference per name), descend into sub-directories. Returns every (ino, lookups).
async fn walk(fs: &ossmount::fs::Filesystem, dir: u64, held: &mut Vec<(u64, u64)>) {
    for d in readdir_all(fs, dir).await {
        if d.name == "." || d.name == ".." {
            continue;
        }
        let a = fs.lookup(dir, OsStr::new(&d.name)).await.expect("lookup");
        held.push((a.ino, 1));
        if d.kind == FileKind::Dir {
            Box::pin(walk(fs, a.ino, held)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_walk_gives_its_heap_back() {
    let e = core_env(|cfg| {
        cfg.metadata_ttl = Duration::from_millis(200);
    });
    for a in 0..TOP {
        for b in 0..SUB {
            for f in 0..FILES {
                e.store.put(&format!("d{a:04}/s{b:03}/f{f:07}"), "");
            }
        }
    }
    let objects = TOP * SUB * FILES;
    let start_inodes = e.fs.inode_count();
    let mut held = Vec::with_capacity(objects + TOP * (SUB + 1));
    // Warm-up walk, then forget it: lazily built state of the core (and of the runtime)
    // is not counted as the walk's.
    walk(&e.fs, ROOT_INO, &mut held).await;
    e.fs.forget_many(&held);
    held.clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    e.fs.forget_many(&[]);
    let before = live();

    walk(&e.fs, ROOT_INO, &mut held).await;
    let peak = live() - before;
    assert_eq!(held.len(), objects + TOP * (SUB + 1));
    // The kernel forgets in batches, as fuser hands them over.
    for batch in held.chunks(512) {
        e.fs.forget_many(batch);
    }
    assert_eq!(e.fs.inode_count(), start_inodes, "every node freed");
    // Listings kept for the TTL expire: with no further forget, the sweep the last trim
    // scheduled drops them at their expiry.
    let waited = std::time::Instant::now();
    let mut after = live() - before;
    while after > 64 * 1024 && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = live() - before;
    }
    eprintln!(
        "{objects} objects: walk +{peak} bytes ({} per object), after forget {after:+} bytes",
        peak / objects as isize
    );
    assert!(
        peak > objects as isize * 100,
        "the walk is measured ({peak} bytes)"
    );
    assert!(
        after <= 64 * 1024,
        "{after} bytes stay live after the walk was forgotten (walk: +{peak})"
    );
}
