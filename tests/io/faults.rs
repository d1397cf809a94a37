//! Read/write paths under seeded store faults (crate MockStore + FaultStore): data is
//! either exactly right or an error, never garbage; failed uploads leave nothing behind.

use std::sync::Arc;

use crate::common::pattern;
use bytes::Bytes;
use ossmount::read::{BlockCache, ObjectReader, ReadConfig, ReadError};
use ossmount::store::fault::{FaultConfig, FaultStore};
use ossmount::store::mock::MockStore;
use ossmount::store::{ObjectStore, PutOptions};
use ossmount::write::{StreamingUpload, UploadConfig, upload_file};

const K: u64 = 1024;

fn read_cfg() -> Arc<ReadConfig> {
    Arc::new(ReadConfig {
        block_size: 64 * K,
        first_request_size: 64 * K,
        max_request_size: 256 * K,
        max_window: 1024 * K,
        max_parallel_requests: 4,
        cache_size: 4096 * K,
        disk_cache_dir: None,
        disk_cache_size: 0,
    })
}

fn faulty(seed: u64, short_range_data: bool, ops: &[&str]) -> Arc<FaultStore<MockStore>> {
    Arc::new(FaultStore::new(
        MockStore::default(),
        FaultConfig {
            seed,
            error_probability: 0.15,
            short_read_probability: 0.15,
            short_range_data,
            ops: ops.iter().map(|s| s.to_string()).collect(),
            ..FaultConfig::default()
        },
    ))
}

#[tokio::test]
async fn reads_are_exact_or_errors_under_faults() {
    for (seed, short_data) in [(1, false), (2, true), (3, true), (4, false)] {
        let store = faulty(seed, short_data, &["GetObject"]);
        let data = pattern(3 * 1024 * K as usize + 77, seed);
        store.inner().put("obj", Bytes::from(data.clone()));
        let meta = store.inner().object("obj").unwrap();
        let cache = BlockCache::new(&read_cfg());
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let mut r = ObjectReader::new(
            dyn_store,
            cache,
            read_cfg(),
            "obj".into(),
            meta.etag.clone(),
            data.len() as u64,
            Some(ossmount::crc64::crc64(&data)),
        );
        let mut pos = 0usize;
        let mut errors = 0;
        // An application that retries failed reads gets every byte right.
        while pos < data.len() {
            match r.read(pos as u64, 100_000).await {
                Ok(b) => {
                    assert!(!b.is_empty());
                    assert_eq!(&b[..], &data[pos..pos + b.len()], "seed {seed} at {pos}");
                    pos += b.len();
                }
                Err(ReadError::Store(_)) => {
                    errors += 1;
                    assert!(errors < 200, "too many errors");
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(store.injected() > 0, "seed {seed} injected nothing");
    }
}

#[tokio::test]
async fn streaming_uploads_are_all_or_nothing_under_faults() {
    let part = 128 * K;
    let cfg = Arc::new(UploadConfig {
        part_size: part,
        max_concurrency: 3,
        single_put_threshold: part,
    });
    let mut failures = 0;
    for seed in 0..12u64 {
        // Abort is kept reliable so the "nothing left behind" check is meaningful.
        let store = faulty(
            seed,
            false,
            &[
                "PutObject",
                "InitiateMultipartUpload",
                "UploadPart",
                "CompleteMultipartUpload",
            ],
        );
        let len = if seed % 3 == 0 {
            50_000
        } else {
            9 * part as usize + 1234
        };
        let data = pattern(len, seed);
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let mut up =
            StreamingUpload::new(dyn_store, cfg.clone(), "f".into(), PutOptions::default());
        let mut ok = true;
        for chunk in data.chunks(40_000) {
            if up.write(chunk).await.is_err() {
                ok = false;
                break;
            }
        }
        let result = up.finish().await;
        match (ok, result) {
            (true, Ok(_)) => assert_eq!(store.inner().get("f").unwrap(), data),
            (false, Ok(_)) => panic!("seed {seed}: finish succeeded after a failed write"),
            (_, Err(_)) => {
                failures += 1;
                assert!(
                    store.inner().get("f").is_none(),
                    "seed {seed}: partial object visible"
                );
            }
        }
        assert_eq!(
            store.inner().pending_uploads(),
            0,
            "seed {seed}: upload left behind"
        );
    }
    assert!(failures > 0, "faults never hit an upload");
}

#[tokio::test]
async fn staged_uploads_are_all_or_nothing_under_faults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staging");
    let part = 128 * K;
    let data = pattern(7 * part as usize + 5, 9);
    std::fs::write(&path, &data).unwrap();
    let cfg = UploadConfig {
        part_size: part,
        max_concurrency: 4,
        single_put_threshold: part,
    };
    let mut failures = 0;
    for seed in 0..10u64 {
        let store = faulty(seed, false, &["UploadPart", "CompleteMultipartUpload"]);
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let res = upload_file(
            dyn_store,
            &cfg,
            "s",
            &path,
            data.len() as u64,
            &PutOptions::default(),
        )
        .await;
        match res {
            Ok(_) => assert_eq!(store.inner().get("s").unwrap(), data),
            Err(_) => {
                failures += 1;
                assert!(store.inner().get("s").is_none());
            }
        }
        assert_eq!(store.inner().pending_uploads(), 0);
    }
    assert!(failures > 0);
}
