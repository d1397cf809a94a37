//! Load: 16 threads (8 readers, 8 writers) through one mount of the real binary for a
//! while (30 s in CI; `scripts/soak.sh` runs minutes via RELIABILITY_LOAD_SECS). Every
//! operation must succeed with exact bytes, no thread may stall (a watchdog fails the
//! test when one makes no progress for 60 s: a deadlock), and the mount process's RSS
//! must stay bounded.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::emulator::Emu;
use crate::common::mount::BinMount;
use crate::common::{close_checked, pattern};
use rand::{Rng, SeedableRng};

const SHARED: usize = 4;
const SHARED_SIZE: usize = 8 << 20;
/// RSS ceiling for the mount process: the default 256 MiB block cache, upload buffers
/// and the runtime, with room to spare — but far below "unbounded".
const RSS_LIMIT_KIB: u64 = 900 * 1024;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[test]
fn sixteen_readers_and_writers_no_error_no_deadlock_bounded_rss() {
    let secs: u64 = std::env::var("RELIABILITY_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let emu = Emu::start("load-bucket", |c| c);
    for i in 0..SHARED {
        emu.put(
            &format!("shared/{i}.bin"),
            pattern(SHARED_SIZE, 500 + i as u64),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt =
        BinMount::start(&emu, &dir.path().join("mnt"), &["--part-size", "1MiB"]).expect("mount");
    let pid = mnt.pid().expect("mount pid");
    let root = mnt.mnt.clone();
    std::fs::create_dir(root.join("out")).expect("mkdir out");

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..16).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    let mut threads = Vec::new();
    for t in 0..16usize {
        let (stop, ops, bytes, progress, root) = (
            stop.clone(),
            ops.clone(),
            bytes.clone(),
            progress.clone(),
            root.clone(),
        );
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = if t < 8 {
                    reader_step(&root, &mut rng).map_err(|e| format!("reader {t}: {e}"))?
                } else {
                    writer_step(&root, t, round, &mut rng)
                        .map_err(|e| format!("writer {t} round {round}: {e}"))?
                };
                round += 1;
                ops.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(n, Ordering::Relaxed);
                progress[t].store(started.elapsed().as_secs(), Ordering::Relaxed);
            }
            Ok(())
        }));
    }

    let mut max_rss = 0;
    let mut failure = None;
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(r) = rss_kib(pid) {
            max_rss = max_rss.max(r);
        }
        let now = started.elapsed().as_secs();
        if let Some(t) =
            (0..16).find(|&t| now.saturating_sub(progress[t].load(Ordering::Relaxed)) > 60)
        {
            failure = Some(format!("thread {t} made no progress for 60 s (deadlock?)"));
            break;
        }
        if threads.iter().any(|h| h.is_finished()) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut errors = Vec::new();
    for h in threads {
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !h.is_finished() {
            errors.push("a thread did not stop within 120 s (deadlock?)".to_string());
            continue;
        }
        if let Ok(Err(e)) | Err(e) = h.join().map_err(|_| "thread panicked".to_string()) {
            errors.push(e);
        }
    }
    let ops = ops.load(Ordering::Relaxed);
    let bytes = bytes.load(Ordering::Relaxed);
    eprintln!(
        "load: 16 threads for {:?}: {ops} ops, {} MiB verified, max RSS of the mount {} MiB",
        started.elapsed(),
        bytes >> 20,
        max_rss / 1024
    );
    if let Some(f) = failure {
        errors.push(f);
    }
    assert!(errors.is_empty(), "{errors:?}\n{}", mnt.log_text());
    assert!(ops > 16, "too few operations: {ops}");
    assert!(max_rss > 0, "could not sample RSS");
    assert!(
        max_rss < RSS_LIMIT_KIB,
        "mount RSS {} MiB exceeds {} MiB",
        max_rss / 1024,
        RSS_LIMIT_KIB / 1024
    );
    assert!(emu.uploads().is_empty(), "multipart uploads left open");
}

/// A whole sequential read or a few random reads of a shared object, verified.
fn reader_step(root: &std::path::Path, rng: &mut rand::rngs::StdRng) -> std::io::Result<u64> {
    let i = rng.random_range(0..SHARED);
    let want = pattern(SHARED_SIZE, 500 + i as u64);
    let path = root.join(format!("shared/{i}.bin"));
    if rng.random_bool(0.3) {
        let mut f = std::fs::File::open(&path)?;
        let mut got = Vec::with_capacity(SHARED_SIZE);
        f.read_to_end(&mut got)?;
        if got != want {
            return Err(std::io::Error::other(format!("{} differs", path.display())));
        }
        return Ok(got.len() as u64);
    }
    let f = std::fs::File::open(&path)?;
    let mut n = 0;
    for _ in 0..8 {
        let len = rng.random_range(1..256 << 10);
        let off = rng.random_range(0..SHARED_SIZE - len);
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off as u64)?;
        if buf[..] != want[off..off + len] {
            return Err(std::io::Error::other(format!(
                "{} differs at {off}+{len}",
                path.display()
            )));
        }
        n += len as u64;
    }
    if rng.random_bool(0.2) {
        std::fs::read_dir(root.join("shared"))?.count();
    }
    Ok(n)
}

/// Writes one file (0 B .. 3 MiB), reads it back, sometimes deletes it.
fn writer_step(
    root: &std::path::Path,
    t: usize,
    round: u64,
    rng: &mut rand::rngs::StdRng,
) -> std::io::Result<u64> {
    let size = match rng.random_range(0..4) {
        0 => rng.random_range(0..1024),
        1 => rng.random_range(1024..200_000),
        _ => rng.random_range(200_000..3 << 20),
    };
    let seed = (t as u64) << 32 | round;
    let data = pattern(size, seed);
    let path = root.join(format!("out/t{t}-{}.bin", round % 4));
    let mut f = std::fs::File::create(&path)?;
    for chunk in data.chunks(128 << 10) {
        f.write_all(chunk)?;
    }
    close_checked(f)?;
    let back = std::fs::read(&path)?;
    if back != data {
        return Err(std::io::Error::other(format!(
            "{} read back {} bytes, wrote {}",
            path.display(),
            back.len(),
            data.len()
        )));
    }
    if rng.random_bool(0.25) {
        std::fs::remove_file(&path)?;
    }
    Ok(2 * size as u64)
}
