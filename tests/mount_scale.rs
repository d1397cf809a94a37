//! Many objects through a real mount (in-process emulator): the inode table shrinks when
//! the kernel forgets, a second walk with `--metadata-ttl indefinite` sends no request,
//! and directory offsets stay right across listing pages and seekdir/telldir.

mod common;

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::emulator::Emu;
use common::mount::InProcessMount;
use ossmount::fs::{Filesystem, FsConfig};
use ossmount::fuse::MountOptions;
use ossmount::store::ObjectStore;

const BUCKET: &str = "scale-test";

/// Tests that count inodes or requests run one at a time: `drop_caches` makes the
/// kernel forget every mount's inodes, and the `ossmount_inodes` gauge is process-wide.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

struct Env {
    mnt: InProcessMount,
    fs: Arc<Filesystem>,
    /// Declared after the mount so it stops after the unmount.
    emu: Emu,
    _data: tempfile::TempDir,
}

impl Env {
    /// Mounts a bucket holding the files under `import` (key = relative path).
    fn new(import: &Path) -> Env {
        Env::with_ttl(import, Duration::from_secs(60))
    }

    /// [`Env::new`] with this metadata TTL.
    fn with_ttl(import: &Path, metadata_ttl: Duration) -> Env {
        let emu = Emu::start(BUCKET, |mut c| {
            c.import_dir = Some(import.to_path_buf());
            c
        });
        let data = tempfile::tempdir().expect("data dir");
        let cfg = FsConfig {
            uid: 0,
            gid: 0,
            metadata_ttl,
            cache_dir: data.path().join("staging"),
            ..FsConfig::default()
        };
        let store: Arc<dyn ObjectStore> = emu.client.clone();
        let fs = Arc::new(Filesystem::new(store, cfg, emu.runtime().handle().clone()));
        let mnt = InProcessMount::new(fs.clone(), &MountOptions::for_bucket(BUCKET));
        Env {
            mnt,
            fs,
            emu,
            _data: data,
        }
    }

    fn sh(&self, script: &str) -> String {
        self.mnt.sh(script)
    }

    /// Requests the emulator received since the last call (by operation), then resets.
    fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        let stats = self.emu.emu().stats();
        self.emu.emu().reset_stats();
        stats.requests
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.mnt.unmount();
    }
}

/// The value of the `ossmount_inodes` gauge in the Prometheus text.
fn inodes_gauge(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(ossmount::metrics::INODES) && !l.starts_with('#'))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// A walk of 20,000 objects that stats every file pins them all in the kernel; once the
/// kernel drops its caches it forgets them, and the table (and its gauge) shrinks back.
#[test]
fn inode_table_shrinks_when_the_kernel_forgets() {
    let _alone = alone();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    let src = tempfile::tempdir().expect("src");
    for a in 0..20 {
        for b in 0..10 {
            let d = src.path().join(format!("d{a:02}/s{b}"));
            std::fs::create_dir_all(&d).unwrap();
            for f in 0..100 {
                std::fs::write(d.join(format!("f{f:03}")), b"x").unwrap();
            }
        }
    }
    let env = Env::new(src.path());
    // `find -size` stats every file: the kernel holds every inode.
    let out = env.sh("find . -type f -size -2 | wc -l");
    assert_eq!(out.trim(), "20000");
    let peak = env.fs.inode_count();
    assert!(
        peak >= 20_000,
        "{peak} inodes while the kernel holds 20,000"
    );
    assert_eq!(inodes_gauge(&metrics.render()), Some(peak as f64));

    std::fs::write("/proc/sys/vm/drop_caches", "2").expect("drop caches");
    // Forgets arrive asynchronously: wait for them (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.fs.inode_count() > 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = env.fs.inode_count();
    assert!(after <= 1000, "{after} inodes left of {peak}");
    let gauge = inodes_gauge(&metrics.render()).expect("gauge");
    assert!(gauge <= 1000.0, "gauge {gauge}");
    // Everything is still there, under new numbers.
    assert_eq!(env.sh("find . -type f | wc -l").trim(), "20000");
    assert_eq!(env.sh("cat d07/s3/f042"), "x");
}

