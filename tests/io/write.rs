//! Write path: StreamingUpload and upload_file against an in-memory store.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::mock::{MockStore, Req};
use crate::common::pattern;
use ossmount::store::{ObjectStore, PutOptions};
use ossmount::write::{StreamingUpload, UploadConfig, WriteError, upload_file};

const PART: u64 = 128 * 1024;

fn cfg(concurrency: usize) -> Arc<UploadConfig> {
    Arc::new(UploadConfig {
        part_size: PART,
        max_concurrency: concurrency,
        single_put_threshold: PART,
    })
}

/// Writes `data` in uneven chunks and finishes.
async fn stream(store: &Arc<MockStore>, cfg: Arc<UploadConfig>, key: &str, data: &[u8]) {
    let mut up = StreamingUpload::new(store.clone(), cfg, key.to_string(), PutOptions::default());
    let sizes = [1usize, 4095, 70_000, 131_072, 3, 200_000];
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - pos);
        up.write(&data[pos..pos + n]).await.unwrap();
        pos += n;
        i += 1;
        assert_eq!(up.bytes_written(), pos as u64);
    }
    let res = up.finish().await.unwrap();
    assert!(!res.etag.is_empty());
}

fn part_lens(store: &MockStore) -> Vec<u64> {
    let mut parts: Vec<(u32, u64)> = store
        .requests()
        .into_iter()
        .filter_map(|r| match r {
            Req::Part { number, len, .. } => Some((number, len)),
            _ => None,
        })
        .collect();
    parts.sort();
    parts.into_iter().map(|p| p.1).collect()
}

#[tokio::test]
async fn small_files_are_one_put_object() {
    for len in [0usize, 1, PART as usize - 1, PART as usize] {
        let store = Arc::new(MockStore::new());
        let data = pattern(len, 1);
        stream(&store, cfg(4), "k", &data).await;
        assert_eq!(store.object("k").unwrap(), data, "len {len}");
        assert_eq!(
            store.requests(),
            vec![Req::Put {
                key: "k".into(),
                len: len as u64
            }]
        );
    }
}

#[tokio::test]
async fn multipart_sizes_round_trip() {
    for len in [PART + 1, 3 * PART, 3 * PART + 17, 37 * PART + 5] {
        let store = Arc::new(MockStore::new());
        let data = pattern(len as usize, 2);
        stream(&store, cfg(3), "dir/f", &data).await;
        assert_eq!(store.object("dir/f").unwrap(), data, "len {len}");
        let lens = part_lens(&store);
        assert_eq!(lens.len() as u64, len.div_ceil(PART), "len {len}");
        assert!(lens[..lens.len() - 1].iter().all(|&l| l == PART));
        assert_eq!(lens.iter().sum::<u64>(), len);
        let completes: Vec<Req> = store
            .requests()
            .into_iter()
            .filter(|r| matches!(r, Req::Complete { .. }))
            .collect();
        assert_eq!(completes.len(), 1);
        assert_eq!(store.open_uploads(), 0);
    }
}

#[tokio::test]
async fn part_uploads_run_in_parallel_but_bounded() {
    let store = Arc::new(MockStore::new());
    store.set_delay(Duration::from_millis(20));
    let data = pattern(20 * PART as usize, 3);
    stream(&store, cfg(3), "k", &data).await;
    assert_eq!(store.object("k").unwrap(), data);
    let max = store.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 3, "max in flight {max}");
    assert!(max >= 2, "uploads were not parallel (max {max})");
}

