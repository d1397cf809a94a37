//! An object replaced behind the mount's back while a handle reads it: every read of that
//! handle returns the *old* bytes or fails with ESTALE — never a mix of versions — and a
//! new open sees the new object.

mod reliability_support;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use reliability_support::{BinMount, Emu, pattern, with_timeout};

#[test]
fn reads_never_mix_object_versions() {
    let emu = Emu::start("versions", |c| c);
    let size = 16 << 20;
    let old = pattern(1, size);
    let new = pattern(2, size);
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
