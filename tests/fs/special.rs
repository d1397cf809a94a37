//! FIFOs, sockets and devices over MockStore (no kernel): what mknod stores for each type
//! (mode with type bits, rdev, owner, umask), what a fresh mount shows in both listing
//! modes, objects another tool stored the ossfs way, and chmod/chown/utimens/rename/
//! unlink of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ossmount::fs::{FileKind, Filesystem, FsConfig, ROOT_INO, SetAttr, SpecialKind, TimeSet};
use ossmount::store::mock::MockStore;

use crate::common::core::{USER_CTX as CTX, n, readdir_all};

struct Env {
    fs: Filesystem,
    _staging: tempfile::TempDir,
}

/// A mount over `store` (a fresh one is a "remount": nothing cached).
fn mount(store: Arc<MockStore>, readdir_optimize: bool) -> Env {
    let staging = tempfile::tempdir().expect("tempdir");
    let cfg = FsConfig {
        uid: 1000,
        gid: 1000,
        metadata_ttl: Duration::from_secs(60),
        cache_dir: staging.path().to_path_buf(),
        readdir_optimize,
        ..FsConfig::default()
    };
    Env {
        fs: Filesystem::new(store, cfg, tokio::runtime::Handle::current()),
        _staging: staging,
    }
}

/// name, kind, type bits, rdev asked for (the kernel's 32-bit encoding).
const TYPES: [(&str, SpecialKind, u32, u32); 4] = [
    ("fifo", SpecialKind::Fifo, libc::S_IFIFO, 0),
    ("sock", SpecialKind::Socket, libc::S_IFSOCK, 0),
    // major 4 minor 64 (a tty), major 8 minor 1 (sda1), as makedev encodes them.
    ("chr", SpecialKind::CharDevice, libc::S_IFCHR, (4 << 8) | 64),
    ("blk", SpecialKind::BlockDevice, libc::S_IFBLK, (8 << 8) | 1),
];

async fn readdir_kinds(fs: &Filesystem, ino: u64) -> BTreeMap<String, FileKind> {
    readdir_all(fs, ino)
        .await
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect()
}

#[tokio::test]
async fn mknod_stores_each_type_and_a_remount_shows_it() {
    let store = Arc::new(MockStore::new("bkt"));
    let e = mount(store.clone(), false);
    let d =
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o755, 0)
            .await
            .expect("mkdir");
    for (name, kind, bits, rdev) in TYPES {
        let a =
            e.fs.mknod(&CTX, d.ino, n(name), bits | 0o666, 0o027, rdev)
                .await
                .expect("mknod");
        assert_eq!(a.kind, FileKind::Special(kind), "{name}");
        assert_eq!((a.perm, a.uid, a.gid, a.size), (0o640, 1234, 5678, 0));
        assert_eq!(a.rdev, rdev, "{name}");
        let o = store.object(&format!("d/{name}")).expect("stored");
        assert!(o.data.is_empty(), "{name}: an empty object");
        let meta = &o.user_meta;
        assert_eq!(meta["mode"], (bits | 0o640).to_string(), "{name}");
        assert_eq!(
            (meta["uid"].as_str(), meta["gid"].as_str()),
            ("1234", "5678")
        );
        let want_rdev = kind.is_device().then(|| rdev.to_string());
        assert_eq!(meta.get("rdev"), want_rdev.as_ref(), "{name}: rdev");
        let err =
            e.fs.mknod(&CTX, d.ino, n(name), bits | 0o666, 0, rdev)
                .await
                .expect_err("exists");
        assert_eq!(err.errno(), libc::EEXIST);
    }
    e.fs.mknod(&CTX, d.ino, n("empty"), 0o644, 0, 0)
        .await
        .expect("regular mknod");

    for optimize in [false, true] {
        let m = mount(store.clone(), optimize);
        let dd = m.fs.lookup(ROOT_INO, n("d")).await.expect("lookup d");
        let listed = readdir_kinds(&m.fs, dd.ino).await;
        assert_eq!(listed["empty"], FileKind::File);
        for (name, kind, bits, rdev) in TYPES {
            if optimize {
                // readdirplus hands the kernel the type at once: the listing HEADed it.
                assert_eq!(listed[name], FileKind::Special(kind), "{name} listed");
            }
            let a = m.fs.lookup(dd.ino, n(name)).await.expect("lookup");
            assert_eq!(
                a.kind,
                FileKind::Special(kind),
                "{name} (optimize {optimize})"
            );
            assert_eq!(
                (a.mode(), a.rdev, a.uid, a.gid),
                (bits | 0o640, rdev, 1234, 5678)
            );
            assert_eq!(m.fs.getattr(a.ino).await.expect("getattr"), a, "{name}");
            let err = m.fs.open(a.ino, libc::O_RDONLY).await.expect_err("open");
            assert_eq!(err.errno(), libc::EINVAL, "the kernel opens special files");
        }
        // Listed again after the stats: the kinds the listing cannot tell are kept.
        m.fs.mknod(&CTX, dd.ino, n("new"), 0o644, 0, 0)
            .await
            .expect("a change retires the kept listing");
        let again = readdir_kinds(&m.fs, dd.ino).await;
        for (name, kind, _, _) in TYPES {
            assert_eq!(again[name], FileKind::Special(kind), "{name} relisted");
        }
        let a = m.fs.lookup(dd.ino, n("fifo")).await.expect("lookup");
        let b = m.fs.lookup(dd.ino, n("fifo")).await.expect("lookup again");
        assert_eq!(a.ino, b.ino, "same inode after the relisting");
        m.fs.unlink(dd.ino, n("new")).await.expect("unlink");
    }
}

