//! Object operations against the in-process emulator: PUT/GET/HEAD, ranges (default and
//! standard behaviour), conditionals, copy, append, symlinks, odd keys, addressing
//! styles and persistence across a restart.

mod emulator_support;

use emulator_support::*;

fn crc(data: &[u8]) -> String {
    ossmount::crc64::crc64(data).to_string()
}

#[tokio::test]
async fn put_get_head_with_metadata_and_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    let data = b"hello, emulator".to_vec();
    let r = c
        .send(
            Req::new("PUT", "docs/hello.txt")
                .h("Content-Type", "text/plain")
                .h("x-oss-meta-Color", "blue")
                .h("x-oss-meta-owner", "Zoë")
                .h("Content-MD5", &md5_b64(&data))
                .body(data.clone()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let etag = r.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    assert_eq!(r.header("x-oss-hash-crc64ecma"), Some(crc(&data).as_str()));
    assert_eq!(r.header("x-oss-request-id").unwrap().len(), 24);
    assert_eq!(r.header("server"), Some("AliyunOSS"));
    assert!(r.header("date").is_some());

    let g = c.get("docs/hello.txt").await;
    assert_eq!(g.status, 200);
    assert_eq!(&g.body[..], &data[..]);
    assert_eq!(g.header("content-type"), Some("text/plain"));
    assert_eq!(g.header("x-oss-meta-color"), Some("blue"));
    assert_eq!(
        g.headers.get("x-oss-meta-owner").map(|v| v.as_bytes()),
        Some("Zoë".as_bytes())
    );
    assert_eq!(g.header("x-oss-object-type"), Some("Normal"));
    assert_eq!(g.header("etag"), Some(etag.as_str()));
    assert!(g.header("last-modified").unwrap().ends_with("GMT"));

    let h = c.send(Req::new("HEAD", "docs/hello.txt")).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("15"));
    assert_eq!(h.header("x-oss-hash-crc64ecma"), Some(crc(&data).as_str()));

    // A wrong Content-MD5 is refused and nothing is stored.
    let bad = c
        .send(
            Req::new("PUT", "docs/bad.txt")
                .h("Content-MD5", &md5_b64(b"other"))
                .body("x"),
        )
        .await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "InvalidDigest"));
    let missing = c.send(Req::new("HEAD", "docs/bad.txt")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "NoSuchKey");
    assert!(missing.body.is_empty());
    assert!(missing.header("x-oss-ec").is_some());

    // forbid-overwrite
    let r = c
        .send(
            Req::new("PUT", "docs/hello.txt")
                .h("x-oss-forbid-overwrite", "true")
                .body("new"),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (409, "FileAlreadyExists"));

    // Delete is 204 whether or not the key exists.
    assert_eq!(
        c.send(Req::new("DELETE", "docs/hello.txt")).await.status,
        204
    );
    assert_eq!(
        c.send(Req::new("DELETE", "docs/hello.txt")).await.status,
        204
    );
    let g = c.get("docs/hello.txt").await;
    assert_eq!((g.status, g.code().as_str()), (404, "NoSuchKey"));
    assert!(g.text().contains("<RequestId>") && g.text().contains("<EC>"));
    emu.shutdown().await;
}

#[tokio::test]
async fn ranges_default_and_standard_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    c.put("r", data.clone()).await;
    let get = |range: &str, standard: bool| {
        let mut r = Req::new("GET", "r").h("Range", range);
        if standard {
            r = r.h("x-oss-range-behavior", "standard");
        }
        c.send(r)
    };
    let r = get("bytes=10-19", false).await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &data[10..20]);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000"));
    let r = get("bytes=-10", false).await;
    assert_eq!(&r.body[..], &data[990..]);
    // Default: out-of-range is ignored → whole object.
    let r = get("bytes=900-2000", false).await;
    assert_eq!((r.status, r.body.len()), (200, 1000));
    assert!(r.header("content-range").is_none());
    let r = get("bytes=1000-1001", false).await;
    assert_eq!((r.status, r.body.len()), (200, 1000));
    // Standard: end clamps, start past EOF is 416.
    let r = get("bytes=900-2000", true).await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &data[900..]);
    assert_eq!(r.header("content-range"), Some("bytes 900-999/1000"));
    let r = get("bytes=1000-1001", true).await;
    assert_eq!((r.status, r.code().as_str()), (416, "InvalidRange"));
    emu.shutdown().await;
}

#[tokio::test]
async fn conditional_requests() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    let etag = c.put("k", "v1").await.header("etag").unwrap().to_string();
    let r = c.send(Req::new("GET", "k").h("If-Match", &etag)).await;
    assert_eq!(r.status, 200);
    let r = c.send(Req::new("GET", "k").h("If-Match", "\"0000\"")).await;
    assert_eq!((r.status, r.code().as_str()), (412, "PreconditionFailed"));
    let r = c.send(Req::new("GET", "k").h("If-None-Match", &etag)).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = c
        .send(Req::new("HEAD", "k").h("If-None-Match", "\"other\""))
        .await;
    assert_eq!(r.status, 200);
    let future = httpdate::fmt_http_date(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    );
    let r = c
        .send(Req::new("GET", "k").h("If-Modified-Since", &future))
        .await;
    assert_eq!(r.status, 304);
    let past = "Mon, 01 Jan 2001 00:00:00 GMT";
    let r = c
        .send(Req::new("GET", "k").h("If-Unmodified-Since", past))
        .await;
    assert_eq!(r.status, 412);
    emu.shutdown().await;
}

