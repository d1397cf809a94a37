//! Pins docs/SEMANTICS.md: every row of its table has a check here, and every check
//! matches a row.
//!
//! The table is parsed from the document; each row's id maps to an entry of [`CHECKS`]
//! with a hash of the row's text. A new row without a check, a check without a row, or a
//! reworded row fails the test (the message prints the new hash): a change of a claim
//! must come with a look at the check that proves it. Most checks run the claim against
//! the filesystem core over the mock store (counting requests, no kernel); where the
//! kernel or a real mount matters, or a test elsewhere already proves the claim, the entry
//! names that test, and this test verifies it exists.

mod common;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use common::core::{CTX, CoreEnv, core_env, n, read_all, readdir_all, write_file};
use ossmount::fs::{Ctx, FileKind, FsConfig, ROOT_INO, SetAttr, TimeSet};
use ossmount::store::ObjectType;
use ossmount::write::UploadConfig;

const DOC: &str = include_str!("../docs/SEMANTICS.md");

type CheckFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a row's claim is checked.
enum Check {
    /// Run here, against the core over the mock store.
    Core(fn() -> CheckFuture),
    /// The named test (file, function) exercises it: it needs the kernel or a real mount,
    /// or it is already a test of its own (not written twice).
    Test(&'static str, &'static str),
}

/// (row id, first 12 hex digits of the SHA-256 of the row's text after the id, check).
const CHECKS: &[(&str, &str, Check)] = &[
    (
        "directories",
        "a2b781c5643e",
        Check::Core(|| Box::pin(directories())),
    ),
    ("lookup", "fe54b332a91f", Check::Core(|| Box::pin(lookup()))),
    (
        "readdir",
        "39859cb73910",
        Check::Core(|| Box::pin(readdir())),
    ),
    (
        "listed-attributes",
        "61ec2acc3447",
        Check::Core(|| Box::pin(listed_attributes())),
    ),
    (
        "read",
        "7db9089dde77",
        Check::Test(
            "tests/fs/operations.rs",
            "changed_object_under_open_handle_is_estale",
        ),
    ),
    (
        "write-new",
        "4b51bf8e5ef4",
        Check::Core(|| Box::pin(write_new())),
    ),
    (
        "read-after-write",
        "4f5357f50e61",
        Check::Test(
            "tests/fs/read_after_write.rs",
            "second_handle_reads_a_new_file_being_written",
        ),
    ),
    (
        "overwrite",
        "dda051058980",
        Check::Core(|| Box::pin(overwrite())),
    ),
    (
        "append",
        "82170c6ac249",
        Check::Test(
            "tests/fs/operations.rs",
            "append_to_appendable_object_uses_append_object",
        ),
    ),
    (
        "seek-back",
        "5cb7dc4ab15f",
        Check::Core(|| Box::pin(seek_back())),
    ),
    (
        "close-errors",
        "b674932e53ce",
        Check::Test(
            "tests/fs/read_after_write.rs",
            "upload_error_keeps_its_errno_through_every_later_call",
        ),
    ),
    (
        "inherited-close",
        "dc9aa9e22593",
        Check::Test(
            "tests/reliability/consistency.rs",
            "a_child_closing_an_inherited_descriptor_commits_nothing",
        ),
    ),
    (
        "concurrent-writers",
        "8cf168015304",
        Check::Core(|| Box::pin(concurrent_writers())),
    ),
    (
        "unlink-mkdir-rmdir",
        "756e0a5d1181",
        Check::Core(|| Box::pin(unlink_mkdir_rmdir())),
    ),
    (
        "rename-file",
        "230847a0595d",
        Check::Core(|| Box::pin(rename_file())),
    ),
    (
        "rename-dir",
        "03398990200d",
        Check::Core(|| Box::pin(rename_dir())),
    ),
    (
        "setattr",
        "c66deb08ea65",
        Check::Core(|| Box::pin(setattr())),
    ),
    (
        "new-entries",
        "67d890370d80",
        Check::Core(|| Box::pin(new_entries())),
    ),
    (
        "dir-times",
        "073593375abc",
        Check::Core(|| Box::pin(dir_times())),
    ),
    ("atime", "f4c3362bcd59", Check::Core(|| Box::pin(atime()))),
    (
        "symlink",
        "9b3faecbe0bc",
        Check::Core(|| Box::pin(symlink())),
    ),
    (
        "hard-links",
        "aa0b3b8999fb",
        Check::Core(|| Box::pin(hard_links())),
    ),
    (
        "special-files",
        "062efc3b9a7d",
        Check::Core(|| Box::pin(special_files())),
    ),
    (
        "split-pages",
        "392d3cad36af",
        Check::Core(|| Box::pin(split_pages())),
    ),
    (
        "hidden-keys",
        "c20ec3cac52e",
        Check::Core(|| Box::pin(hidden_keys())),
    ),
    (
        "inode-numbers",
        "5c1ad0daf3f2",
        Check::Test(
            "tests/fs/lifecycle.rs",
            "forgotten_nodes_are_freed_and_numbers_stay_while_referenced",
        ),
    ),
    (
        "tree-walks",
        "f9f77920c9fb",
        Check::Test(
            "tests/fs/walk.rs",
            "walk_lists_ahead_within_twice_the_lists",
        ),
    ),
    (
        "huge-directories",
        "f1c5c89186e1",
        Check::Test(
            "tests/mount_scale.rs",
            "seekdir_across_listing_pages_matches_a_local_directory",
        ),
    ),
    ("statfs", "45c069b36ca6", Check::Core(|| Box::pin(statfs()))),
    (
        "local-files",
        "98a7b4f1e16b",
        Check::Core(|| Box::pin(local_files())),
    ),
    (
        "read-only",
        "fb3e372b01ba",
        Check::Core(|| Box::pin(read_only())),
    ),
];

