//! Read path: ObjectReader + BlockCache against an in-memory store.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::mock::MockStore;
use crate::common::pattern;
use ossmount::read::{BlockCache, ObjectReader, ReadConfig, ReadError};

const K: u64 = 1024;
const BLOCK: u64 = 64 * K;

fn config(cache_size: u64) -> Arc<ReadConfig> {
    Arc::new(ReadConfig {
        block_size: BLOCK,
        first_request_size: BLOCK,
        max_request_size: 4 * BLOCK,
        max_window: 16 * BLOCK,
        max_parallel_requests: 4,
        cache_size,
        disk_cache_dir: None,
        disk_cache_size: 0,
    })
}

struct Fixture {
    store: Arc<MockStore>,
    cache: Arc<BlockCache>,
    cfg: Arc<ReadConfig>,
}

impl Fixture {
    fn new(cache_size: u64) -> Self {
        let cfg = config(cache_size);
        Fixture {
            store: Arc::new(MockStore::new()),
            cache: BlockCache::new(&cfg),
            cfg,
        }
    }

    fn object(&self, key: &str, len: usize) -> (Vec<u8>, ObjectReader) {
        let data = pattern(len, key.len() as u64);
        let (etag, crc) = self.store.put(key, data.clone());
        (data, self.reader(key, etag, len as u64, Some(crc)))
    }

    fn reader(&self, key: &str, etag: String, size: u64, crc: Option<u64>) -> ObjectReader {
        ObjectReader::new(
            self.store.clone(),
            self.cache.clone(),
            self.cfg.clone(),
            key.to_string(),
            etag,
            size,
            crc,
        )
    }
}

async fn read_all(r: &mut ObjectReader, chunk: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = r.read(out.len() as u64, chunk).await.unwrap();
        if b.is_empty() {
            return out;
        }
        assert!(b.len() == chunk as usize || out.len() + b.len() == r.size() as usize);
        out.extend_from_slice(&b);
    }
}

#[tokio::test]
async fn sequential_read_is_correct_and_prefetch_grows() {
    let fx = Fixture::new(64 * BLOCK);
    let len = 100 * BLOCK as usize + 123;
    let (data, mut r) = fx.object("seq", len);
    let got = read_all(&mut r, 32 * 1024).await;
    assert_eq!(got, data);

    let gets = fx.store.gets();
    // Contiguous, non-overlapping, block-aligned: every byte fetched exactly once.
    assert_eq!(gets[0], 0..BLOCK, "first request is small");
    for w in gets.windows(2) {
        assert_eq!(
            w[0].end, w[1].start,
            "requests must be contiguous: {gets:?}"
        );
    }
    assert_eq!(gets.last().unwrap().end, len as u64);
    assert!(gets.iter().all(|g| g.end - g.start <= 4 * BLOCK));
    assert!(gets.iter().all(|g| g.start % BLOCK == 0));
    // The request size grows to the maximum and stays there.
    assert_eq!(gets[1].end - gets[1].start, 2 * BLOCK, "{gets:?}");
    let full = gets.iter().filter(|g| g.end - g.start == 4 * BLOCK).count();
    assert!(full >= 20, "{gets:?}");
    assert_eq!(r.window(), 16 * BLOCK);
    // Far fewer requests than reads (≈ 200 reads of 32 KiB).
    assert!(gets.len() < 35, "{} requests", gets.len());
}

#[tokio::test]
async fn prefetch_runs_ahead_in_parallel_but_bounded() {
    let fx = Fixture::new(64 * BLOCK);
    fx.store.set_delay(Duration::from_millis(15));
    let (data, mut r) = fx.object("par", 60 * BLOCK as usize);
    let got = read_all(&mut r, 128 * 1024).await;
    assert_eq!(got, data);
    let max = fx.store.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=4).contains(&max), "max parallel GETs {max}");
}

