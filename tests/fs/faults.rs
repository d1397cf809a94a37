//! Reliability of the filesystem core under seeded store faults (FaultStore over
//! MockStore): every write either succeeds with exactly the data written, or reports an
//! error at flush/close — an object never holds partial or mixed content.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use ossmount::fs::{Ctx, Filesystem, FsConfig, ROOT_INO};
use ossmount::store::fault::{FaultConfig, FaultStore};
use ossmount::store::mock::MockStore;
use ossmount::write::UploadConfig;

fn data_for(round: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32 ^ round.wrapping_mul(31)) as u8)
        .collect()
}

async fn write_whole(fs: &Filesystem, name: &str, data: &[u8]) -> Result<(), i32> {
    let ctx = Ctx::default();
    let fh = match fs.lookup(ROOT_INO, OsStr::new(name)).await {
        Ok(a) => fs
            .open(a.ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .map_err(|e| e.errno())?,
        Err(_) => {
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
            fs.create(&ctx, ROOT_INO, OsStr::new(name), 0o644, 0, flags)
                .await
                .map_err(|e| e.errno())?
                .1
        }
    };
    let mut result = Ok(());
    for (i, chunk) in data.chunks(64 * 1024).enumerate() {
        if let Err(e) = fs.write(fh, (i * 64 * 1024) as u64, chunk).await {
            result = Err(e.errno());
            break;
        }
    }
    if result.is_ok() {
        result = fs.flush(fh).await.map_err(|e| e.errno());
    }
    let _ = fs.release(fh).await;
    result
}

#[tokio::test]
async fn faulty_store_never_yields_partial_objects() {
    for seed in [7, 11, 23, 99, 1234] {
        run_seed(seed).await;
    }
}

async fn run_seed(seed: u64) {
    let mock = Arc::new(MockStore::new("faults"));
    let fault = Arc::new(FaultStore::new(
        mock.clone(),
        FaultConfig {
            seed,
            error_probability: 0.15,
            ambiguous_probability: 0.1,
            ..Default::default()
        },
    ));
    let staging = tempfile::tempdir().expect("tmp");
    let cfg = FsConfig {
        metadata_ttl: Duration::ZERO,
        cache_dir: staging.path().to_path_buf(),
        upload: UploadConfig {
            part_size: 256 * 1024,
            max_concurrency: 3,
            single_put_threshold: 256 * 1024,
        },
        ..FsConfig::default()
    };
    let fs = Filesystem::new(fault.clone(), cfg, tokio::runtime::Handle::current());
    let mut ok = 0;
    let mut failed = 0;
    let mut history: Vec<Vec<u8>> = Vec::new();
    for round in 0..40u32 {
        let len = [0usize, 10, 100_000, 700_000][round as usize % 4];
        let data = data_for(round, len);
        history.push(data.clone());
        match write_whole(&fs, "f", &data).await {
            Ok(()) => {
                ok += 1;
                // (assert! rather than assert_eq!: a failure must not print megabytes.)
                assert!(
                    mock.get("f").as_deref() == Some(&data[..]),
                    "seed {seed} round {round}: success must mean exactly this content"
                );
            }
            Err(errno) => {
                failed += 1;
                assert!(errno == libc::EIO || errno == libc::ENOENT, "errno {errno}");
                // Whatever is stored is one complete version written at some point.
                if let Some(stored) = mock.get("f") {
                    assert!(
                        history.iter().any(|h| h[..] == stored[..]),
                        "seed {seed} round {round}: stored content is not a complete version"
                    );
                }
            }
        }
    }
    assert!(fault.injected() > 0);
    assert!(
        ok > 5 && failed > 0,
        "seed {seed}: ok {ok}, failed {failed}"
    );
    // No multipart upload is left behind by failed streams (aborts may themselves fail
    // under faults, so allow a few).
    assert!(
        mock.pending_uploads() <= 3,
        "{} uploads left",
        mock.pending_uploads()
    );
}