/// The rows of the table: (id, text after the id cell).
fn rows() -> Vec<(String, String)> {
    let mut in_table = false;
    let mut out = Vec::new();
    for line in DOC.lines() {
        if line.starts_with("| id |") {
            in_table = true;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        if !line.starts_with('|') {
            break;
        }
        let rest = line.trim_start_matches('|').trim_start();
        let (id_cell, text) = rest.split_once('|').expect("row has cells");
        out.push((
            id_cell.trim().trim_matches('`').to_string(),
            text.trim().to_string(),
        ));
    }
    out
}

fn hash(text: &str) -> String {
    common::sha256(text.as_bytes())[..12].to_string()
}

#[test]
fn every_row_has_a_check_and_every_check_a_row() {
    let rows = rows();
    assert!(rows.len() >= 20, "table not found in docs/SEMANTICS.md");
    let mut problems = Vec::new();
    for (id, text) in &rows {
        match CHECKS.iter().find(|c| c.0 == id) {
            None => problems.push(format!("row `{id}` has no check in tests/semantics.rs")),
            Some((_, pinned, _)) if *pinned != hash(text) => problems.push(format!(
                "row `{id}` changed (hash {} ≠ pinned {pinned:?}): check that its check \
                 still proves the new text, then pin the new hash",
                hash(text)
            )),
            Some(_) => {}
        }
    }
    for (id, _, _) in CHECKS {
        if !rows.iter().any(|(r, _)| r == id) {
            problems.push(format!("check `{id}` has no row in docs/SEMANTICS.md"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn rows_checked_elsewhere_name_existing_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (id, _, check) in CHECKS {
        if let Check::Test(file, name) = check {
            let src = std::fs::read_to_string(root.join(file))
                .unwrap_or_else(|e| panic!("row `{id}`: {file}: {e}"));
            assert!(
                src.contains(&format!("fn {name}()")),
                "row `{id}`: {file} has no test `{name}`"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_holds() {
    let mut failed = Vec::new();
    for (id, _, check) in CHECKS {
        if let Check::Core(f) = check {
            // Each check on its own task, so a failing one names its row and the rest run.
            if let Err(e) = tokio::spawn(f()).await {
                failed.push(format!("row `{id}`: {e}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "claims that do not hold:\n{}",
        failed.join("\n")
    );
}

fn env() -> CoreEnv {
    core_env(|c| {
        c.metadata_ttl = Duration::from_secs(60);
        c.upload = UploadConfig {
            part_size: 1 << 20,
            max_concurrency: 4,
            single_put_threshold: 1 << 20,
        };
    })
}

fn env_with(f: impl FnOnce(&mut FsConfig)) -> CoreEnv {
    core_env(|c| {
        c.metadata_ttl = Duration::from_secs(60);
        f(c);
    })
}

async fn directories() {
    let e = env();
    e.store.put("x", "file");
    e.store.put("x/in", "1");
    e.store.put("m/", "");
    let x = e.fs.lookup(ROOT_INO, n("x")).await.expect("lookup x");
    assert_eq!(x.kind, FileKind::Dir, "the directory wins");
    let m = e.fs.lookup(ROOT_INO, n("m")).await.expect("marker");
    assert_eq!(m.kind, FileKind::Dir);
}

async fn lookup() {
    let e = env();
    e.store.put("f", "data");
    e.store.reset_counts();
    e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    assert_eq!(e.store.count("HeadObject"), 1);
    assert_eq!(e.store.count("ListObjectsV2"), 1);
    e.fs.lookup(ROOT_INO, n("f")).await.expect("cached");
    assert_eq!(e.store.total_requests(), 2, "cached within the TTL");
}

async fn readdir() {
    let e = env();
    for k in ["d/a", "d/b", "d/c/x"] {
        e.store.put(k, "1");
    }
    let d = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
    e.store.reset_counts();
    let listed = readdir_all(&e.fs, d.ino).await;
    let kinds: Vec<_> = listed.iter().map(|d| (d.name.as_str(), d.kind)).collect();
    assert!(kinds.contains(&("c", FileKind::Dir)) && kinds.contains(&("a", FileKind::File)));
    assert_eq!(e.store.count("HeadObject"), 0, "{:?}", e.store.counts());
    assert!(e.store.count("ListObjectsV2") <= 1);
    let before = e.store.total_requests();
    readdir_all(&e.fs, d.ino).await;
    assert_eq!(e.store.total_requests(), before, "listing kept for the TTL");
}

async fn listed_attributes() {
    for optimize in [false, true] {
        let e = env_with(|c| c.readdir_optimize = optimize);
        for i in 0..5 {
            // Larger than the ossfs-link check size: no HEAD for them while listing.
            e.store.put(&format!("d/f{i}"), vec![b'x'; 5000]);
        }
        let d = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
        readdir_all(&e.fs, d.ino).await;
        e.store.reset_counts();
        e.fs.lookup(d.ino, n("f0")).await.expect("stat");
        let heads = e.store.count("HeadObject");
        if optimize {
            assert_eq!(heads, 0, "readdir_optimize: attributes from the listing");
        } else {
            assert!(heads >= 1, "stored attributes are fetched");
            let after = e.store.total_requests();
            e.fs.lookup(d.ino, n("f3")).await.expect("stat next");
            assert_eq!(e.store.total_requests(), after, "fetched in one batch");
        }
    }
    // Expired, they are read again in one batch; listing again does not renew them
    // (another client's chmod keeps the ETag).
    let ttl = Duration::from_millis(300);
    let e = env_with(|c| c.metadata_ttl = ttl);
    let mode = |m: &str| std::collections::BTreeMap::from([("mode".to_string(), m.to_string())]);
    for i in 0..5 {
        e.store
            .put_with_meta(&format!("d/f{i}"), vec![b'x'; 5000], mode("33188"));
    }
    let d = e.fs.lookup(ROOT_INO, n("d")).await.expect("lookup");
    readdir_all(&e.fs, d.ino).await;
    let f0 = e.fs.lookup(d.ino, n("f0")).await.expect("stat");
    assert_eq!(f0.perm, 0o644);
    assert!(e.store.set_user_meta("d/f0", mode("33152")));
    tokio::time::sleep(ttl * 2).await;
    readdir_all(&e.fs, d.ino).await;
    e.store.reset_counts();
    assert_eq!(e.fs.getattr(f0.ino).await.expect("stat").perm, 0o600);
    assert_eq!(e.store.count("HeadObject"), 5, "{:?}", e.store.counts());
    e.fs.lookup(d.ino, n("f3")).await.expect("stat next");
    assert_eq!(e.store.total_requests(), 5, "revalidated in the same batch");
    // readdir_optimize: small objects (maybe ossfs-style links) and empty ones (maybe
    // special files) cost one HEAD each while listing, unless the check size is 0.
    for (check_size, want_heads) in [(4095, 4), (0, 0)] {
        let e = env_with(|c| {
            c.readdir_optimize = true;
            c.readdir_check_size = check_size;
        });
        for i in 0..3 {
            e.store.put(&format!("s/f{i}"), "1");
        }
        // Empty: maybe a FIFO, socket or device.
        e.store.put("s/empty", "");
        let d = e.fs.lookup(ROOT_INO, n("s")).await.expect("lookup");
        e.store.reset_counts();
        readdir_all(&e.fs, d.ino).await;
        assert_eq!(
            e.store.count("HeadObject"),
            want_heads,
            "readdir_check_size {check_size}"
        );
    }
}

async fn write_new() {
    let e = env();
    let (_, fh) =
        e.fs.create(&CTX, ROOT_INO, n("big"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    let data = common::pattern(3 << 20, 1);
    for (i, c) in data.chunks(128 << 10).enumerate() {
        e.fs.write(fh, (i * (128 << 10)) as u64, c)
            .await
            .expect("write");
    }
    assert!(!e.store.contains("big"), "nothing visible before close");
    e.fs.flush(fh).await.expect("flush");
    e.fs.release(fh).await.expect("release");
    assert!(e.store.count("UploadPart") >= 3, "streamed as parts");
    assert_eq!(e.store.get("big").as_deref(), Some(&data[..]));
    write_file(&e.fs, ROOT_INO, "small", b"s").await;
    assert_eq!(
        e.store.count("PutObject"),
        1,
        "a small file is one PutObject"
    );
}

async fn overwrite() {
    let e = env();
    e.store.put("f", "0123456789");
    let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    let fh = e.fs.open(a.ino, libc::O_RDWR).await.expect("open");
    e.fs.write(fh, 2, b"XY").await.expect("write");
    assert_eq!(e.store.get("f").as_deref(), Some(&b"0123456789"[..]));
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.get("f").as_deref(), Some(&b"01XY456789"[..]));
    let set = SetAttr {
        size: Some(4),
        ..SetAttr::default()
    };
    e.fs.setattr(a.ino, set).await.expect("truncate");
    assert_eq!(e.store.get("f").as_deref(), Some(&b"01XY"[..]));
}

async fn seek_back() {
    let e = env_with(|c| {
        c.upload = UploadConfig {
            part_size: 1 << 20,
            max_concurrency: 4,
            single_put_threshold: 1 << 20,
        }
    });
    // Early: falls back to staging.
    let (_, fh) =
        e.fs.create(&CTX, ROOT_INO, n("hdr"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh, 0, b"XXXXbody").await.expect("write");
    e.fs.write(fh, 0, b"HEAD").await.expect("seek back early");
    e.fs.release(fh).await.expect("release");
    assert_eq!(e.store.get("hdr").as_deref(), Some(&b"HEADbody"[..]));
    // After parts were uploaded: the local copy takes over, the multipart upload is
    // aborted.
    let (_, fh) =
        e.fs.create(&CTX, ROOT_INO, n("long"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    let chunk = vec![7u8; 1 << 20];
    for i in 0..12u64 {
        e.fs.write(fh, i << 20, &chunk).await.expect("write");
    }
    assert_eq!(e.store.count("InitiateMultipartUpload"), 1);
    e.fs.write(fh, 0, b"x").await.expect("seek back late");
    e.fs.release(fh).await.expect("release");
    let mut want = vec![7u8; 12 << 20];
    want[0] = b'x';
    assert_eq!(e.store.get("long").as_deref(), Some(&want[..]));
    assert_eq!(e.store.pending_uploads(), 0);
}

async fn concurrent_writers() {
    let e = env();
    e.store.put("f", "old");
    let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    let reader = e.fs.open(a.ino, libc::O_RDONLY).await.expect("open r");
    let w1 =
        e.fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .expect("open w1");
    e.fs.write(w1, 0, b"first").await.expect("w1");
    assert_eq!(
        e.store.get("f").as_deref(),
        Some(&b"old"[..]),
        "old until close"
    );
    // Descriptors of this mount share the pending data.
    assert_eq!(
        &e.fs.read(reader, 0, 100).await.expect("read")[..],
        b"first"
    );
    e.fs.release(w1).await.expect("close w1");
    let w2 =
        e.fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .expect("open w2");
    e.fs.write(w2, 0, b"second").await.expect("w2");
    e.fs.release(w2).await.expect("close w2");
    assert_eq!(
        e.store.get("f").as_deref(),
        Some(&b"second"[..]),
        "last close wins"
    );
    e.fs.release(reader).await.expect("release reader");
}

async fn unlink_mkdir_rmdir() {
    let e = env();
    let d =
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o755, 0)
            .await
            .expect("mkdir");
    assert!(e.store.contains("d/"), "dir/ marker");
    write_file(&e.fs, d.ino, "f", b"1").await;
    let err = e.fs.rmdir(ROOT_INO, n("d")).await.expect_err("not empty");
    assert_eq!(err.errno(), libc::ENOTEMPTY);
    e.fs.unlink(d.ino, n("f")).await.expect("unlink");
    assert!(!e.store.contains("d/f"));
    e.fs.rmdir(ROOT_INO, n("d")).await.expect("rmdir");
    assert!(!e.store.contains("d/"));
}

async fn rename_file() {
    let e = env();
    e.store.put("a", "data");
    e.fs.lookup(ROOT_INO, n("a")).await.expect("lookup");
    e.store.reset_counts();
    e.fs.rename(ROOT_INO, n("a"), ROOT_INO, n("b"), 0)
        .await
        .expect("rename");
    assert_eq!(e.store.count("CopyObject"), 1);
    assert!(e.store.count("DeleteObject") + e.store.count("DeleteMultipleObjects") >= 1);
    assert_eq!(e.store.get("b").as_deref(), Some(&b"data"[..]));
    assert!(!e.store.contains("a"));
    // Open for writing: the pending data moves to the new name, nothing is published at
    // the old one.
    let (_, fh) =
        e.fs.create(&CTX, ROOT_INO, n("w"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.write(fh, 0, b"pending").await.expect("write");
    e.fs.rename(ROOT_INO, n("w"), ROOT_INO, n("w2"), 0)
        .await
        .expect("rename open file");
    e.fs.release(fh).await.expect("release");
    assert!(!e.store.contains("w"));
    assert_eq!(e.store.get("w2").as_deref(), Some(&b"pending"[..]));
}

async fn rename_dir() {
    let e = env();
    for k in ["src/a", "src/sub/b"] {
        e.store.put(k, k);
    }
    e.fs.lookup(ROOT_INO, n("src")).await.expect("lookup");
    e.fs.rename(ROOT_INO, n("src"), ROOT_INO, n("dst"), 0)
        .await
        .expect("rename dir");
    assert_eq!(e.store.get("dst/a").as_deref(), Some(&b"src/a"[..]));
    assert_eq!(e.store.get("dst/sub/b").as_deref(), Some(&b"src/sub/b"[..]));
    assert!(!e.store.contains("src/a") && !e.store.contains("src/sub/b"));
    assert!(e.store.count("CopyObject") >= 2, "object by object");
}

async fn setattr() {
    let e = env();
    e.store.put("f", "x");
    let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    let set = SetAttr {
        mode: Some(0o600),
        uid: Some(42),
        gid: Some(43),
        ..SetAttr::default()
    };
    e.fs.setattr(a.ino, set).await.expect("setattr");
    let meta = e.store.object("f").expect("object").user_meta;
    assert_eq!(
        meta.get("mode").map(String::as_str),
        Some("33152"),
        "{meta:?}"
    );
    assert_eq!(meta.get("uid").map(String::as_str), Some("42"));
    assert_eq!(meta.get("gid").map(String::as_str), Some("43"));
    assert_eq!(e.store.get("f").as_deref(), Some(&b"x"[..]), "data kept");
}

async fn new_entries() {
    let e = env();
    let ctx = Ctx {
        uid: 1234,
        gid: 567,
        pid: 1,
    };
    let (a, fh) =
        e.fs.create(&ctx, ROOT_INO, n("mine"), 0o666, 0o022, libc::O_WRONLY)
            .await
            .expect("create");
    e.fs.release(fh).await.expect("release");
    assert_eq!((a.uid, a.gid, a.perm), (1234, 567, 0o644));
    let d =
        e.fs.mkdir(&ctx, ROOT_INO, n("dir"), 0o777, 0o027)
            .await
            .expect("mkdir");
    assert_eq!((d.uid, d.gid, d.perm), (1234, 567, 0o750));
}

async fn dir_times() {
    let e = env();
    let d =
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o755, 0)
            .await
            .expect("mkdir");
    tokio::time::sleep(Duration::from_millis(20)).await;
    write_file(&e.fs, d.ino, "f", b"1").await;
    let after = e.fs.getattr(d.ino).await.expect("getattr");
    assert!(
        after.mtime > d.mtime && after.ctime > d.ctime,
        "moved by a new entry"
    );
    e.fs.mkdir(&CTX, d.ino, n("sub"), 0o755, 0)
        .await
        .expect("mkdir sub");
    assert_eq!(e.fs.getattr(d.ino).await.expect("getattr").nlink, 3);
}

async fn atime() {
    let e = env();
    e.store.put("f", "x");
    let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    e.store.reset_counts();
    let set = SetAttr {
        atime: Some(TimeSet::At(std::time::UNIX_EPOCH)),
        ..SetAttr::default()
    };
    let after =
        e.fs.setattr(a.ino, set)
            .await
            .expect("utimensat of atime alone");
    assert_eq!(after.mtime, a.mtime, "changes nothing");
    assert_eq!(e.store.total_requests(), 0, "{:?}", e.store.counts());
    assert!(
        !e.store
            .object("f")
            .expect("object")
            .user_meta
            .contains_key("atime")
    );
}

/// The two storage forms; every other text kind, links made by other clients and
/// directory renames are checked in `tests/fs/symlink.rs`.
async fn symlink() {
    let e = env();
    let sub =
        e.fs.mkdir(&CTX, ROOT_INO, n("sub"), 0o755, 0)
            .await
            .expect("mkdir");
    // Relative and under the prefix: an OSS Symlink to the resolved key.
    let l =
        e.fs.symlink(&CTX, sub.ino, n("native"), Path::new("../some/target"))
            .await
            .expect("symlink");
    assert_eq!(l.kind, FileKind::Symlink);
    assert_eq!(
        e.fs.readlink(l.ino).await.expect("readlink"),
        "../some/target",
        "given back as written"
    );
    let native = e.store.object("sub/native").expect("stored");
    assert_eq!(native.object_type, ObjectType::Symlink);
    assert_eq!(native.symlink_target.as_deref(), Some("some/target"));
    // Absolute: the ossfs 1.x way, the body is the text.
    let a =
        e.fs.symlink(&CTX, ROOT_INO, n("abs"), Path::new("/etc/hostname"))
            .await
            .expect("symlink");
    assert_eq!(
        e.fs.readlink(a.ino).await.expect("readlink"),
        "/etc/hostname"
    );
    let ossfs = e.store.object("abs").expect("stored");
    assert_eq!(ossfs.object_type, ObjectType::Normal);
    assert_eq!(&ossfs.data[..], b"/etc/hostname");
    let mode: u32 = ossfs.user_meta["mode"].parse().expect("mode");
    assert_eq!(mode & libc::S_IFMT, libc::S_IFLNK);
}

async fn hard_links() {
    let e = env();
    let f = write_file(&e.fs, ROOT_INO, "f", b"1").await;
    let err = e.fs.link(f, ROOT_INO, n("hard")).await.expect_err("link");
    assert_eq!(err.errno(), libc::EPERM);
    assert_eq!(e.fs.getattr(f).await.expect("getattr").nlink, 1);
}

async fn special_files() {
    let e = env();
    for (name, kind, rdev) in [
        ("fifo", libc::S_IFIFO, 0),
        ("sock", libc::S_IFSOCK, 0),
        ("chr", libc::S_IFCHR, 0x0103),
        ("blk", libc::S_IFBLK, 0x0801),
    ] {
        e.store.reset_counts();
        let a =
            e.fs.mknod(&CTX, ROOT_INO, n(name), kind | 0o666, 0o022, rdev)
                .await
                .expect("mknod");
        assert_eq!(e.store.count("PutObject"), 1, "{name}: one PutObject");
        assert_eq!((a.mode(), a.rdev, a.uid), (kind | 0o644, rdev, CTX.uid));
        let o = e.store.object(name).expect("stored");
        assert!(o.data.is_empty(), "{name}: an empty object");
        assert_eq!(o.user_meta["mode"], (kind | 0o644).to_string());
        assert_eq!(
            o.user_meta.get("rdev").map(String::as_str),
            (rdev != 0).then(|| rdev.to_string()).as_deref(),
            "{name}: rdev only for devices"
        );
    }
    // chmod keeps the type; rename and unlink work as for files.
    let fifo = e.fs.lookup(ROOT_INO, n("fifo")).await.expect("lookup");
    let set = SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    e.fs.setattr(fifo.ino, set).await.expect("chmod");
    let mode: u32 = e.store.object("fifo").expect("fifo").user_meta["mode"]
        .parse()
        .expect("mode");
    assert_eq!(mode, libc::S_IFIFO | 0o600);
    e.fs.rename(ROOT_INO, n("chr"), ROOT_INO, n("chr2"), 0)
        .await
        .expect("rename");
    assert_eq!(
        e.store.object("chr2").expect("moved").user_meta["rdev"],
        "259"
    );
    e.fs.unlink(ROOT_INO, n("sock")).await.expect("unlink");
    assert!(!e.store.contains("sock"));
}

async fn split_pages() {
    let e = env();
    // `x` on the first page, `x/` on the second: 1000 keys sort between them.
    e.store.put("x", "file");
    for i in 0..1000 {
        e.store.put(&format!("x-{i:04}"), "");
    }
    e.store.put("x/in", "1");
    let listed = readdir_all(&e.fs, ROOT_INO).await;
    assert!(listed.iter().any(|d| d.name == "x"), "x is listed");
    let x = e.fs.lookup(ROOT_INO, n("x")).await.expect("lookup");
    assert_eq!(x.kind, FileKind::Dir, "lookup says directory");
}

async fn hidden_keys() {
    let e = env();
    for k in [
        "a//b",
        "./c",
        "d/../e",
        &format!("{}/f", "n".repeat(256)),
        "ok",
    ] {
        e.store.put(k, "1");
    }
    let names: Vec<String> = readdir_all(&e.fs, ROOT_INO)
        .await
        .into_iter()
        .map(|d| d.name)
        .filter(|n| n != "." && n != "..")
        .collect();
    assert!(names.contains(&"ok".to_string()), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.len() <= 255 && !n.is_empty() && n != "."),
        "{names:?}"
    );
    assert!(e.store.contains("a//b"), "left untouched in the bucket");
}

async fn statfs() {
    let e = env();
    let st = e.fs.statfs().await.expect("statfs");
    assert!(
        st.bfree.saturating_mul(u64::from(st.bsize)) >= 1 << 50,
        "{st:?}"
    );
}

async fn local_files() {
    let cache = tempfile::tempdir().expect("tempdir");
    let staging = cache.path().join("staging-root");
    let e = env_with(|c| c.cache_dir = staging.clone());
    e.store.put("f", vec![1u8; 4096]);
    let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    let fh = e.fs.open(a.ino, libc::O_RDWR).await.expect("open");
    e.fs.write(fh, 1, b"X").await.expect("staged write");
    let mut files = 0;
    let mut stack = vec![staging.clone()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", dir.display());
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("meta");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", entry.path().display());
            }
        }
    }
    assert!(
        files >= 1,
        "the staging file exists while the handle is open"
    );
    e.fs.release(fh).await.expect("release");
}

async fn read_only() {
    let e = env_with(|c| c.read_only = true);
    e.store.put("f", "x");
    let a = e.fs.lookup(ROOT_INO, n("f")).await.expect("lookup");
    let err =
        e.fs.create(&CTX, ROOT_INO, n("new"), 0o644, 0, libc::O_WRONLY)
            .await
            .expect_err("create");
    assert_eq!(err.errno(), libc::EROFS);
    let err =
        e.fs.mkdir(&CTX, ROOT_INO, n("d"), 0o755, 0)
            .await
            .expect_err("mkdir");
    assert_eq!(err.errno(), libc::EROFS);
    let err = e.fs.unlink(ROOT_INO, n("f")).await.expect_err("unlink");
    assert_eq!(err.errno(), libc::EROFS);
    assert_eq!(read_all(&e.fs, a.ino).await, b"x", "reads still work");
}