/// On a link measured far (20 ms round trip, 10 MB/s connections), a sequential reader's
/// window jumps 16x per step to the bandwidth-delay product and the early window is
/// spread over one-block GETs in parallel instead of a few large ones.
#[tokio::test]
async fn far_link_ramps_fast_with_parallel_small_gets() {
    let fx = Fixture::new(256 * BLOCK);
    fx.cache.link().observe(
        Duration::from_millis(20),
        8 << 20,
        Duration::from_millis(800),
    );
    fx.store.set_delay(Duration::from_millis(3));
    let (data, mut r) = fx.object("far", 200 * BLOCK as usize);
    let first = r.read(0, 128 * 1024).await.unwrap();
    assert_eq!(first, data[..128 * 1024]);
    let second = r.read(128 * 1024, 128 * 1024).await.unwrap();
    assert_eq!(second, data[128 * 1024..256 * 1024]);
    assert_eq!(r.window(), 16 * BLOCK, "one step: 16x the first request");
    let gets = fx.store.gets();
    assert!(
        gets[1..].iter().all(|g| g.end - g.start == BLOCK),
        "the first window is spread over one-block GETs: {gets:?}"
    );
    let rest = read_all_from(&mut r, 256 * 1024, 128 * 1024).await;
    assert_eq!(rest, data[256 * 1024..]);
    // The bandwidth-delay product: 32 requests of 4 blocks.
    assert_eq!(r.window(), 128 * BLOCK);
    let max = fx.store.max_in_flight.load(Ordering::SeqCst);
    assert!(
        max > 4,
        "more GETs in flight than the configured floor: {max}"
    );
}

async fn read_all_from(r: &mut ObjectReader, from: u64, chunk: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = r.read(from + out.len() as u64, chunk).await.unwrap();
        if b.is_empty() {
            return out;
        }
        out.extend_from_slice(&b);
    }
}

#[tokio::test]
async fn random_reads_fetch_small_ranges() {
    let fx = Fixture::new(64 * BLOCK);
    let len = 200 * BLOCK as usize;
    let (data, mut r) = fx.object("rand", len);
    let offsets = [
        150 * BLOCK + 7,
        3 * BLOCK,
        90 * BLOCK + 1000,
        199 * BLOCK + 60_000,
        40 * BLOCK,
    ];
    for &off in &offsets {
        let b = r.read(off, 4096).await.unwrap();
        let end = (off as usize + 4096).min(len);
        assert_eq!(&b[..], &data[off as usize..end]);
    }
    let gets = fx.store.gets();
    assert_eq!(gets.len(), offsets.len(), "{gets:?}");
    assert!(gets.iter().all(|g| g.end - g.start == BLOCK), "{gets:?}");
    assert_eq!(r.window(), BLOCK);
}

#[tokio::test]
async fn a_block_served_stays_cached_when_the_reader_seeks_away() {
    let fx = Fixture::new(64 * BLOCK);
    let (data, mut r) = fx.object("served", 20 * BLOCK as usize);
    // Every GET delivers its first block, then stalls: the read-ahead that serves block 1
    // is still running when the reader seeks away and so aborts it.
    *fx.store.stall_streams_after.lock().unwrap() = Some(BLOCK as usize);
    let b = r.read(0, BLOCK as u32).await.unwrap();
    assert_eq!(&b[..], &data[..BLOCK as usize]);
    let b = r.read(BLOCK, 4096).await.unwrap();
    assert_eq!(&b[..], &data[BLOCK as usize..BLOCK as usize + 4096]);
    let b = r.read(15 * BLOCK, 4096).await.unwrap();
    assert_eq!(
        &b[..],
        &data[15 * BLOCK as usize..15 * BLOCK as usize + 4096]
    );
    let before = fx.store.gets();
    // Back to what was served before the seek (a random read again): no request.
    let off = BLOCK + 8192;
    let b = tokio::time::timeout(Duration::from_secs(5), r.read(off, 4096))
        .await
        .expect("served from the cache, not from the aborted GET")
        .unwrap();
    assert_eq!(&b[..], &data[off as usize..off as usize + 4096]);
    assert_eq!(fx.store.gets(), before, "block 1 was fetched again");
}

