//! A crash of the mount process (SIGKILL) in the middle of a large write:
//! - no object, partial or otherwise, appears under the file's key;
//! - the dead mount is detected on the next `ossmount` (a clear "stale" message with the
//!   way out), and `--recover-stale-mount` mounts over it and works;
//! - the abandoned multipart upload is listed and aborted by the documented
//!   `ossmount cleanup --older-than 0` command.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::emulator::Emu;
use crate::common::mount::{BinMount, is_mounted, ossmount_cmd};
use crate::common::{close_checked, pattern};

#[test]
fn kill_9_during_large_write_leaves_nothing_and_recovers() {
    let emu = Emu::start("crash-bucket", |c| c);
    emu.put("before.txt", b"survives".to_vec());
    // Overwritten (O_TRUNC) while the crash happens: the old content must survive.
    let precious = pattern(3 << 20, 8);
    emu.put("precious.bin", precious.clone());
    let dir = tempfile::tempdir().unwrap();
    let mnt_path = dir.path().join("mnt");
    let mnt = BinMount::start(&emu, &mnt_path, &["--part-size", "1MiB"]).expect("mount");
    let mnt_path = mnt.mnt.clone();
    let target = mnt.path("large.bin");

    // The writer keeps writing until the mount dies under it.
    let writer = std::thread::spawn(move || -> (u64, Option<std::io::Error>) {
        let mut f = match std::fs::File::create(&target) {
            Ok(f) => f,
            Err(e) => return (0, Some(e)),
        };
        let chunk = pattern(256 << 10, 9);
        let mut written = 0u64;
        for _ in 0..(256 * 4) {
            if let Err(e) = f.write_all(&chunk) {
                return (written, Some(e));
            }
            written += chunk.len() as u64;
        }
        (written, close_checked(f).err())
    });

    let overwrite_target = mnt.path("precious.bin");
    let overwriter = std::thread::spawn(move || -> Option<std::io::Error> {
        let mut f = match std::fs::File::create(&overwrite_target) {
            Ok(f) => f,
            Err(e) => return Some(e),
        };
        let chunk = pattern(64 << 10, 10);
        loop {
            if let Err(e) = f.write_all(&chunk) {
                return Some(e);
            }
        }
    });

    // Kill once parts are being uploaded (the upload is in flight, not finished).
    let deadline = Instant::now() + Duration::from_secs(60);
    while emu.emu().stats().requests_for("UploadPart") < 3 {
        assert!(Instant::now() < deadline, "no part uploaded in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The kernel now holds the root's attributes for the metadata TTL: the stale-mount
    // check below must not take that cached answer for a live mount.
    std::fs::metadata(&mnt_path).expect("stat the mount root");
    let stale = mnt.kill9();
    let (written, err) = writer.join().expect("writer thread");
    let err = err.expect("the write cannot succeed once the mount process is gone");
    eprintln!("crash: killed after {written} bytes written; writer saw: {err}");
    let err2 = overwriter.join().expect("overwriter thread");
    assert!(err2.is_some(), "the overwrite cannot succeed");
    assert!(
        emu.get("precious.bin").as_deref() == Some(&precious[..]),
        "the overwritten object lost its old content in the crash"
    );

    // Nothing visible, the upload is pending.
    assert!(emu.get("large.bin").is_none(), "partial object after crash");
    let pending = emu.uploads();
    assert!(
        pending.iter().any(|u| u.key == "large.bin"),
        "the crashed upload should be pending: {pending:?}"
    );
    assert!(
        pending
            .iter()
            .all(|u| u.key == "large.bin" || u.key == "precious.bin")
    );

    // The stale mount is detected with a clear message.
    assert!(
        is_mounted(&stale.0),
        "the dead mount entry should still be there"
    );
    let out = ossmount_cmd(emu.dir.path())
        .env("OSS_ACCESS_KEY_ID", "emulator-ak")
        .env("OSS_ACCESS_KEY_SECRET", "emulator-secret")
        .args(["-f", "--region", "cn-hangzhou", "--endpoint"])
        .arg(emu.endpoint())
        .arg(&emu.bucket)
        .arg(&mnt_path)
        .output()
        .expect("run ossmount");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("stale"), "{stderr}");
    assert!(stderr.contains("--recover-stale-mount"), "{stderr}");

    // Recovery: mount over the dead entry and use it.
    let again = BinMount::start(&emu, &mnt_path, &["--recover-stale-mount"])
        .expect("mount with --recover-stale-mount");
    assert_eq!(
        std::fs::read(again.path("before.txt")).expect("read after recovery"),
        b"survives"
    );
    assert!(
        !again.path("large.bin").exists(),
        "the crashed file must not be listed"
    );
    std::fs::write(again.path("after.txt"), b"works").expect("write after recovery");
    assert_eq!(emu.get("after.txt").as_deref(), Some(&b"works"[..]));
    assert!(again.log_text().contains("stale"), "{}", again.log_text());

    // Cleanup: the documented command finds and aborts the abandoned upload.
    let out = ossmount_cmd(emu.dir.path())
        .env("OSS_ACCESS_KEY_ID", "emulator-ak")
        .env("OSS_ACCESS_KEY_SECRET", "emulator-secret")
        .args(["cleanup", "--older-than", "0", "--region", "cn-hangzhou"])
        .arg("--endpoint")
        .arg(emu.endpoint())
        .arg(&emu.bucket)
        .output()
        .expect("run ossmount cleanup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("large.bin"), "{stdout}");
    assert!(
        stdout.contains(&format!("aborted {} upload(s)", pending.len())),
        "{stdout}"
    );
    assert!(emu.uploads().is_empty(), "uploads left after cleanup");
    eprintln!(
        "crash: old content of an overwritten object intact, stale mount detected and recovered, {} abandoned upload(s) aborted by cleanup",
        pending.len()
    );
    drop(again);
    drop(stale);
}
