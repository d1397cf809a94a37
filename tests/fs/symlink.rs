//! Symlinks of every kind over MockStore (no kernel): what is stored for each text, that
//! `readlink` gives the text back byte for byte on a fresh mount, the link's own owner
//! and mode, links other clients made, and directory renames.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;
use std::time::Duration;

use ossmount::fs::{FileKind, Filesystem, FsConfig, ROOT_INO, SetAttr};
use ossmount::store::mock::MockStore;

use crate::common::core::{USER_CTX as CTX, n};
use ossmount::store::{ObjectStore, ObjectType};
use ossmount::write::UploadConfig;

struct Env {
    fs: Filesystem,
    _staging: tempfile::TempDir,
}

/// A mount of `prefix` over `store` (a fresh one is a "remount": nothing cached).
fn mount(store: Arc<MockStore>, prefix: &str, readdir_optimize: bool) -> Env {
    mount_with(store, prefix, |c| c.readdir_optimize = readdir_optimize)
}

fn mount_with(store: Arc<MockStore>, prefix: &str, f: impl FnOnce(&mut FsConfig)) -> Env {
    let staging = tempfile::tempdir().expect("tempdir");
    let mut cfg = FsConfig {
        prefix: prefix.into(),
        uid: 1000,
        gid: 1000,
        metadata_ttl: Duration::from_secs(60),
        cache_dir: staging.path().to_path_buf(),
        upload: UploadConfig {
            part_size: 1 << 20,
            max_concurrency: 4,
            single_put_threshold: 1 << 20,
        },
        ..FsConfig::default()
    };
    f(&mut cfg);
    let fs = Filesystem::new(store, cfg, tokio::runtime::Handle::current());
    Env {
        fs,
        _staging: staging,
    }
}

/// The texts a program can write, with the form each must be stored in.
fn matrix() -> Vec<(&'static str, Vec<u8>, Option<&'static str>)> {
    let deep_fit_key = "./".repeat(1500) + "f"; // resolves to a short key, too long encoded
    vec![
        ("same_dir", b"u.txt".to_vec(), Some("pre/d/u.txt")),
        ("up", b"../top.txt".to_vec(), Some("pre/top.txt")),
        ("dots", b"./x//y".to_vec(), Some("pre/d/x/y")),
        (
            "deep",
            b"s1/s2/s3/s4/f".to_vec(),
            Some("pre/d/s1/s2/s3/s4/f"),
        ),
        ("dangling", b"nowhere".to_vec(), Some("pre/d/nowhere")),
        (
            "spaces",
            "sp ace/ü%41+".as_bytes().to_vec(),
            Some("pre/d/sp ace/ü%41+"),
        ),
        ("to_itself", b"to_itself".to_vec(), Some("pre/d/to_itself")),
        ("absolute", b"/etc/hostname".to_vec(), None),
        ("dotdot", b"..".to_vec(), None),
        ("dot", b".".to_vec(), None),
        ("ends_dotdot", b"s1/..".to_vec(), None),
        ("trailing_slash", b"s1/".to_vec(), None),
        ("escapes", b"../../outside".to_vec(), None),
        ("not_utf8", b"caf\xe9/\xff".to_vec(), None),
        ("long_key", ("a/".repeat(2047) + "b").into_bytes(), None),
        ("long_meta", deep_fit_key.into_bytes(), None),
    ]
}

async fn lookup_path(e: &Env, path: &str) -> ossmount::fs::Attr {
    let mut ino = ROOT_INO;
    let mut attr = None;
    for part in path.split('/') {
        let a = e.fs.lookup(ino, n(part)).await.expect(part);
        ino = a.ino;
        attr = Some(a);
    }
    attr.expect("path")
}