#[tokio::test]
async fn read_spanning_two_blocks_after_seek() {
    let fx = Fixture::new(64 * BLOCK);
    let (data, mut r) = fx.object("span", 10 * BLOCK as usize);
    let off = 5 * BLOCK - 100;
    let b = r.read(off, 1000).await.unwrap();
    assert_eq!(&b[..], &data[off as usize..off as usize + 1000]);
}

#[tokio::test]
async fn backward_and_repeated_reads_use_the_cache() {
    let fx = Fixture::new(64 * BLOCK);
    let (data, mut r) = fx.object("back", 20 * BLOCK as usize);
    let _ = read_all(&mut r, 16 * 1024).await;
    let before = fx.store.gets().len();
    // Short backward seek, then a long one: all cached, no new requests.
    for off in [19 * BLOCK, 18 * BLOCK + 5, 2 * BLOCK, 0] {
        let b = r.read(off, 20_000).await.unwrap();
        assert_eq!(&b[..], &data[off as usize..off as usize + 20_000]);
    }
    // A second handle on the same version reads everything from the cache.
    let mut r2 = fx.reader("back", r.etag().to_string(), r.size(), None);
    assert_eq!(read_all(&mut r2, 100_000).await, data);
    assert_eq!(
        fx.store.gets().len(),
        before,
        "cached data was fetched again"
    );
}

#[tokio::test]
async fn small_backward_seek_stays_sequential() {
    let fx = Fixture::new(64 * BLOCK);
    let (data, mut r) = fx.object("bk", 64 * BLOCK as usize);
    let mut pos = 0u64;
    // Read forward, stepping back 1 KiB every time (like a parser re-reading a header).
    while pos < 40 * BLOCK {
        let b = r.read(pos, 32 * 1024).await.unwrap();
        assert_eq!(&b[..], &data[pos as usize..pos as usize + b.len()]);
        pos += 31 * 1024;
    }
    assert_eq!(r.window(), 16 * BLOCK, "window must keep growing");
    let gets = fx.store.gets();
    for w in gets.windows(2) {
        assert_eq!(w[0].end, w[1].start, "no re-fetching: {gets:?}");
    }
}

#[tokio::test]
async fn etag_change_is_stale_never_mixed() {
    let fx = Fixture::new(64 * BLOCK);
    let (_, mut r) = fx.object("st", 10 * BLOCK as usize);
    r.read(0, 1000).await.unwrap();
    fx.store.put("st", pattern(10 * BLOCK as usize, 99));
    let err = r.read(5 * BLOCK, 1000).await.unwrap_err();
    assert!(matches!(err, ReadError::Stale { .. }), "{err}");
}

#[tokio::test]
async fn etag_checked_even_if_server_ignores_if_match() {
    let fx = Fixture::new(64 * BLOCK);
    fx.store.ignore_if_match.store(true, Ordering::SeqCst);
    let (_, mut r) = fx.object("st2", 10 * BLOCK as usize);
    fx.store.put("st2", pattern(10 * BLOCK as usize, 98));
    let err = r.read(0, 1000).await.unwrap_err();
    assert!(matches!(err, ReadError::Stale { .. }), "{err}");
}

#[tokio::test]
async fn crc_mismatch_is_reported_at_the_end() {
    let fx = Fixture::new(64 * BLOCK);
    let data = pattern(5 * BLOCK as usize + 3, 1);
    let (etag, crc) = fx.store.put("crc", data.clone());
    let mut good = fx.reader("crc", etag.clone(), data.len() as u64, Some(crc));
    assert_eq!(read_all(&mut good, 50_000).await, data);

    let mut bad = fx.reader("crc", etag, data.len() as u64, Some(crc ^ 1));
    let mut pos = 0u64;
    let err = loop {
        match bad.read(pos, 50_000).await {
            Ok(b) if b.is_empty() => panic!("mismatch not detected"),
            Ok(b) => pos += b.len() as u64,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, ReadError::CrcMismatch { .. }), "{err}");
    assert!(
        pos + 50_000 >= data.len() as u64,
        "reported only at the end"
    );
    // The suspicious blocks were dropped from the cache.
    assert_eq!(fx.cache.used_bytes(), 0);
}