#[tokio::test]
async fn odd_keys_round_trip_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        "a//b",
        "x/../y",
        "./.",
        "%2E%2E",
        "sp ace+plus&amp=eq?q#h",
        "日本語/ファイル😀",
        "trailing/",
    ];
    let long = "k".repeat(1023);
    {
        let emu = start(dir.path()).await;
        let c = Client::new(&emu);
        for k in keys.iter().copied().chain([long.as_str()]) {
            let (status, body) = send_raw_tcp(&emu, &Req::new("PUT", k).body(k.as_bytes())).await;
            assert_eq!(status, 200, "{k}: {}", String::from_utf8_lossy(&body));
        }
        let too_long = c.send(Req::new("PUT", &"k".repeat(1024)).body("x")).await;
        assert_eq!(
            (too_long.status, too_long.code().as_str()),
            (400, "InvalidObjectName")
        );
        emu.shutdown().await;
    }
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    for k in keys.iter().copied().chain([long.as_str()]) {
        let (status, body) = send_raw_tcp(&emu, &Req::new("GET", k)).await;
        assert_eq!(status, 200, "{k}: {}", String::from_utf8_lossy(&body));
        assert_eq!(&body[..], k.as_bytes(), "{k}");
    }
    let list = c
        .send(
            Req::new("GET", "")
                .q("list-type", Some("2"))
                .q("encoding-type", Some("url")),
        )
        .await;
    let listed: Vec<String> = all_between(&list.text(), "<Key>", "</Key>")
        .into_iter()
        .map(|k| {
            percent_encoding::percent_decode_str(&k)
                .decode_utf8()
                .unwrap()
                .into_owned()
        })
        .collect();
    let mut expected: Vec<String> = keys
        .iter()
        .map(|s| s.to_string())
        .chain([long.clone()])
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    emu.shutdown().await;
}

#[tokio::test]
async fn virtual_hosted_addressing() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    c.put("vh/key", "virtual").await;
    // Same signed request, bucket in the Host header instead of the path.
    let req = Req::new("GET", "vh/key");
    let creds = emu.credentials();
    let sreq = ossmount::sign::SignableRequest {
        method: "GET",
        bucket: Some(BUCKET),
        key: Some("vh/key"),
        query: &[],
        headers: &[],
    };
    let mut headers = ossmount::sign::sign_v4_header(
        &sreq,
        &creds,
        &ossmount::sign::SigningParams::oss("cn-hangzhou", std::time::SystemTime::now()),
    );
    headers.push((
        "Host".into(),
        format!("{BUCKET}.oss-cn-hangzhou.aliyuncs.com"),
    ));
    let url = format!("{}/vh/key", emu.endpoint());
    let r = c.raw("GET", &url, &headers, Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(&r.body[..], b"virtual");
    let _ = req;
    // Unknown bucket.
    let r = c
        .send(Req {
            bucket: Some("no-such-bucket".into()),
            ..Req::new("GET", "k")
        })
        .await;
    assert_eq!((r.status, r.code().as_str()), (404, "NoSuchBucket"));
    emu.shutdown().await;
}

#[tokio::test]
async fn copy_object_and_directives() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    let src_etag = c
        .send(
            Req::new("PUT", "src dir/a+b.txt")
                .h("Content-Type", "text/plain")
                .h("x-oss-meta-a", "1")
                .body("copy me"),
        )
        .await
        .header("etag")
        .unwrap()
        .to_string();
    let source = format!(
        "/{BUCKET}/{}",
        ossmount::sign::uri_encode("src dir/a+b.txt", true)
    );
    let r = c
        .send(Req::new("PUT", "dst1").h("x-oss-copy-source", &source))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<CopyObjectResult>"));
    assert_eq!(
        r.header("x-oss-hash-crc64ecma"),
        Some(crc(b"copy me").as_str())
    );
    let g = c.get("dst1").await;
    assert_eq!(&g.body[..], b"copy me");
    assert_eq!(g.header("x-oss-meta-a"), Some("1"));
    assert_eq!(g.header("content-type"), Some("text/plain"));
    // REPLACE takes metadata from the request.
    let r = c
        .send(
            Req::new("PUT", "dst2")
                .h("x-oss-copy-source", &source)
                .h("x-oss-metadata-directive", "REPLACE")
                .h("x-oss-meta-b", "2"),
        )
        .await;
    assert_eq!(r.status, 200);
    let h = c.send(Req::new("HEAD", "dst2")).await;
    assert_eq!(h.header("x-oss-meta-b"), Some("2"));
    assert!(h.header("x-oss-meta-a").is_none());
    // copy-source conditions
    let r = c
        .send(
            Req::new("PUT", "dst3")
                .h("x-oss-copy-source", &source)
                .h("x-oss-copy-source-if-match", "\"nope\""),
        )
        .await;
    assert_eq!(r.status, 412);
    let r = c
        .send(
            Req::new("PUT", "dst3")
                .h("x-oss-copy-source", &source)
                .h("x-oss-copy-source-if-match", &src_etag),
        )
        .await;
    assert_eq!(r.status, 200);
    // A failed copy-source-if-none-match is a 412 too (no 304 for copies).
    let r = c
        .send(
            Req::new("PUT", "dst5")
                .h("x-oss-copy-source", &source)
                .h("x-oss-copy-source-if-none-match", &src_etag),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (412, "PreconditionFailed"));
    let r = c
        .send(Req::new("PUT", "dst4").h("x-oss-copy-source", &format!("/{BUCKET}/missing")))
        .await;
    assert_eq!((r.status, r.code().as_str()), (404, "NoSuchKey"));
    emu.shutdown().await;
}