/// Part buffers are charged to the read cache's budget: writing evicts cached blocks
/// instead of adding memory on top of `--cache-size`, and the budget never overflows.
#[tokio::test]
async fn part_buffers_share_the_cache_budget() {
    use ossmount::read::ReadConfig;
    use ossmount::read::cache::{BlockCache, BlockId};
    let budget = 4 * PART;
    let cache = BlockCache::new(&ReadConfig {
        cache_size: budget,
        block_size: PART,
        first_request_size: PART,
        max_request_size: PART,
        max_window: 2 * PART,
        ..ReadConfig::default()
    });
    for i in 0..4 {
        cache.insert(
            BlockId {
                key: "other".into(),
                etag: "etag".into(),
                index: i,
            },
            bytes::Bytes::from(vec![0u8; PART as usize]),
        );
    }
    assert_eq!(cache.budget().limit(), budget);
    assert_eq!(
        cache.budget().used(),
        budget,
        "cache full before the upload"
    );
    let store = Arc::new(MockStore::new());
    store.set_delay(Duration::from_millis(10));
    let data = pattern(12 * PART as usize, 5);
    let mut up = StreamingUpload::new(store.clone(), cfg(2), "k".into(), PutOptions::default())
        .with_memory(cache.clone());
    let mut peak = 0;
    for chunk in data.chunks(50_000) {
        up.write(chunk).await.unwrap();
        peak = peak.max(cache.budget().used());
        assert!(cache.budget().used() <= budget);
    }
    up.finish().await.unwrap();
    assert_eq!(store.object("k").unwrap(), data);
    assert!(
        cache.used_bytes() < budget,
        "cached blocks were not evicted for the upload"
    );
    assert_eq!(
        cache.budget().used(),
        cache.used_bytes(),
        "every part buffer returned its share"
    );
    assert!(
        peak >= 2 * PART,
        "part buffers were not charged (peak {peak})"
    );
}

#[tokio::test]
async fn failed_part_aborts_and_surfaces() {
    let store = Arc::new(MockStore::new());
    store.fail_parts.lock().unwrap().push(2);
    let data = pattern(6 * PART as usize, 4);
    let mut up = StreamingUpload::new(store.clone(), cfg(2), "k".into(), PutOptions::default());
    let mut write_err = None;
    for chunk in data.chunks(50_000) {
        if let Err(e) = up.write(chunk).await {
            write_err = Some(e);
            break;
        }
    }
    let finish = up.finish().await;
    assert!(finish.is_err(), "finish must fail after a failed part");
    if let Some(e) = write_err {
        assert!(matches!(e, WriteError::Store(_)), "{e}");
        assert!(matches!(finish, Err(WriteError::Failed { .. })));
    } else {
        assert!(matches!(finish, Err(WriteError::Store(_))));
    }
    assert!(store.object("k").is_none(), "no object may appear");
    assert!(
        store
            .requests()
            .iter()
            .any(|r| matches!(r, Req::Abort { .. }))
    );
    assert_eq!(store.open_uploads(), 0);
}

#[tokio::test]
async fn dropped_upload_is_aborted() {
    let store = Arc::new(MockStore::new());
    let mut up = StreamingUpload::new(store.clone(), cfg(2), "k".into(), PutOptions::default());
    up.write(&pattern(3 * PART as usize, 5)).await.unwrap();
    assert_eq!(store.open_uploads(), 1);
    drop(up);
    for _ in 0..100 {
        if store.open_uploads() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.open_uploads(), 0);
    assert!(store.object("k").is_none());
}

#[tokio::test]
async fn explicit_abort_leaves_nothing() {
    let store = Arc::new(MockStore::new());
    let mut up = StreamingUpload::new(store.clone(), cfg(2), "k".into(), PutOptions::default());
    up.write(&pattern(3 * PART as usize, 6)).await.unwrap();
    up.abort().await;
    assert_eq!(store.open_uploads(), 0);
    assert!(store.object("k").is_none());
}

async fn staged(store: &Arc<MockStore>, len: usize, concurrency: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staging");
    let data = pattern(len, 7);
    std::fs::write(&path, &data).unwrap();
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    upload_file(
        dyn_store,
        &cfg(concurrency),
        "staged",
        &path,
        len as u64,
        &PutOptions::default(),
    )
    .await
    .unwrap();
    data
}