#[tokio::test]
async fn eof_and_empty_objects() {
    let fx = Fixture::new(64 * BLOCK);
    let (data, mut r) = fx.object("eof", 1000);
    assert_eq!(&r.read(900, 4096).await.unwrap()[..], &data[900..]);
    assert!(r.read(1000, 10).await.unwrap().is_empty());
    assert!(r.read(5000, 10).await.unwrap().is_empty());
    let (_, mut empty) = fx.object("empty", 0);
    fx.store.clear_log();
    assert!(empty.read(0, 10).await.unwrap().is_empty());
    assert!(fx.store.requests().is_empty());
}

#[tokio::test]
async fn memory_budget_is_respected() {
    // Normalised budget: max(cache_size, 2 × max_request) = 8 blocks.
    let fx = Fixture::new(8 * BLOCK);
    let limit = fx.cache.budget().limit();
    assert_eq!(limit, 8 * BLOCK);
    fx.store.set_delay(Duration::from_millis(2));
    let (data, mut r1) = fx.object("m1", 50 * BLOCK as usize);
    let (data2, mut r2) = fx.object("m2x", 50 * BLOCK as usize);
    let mut pos = 0usize;
    while pos < data.len() {
        let a = r1.read(pos as u64, 64 * 1024).await.unwrap();
        let b = r2.read(pos as u64, 64 * 1024).await.unwrap();
        assert_eq!(&a[..], &data[pos..pos + a.len()]);
        assert_eq!(&b[..], &data2[pos..pos + b.len()]);
        assert!(fx.cache.budget().used() <= limit);
        assert!(fx.cache.used_bytes() <= limit);
        pos += a.len();
    }
}

