//! Every OssClient operation against the in-process emulator.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::StreamExt;
use ossmount::client::{RegionSource, UrlStyle};
use ossmount::sign::SignatureVersion;
use ossmount::store::{ListRequest, ObjectStore, ObjectType, PutBody, PutOptions, StoreError};

use crate::common::emulator::{BUCKET, start_emulator};
use crate::common::pattern;

const ODD_KEYS: &[&str] = &[
    "with space.txt",
    "中文/文件名.bin",
    "emoji 😀/x",
    "plus+sign",
    "percent%41%",
    "hash#frag",
    "question?mark=1&b=2",
    "tilde~and-dash_.dot",
    "a/../b",
    "./lead/dot",
    "trail/.",
    "./..",
    "...",
    "x/../../y",
    "double//slash",
    "semi;colon,comma'quote\"",
    "<xml>&amp;",
];

#[tokio::test]
async fn put_head_get_delete_roundtrip_with_metadata() {
    let env = start_emulator(|_| {}).await;
    let c = env.client();
    let data = Bytes::from(pattern(300_000, 1));
    let mut meta = BTreeMap::new();
    meta.insert("owner".to_string(), "alice".to_string());
    meta.insert("title".to_string(), "résumé 中文 a+b".to_string());
    let opts = PutOptions {
        content_type: Some("text/plain".into()),
        user_meta: meta.clone(),
        forbid_overwrite: false,
    };
    let put = c
        .put_object("dir/file.txt", data.clone().into(), &opts)
        .await
        .unwrap();
    assert!(put.etag.starts_with('"'));
    assert_eq!(put.crc64, Some(ossmount::crc64::crc64(&data)));

    let head = c.head_object("dir/file.txt").await.unwrap();
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(head.etag, put.etag);
    assert_eq!(head.content_type.as_deref(), Some("text/plain"));
    assert_eq!(head.user_meta, meta);
    assert_eq!(head.object_type, ObjectType::Normal);
    assert!(head.last_modified.is_some());

    // Whole object through get_range: CRC verified.
    let whole = c
        .get_range("dir/file.txt", 0..data.len() as u64, Some(&put.etag))
        .await
        .unwrap();
    assert_eq!(whole.data, data);
    assert_eq!(whole.object_size, data.len() as u64);
    // A middle range, and one running past the end (clamped).
    let mid = c.get_range("dir/file.txt", 1000..2000, None).await.unwrap();
    assert_eq!(&mid.data[..], &data[1000..2000]);
    let tail = c
        .get_range("dir/file.txt", 299_990..400_000, None)
        .await
        .unwrap();
    assert_eq!(&tail.data[..], &data[299_990..]);
    // Start past the end.
    let err = c
        .get_range("dir/file.txt", 300_000..300_010, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidRange"), "{err}");
    // Stale ETag.
    let err = c
        .get_range("dir/file.txt", 0..10, Some("\"nope\""))
        .await
        .unwrap_err();
    assert!(err.is_precondition_failed(), "{err}");

    // Streaming GET of the whole object and of a range.
    let out = c.get_object("dir/file.txt", None, None).await.unwrap();
    assert_eq!(out.meta.size, data.len() as u64);
    let mut got = Vec::new();
    let mut body = out.body;
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, data);
    let out = c
        .get_object("dir/file.txt", Some(10..20), None)
        .await
        .unwrap();
    let chunks: Vec<_> = out.body.collect().await;
    let got: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    assert_eq!(&got[..], &data[10..20]);

    c.delete_object("dir/file.txt").await.unwrap();
    let err = c.head_object("dir/file.txt").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // Deleting again succeeds.
    c.delete_object("dir/file.txt").await.unwrap();
}

#[tokio::test]
async fn empty_object_reads() {
    let env = start_emulator(|_| {}).await;
    let c = env.client();
    c.put_object(
        "empty",
        PutBody::Bytes(Bytes::new()),
        &PutOptions::default(),
    )
    .await
    .unwrap();
    let r = c.get_range("empty", 0..4096, None).await.unwrap();
    assert!(r.data.is_empty());
    assert_eq!(r.object_size, 0);
    let out = c.get_object("empty", None, None).await.unwrap();
    assert_eq!(out.body.collect::<Vec<_>>().await.len(), 0);
}

