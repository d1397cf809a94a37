//! Multipart rules (part size, order, ETags, complete-all, abort, listings) and
//! ListObjects v1/v2 (pagination, delimiter, start-after, url encoding), multi-delete.

mod emulator_support;

use emulator_support::*;

const KIB: usize = 1024;

fn part_data(n: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(n))
        .collect()
}

async fn initiate(c: &Client, key: &str) -> String {
    let r = c.send(Req::new("POST", key).q("uploads", None)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    between(&r.text(), "<UploadId>", "</UploadId>").unwrap()
}

async fn upload(c: &Client, key: &str, id: &str, n: u32, data: Vec<u8>) -> String {
    let r = c
        .send(
            Req::new("PUT", key)
                .q("partNumber", Some(&n.to_string()))
                .q("uploadId", Some(id))
                .body(data.clone()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-oss-hash-crc64ecma"),
        Some(ossmount::crc64::crc64(&data).to_string().as_str())
    );
    r.header("etag").unwrap().to_string()
}

fn complete_xml(parts: &[(u32, &str)]) -> String {
    let mut s = String::from("<CompleteMultipartUpload>");
    for (n, e) in parts {
        s.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
        ));
    }
    s.push_str("</CompleteMultipartUpload>");
    s
}

async fn complete(c: &Client, key: &str, id: &str, parts: &[(u32, &str)]) -> Resp {
    c.send(
        Req::new("POST", key)
            .q("uploadId", Some(id))
            .body(complete_xml(parts)),
    )
    .await
}