#[tokio::test]
async fn append_object_rules_and_crc() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    let append = |pos: u64, data: &'static str| {
        c.send(
            Req::new("POST", "log")
                .q("append", None)
                .q("position", Some(&pos.to_string()))
                .body(data),
        )
    };
    let r = append(0, "hello ").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-oss-next-append-position"), Some("6"));
    let r = append(6, "world").await;
    assert_eq!(r.header("x-oss-next-append-position"), Some("11"));
    assert_eq!(
        r.header("x-oss-hash-crc64ecma"),
        Some(crc(b"hello world").as_str())
    );
    let r = append(3, "x").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (409, "PositionNotEqualToLength")
    );
    assert_eq!(r.header("x-oss-next-append-position"), Some("11"));
    let h = c.send(Req::new("HEAD", "log")).await;
    assert_eq!(h.header("x-oss-object-type"), Some("Appendable"));
    assert_eq!(h.header("x-oss-next-append-position"), Some("11"));
    assert_eq!(&c.get("log").await.body[..], b"hello world");
    c.put("normal", "n").await;
    let r = c
        .send(
            Req::new("POST", "normal")
                .q("append", None)
                .q("position", Some("1"))
                .body("x"),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (409, "ObjectNotAppendable"));
    emu.shutdown().await;
}

#[tokio::test]
async fn symlinks_resolve_on_get_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    c.put("target/file.txt", "pointed at").await;
    let r = c
        .send(
            Req::new("PUT", "link")
                .q("symlink", None)
                .h("x-oss-symlink-target", "target/file.txt"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let g = c.send(Req::new("GET", "link").q("symlink", None)).await;
    assert_eq!(g.header("x-oss-symlink-target"), Some("target/file.txt"));
    let h = c.send(Req::new("HEAD", "link")).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("x-oss-object-type"), Some("Symlink"));
    assert_eq!(h.header("content-length"), Some("10"));
    assert_eq!(&c.get("link").await.body[..], b"pointed at");
    c.send(Req::new("DELETE", "target/file.txt")).await;
    let g = c.get("link").await;
    assert_eq!(
        (g.status, g.code().as_str()),
        (404, "SymlinkTargetNotExist")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn service_and_bucket_info() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    let r = c
        .send(Req::new("GET", "").service().q("regions", None))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<Region>oss-cn-hangzhou</Region>"));
    let r = c
        .send(
            Req::new("GET", "")
                .service()
                .q("regions", Some("oss-cn-beijing")),
        )
        .await;
    assert_eq!(
        all_between(&r.text(), "<Region>", "</Region>"),
        vec!["oss-cn-beijing"]
    );
    let r = c.send(Req::new("GET", "").q("bucketInfo", None)).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&format!("<Name>{BUCKET}</Name>")));
    let r = c.send(Req::new("GET", "").q("location", None)).await;
    assert!(
        r.text()
            .contains("<LocationConstraint>oss-cn-hangzhou</LocationConstraint>")
    );
    let s = emu.stats();
    assert_eq!(s.requests_for("DescribeRegions"), 2);
    assert_eq!(s.requests_for("GetBucketInfo"), 1);
    assert_eq!(s.requests_for("GetBucketLocation"), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn concurrent_overwrites_never_expose_mixed_versions() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = std::sync::Arc::new(Client::new(&emu));
    let size = 3 << 20;
    c.put("hot", vec![0u8; size]).await;
    let mut tasks = Vec::new();
    for w in 1..=3u8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..4u8 {
                c.put("hot", vec![w * 16 + round; size]).await;
            }
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..3 {
        let c = c.clone();
        readers.push(tokio::spawn(async move {
            for _ in 0..8 {
                let r = c.get("hot").await;
                assert_eq!(r.status, 200);
                assert_eq!(r.body.len(), size);
                let first = r.body[0];
                assert!(r.body.iter().all(|b| *b == first), "mixed versions");
                assert_eq!(
                    r.header("x-oss-hash-crc64ecma"),
                    Some(crc(&r.body).as_str()),
                    "headers and body from different versions"
                );
            }
        }));
    }
    for t in tasks.into_iter().chain(readers) {
        t.await.unwrap();
    }
    emu.shutdown().await;
}