/// With `--metadata-ttl indefinite` (what `indefinite` parses to: a century) a second
/// walk of a tree costs no request: more directories than the listing cache once kept
/// (256), and more files than the table keeps unreferenced (plain readdir does not make
/// the kernel hold them, so their nodes are freed and the kept listing registers them
/// again).
#[test]
fn second_walk_with_indefinite_ttl_sends_no_request() {
    let _alone = alone();
    const INDEFINITE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let src = tempfile::tempdir().expect("src");
    for a in 0..400 {
        let d = src.path().join(format!("d{a:03}"));
        std::fs::create_dir_all(&d).unwrap();
        for f in 0..50 {
            std::fs::write(d.join(format!("f{f:02}")), b"x").unwrap();
        }
    }
    let env = Env::with_ttl(src.path(), INDEFINITE);
    let walk = "find . | wc -l";
    assert_eq!(env.sh(walk).trim(), "20401");
    let first = env.requests();
    assert!(first.values().sum::<u64>() >= 400, "{first:?}");
    assert_eq!(env.sh(walk).trim(), "20401");
    let again = env.requests();
    assert!(again.is_empty(), "second `{walk}` sent {again:?}");
    // Walks that stat every file: the first fetches the stored attributes (HEADs in
    // the default mode); after it, nothing.
    let stat_walk = "find . -type f -size -2 | wc -l";
    assert_eq!(env.sh(stat_walk).trim(), "20000");
    env.requests();
    assert_eq!(env.sh(stat_walk).trim(), "20000");
    let again = env.requests();
    assert!(again.is_empty(), "second `{stat_walk}` sent {again:?}");
}

/// Reads a directory with readdir/telldir/seekdir (libc, as programs do). Returns the
/// names of a full pass and their telldir positions, then checks that seekdir to any
/// recorded position (back and forth, across listing pages) reads on from there.
fn check_seekdir(dir: &Path) -> Vec<String> {
    let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain libc directory-stream calls on a stream we own, closed at the end;
    // entries are copied before the next readdir.
    unsafe {
        let d = libc::opendir(c.as_ptr());
        assert!(!d.is_null(), "opendir {}", dir.display());
        let next = |d: *mut libc::DIR| -> Option<String> {
            loop {
                let e = libc::readdir(d);
                if e.is_null() {
                    return None;
                }
                let name = CStr::from_ptr((*e).d_name.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                if name != "." && name != ".." {
                    return Some(name);
                }
            }
        };
        let mut names = Vec::new();
        let mut pos = Vec::new();
        loop {
            let t = libc::telldir(d);
            match next(d) {
                Some(n) => {
                    pos.push(t);
                    names.push(n);
                }
                None => break,
            }
        }
        // Back and forth: from the end to the start, across every 1000-entry page.
        let picks: Vec<usize> = [
            names.len() - 1,
            0,
            4321,
            999,
            1000,
            1001,
            2999,
            17,
            3000,
            4000,
            1999,
            2000,
        ]
        .into_iter()
        .filter(|&i| i < names.len())
        .collect();
        for i in picks {
            libc::seekdir(d, pos[i]);
            let got: Vec<String> = (0..3).map_while(|_| next(d)).collect();
            let want: Vec<String> = names[i..(i + 3).min(names.len())].to_vec();
            assert_eq!(got, want, "after seekdir to entry {i} of {}", dir.display());
        }
        libc::rewinddir(d);
        assert_eq!(next(d).as_ref(), names.first());
        libc::closedir(d);
        names
    }
}

#[test]
fn seekdir_across_listing_pages_matches_a_local_directory() {
    let _alone = alone();
    let src = tempfile::tempdir().expect("src");
    let big = src.path().join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..5000 {
        std::fs::write(big.join(format!("entry-{i:05}")), b"").unwrap();
    }
    let env = Env::new(src.path());
    let mut local = check_seekdir(&big);
    let mut mounted = check_seekdir(&env.mnt.dir.path().join("big"));
    assert_eq!(mounted.len(), 5000);
    local.sort();
    mounted.sort();
    assert_eq!(mounted, local);
}