#[tokio::test]
async fn concurrent_readers_share_the_cache() {
    let fx = Arc::new(Fixture::new(128 * BLOCK));
    let data = pattern(40 * BLOCK as usize, 5);
    let (etag, crc) = fx.store.put("shared", data.clone());
    // One reader warms the cache, then four read concurrently without any request.
    let mut first = fx.reader("shared", etag.clone(), data.len() as u64, Some(crc));
    assert_eq!(read_all(&mut first, 48 * 1024).await, data);
    let before = fx.store.gets().len();
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let mut r = fx.reader("shared", etag.clone(), data.len() as u64, Some(crc));
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            // Different patterns: sequential, and random-ish.
            if i % 2 == 0 {
                assert_eq!(read_all(&mut r, 48 * 1024).await, data);
            } else {
                for off in [30 * BLOCK, 7 * BLOCK + 11, 39 * BLOCK, 0] {
                    let b = r.read(off, 5000).await.unwrap();
                    assert_eq!(&b[..], &data[off as usize..off as usize + b.len()]);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(fx.store.gets().len(), before);
}

#[tokio::test]
async fn dropping_a_reader_cancels_prefetch() {
    let fx = Fixture::new(64 * BLOCK);
    fx.store.set_delay(Duration::from_millis(50));
    let (_, mut r) = fx.object("cancel", 100 * BLOCK as usize);
    for i in 0..6 {
        r.read(i * 32 * 1024, 32 * 1024).await.unwrap();
    }
    drop(r);
    tokio::time::sleep(Duration::from_millis(120)).await;
    // Budget held by the dropped reader's buffers is back.
    assert_eq!(fx.cache.budget().used(), fx.cache.used_bytes());
}

#[tokio::test]
async fn invalidate_key_forces_refetch() {
    let fx = Fixture::new(64 * BLOCK);
    let (data, mut r) = fx.object("inv", 3 * BLOCK as usize);
    assert_eq!(read_all(&mut r, 65536).await, data);
    assert!(fx.cache.used_bytes() > 0);
    fx.cache.invalidate_key("inv");
    assert_eq!(fx.cache.used_bytes(), 0);
    let n = fx.store.gets().len();
    let mut r2 = fx.reader("inv", r.etag().to_string(), r.size(), None);
    assert_eq!(read_all(&mut r2, 65536).await, data);
    assert!(fx.store.gets().len() > n);
}

#[tokio::test]
async fn disk_tier_serves_evicted_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(ReadConfig {
        disk_cache_dir: Some(dir.path().to_path_buf()),
        disk_cache_size: 1 << 30,
        ..(*config(8 * BLOCK)).clone()
    });
    let store = Arc::new(MockStore::new());
    let cache = BlockCache::new(&cfg);
    let data = pattern(40 * BLOCK as usize, 3);
    let (etag, _) = store.put("d", data.clone());
    let open = || {
        ObjectReader::new(
            store.clone(),
            cache.clone(),
            cfg.clone(),
            "d".into(),
            etag.clone(),
            data.len() as u64,
            None,
        )
    };
    assert_eq!(read_all(&mut open(), 65536).await, data);
    // Disk writes happen in the background.
    for _ in 0..200 {
        if cache.disk_used_bytes() >= 30 * BLOCK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(cache.disk_used_bytes() >= 30 * BLOCK);
    let before = store.gets().len();
    let mut r = open();
    let b = r.read(BLOCK, 1000).await.unwrap();
    assert_eq!(&b[..], &data[BLOCK as usize..BLOCK as usize + 1000]);
    assert_eq!(store.gets().len(), before, "block should come from disk");
}

#[tokio::test]
async fn large_reads_fetch_in_parallel() {
    let fx = Fixture::new(64 * BLOCK);
    fx.store.set_delay(Duration::from_millis(20));
    let (data, mut r) = fx.object("big", 40 * BLOCK as usize);
    let off = 3 * BLOCK + 5;
    let b = r.read(off, 16 * BLOCK as u32).await.unwrap();
    assert_eq!(&b[..], &data[off as usize..(off + 16 * BLOCK) as usize]);
    let gets = fx.store.gets();
    assert!(
        gets.iter().all(|g| g.end - g.start <= 4 * BLOCK),
        "{gets:?}"
    );
    assert!(fx.store.max_in_flight.load(Ordering::SeqCst) >= 3);
}

#[tokio::test]
async fn crc_is_verified_for_slightly_reordered_reads() {
    let fx = Fixture::new(64 * BLOCK);
    let data = pattern(8 * BLOCK as usize, 2);
    let (etag, crc) = fx.store.put("ooo", data.clone());
    let chunk = 32 * 1024u64;
    let n = data.len() as u64 / chunk;
    // Pairs of reads swapped, like parallel FUSE requests answered out of order.
    let order: Vec<u64> = (0..n).map(|i| i ^ 1).collect();
    let mut good = fx.reader("ooo", etag.clone(), data.len() as u64, Some(crc));
    for &i in &order {
        let b = good.read(i * chunk, chunk as u32).await.unwrap();
        assert_eq!(
            &b[..],
            &data[(i * chunk) as usize..((i + 1) * chunk) as usize]
        );
    }
    let mut bad = fx.reader("ooo", etag, data.len() as u64, Some(crc ^ 0xff));
    let mut failed = false;
    for &i in &order {
        if let Err(e) = bad.read(i * chunk, chunk as u32).await {
            assert!(matches!(e, ReadError::CrcMismatch { .. }), "{e}");
            failed = true;
        }
    }
    assert!(failed, "reordered reads must still be verified");
}

#[tokio::test]
async fn idle_handles_holding_memory_do_not_block_other_reads() {
    // Budget 8 blocks; an idle handle holds most of it in read-ahead buffers.
    let fx = Fixture::new(8 * BLOCK);
    let (_, mut idle) = fx.object("idle", 40 * BLOCK as usize);
    for i in 0..8 {
        idle.read(i * 32 * 1024, 32 * 1024).await.unwrap();
    }
    let hog = fx
        .cache
        .try_reserve(fx.cache.budget().limit() - fx.cache.budget().used());
    assert!(hog.is_some());
    let (data, mut r) = fx.object("busy", 4 * BLOCK as usize);
    let b = tokio::time::timeout(Duration::from_secs(5), r.read(0, 1000))
        .await
        .expect("read must not hang on an exhausted budget")
        .unwrap();
    assert_eq!(&b[..], &data[..1000]);
}

#[test]
fn reader_and_upload_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let fx = Fixture::new(8 * BLOCK);
    let (_, mut r) = fx.object("s", 10);
    assert_send(&r.read(0, 1));
    let mut up = ossmount::write::StreamingUpload::new(
        fx.store.clone(),
        Arc::new(Default::default()),
        "k".into(),
        Default::default(),
    );
    assert_send(&up.write(b"x"));
    assert_send(&up.finish());
}

#[tokio::test]
async fn simultaneous_readers_share_requests_in_flight() {
    let fx = Arc::new(Fixture::new(128 * BLOCK));
    fx.store.set_delay(Duration::from_millis(5));
    let data = pattern(60 * BLOCK as usize, 6);
    let (etag, crc) = fx.store.put("together", data.clone());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut r = fx.reader("together", etag.clone(), data.len() as u64, Some(crc));
        tasks.push(tokio::spawn(
            async move { read_all(&mut r, 32 * 1024).await },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), data);
    }
    let fetched: u64 = fx.store.gets().iter().map(|g| g.end - g.start).sum();
    assert!(
        fetched <= data.len() as u64 * 5 / 4,
        "4 readers fetched {fetched} bytes of a {} byte object",
        data.len()
    );
    assert!(fx.cache.inflight().is_empty());
}