#[tokio::test]
async fn objects_other_tools_stored_the_ossfs_way_are_special_files() {
    let store = Arc::new(MockStore::new("bkt"));
    let meta = |mode: u32, rdev: Option<&str>| {
        let mut m = BTreeMap::from([("mode".to_string(), mode.to_string())]);
        if let Some(r) = rdev {
            m.insert("rdev".into(), r.into());
        }
        m
    };
    store.put_with_meta("p", "", meta(libc::S_IFIFO | 0o600, None));
    store.put_with_meta("c", "", meta(libc::S_IFCHR | 0o600, None));
    store.put_with_meta("b", "", meta(libc::S_IFBLK | 0o660, Some("2049")));
    store.put_with_meta("bad", "", meta(libc::S_IFBLK | 0o660, Some("sda")));
    let e = mount(store, false);
    let p = e.fs.lookup(ROOT_INO, n("p")).await.expect("p");
    assert_eq!(
        (p.kind, p.perm, p.uid),
        (FileKind::Special(SpecialKind::Fifo), 0o600, 1000)
    );
    let c = e.fs.lookup(ROOT_INO, n("c")).await.expect("c");
    assert_eq!(
        (c.kind, c.rdev),
        (FileKind::Special(SpecialKind::CharDevice), 0)
    );
    let b = e.fs.lookup(ROOT_INO, n("b")).await.expect("b");
    assert_eq!(
        (b.kind, b.rdev),
        (FileKind::Special(SpecialKind::BlockDevice), 2049)
    );
    let bad = e.fs.lookup(ROOT_INO, n("bad")).await.expect("bad");
    assert_eq!(bad.rdev, 0, "an unparsable rdev is ignored");
}

#[tokio::test]
async fn attribute_changes_rename_and_unlink_of_special_files() {
    let store = Arc::new(MockStore::new("bkt"));
    let e = mount(store.clone(), false);
    let rdev = (8 << 8) | 3;
    let a =
        e.fs.mknod(&CTX, ROOT_INO, n("dev"), libc::S_IFBLK | 0o600, 0, rdev)
            .await
            .expect("mknod");
    let when = UNIX_EPOCH + Duration::new(1_600_000_000, 250);
    let set = SetAttr {
        mode: Some(0o4640),
        uid: Some(7),
        gid: Some(8),
        mtime: Some(TimeSet::At(when)),
        ..Default::default()
    };
    let s = e.fs.setattr(a.ino, set).await.expect("setattr");
    assert_eq!(
        (s.kind, s.perm, s.uid, s.gid, s.rdev),
        (a.kind, 0o4640, 7, 8, rdev)
    );
    e.fs.rename(ROOT_INO, n("dev"), ROOT_INO, n("dev2"), 0)
        .await
        .expect("rename");
    assert!(!store.contains("dev"));
    let meta = store.object("dev2").expect("moved").user_meta;
    assert_eq!(meta["mode"], (libc::S_IFBLK | 0o4640).to_string());
    assert_eq!(meta["rdev"], rdev.to_string());
    assert_eq!((meta["uid"].as_str(), meta["gid"].as_str()), ("7", "8"));
    assert_eq!(
        (meta["mtime"].as_str(), meta["mtime-nsec"].as_str()),
        ("1600000000", "250")
    );

    let r = mount(store.clone(), false);
    let b = r.fs.lookup(ROOT_INO, n("dev2")).await.expect("remount");
    assert_eq!(
        (b.kind, b.perm, b.uid, b.gid, b.rdev),
        (a.kind, 0o4640, 7, 8, rdev)
    );
    assert_eq!(b.mtime, when);
    r.fs.unlink(ROOT_INO, n("dev2")).await.expect("unlink");
    assert!(!store.contains("dev2"));
    let err = r.fs.lookup(ROOT_INO, n("dev2")).await.expect_err("gone");
    assert_eq!(err.errno(), libc::ENOENT);
}
