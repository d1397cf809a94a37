//! An object replaced behind the mount's back while a handle reads it: every read of that
//! handle returns the *old* bytes or fails with ESTALE — never a mix of versions — and a
//! new open sees the new object.

use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::common::emulator::Emu;
use crate::common::mount::BinMount;
use crate::common::{close_checked, pattern, with_timeout};

#[test]
fn reads_never_mix_object_versions() {
    let emu = Emu::start("versions", |c| c);
    let size = 16 << 20;
    let old = pattern(size, 1);
    let new = pattern(size, 2);
    emu.put("v.bin", old.clone());
    let dir = tempfile::tempdir().unwrap();
    // Small memory cache: most of the object must come from the server after the change.
    let mnt = BinMount::start(
        &emu,
        &dir.path().join("mnt"),
        &["--cache-size", "4MiB", "--metadata-ttl", "0"],
    )
    .expect("mount");
    let path = mnt.path("v.bin");
    let f = std::fs::File::open(&path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    f.read_exact_at(&mut buf, 0).expect("first read");
    assert!(buf[..] == old[..1 << 20]);

    emu.put("v.bin", new.clone());
    let (mut old_reads, mut stale) = (0, 0);
    let mut off = 1 << 20;
    while off < size {
        let len = (1 << 20).min(size - off);
        let mut buf = vec![0u8; len];
        match f.read_exact_at(&mut buf, off as u64) {
            Ok(()) => {
                assert!(
                    buf[..] == old[off..off + len],
                    "read at {off} returned bytes of another version"
                );
                old_reads += 1;
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "read at {off}: {e}");
                stale += 1;
            }
        }
        off += len;
    }
    drop(f);
    let p = path.clone();
    let fresh = with_timeout("re-open", Duration::from_secs(60), move || std::fs::read(p))
        .expect("read after re-open");
    assert!(fresh == new, "a new open must see the new object");
    eprintln!(
        "versions: after the change {old_reads} reads returned old bytes, {stale} failed with ESTALE; re-open saw the new object"
    );
    assert!(stale > 0 || old_reads > 0);
}

/// A process that inherits a descriptor and closes it (here: a child's exec closing the
/// parent's O_CLOEXEC descriptor, which every `Command` spawn in a threaded program does)
/// makes the kernel send FLUSH. That flush is not the writer's close: it must not commit
/// the half-written file over the previous content. The writer's own close commits.
#[test]
fn a_child_closing_an_inherited_descriptor_commits_nothing() {
    use std::io::Write;
    let emu = Emu::start("inherited-fd", |c| c);
    let old = pattern(3 << 20, 1);
    emu.put("out.bin", old.clone());
    emu.put("small.txt", b"old".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let mnt =
        BinMount::start(&emu, &dir.path().join("mnt"), &["--part-size", "1MiB"]).expect("mount");
    let new = pattern(5 << 20, 2);
    let (path, small) = (mnt.path("out.bin"), mnt.path("small.txt"));
    let (new2, emu_get) = (new.clone(), |k: &str| emu.get(k));
    let (mut f, mut g) = with_timeout("open", Duration::from_secs(60), move || {
        (
            std::fs::File::create(path).unwrap(),
            std::fs::File::create(small).unwrap(),
        )
    });
    // Half of the new content: streamed (one part is uploaded) but not committed.
    f.write_all(&new2[..(5 << 20) / 2]).unwrap();
    g.write_all(b"new, half").unwrap();
    let st = std::process::Command::new("true").status().unwrap();
    assert!(st.success());
    // A forked child that exits at once closes every inherited descriptor: flushes too.
    // SAFETY: the child only calls `_exit`, which is async-signal-safe.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: `_exit` takes no pointers and is async-signal-safe, so it is sound in
        // the forked child.
        unsafe { libc::_exit(0) };
    }
    assert!(child > 0, "fork failed");
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        emu_get("out.bin").as_deref() == Some(&old[..]),
        "a child's exec committed a partial file over the previous content"
    );
    assert_eq!(emu_get("small.txt").as_deref(), Some(&b"old"[..]));
    f.write_all(&new2[(5 << 20) / 2..]).unwrap();
    g.write_all(b" and the rest").unwrap();
    close_checked(f).expect("close");
    close_checked(g).expect("close");
    assert!(
        emu_get("out.bin").as_deref() == Some(&new[..]),
        "content after close"
    );
    assert_eq!(
        emu_get("small.txt").as_deref(),
        Some(&b"new, half and the rest"[..])
    );
    drop(mnt);
}

/// The hand-over case: a parent opens a file, gives it to a child as stdout and does not
/// write itself. The child is a writer, so its exit commits, before the parent's
/// `wait` returns, even though the parent still holds its descriptor.
#[test]
fn a_child_that_writes_an_inherited_descriptor_commits_at_its_exit() {
    let emu = Emu::start("handover", |c| c);
    let dir = tempfile::tempdir().unwrap();
    let mnt = BinMount::start(&emu, &dir.path().join("mnt"), &[]).expect("mount");
    let path = mnt.path("child.out");
    let f = with_timeout("create", Duration::from_secs(60), move || {
        std::fs::File::create(path).unwrap()
    });
    let status = std::process::Command::new("sh")
        .args(["-c", "printf hello; printf ' from the child'"])
        .stdout(f.try_clone().unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        emu.get("child.out").as_deref(),
        Some(&b"hello from the child"[..]),
        "the child's exit did not commit its output"
    );
    close_checked(f).expect("close");
    assert_eq!(
        emu.get("child.out").as_deref(),
        Some(&b"hello from the child"[..])
    );
    drop(mnt);
}