#[tokio::test]
async fn broken_get_streams_are_completed_with_ranged_gets() {
    let fx = Fixture::new(64 * BLOCK);
    *fx.store.break_streams_after.lock().unwrap() = Some(100_000);
    let (data, mut r) = fx.object("broken", 30 * BLOCK as usize + 5);
    assert_eq!(read_all(&mut r, 40_000).await, data);
    let gets = fx.store.gets();
    // Every multi-piece request was resumed where its stream broke.
    let resumed = gets.iter().filter(|g| g.start % BLOCK != 0).count();
    assert!(resumed > 0, "{gets:?}");
    for g in gets.iter().filter(|g| g.start % BLOCK != 0) {
        assert_eq!(g.start % BLOCK, 100_000 % BLOCK, "{gets:?}");
    }
}

/// Small random reads fetch and cache 64 KiB pieces, not whole 1 MiB blocks: a second
/// pass over more places than the cache holds blocks for makes no request.
#[tokio::test]
async fn small_random_reads_cache_pieces_not_blocks() {
    const MIB: u64 = 1 << 20;
    let cfg = Arc::new(ReadConfig {
        block_size: MIB,
        first_request_size: MIB,
        max_request_size: 8 * MIB,
        max_window: 64 * MIB,
        max_parallel_requests: 4,
        cache_size: 16 * MIB,
        disk_cache_dir: None,
        disk_cache_size: 0,
    });
    let store = Arc::new(MockStore::new());
    let cache = BlockCache::new(&cfg);
    let data = pattern(64 * MIB as usize, 9);
    let (etag, _) = store.put("r", data.clone());
    let mut r = ObjectReader::new(
        store.clone(),
        cache.clone(),
        cfg.clone(),
        "r".into(),
        etag,
        data.len() as u64,
        None,
    );
    // 60 places in 60 different 1 MiB blocks: 60 MiB of blocks, 3.75 MiB of pieces.
    // Visited 37 blocks apart (mod 60), none at 0 (a first read at 0 starts a sequential
    // reader): every read is a far jump.
    let offsets: Vec<u64> = (1..61u64)
        .map(|i| (i * 37 % 60) * MIB + (i * 7919 % 200) * 4096)
        .collect();
    for pass in 0..2 {
        let before = store.gets().len();
        for &off in &offsets {
            let b = r.read(off, 4096).await.unwrap();
            assert_eq!(
                &b[..],
                &data[off as usize..off as usize + 4096],
                "pass {pass}"
            );
        }
        let gets = &store.gets()[before..];
        if pass == 0 {
            assert_eq!(gets.len(), offsets.len());
            assert!(gets.iter().all(|g| g.end - g.start <= 64 * K), "{gets:?}");
        } else {
            assert!(gets.is_empty(), "warm pass made {} requests", gets.len());
        }
    }
    assert!(cache.budget().used() <= 16 * MIB);
}
