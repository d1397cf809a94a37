//! Read/write paths end to end over HTTP: OssClient against the in-process emulator.

use std::sync::Arc;
use std::time::Duration;

use crate::common::pattern;
use ossmount::client::{ClientConfig, OssClient};
use ossmount::credentials::StaticProvider;
use ossmount::read::{BlockCache, ObjectReader, ReadConfig};
use ossmount::store::{ObjectStore, PutOptions};
use ossmount::write::{StreamingUpload, UploadConfig, upload_file};
use ossmount_emulator::{EmulatorConfig, FaultUpdate, RunningEmulator, start};

const MIB: u64 = 1024 * 1024;
const BUCKET: &str = "io-test";

async fn setup() -> (tempfile::TempDir, RunningEmulator, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(EmulatorConfig::new(dir.path().join("data"), BUCKET))
        .await
        .unwrap();
    let mut cfg = ClientConfig::new(
        emu.endpoint(),
        BUCKET,
        emu.region(),
        Arc::new(StaticProvider {
            creds: emu.credentials(),
            source: "test".into(),
        }),
    );
    cfg.retry_base_delay = Duration::from_millis(5);
    cfg.max_attempts = 6;
    let client: Arc<dyn ObjectStore> = Arc::new(OssClient::new(cfg).unwrap());
    (dir, emu, client)
}

fn read_cfg() -> Arc<ReadConfig> {
    Arc::new(ReadConfig {
        block_size: 256 * 1024,
        first_request_size: 256 * 1024,
        max_request_size: MIB,
        max_window: 4 * MIB,
        max_parallel_requests: 4,
        cache_size: 16 * MIB,
        disk_cache_dir: None,
        disk_cache_size: 0,
    })
}

async fn read_all(r: &mut ObjectReader) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = r.read(out.len() as u64, 128 * 1024).await.unwrap();
        if b.is_empty() {
            return out;
        }
        out.extend_from_slice(&b);
    }
}

#[tokio::test]
async fn streaming_upload_then_prefetching_read() {
    let (_dir, emu, client) = setup().await;
    let data = pattern(12 * MIB as usize + 4321, 1);
    let ucfg = Arc::new(UploadConfig {
        part_size: MIB,
        max_concurrency: 4,
        single_put_threshold: MIB,
    });
    let mut up = StreamingUpload::new(
        client.clone(),
        ucfg,
        "dir/big".into(),
        PutOptions::default(),
    );
    for chunk in data.chunks(128 * 1024) {
        up.write(chunk).await.unwrap();
    }
    let put = up.finish().await.unwrap();
    let stats = emu.stats();
    assert_eq!(stats.requests_for("UploadPart"), 13);
    assert_eq!(stats.requests_for("CompleteMultipartUpload"), 1);

    emu.reset_stats();
    let cache = BlockCache::new(&read_cfg());
    let mut r = ObjectReader::new(
        client.clone(),
        cache,
        read_cfg(),
        "dir/big".into(),
        put.etag.clone(),
        data.len() as u64,
        put.crc64,
    );
    assert_eq!(read_all(&mut r).await, data);
    let gets = emu.stats().requests_for("GetObject");
    // 256 KiB, 512 KiB, then ~1 MiB requests: far fewer than the 97 reads.
    assert!((10..=20).contains(&gets), "{gets} GETs");
}

#[tokio::test]
async fn staged_upload_and_reads_survive_flaky_connections() {
    let (dir, emu, client) = setup().await;
    let data = pattern(5 * MIB as usize + 99, 2);
    let path = dir.path().join("staging");
    std::fs::write(&path, &data).unwrap();
    let ucfg = UploadConfig {
        part_size: MIB,
        max_concurrency: 3,
        single_put_threshold: MIB,
    };
    let put = upload_file(
        client.clone(),
        &ucfg,
        "staged",
        &path,
        data.len() as u64,
        &PutOptions::default(),
    )
    .await
    .unwrap();
    // Cut GET bodies short or drop connections now and then: the client retries and the
    // reader still returns exactly the object.
    emu.set_faults(FaultUpdate {
        reset_rate: Some(0.1),
        truncate_rate: Some(0.1),
        ..FaultUpdate::default()
    });
    let cache = BlockCache::new(&read_cfg());
    let mut r = ObjectReader::new(
        client,
        cache,
        read_cfg(),
        "staged".into(),
        put.etag,
        data.len() as u64,
        put.crc64,
    );
    let mut out = Vec::new();
    let mut errors = 0;
    while out.len() < data.len() {
        match r.read(out.len() as u64, 128 * 1024).await {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => {
                errors += 1;
                assert!(errors < 20, "{e}");
            }
        }
    }
    assert_eq!(out, data);
}