#[tokio::test]
async fn odd_keys_every_operation() {
    let env = start_emulator(|_| {}).await;
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let c = env.client_with(|cfg| cfg.signature_version = version);
        for (i, key) in ODD_KEYS.iter().enumerate() {
            let data = Bytes::from(pattern(1000 + i, i as u64));
            c.put_object(key, data.clone().into(), &PutOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{version} put {key:?}: {e}"));
            let head = c
                .head_object(key)
                .await
                .unwrap_or_else(|e| panic!("head {key:?}: {e}"));
            assert_eq!(head.size, data.len() as u64, "{key:?}");
            let got = c.get_range(key, 0..head.size, None).await.unwrap();
            assert_eq!(got.data, data, "{key:?}");
            // Listing with the key as prefix finds exactly it (decoded).
            let page = c
                .list_objects(&ListRequest {
                    prefix: key.to_string(),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(
                page.objects.iter().any(|o| o.key == *key),
                "{key:?} not listed: {page:?}"
            );
            let copy = format!("copies/{key}");
            c.copy_object(key, &copy, None)
                .await
                .unwrap_or_else(|e| panic!("copy {key:?}: {e}"));
            assert_eq!(c.head_object(&copy).await.unwrap().size, data.len() as u64);
            let link = format!("links/{i}");
            c.put_symlink(&link, key, &PutOptions::default())
                .await
                .unwrap();
            assert_eq!(c.get_symlink(&link).await.unwrap(), *key);
        }
        let mut all: Vec<String> = ODD_KEYS.iter().map(|k| k.to_string()).collect();
        all.extend(ODD_KEYS.iter().map(|k| format!("copies/{k}")));
        all.extend((0..ODD_KEYS.len()).map(|i| format!("links/{i}")));
        c.delete_objects(&all).await.unwrap();
        let page = c.list_objects(&ListRequest::default()).await.unwrap();
        assert!(page.objects.is_empty(), "left over: {page:?}");
    }
}

#[tokio::test]
async fn dot_only_key_is_refused_locally() {
    let env = start_emulator(|_| {}).await;
    let err = env.client().head_object("..").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err}");
}

#[tokio::test]
async fn multipart_upload_with_crc_and_listing() {
    let env = start_emulator(|_| {}).await;
    let c = env.client();
    let data = Bytes::from(pattern(250 * 1024, 7));
    let upload_id = c
        .initiate_multipart_upload("big/mp.bin", &PutOptions::default())
        .await
        .unwrap();
    let uploads = c.list_multipart_uploads("big/").await.unwrap();
    assert!(
        uploads
            .iter()
            .any(|u| u.upload_id == upload_id && u.key == "big/mp.bin")
    );

    // Part 2 from a file at an offset, parts 1 and 3 from memory, uploaded out of order.
    let file = env.dir.path().join("part2");
    let mut on_disk = vec![0xAAu8; 17];
    on_disk.extend_from_slice(&data[100 * 1024..200 * 1024]);
    std::fs::write(&file, &on_disk).unwrap();
    let p3 = c
        .upload_part("big/mp.bin", &upload_id, 3, data.slice(200 * 1024..).into())
        .await
        .unwrap();
    let p2 = c
        .upload_part(
            "big/mp.bin",
            &upload_id,
            2,
            PutBody::File {
                path: file,
                offset: 17,
                len: 100 * 1024,
            },
        )
        .await
        .unwrap();
    let p1 = c
        .upload_part("big/mp.bin", &upload_id, 1, data.slice(..100 * 1024).into())
        .await
        .unwrap();
    assert_eq!(
        p2.crc64,
        Some(ossmount::crc64::crc64(&data[100 * 1024..200 * 1024]))
    );
    let done = c
        .complete_multipart_upload("big/mp.bin", &upload_id, &[p3, p1, p2])
        .await
        .unwrap();
    assert_eq!(done.crc64, Some(ossmount::crc64::crc64(&data)));
    let head = c.head_object("big/mp.bin").await.unwrap();
    assert_eq!(head.object_type, ObjectType::Multipart);
    assert_eq!(
        c.get_range("big/mp.bin", 0..head.size, None)
            .await
            .unwrap()
            .data,
        data
    );
    assert!(c.list_multipart_uploads("big/").await.unwrap().is_empty());

    // Abort is idempotent.
    let id2 = c
        .initiate_multipart_upload("big/aborted", &PutOptions::default())
        .await
        .unwrap();
    c.abort_multipart_upload("big/aborted", &id2).await.unwrap();
    c.abort_multipart_upload("big/aborted", &id2).await.unwrap();
    // Bad part numbers are refused before sending.
    assert!(matches!(
        c.upload_part("big/x", "id", 0, Bytes::from_static(b"x").into())
            .await,
        Err(StoreError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn multipart_copy_and_copy_directives() {
    let env = start_emulator(|_| {}).await;
    let c = env.client();
    let data = Bytes::from(pattern(260 * 1024, 3));
    let mut meta = BTreeMap::new();
    meta.insert("k".to_string(), "v".to_string());
    let opts = PutOptions {
        content_type: Some("image/png".into()),
        user_meta: meta,
        forbid_overwrite: false,
    };
    c.put_object("src", data.clone().into(), &opts)
        .await
        .unwrap();

    let r = c
        .copy_object_multipart("src", "dst multipart", None, 100 * 1024)
        .await
        .unwrap();
    assert_eq!(r.crc64, Some(ossmount::crc64::crc64(&data)));
    let head = c.head_object("dst multipart").await.unwrap();
    assert_eq!(head.content_type.as_deref(), Some("image/png"));
    assert_eq!(head.user_meta.get("k").map(String::as_str), Some("v"));
    assert_eq!(
        c.get_range("dst multipart", 0..head.size, None)
            .await
            .unwrap()
            .data,
        data
    );

    // COPY keeps metadata; REPLACE sets new.
    c.copy_object("src", "copied", None).await.unwrap();
    assert_eq!(
        c.head_object("copied")
            .await
            .unwrap()
            .content_type
            .as_deref(),
        Some("image/png")
    );
    let replace = PutOptions {
        content_type: Some("text/csv".into()),
        ..Default::default()
    };
    c.copy_object("src", "replaced", Some(&replace))
        .await
        .unwrap();
    let h = c.head_object("replaced").await.unwrap();
    assert_eq!(h.content_type.as_deref(), Some("text/csv"));
    assert!(h.user_meta.is_empty());
    // Copy of a missing source.
    let err = c.copy_object("missing", "x", None).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn append_with_crc_continuation() {
    let env = start_emulator(|_| {}).await;
    let c = env.client();
    let opts = PutOptions {
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    let a = c
        .append_object("log", 0, Bytes::from_static(b"hello "), None, &opts)
        .await
        .unwrap();
    assert_eq!(a.next_position, 6);
    let b = c
        .append_object("log", 6, Bytes::from_static(b"world"), a.crc64, &opts)
        .await
        .unwrap();
    assert_eq!(b.next_position, 11);
    assert_eq!(b.crc64, Some(ossmount::crc64::crc64(b"hello world")));
    let head = c.head_object("log").await.unwrap();
    assert_eq!(head.object_type, ObjectType::Appendable);
    assert_eq!(head.next_append_position, Some(11));
    // Replaying an append without a lost reply is an error (someone else's data may sit
    // there); the lost-reply case is covered by the transport unit tests.
    let err = c
        .append_object("log", 6, Bytes::from_static(b"world"), a.crc64, &opts)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("PositionNotEqualToLength"), "{err}");
    // A genuinely wrong position is an error.
    let err = c
        .append_object("log", 3, Bytes::from_static(b"zz"), None, &opts)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("PositionNotEqualToLength"), "{err}");
    // Appending to a normal object.
    c.put_object(
        "normal",
        Bytes::from_static(b"x").into(),
        &PutOptions::default(),
    )
    .await
    .unwrap();
    let err = c
        .append_object("normal", 1, Bytes::from_static(b"y"), None, &opts)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ObjectNotAppendable"), "{err}");
}

#[tokio::test]
async fn symlink_resolves_on_head_and_get() {
    let env = start_emulator(|_| {}).await;
    let c = env.client();
    c.put_object(
        "target file",
        Bytes::from_static(b"payload").into(),
        &PutOptions::default(),
    )
    .await
    .unwrap();
    c.put_symlink("link", "target file", &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(c.get_symlink("link").await.unwrap(), "target file");
    let head = c.head_object("link").await.unwrap();
    assert_eq!(head.size, 7);
    assert_eq!(
        &c.get_range("link", 0..7, None).await.unwrap().data[..],
        b"payload"
    );
    let err = c.get_symlink("target file").await.unwrap_err();
    assert!(err.status().is_some(), "{err}");
}

#[tokio::test]
async fn listing_pages_prefixes_and_delete_batches() {
    let env = start_emulator(|_| {}).await;
    let c = env.client();
    let keys: Vec<String> = (0..1003).map(|i| format!("many/{:04}", i)).collect();
    futures::stream::iter(keys.iter().cloned())
        .map(|k| {
            let c = c.clone();
            async move {
                c.put_object(&k, Bytes::from_static(b"x").into(), &PutOptions::default())
                    .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .for_each(|r| {
            r.unwrap();
        });
    for k in ["many/sub/a", "many/sub/b", "many/other/c"] {
        c.put_object(k, Bytes::from_static(b"y").into(), &PutOptions::default())
            .await
            .unwrap();
    }
    // Delimiter listing: objects directly under many/ plus two common prefixes, in pages.
    let mut token = None;
    let mut objects = 0;
    let mut prefixes = Vec::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_objects(&ListRequest {
                prefix: "many/".into(),
                delimiter: Some("/".into()),
                continuation_token: token.clone(),
                max_keys: 300,
                ..Default::default()
            })
            .await
            .unwrap();
        pages += 1;
        objects += page.objects.len();
        prefixes.extend(page.common_prefixes);
        match page.next_continuation_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(objects, 1003);
    prefixes.sort();
    assert_eq!(
        prefixes,
        vec!["many/other/".to_string(), "many/sub/".to_string()]
    );
    assert!(pages >= 4);
    // start-after.
    let page = c
        .list_objects(&ListRequest {
            prefix: "many/".into(),
            start_after: Some("many/1000".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.objects[0].key, "many/1001");

    env.emu.reset_stats();
    let report = c.delete_objects_detailed(&keys).await.unwrap();
    assert_eq!(report.deleted.len(), 1003);
    assert!(report.failed.is_empty());
    assert_eq!(env.emu.stats().requests_for("DeleteMultipleObjects"), 2);
}

#[tokio::test]
async fn forbid_overwrite_and_service_errors_display() {
    let env = start_emulator(|_| {}).await;
    let c = env.client();
    let opts = PutOptions {
        forbid_overwrite: true,
        ..Default::default()
    };
    c.put_object("once", Bytes::from_static(b"1").into(), &opts)
        .await
        .unwrap();
    let err = c
        .put_object("once", Bytes::from_static(b"2").into(), &opts)
        .await
        .unwrap_err();
    let s = err.service().expect("service error");
    assert_eq!((s.status, s.code.as_str()), (409, "FileAlreadyExists"));
    assert!(!s.request_id.is_empty());
    let text = err.to_string();
    assert!(
        text.starts_with(
            "OSS error: operation PutObject, StatusCode=409, ErrorCode=FileAlreadyExists"
        ),
        "{text}"
    );
    assert!(text.contains(&format!("Resource={BUCKET}/once")), "{text}");
}

#[tokio::test]
async fn wrong_secret_is_signature_mismatch_not_retried() {
    let env = start_emulator(|_| {}).await;
    let c = env.client_with(|cfg| {
        cfg.credentials = std::sync::Arc::new(ossmount::credentials::StaticProvider {
            creds: ossmount::credentials::Credentials::new("emulator-ak", "wrong-secret"),
            source: "test".into(),
        })
    });
    env.emu.reset_stats();
    let err = c.head_object("x").await.unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err}");
    assert!(!err.to_string().contains("wrong-secret"));
    assert_eq!(env.emu.stats().requests_for("HeadObject"), 1);
}

#[tokio::test]
async fn bucket_info_regions_and_path_style_on_ip() {
    let env = start_emulator(|_| {}).await;
    let c = env.client();
    assert_eq!(c.url_style(), UrlStyle::Path);
    let info = c.get_bucket_info().await.unwrap();
    assert_eq!(info.name, BUCKET);
    assert_eq!(info.region, "cn-hangzhou");
    let rows = c.describe_regions(None).await.unwrap();
    assert!(rows.iter().any(|r| r.region == "cn-hangzhou"), "{rows:?}");
    let one = c.describe_regions(Some("oss-cn-beijing")).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].region, "cn-beijing");
    let (rows, source) = c.list_regions_or_builtin().await;
    assert_eq!(source, RegionSource::Live);
    assert!(!rows.is_empty());

    // Unreachable endpoint: falls back to the built-in table, saying why.
    let dead = ossmount::client::OssClient::new({
        let mut cfg = env.config();
        cfg.endpoint = "http://127.0.0.1:1".into();
        cfg.max_attempts = 1;
        cfg
    })
    .unwrap();
    let (rows, source) = dead.list_regions_or_builtin().await;
    assert!(matches!(source, RegionSource::Builtin { .. }));
    assert!(rows.iter().any(|r| r.region == "cn-hangzhou"));
}

#[tokio::test]
async fn anonymous_requests_are_unsigned() {
    let env = start_emulator(|cfg| cfg.anonymous = true).await;
    let c = ossmount::client::OssClient::new(ossmount::client::ClientConfig::anonymous(
        env.emu.endpoint(),
        BUCKET,
        "cn-hangzhou",
    ))
    .unwrap();
    c.put_object(
        "anon",
        Bytes::from_static(b"a").into(),
        &PutOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(c.head_object("anon").await.unwrap().size, 1);
    assert_eq!(env.emu.stats().auth_failures.values().sum::<u64>(), 0);
}
