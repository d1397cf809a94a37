//! Unit tests of MockStore's OSS semantics.
use super::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn list_with_delimiter_pages_and_counts() {
    rt().block_on(async {
        let s = MockStore::default();
        for i in 0..5 {
            s.put(&format!("d/f{i}"), vec![i as u8; i]);
        }
        s.put("d/sub/a", "x");
        s.put("d/sub/b", "y");
        s.put("e", "z");
        let mut req = ListRequest {
            prefix: "d/".into(),
            delimiter: Some("/".into()),
            max_keys: 4,
            ..Default::default()
        };
        let p1 = s.list_objects(&req).await.expect("list");
        assert_eq!(p1.objects.len(), 4);
        assert!(p1.common_prefixes.is_empty());
        req.continuation_token = p1.next_continuation_token.clone();
        assert!(req.continuation_token.is_some());
        let p2 = s.list_objects(&req).await.expect("list");
        assert_eq!(p2.objects.len(), 1);
        assert_eq!(p2.objects[0].key, "d/f4");
        assert_eq!(p2.common_prefixes, vec!["d/sub/".to_string()]);
        assert_eq!(p2.next_continuation_token, None);
        assert_eq!(s.count("ListObjectsV2"), 2);
        s.reset_counts();
        assert_eq!(s.total_requests(), 0);
    });
}

#[test]
fn ranges_etags_and_preconditions() {
    rt().block_on(async {
        let s = MockStore::default();
        s.put("k", "hello world");
        let h = s.head_object("k").await.expect("head");
        assert_eq!(h.size, 11);
        assert_eq!(h.crc64, Some(crc64_of(b"hello world")));
        let r = s
            .get_range("k", 6..100, Some(&h.etag))
            .await
            .expect("range");
        assert_eq!(&r.data[..], b"world");
        let e = s.get_range("k", 11..12, None).await.expect_err("416");
        assert_eq!(e.status(), Some(416));
        s.mutate("k", "changed");
        let e = s
            .get_range("k", 0..1, Some(&h.etag))
            .await
            .expect_err("412");
        assert!(e.is_precondition_failed());
        s.put("empty", "");
        let r = s.get_range("empty", 0..10, None).await.expect("empty");
        assert!(r.data.is_empty());
    });
}

#[test]
fn multipart_visible_only_on_complete() {
    rt().block_on(async {
        let s = MockStore::default();
        let id = s
            .initiate_multipart_upload("big", &PutOptions::default())
            .await
            .expect("init");
        let a = vec![1u8; MIN_PART_SIZE as usize];
        let p1 = s
            .upload_part("big", &id, 1, a.clone().into())
            .await
            .expect("p1");
        let p2 = s
            .upload_part("big", &id, 2, vec![2u8; 10].into())
            .await
            .expect("p2");
        assert!(!s.contains("big"));
        let res = s
            .complete_multipart_upload("big", &id, &[p1, p2])
            .await
            .expect("complete");
        let data = s.get("big").expect("stored");
        assert_eq!(data.len(), a.len() + 10);
        assert_eq!(res.crc64, Some(crc64_of(&data)));
        assert!(res.etag.ends_with("-2\""));
        assert_eq!(s.pending_uploads(), 0);
    });
}

#[test]
fn small_non_last_part_is_rejected() {
    rt().block_on(async {
        let s = MockStore::default();
        let id = s
            .initiate_multipart_upload("k", &PutOptions::default())
            .await
            .expect("init");
        let p1 = s
            .upload_part("k", &id, 1, vec![1u8; 10].into())
            .await
            .expect("p1");
        let p2 = s
            .upload_part("k", &id, 2, vec![2u8; 10].into())
            .await
            .expect("p2");
        let e = s
            .complete_multipart_upload("k", &id, &[p1, p2])
            .await
            .expect_err("small");
        assert_eq!(e.code(), Some("EntityTooSmall"));
    });
}

#[test]
fn append_and_symlink_semantics() {
    rt().block_on(async {
        let s = MockStore::default();
        let o = PutOptions::default();
        let r = s
            .append_object("log", 0, Bytes::from_static(b"ab"), None, &o)
            .await
            .expect("a1");
        assert_eq!(r.next_position, 2);
        let e = s
            .append_object("log", 1, Bytes::from_static(b"c"), None, &o)
            .await
            .expect_err("pos");
        assert_eq!(e.code(), Some("PositionNotEqualToLength"));
        let r = s
            .append_object("log", 2, Bytes::from_static(b"cd"), r.crc64, &o)
            .await
            .expect("a2");
        assert_eq!(r.crc64, Some(crc64_of(b"abcd")));
        s.put("plain", "x");
        let e = s
            .append_object("plain", 1, Bytes::from_static(b"c"), None, &o)
            .await
            .expect_err("na");
        assert_eq!(e.code(), Some("ObjectNotAppendable"));

        s.put_symlink("link", "log", &o).await.expect("symlink");
        assert_eq!(s.get_symlink("link").await.expect("get"), "log");
        let h = s.head_object("link").await.expect("head");
        assert_eq!(h.object_type, ObjectType::Symlink);
        assert_eq!(h.size, 4);
        s.put_symlink("dangling", "nope", &o)
            .await
            .expect("symlink");
        let e = s.head_object("dangling").await.expect_err("dangling");
        assert_eq!(e.code(), Some("SymlinkTargetNotExist"));
    });
}

#[test]
fn fail_next_and_forbid_overwrite() {
    rt().block_on(async {
        let s = MockStore::default();
        s.fail_next(
            "HeadObject",
            vec![StoreError::from_service(503, "ServiceUnavailable", "")],
        );
        s.put("k", "v");
        assert_eq!(
            s.head_object("k").await.expect_err("fail").status(),
            Some(503)
        );
        assert!(s.head_object("k").await.is_ok());
        let opts = PutOptions {
            forbid_overwrite: true,
            ..Default::default()
        };
        let e = s
            .put_object("k", Bytes::from_static(b"x").into(), &opts)
            .await
            .expect_err("409");
        assert_eq!(e.code(), Some("FileAlreadyExists"));
        assert_eq!(s.count("HeadObject"), 2);
    });
}