#[tokio::test]
async fn every_text_reads_back_byte_for_byte_after_a_remount() {
    let store = Arc::new(MockStore::new("bkt"));
    let e = mount(store.clone(), "pre/", false);
    let d =
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o755, 0)
            .await
            .expect("mkdir");
    assert_eq!(matrix()[14].1.len(), 4095, "PATH_MAX - 1");
    for (name, text, native) in matrix() {
        let a =
            e.fs.symlink(
                &CTX,
                d.ino,
                n(name),
                std::path::Path::new(&OsString::from_vec(text.clone())),
            )
            .await
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(a.kind, FileKind::Symlink, "{name}");
        assert_eq!(a.size, text.len() as u64, "{name}");
        let obj = store.object(&format!("pre/d/{name}")).expect(name);
        match native {
            Some(key) => {
                assert_eq!(obj.object_type, ObjectType::Symlink, "{name}");
                assert_eq!(obj.symlink_target.as_deref(), Some(key), "{name}");
            }
            None => {
                assert_eq!(obj.object_type, ObjectType::Normal, "{name}: ossfs form");
                assert_eq!(obj.data.as_ref(), &text[..], "{name}: body is the text");
                let mode: u32 = obj.user_meta["mode"].parse().expect("mode");
                assert_eq!(mode & libc::S_IFMT, libc::S_IFLNK, "{name}");
            }
        }
    }

    for readdir_optimize in [false, true] {
        let e2 = mount(store.clone(), "pre/", readdir_optimize);
        for (name, text, _) in matrix() {
            let a = lookup_path(&e2, &format!("d/{name}")).await;
            assert_eq!(a.kind, FileKind::Symlink, "{name}");
            assert_eq!((a.uid, a.gid), (1234, 5678), "{name}: the link's own owner");
            assert_eq!(a.perm, 0o777, "{name}");
            assert_eq!(a.size, text.len() as u64, "{name}");
            let got = e2.fs.readlink(a.ino).await.expect(name);
            assert_eq!(got.as_bytes(), &text[..], "{name}");
        }
    }
}

#[tokio::test]
async fn a_links_owner_change_survives_a_remount() {
    let store = Arc::new(MockStore::new("bkt"));
    // The target carries other attributes: HEAD of the link would report these.
    let mut meta = BTreeMap::new();
    meta.insert("uid".to_string(), "7".to_string());
    meta.insert("mode".to_string(), "33188".to_string());
    store.put_with_meta("t", "target", meta);
    let e = mount(store.clone(), "", false);
    for (name, text) in [("native", "t"), ("ossfs", "/abs")] {
        let l =
            e.fs.symlink(&CTX, ROOT_INO, n(name), std::path::Path::new(text))
                .await
                .expect("symlink");
        let set = SetAttr {
            uid: Some(42),
            gid: Some(43),
            ..Default::default()
        };
        e.fs.setattr(l.ino, set).await.expect("lchown");
        let e2 = mount(store.clone(), "", false);
        let a = e2.fs.lookup(ROOT_INO, n(name)).await.expect("lookup");
        assert_eq!(
            (a.kind, a.uid, a.gid),
            (FileKind::Symlink, 42, 43),
            "{name}"
        );
        assert_eq!(
            e2.fs.readlink(a.ino).await.expect("readlink"),
            text,
            "{name}"
        );
    }
}

#[tokio::test]
async fn links_made_by_other_clients() {
    let store = Arc::new(MockStore::new("bkt"));
    // A native link made by an SDK: its target is a bucket key.
    store
        .put_symlink("pre/a/b/sdk", "pre/a/c/t.txt", &Default::default())
        .await
        .expect("put");
    store
        .put_symlink("pre/a/top", "pre/x", &Default::default())
        .await
        .expect("put");
    // An ossfs 1.x link: body is the text, mode has S_IFLNK.
    let mut meta = BTreeMap::new();
    meta.insert("mode".to_string(), (libc::S_IFLNK | 0o777).to_string());
    store.put_with_meta("pre/a/ossfs", "/var/log/syslog", meta);
    store.put("pre/a/file", "0123456789");
    for readdir_optimize in [false, true] {
        let e = mount(store.clone(), "pre/", readdir_optimize);
        let a = lookup_path(&e, "a").await;
        let listed = names(&e, a.ino).await;
        if readdir_optimize {
            // READDIRPLUS hands the kernel the type with the entry: checked by a HEAD.
            assert!(
                listed.contains(&("ossfs".into(), FileKind::Symlink)),
                "{listed:?}"
            );
        }
        assert!(
            listed.contains(&("file".into(), FileKind::File)),
            "{listed:?}"
        );
        for (path, text) in [
            ("a/b/sdk", "../c/t.txt"),
            ("a/top", "../x"),
            ("a/ossfs", "/var/log/syslog"),
        ] {
            let l = lookup_path(&e, path).await;
            assert_eq!(l.kind, FileKind::Symlink, "{path}");
            assert_eq!(
                e.fs.readlink(l.ino).await.expect("readlink"),
                text,
                "{path}"
            );
        }
        assert_eq!(lookup_path(&e, "a/file").await.kind, FileKind::File);
    }
}