#[tokio::test]
async fn upload_file_small_is_one_put() {
    for len in [0, 10, PART as usize] {
        let store = Arc::new(MockStore::new());
        let data = staged(&store, len, 2).await;
        assert_eq!(store.object("staged").unwrap(), data);
        assert_eq!(store.requests().len(), 1);
    }
}

#[tokio::test]
async fn upload_file_large_is_parallel_multipart() {
    let store = Arc::new(MockStore::new());
    store.set_delay(Duration::from_millis(10));
    let len = 10 * PART as usize + 333;
    let data = staged(&store, len, 4).await;
    assert_eq!(store.object("staged").unwrap(), data);
    assert_eq!(part_lens(&store).len(), 11);
    let max = store.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=4).contains(&max), "max in flight {max}");
}

#[tokio::test]
async fn upload_file_failure_aborts() {
    let store = Arc::new(MockStore::new());
    store.fail_parts.lock().unwrap().push(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staging");
    std::fs::write(&path, pattern(5 * PART as usize, 8)).unwrap();
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let err = upload_file(
        dyn_store,
        &cfg(2),
        "staged",
        &path,
        5 * PART,
        &PutOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, WriteError::Store(_)), "{err}");
    assert!(store.object("staged").is_none());
    assert_eq!(store.open_uploads(), 0);
}

#[tokio::test]
async fn upload_file_short_staging_file_is_an_error() {
    let store = Arc::new(MockStore::new());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staging");
    std::fs::write(&path, pattern(3 * PART as usize, 9)).unwrap();
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    // The fs claims more bytes than the file has: must fail, not upload garbage.
    let res = upload_file(
        dyn_store,
        &cfg(2),
        "staged",
        &path,
        4 * PART,
        &PutOptions::default(),
    )
    .await;
    assert!(res.is_err());
    assert!(store.object("staged").is_none());
    assert_eq!(store.open_uploads(), 0);
}

/// The retained prefix holds exactly what was written (sent parts and the open buffer)
/// until the limit is passed, reads any range of it, and hands it back on abort.
#[tokio::test]
async fn retained_prefix_reads_and_returns_what_was_written() {
    let store = Arc::new(MockStore::new());
    let limit = 3 * PART + 17;
    let data = pattern(4 * PART as usize, 8);
    let mut up = StreamingUpload::new(store.clone(), cfg(2), "k".into(), PutOptions::default())
        .retain_prefix(limit);
    let mut pos = 0;
    for n in [1usize, 70_000, 131_072, 3, 190_000] {
        up.write(&data[pos..pos + n]).await.unwrap();
        pos += n;
        assert!(up.has_prefix());
        for (off, len) in [
            (0u64, 10usize),
            (PART - 5, 10),
            (0, pos),
            (pos as u64 - 1, 9),
        ] {
            let got = up.read_prefix(off, len).expect("prefix readable");
            let start = (off as usize).min(pos);
            let end = (start + len).min(pos);
            assert_eq!(&got[..], &data[start..end], "{off}+{len} at {pos}");
        }
    }
    // Parts went out (their tasks run concurrently) while the prefix stayed readable.
    let sent = |s: &MockStore| s.requests().iter().any(|r| matches!(r, Req::Part { .. }));
    for _ in 0..200 {
        if sent(&store) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(sent(&store), "no part was sent: {:?}", store.requests());
    assert!(up.read_prefix(0, pos).expect("prefix") == data[..pos]);
    let prefix = up.into_prefix().await.expect("prefix");
    assert!(prefix == data[..pos]);
    assert_eq!(store.open_uploads(), 0, "into_prefix aborts the upload");

    // Past the limit nothing is kept.
    let mut up = StreamingUpload::new(store.clone(), cfg(2), "k2".into(), PutOptions::default())
        .retain_prefix(limit);
    up.write(&data[..limit as usize + 1]).await.unwrap();
    assert!(!up.has_prefix());
    assert!(up.read_prefix(0, 1).is_none());
    assert!(up.into_prefix().await.is_none());
    assert_eq!(store.open_uploads(), 0);
}