#[tokio::test]
async fn multipart_upload_rules() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    let key = "mp/big.bin";
    let id = initiate(&c, key).await;
    let p1 = part_data(1, 100 * KIB);
    let p2 = part_data(2, 150 * KIB);
    let p3 = part_data(3, 10);
    let e1 = upload(&c, key, &id, 1, p1.clone()).await;
    let e2 = upload(&c, key, &id, 2, p2.clone()).await;
    let e3 = upload(&c, key, &id, 3, p3.clone()).await;

    // Part numbers outside 1..=10000.
    let r = c
        .send(
            Req::new("PUT", key)
                .q("partNumber", Some("10001"))
                .q("uploadId", Some(&id))
                .body("x"),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidArgument"));

    // ListParts
    let r = c.send(Req::new("GET", key).q("uploadId", Some(&id))).await;
    assert_eq!(
        all_between(&r.text(), "<PartNumber>", "</PartNumber>"),
        ["1", "2", "3"]
    );
    let r = c
        .send(
            Req::new("GET", key)
                .q("uploadId", Some(&id))
                .q("max-parts", Some("2")),
        )
        .await;
    assert!(r.text().contains("<IsTruncated>true</IsTruncated>"));
    assert!(
        r.text()
            .contains("<NextPartNumberMarker>2</NextPartNumberMarker>")
    );

    // ListMultipartUploads
    let r = c.send(Req::new("GET", "").q("uploads", None)).await;
    assert_eq!(
        all_between(&r.text(), "<UploadId>", "</UploadId>"),
        std::slice::from_ref(&id)
    );

    // Delimiter groups other uploads into common prefixes; max-uploads paginates.
    let other = initiate(&c, "mp/sub/a").await;
    initiate(&c, "mp/sub/b").await;
    let r = c
        .send(
            Req::new("GET", "")
                .q("uploads", None)
                .q("prefix", Some("mp/"))
                .q("delimiter", Some("/")),
        )
        .await;
    assert_eq!(all_between(&r.text(), "<Key>", "</Key>"), [key]);
    assert!(
        r.text()
            .contains("<CommonPrefixes><Prefix>mp/sub/</Prefix></CommonPrefixes>")
    );
    let r = c
        .send(
            Req::new("GET", "")
                .q("uploads", None)
                .q("max-uploads", Some("1")),
        )
        .await;
    assert!(r.text().contains("<IsTruncated>true</IsTruncated>"));
    assert_eq!(
        between(&r.text(), "<NextKeyMarker>", "</NextKeyMarker>").as_deref(),
        Some(key)
    );
    let r = c
        .send(
            Req::new("GET", "")
                .q("uploads", None)
                .q("key-marker", Some(key)),
        )
        .await;
    assert_eq!(
        all_between(&r.text(), "<Key>", "</Key>"),
        ["mp/sub/a", "mp/sub/b"]
    );
    assert!(r.text().contains(&other));

    // Errors: order, bad ETag, too-small middle part.
    let r = complete(&c, key, &id, &[(2, &e2), (1, &e1)]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidPartOrder"));
    let r = complete(&c, key, &id, &[(1, "\"0123\""), (2, &e2)]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidPart"));
    let r = complete(&c, key, &id, &[(1, &e1), (3, &e3), (2, &e2)]).await;
    assert_eq!(r.code(), "InvalidPartOrder");
    let r = complete(&c, key, &id, &[(1, &e1), (3, &e3)]).await;
    assert_eq!(
        r.code(),
        "",
        "1 (100 KiB) + 3 (last) is valid: {}",
        r.text()
    );
    // That completed the upload: it is gone now.
    let r = complete(&c, key, &id, &[(1, &e1), (2, &e2)]).await;
    assert_eq!((r.status, r.code().as_str()), (404, "NoSuchUpload"));
    let mut whole = p1.clone();
    whole.extend_from_slice(&p3);
    let g = c.get(key).await;
    assert_eq!(&g.body[..], &whole[..]);
    assert_eq!(g.header("x-oss-object-type"), Some("Multipart"));
    assert!(g.header("etag").unwrap().ends_with("-2\""));
    assert_eq!(
        g.header("x-oss-hash-crc64ecma"),
        Some(ossmount::crc64::crc64(&whole).to_string().as_str())
    );

    // EntityTooSmall for a small non-last part.
    let id = initiate(&c, key).await;
    let small = upload(&c, key, &id, 1, part_data(1, 10)).await;
    let e2 = upload(&c, key, &id, 2, p2.clone()).await;
    let r = complete(&c, key, &id, &[(1, &small), (2, &e2)]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "EntityTooSmall"));
    // Abort, then it is gone.
    assert_eq!(
        c.send(Req::new("DELETE", key).q("uploadId", Some(&id)))
            .await
            .status,
        204
    );
    let r = c
        .send(Req::new("DELETE", key).q("uploadId", Some(&id)))
        .await;
    assert_eq!((r.status, r.code().as_str()), (404, "NoSuchUpload"));

    // complete-all with an empty body, and UploadPartCopy with a range.
    let id = initiate(&c, "mp/copy").await;
    let src = format!("/{BUCKET}/{}", ossmount::sign::uri_encode(key, true));
    let r = c
        .send(
            Req::new("PUT", "mp/copy")
                .q("partNumber", Some("1"))
                .q("uploadId", Some(&id))
                .h("x-oss-copy-source", &src)
                .h(
                    "x-oss-copy-source-range",
                    &format!("bytes=0-{}", 100 * KIB - 1),
                ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<CopyPartResult>"));
    upload(&c, "mp/copy", &id, 2, b"tail".to_vec()).await;
    let r = c
        .send(
            Req::new("POST", "mp/copy")
                .q("uploadId", Some(&id))
                .h("x-oss-complete-all", "yes"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut expect = p1.clone();
    expect.extend_from_slice(b"tail");
    assert_eq!(&c.get("mp/copy").await.body[..], &expect[..]);
    emu.shutdown().await;
}

#[tokio::test]
async fn list_v2_pagination_delimiter_and_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    let keys = [
        "a.txt",
        "dir/1",
        "dir/2",
        "dir/sub/x",
        "e f+g",
        "z/\u{1}ctl",
        "日本",
    ];
    for k in keys {
        c.put(k, "x").await;
    }
    let list = |extra: Vec<(&str, &str)>| {
        let mut r = Req::new("GET", "").q("list-type", Some("2"));
        for (n, v) in extra {
            r = r.q(n, Some(v));
        }
        c.send(r)
    };
    // Pagination over everything, 2 per page, collecting keys and prefixes.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut extra = vec![
            ("max-keys", "2"),
            ("delimiter", "/"),
            ("encoding-type", "url"),
        ];
        if let Some(t) = &token {
            extra.push(("continuation-token", t.as_str()));
        }
        let r = list(extra).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let t = r.text();
        let count: usize = between(&t, "<KeyCount>", "</KeyCount>")
            .unwrap()
            .parse()
            .unwrap();
        let mut here: Vec<String> = all_between(&t, "<Key>", "</Key>");
        here.extend(all_between(&t, "<Prefix>", "</Prefix>").into_iter().skip(1));
        assert_eq!(count, here.len());
        seen.extend(here.into_iter().map(|k| {
            percent_encoding::percent_decode_str(&k)
                .decode_utf8()
                .unwrap()
                .into_owned()
        }));
        pages += 1;
        if t.contains("<IsTruncated>false</IsTruncated>") {
            assert!(!t.contains("<NextContinuationToken>"));
            break;
        }
        let next = between(&t, "<NextContinuationToken>", "</NextContinuationToken>").unwrap();
        token = Some(
            percent_encoding::percent_decode_str(&next)
                .decode_utf8()
                .unwrap()
                .into_owned(),
        );
        assert!(pages < 10);
    }
    seen.sort();
    assert_eq!(seen, ["a.txt", "dir/", "e f+g", "z/", "日本"]);
    assert_eq!(pages, 3);

    // Prefix + delimiter inside a directory; url encoding of special keys.
    let r = list(vec![("prefix", "dir/"), ("delimiter", "/")]).await;
    assert_eq!(
        all_between(&r.text(), "<Key>", "</Key>"),
        ["dir/1", "dir/2"]
    );
    assert!(
        r.text()
            .contains("<CommonPrefixes><Prefix>dir/sub/</Prefix></CommonPrefixes>")
    );
    let r = list(vec![("prefix", "e"), ("encoding-type", "url")]).await;
    assert_eq!(all_between(&r.text(), "<Key>", "</Key>"), ["e%20f%2Bg"]);
    let r = list(vec![("prefix", "z/"), ("encoding-type", "url")]).await;
    assert_eq!(all_between(&r.text(), "<Key>", "</Key>"), ["z/%01ctl"]);
    // start-after
    let r = list(vec![("start-after", "dir/2")]).await;
    assert_eq!(all_between(&r.text(), "<Key>", "</Key>")[0], "dir/sub/x");
    // max-keys limits.
    let r = list(vec![("max-keys", "1001")]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidArgument"));
    let r = list(vec![]).await;
    assert!(r.text().contains("<MaxKeys>100</MaxKeys>"));
    // v1 with marker
    let r = c
        .send(
            Req::new("GET", "")
                .q("marker", Some("dir/sub/x"))
                .q("max-keys", Some("1")),
        )
        .await;
    assert_eq!(all_between(&r.text(), "<Key>", "</Key>"), ["e f+g"]);
    assert!(r.text().contains("<NextMarker>e f+g</NextMarker>"));
    emu.shutdown().await;
}

#[tokio::test]
async fn delete_multiple_objects() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    for k in ["d/1", "d/2", "d/<3>"] {
        c.put(k, "x").await;
    }
    let xml = "<Delete><Quiet>false</Quiet><Object><Key>d/1</Key></Object><Object><Key>d/&lt;3&gt;</Key></Object><Object><Key>missing</Key></Object></Delete>";
    let r = c
        .send(Req::new("POST", "").q("delete", None).body(xml))
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "MissingArgument"));
    let r = c
        .send(
            Req::new("POST", "")
                .q("delete", None)
                .q("encoding-type", Some("url"))
                .h("Content-MD5", &md5_b64(xml.as_bytes()))
                .h("Content-Type", "application/xml")
                .body(xml),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        all_between(&r.text(), "<Key>", "</Key>"),
        ["d/1", "d/%3C3%3E", "missing"]
    );
    let r = c.send(Req::new("GET", "").q("list-type", Some("2"))).await;
    assert_eq!(all_between(&r.text(), "<Key>", "</Key>"), ["d/2"]);
    let quiet = "<Delete><Quiet>true</Quiet><Object><Key>d/2</Key></Object></Delete>";
    let r = c
        .send(
            Req::new("POST", "")
                .q("delete", None)
                .h("Content-MD5", &md5_b64(quiet.as_bytes()))
                .body(quiet),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("<Deleted>"));
    assert_eq!(emu.stats().requests_for("DeleteMultipleObjects"), 3);
    emu.shutdown().await;
}