async fn names(e: &Env, ino: u64) -> Vec<(String, FileKind)> {
    let fh = e.fs.opendir(ino).await.expect("opendir");
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let batch = e.fs.readdir(ino, fh, off).await.expect("readdir");
        if batch.is_empty() {
            break;
        }
        for d in &batch {
            if d.name != "." && d.name != ".." {
                out.push((d.name.clone(), d.kind));
            }
        }
        off = batch.last().map(|d| d.offset).unwrap_or(off);
    }
    e.fs.releasedir(fh).await.expect("releasedir");
    out
}

#[tokio::test]
async fn renaming_a_directory_keeps_its_links_pointing_where_their_text_says() {
    let store = Arc::new(MockStore::new("bkt"));
    let e = mount(store.clone(), "pre/", false);
    let d =
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o755, 0)
            .await
            .expect("mkdir");
    let links = [
        ("in", "u.txt"),
        ("up", "../top.txt"),
        ("abs", "/etc/hostname"),
        ("sub_up", "s/../v"),
    ];
    for (name, text) in links {
        e.fs.symlink(&CTX, d.ino, n(name), std::path::Path::new(text))
            .await
            .expect(name);
    }
    let x =
        e.fs.mkdir(&CTX, ROOT_INO, n("x"), 0o755, 0)
            .await
            .expect("mkdir");
    e.fs.rename(ROOT_INO, n("d"), x.ino, n("d2"), 0)
        .await
        .expect("rename");
    let target = |k: &str| store.object(k).and_then(|o| o.symlink_target);
    assert_eq!(target("pre/x/d2/in").as_deref(), Some("pre/x/d2/u.txt"));
    assert_eq!(target("pre/x/d2/up").as_deref(), Some("pre/x/top.txt"));
    assert_eq!(target("pre/x/d2/sub_up").as_deref(), Some("pre/x/d2/v"));
    assert!(store.object("pre/d/in").is_none(), "moved");
    // A file renamed into another directory is re-planned too.
    e.fs.rename(x.ino, n("d2"), ROOT_INO, n("d3"), 0)
        .await
        .expect("rename back");
    let d3 = e.fs.lookup(ROOT_INO, n("d3")).await.expect("lookup");
    e.fs.rename(d3.ino, n("up"), ROOT_INO, n("up"), 0)
        .await
        .expect("rename link");
    // `../top.txt` from the mount root escapes the prefix: ossfs form now.
    assert_eq!(
        store.object("pre/up").map(|o| o.object_type),
        Some(ObjectType::Normal)
    );
    let e2 = mount(store.clone(), "pre/", false);
    for (path, text) in [
        ("d3/in", "u.txt"),
        ("d3/abs", "/etc/hostname"),
        ("d3/sub_up", "s/../v"),
        ("up", "../top.txt"),
    ] {
        let l = lookup_path(&e2, path).await;
        assert_eq!(l.kind, FileKind::Symlink, "{path}");
        assert_eq!(
            e2.fs.readlink(l.ino).await.expect("readlink"),
            text,
            "{path}"
        );
        assert_eq!((l.uid, l.gid), (1234, 5678), "{path}");
    }
}

/// With readdir_optimize, only listed regular objects a link text could fill (1 to
/// `readdir_check_size` bytes) cost a HEAD; 0 turns the check off (links list as files).
#[tokio::test]
async fn readdir_optimize_heads_only_link_sized_and_empty_objects() {
    let store = Arc::new(MockStore::new("bkt"));
    let mut meta = BTreeMap::new();
    meta.insert("mode".to_string(), (libc::S_IFLNK | 0o777).to_string());
    store.put_with_meta("d/ossfs", "../t", meta);
    store.put("d/small", "abc");
    store.put("d/empty", "");
    store.put("d/big", vec![7u8; 5000]);
    store
        .put_symlink("d/native", "d/big", &Default::default())
        .await
        .expect("put");
    // 4095: `ossfs` and `small` (maybe links) and `empty` (maybe a FIFO, socket or device).
    for (check, heads, ossfs_kind) in [(4095, 3, FileKind::Symlink), (0, 0, FileKind::File)] {
        let e = mount_with(store.clone(), "", |c| {
            c.readdir_optimize = true;
            c.readdir_check_size = check;
        });
        let d = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
        store.reset_counts();
        let mut listed = names(&e, d.ino).await;
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            listed,
            vec![
                ("big".into(), FileKind::File),
                ("empty".into(), FileKind::File),
                ("native".into(), FileKind::Symlink),
                ("ossfs".into(), ossfs_kind),
                ("small".into(), FileKind::File),
            ],
            "readdir_check_size {check}"
        );
        assert_eq!(store.count("HeadObject"), heads, "{:?}", store.counts());
    }
}
