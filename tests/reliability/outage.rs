//! OSS unreachable while mounted: the emulator is stopped under a live mount and started
//! again on the same address. During the outage every operation ends within its
//! deadline (no hang) with a clean error (EIO for data, or ENOENT/EIO for lookups), and
//! a write that cannot be uploaded fails at close with EIO and leaves nothing. After the
//! outage the same mount works again without a remount.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::emulator::Emu;
use crate::common::mount::BinMount;
use crate::common::{close_checked, pattern, with_timeout};

#[test]
fn server_outage_gives_clean_errors_then_the_mount_recovers() {
    let mut emu = Emu::start("outage", |c| c);
    emu.put("before.bin", pattern(3 << 20, 1));
    let addr = emu.emu().addr();
    let dir = tempfile::tempdir().unwrap();
    let mnt = BinMount::start(
        &emu,
        &dir.path().join("mnt"),
        &[
            "--metadata-ttl",
            "0",
            "--retries",
            "2",
            "--connect-timeout",
            "1s",
            "--readwrite-timeout",
            "2s",
        ],
    )
    .expect("mount");

    emu.stop();
    let started = Instant::now();
    let mut errors = Vec::new();
    // Read of an object never read before: the GET cannot happen.
    let p = mnt.path("before.bin");
    let r = with_timeout("read during outage", Duration::from_secs(60), move || {
        std::fs::read(p)
    });
    errors.push(("read", r.map(|_| ()).err()));
    // Listing.
    let p = mnt.mnt.clone();
    let r = with_timeout(
        "readdir during outage",
        Duration::from_secs(60),
        move || std::fs::read_dir(p)?.collect::<Result<Vec<_>, _>>(),
    );
    errors.push(("readdir", r.map(|_| ()).err()));
    // A new file: the upload at close must fail.
    let p = mnt.path("during.bin");
    let r = with_timeout("write during outage", Duration::from_secs(60), move || {
        let mut f = std::fs::File::create(p)?;
        f.write_all(&pattern(2 << 20, 2))?;
        close_checked(f)
    });
    errors.push(("write", r.err()));
    for (what, e) in &errors {
        let e = e
            .as_ref()
            .unwrap_or_else(|| panic!("{what} succeeded with the server down"));
        let code = e.raw_os_error();
        assert!(
            [Some(libc::EIO), Some(libc::ENOENT), Some(libc::ETIMEDOUT)].contains(&code),
            "{what}: unexpected error {e}"
        );
    }
    eprintln!(
        "outage: {} operations failed cleanly in {:?}: {:?}",
        errors.len(),
        started.elapsed(),
        errors
            .iter()
            .map(|(w, e)| format!(
                "{w}: {}",
                e.as_ref().map(|e| e.to_string()).unwrap_or_default()
            ))
            .collect::<Vec<_>>()
    );

    emu.restart(addr);
    assert!(
        emu.get("during.bin").is_none(),
        "failed write left an object"
    );
    // The same mount works again.
    let p = mnt.path("before.bin");
    let back = with_timeout("read after outage", Duration::from_secs(60), move || {
        std::fs::read(p)
    })
    .expect("read after outage");
    assert!(back == pattern(3 << 20, 1));
    std::fs::write(mnt.path("after.bin"), b"after").expect("write after outage");
    assert_eq!(emu.get("after.bin").as_deref(), Some(&b"after"[..]));
    assert!(emu.uploads().is_empty(), "uploads left open");
    drop(mnt);
}
