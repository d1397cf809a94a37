//! Throughput of the protocol hot paths: CRC-64 (every uploaded and downloaded byte)
//! and V4 header signing (every request).
//!
//! Run with `scripts/bench-crc-sign.sh` (release build). Options:
//! `crc_sign_bench [MIB] [SIGNATURES]`, defaults 256 MiB and 200000 signatures.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use ossmount::crc64::{self, Crc64Hasher};
use ossmount::credentials::Credentials;
use ossmount::sign::{SignableRequest, SigningParams, sign_v4_header};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let signatures: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);

    println!("crc64 kernel: {}", crc64::implementation());
    let data: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
        .collect();

    // Warm up once, then take the best of three runs to limit noise on a shared box.
    black_box(crc64::crc64(&data));
    let mut best = Duration::MAX;
    let mut crc = 0;
    for _ in 0..3 {
        let start = Instant::now();
        crc = black_box(crc64::crc64(black_box(&data)));
        best = best.min(start.elapsed());
    }
    let gbps = data.len() as f64 / best.as_secs_f64() / 1e9;
    println!("crc64 one-shot: {mib} MiB in {best:?} = {gbps:.2} GB/s (crc {crc:#018x})");

    // Streaming in 1 MiB chunks, as the upload path feeds it.
    let start = Instant::now();
    let mut h = Crc64Hasher::new();
    for chunk in data.chunks(1024 * 1024) {
        h.update(chunk);
    }
    let elapsed = start.elapsed();
    assert_eq!(h.finish(), crc, "streaming and one-shot CRC differ");
    println!(
        "crc64 streaming 1 MiB chunks: {:.2} GB/s",
        data.len() as f64 / elapsed.as_secs_f64() / 1e9
    );

    // V4 header signing of a typical GetObject.
    let mut creds = Credentials::new("LTAI5tBenchmarkKey", "benchmark-secret");
    creds.security_token = Some(ossmount::credentials::Secret::new("CAIS".repeat(100)));
    let headers = vec![
        ("range".to_string(), "bytes=0-8388607".to_string()),
        ("x-oss-range-behavior".to_string(), "standard".to_string()),
    ];
    let query: Vec<(String, Option<String>)> = Vec::new();
    let req = SignableRequest {
        method: "GET",
        bucket: Some("bench-bucket"),
        key: Some("some/dir/a file name.bin"),
        query: &query,
        headers: &headers,
    };
    let p = SigningParams::oss("cn-hangzhou", SystemTime::now());
    let start = Instant::now();
    for _ in 0..signatures {
        black_box(sign_v4_header(black_box(&req), &creds, &p));
    }
    let elapsed = start.elapsed();
    println!(
        "v4 header signing: {signatures} in {elapsed:?} = {:.0} signatures/s",
        f64::from(signatures) / elapsed.as_secs_f64()
    );
}
