//! Expiring credentials under load, through the real binary: `ossmount --ram-role` takes
//! short-lived STS credentials from the emulator's ECS metadata service while files are
//! written, read back and re-read continuously. No operation may fail, several credential
//! sets must be issued (refreshes), and a metadata-service outage while the current set
//! is still valid must go unnoticed.
//!
//! CI: 15 s credentials, 45 s of load, an 8 s outage started right after a refresh (the
//! current set then has its whole lifetime left). `scripts/reliability-creds.sh` runs the
//! long version (60 s credentials, 5 minutes, 30 s outage) through the same test with
//! RELIABILITY_STS_SECS / RELIABILITY_CREDS_SECS / RELIABILITY_OUTAGE_SECS.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::emulator::Emu;
use crate::common::mount::{BinMount, ossmount_cmd};
use crate::common::{close_checked, pattern};

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

#[test]
fn ram_role_credentials_expire_and_refresh_without_failed_ops() {
    let lifetime = env_secs("RELIABILITY_STS_SECS", 15);
    let run_for = env_secs("RELIABILITY_CREDS_SECS", 45);
    let outage = env_secs("RELIABILITY_OUTAGE_SECS", 8);
    let emu = Emu::start("expiring-creds", |c| {
        let mut c = c.with_metadata();
        c.sts_lifetime = lifetime;
        c
    });
    let big = pattern(2 << 20, 3);
    emu.put("shared.bin", big.clone());
    let meta = emu.emu().metadata_addr().expect("metadata listener");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ossmount_cmd(emu.dir.path());
    cmd.env("OSSMOUNT_ECS_METADATA_ENDPOINT", format!("http://{meta}"))
        .env("OSSMOUNT_LOG", "info,ossmount::credentials=debug");
    let mnt = BinMount::start_with(
        &emu,
        &dir.path().join("mnt"),
        cmd,
        &["--ram-role", ossmount_emulator::ROLE_NAME],
    )
    .expect("mount with --ram-role");
    let issued_at_start = emu.emu().stats().sts_issued;

    let started = Instant::now();
    let mut ops = 0u64;
    let mut bytes = 0u64;
    let mut outage_started: Option<Instant> = None;
    let mut outage_done = false;
    let mut i = 0u64;
    while started.elapsed() < run_for {
        // Outage: begin right after a refresh was served, end after `outage`.
        let issued = emu.emu().stats().sts_issued;
        if outage_started.is_none() && !outage_done && issued > issued_at_start {
            emu.emu().set_metadata_down(true);
            outage_started = Some(Instant::now());
            eprintln!("metadata service down at {:?}", started.elapsed());
        }
        if let Some(t) = outage_started
            && t.elapsed() >= outage
        {
            emu.emu().set_metadata_down(false);
            outage_started = None;
            outage_done = true;
            eprintln!("metadata service up at {:?}", started.elapsed());
        }

        let name = format!("f{}.bin", i % 7);
        let data = pattern(50_000 + (i as usize % 5) * 30_000, 1000 + i);
        let path = mnt.path(&name);
        let mut f = std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("create {name} at {:?}: {e}", started.elapsed()));
        f.write_all(&data)
            .unwrap_or_else(|e| panic!("write {name} at {:?}: {e}", started.elapsed()));
        close_checked(f).unwrap_or_else(|e| {
            panic!(
                "close {name} at {:?}: {e}\n{}",
                started.elapsed(),
                mnt.log_text()
            )
        });
        let back = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("read {name} at {:?}: {e}", started.elapsed()));
        assert!(back == data, "{name}: read back different bytes");
        // A fresh open of the shared object: a GET signed with the current credentials.
        let shared = std::fs::read(mnt.path("shared.bin"))
            .unwrap_or_else(|e| panic!("read shared at {:?}: {e}", started.elapsed()));
        assert!(shared == big, "shared.bin changed");
        let listed = std::fs::read_dir(&mnt.mnt)
            .unwrap_or_else(|e| panic!("readdir at {:?}: {e}", started.elapsed()))
            .count();
        assert!(listed >= 2);
        ops += 5;
        bytes += (data.len() * 2 + big.len()) as u64;
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    emu.emu().set_metadata_down(false);
    let stats = emu.emu().stats();
    let refreshes = stats.sts_issued.saturating_sub(1);
    eprintln!(
        "expiring credentials: {ops} ops ({bytes} bytes) over {:?} with {}s credentials; {} sets issued ({refreshes} refreshes), {} metadata requests, outage {}; auth failures {:?}",
        started.elapsed(),
        lifetime.as_secs(),
        stats.sts_issued,
        stats.metadata_requests,
        if outage_done {
            format!("{}s done", outage.as_secs())
        } else {
            "not reached".into()
        },
        stats.auth_failures
    );
    assert!(outage_done, "the run ended before the outage could happen");
    let min_refreshes = (run_for.as_secs() / lifetime.as_secs()).max(2);
    assert!(
        refreshes >= min_refreshes,
        "only {refreshes} refreshes in {run_for:?}"
    );
    let expired: u64 = stats
        .auth_failures
        .iter()
        .filter(|(k, _)| k.contains("Expired") || k.contains("Token"))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(expired, 0, "requests with expired credentials: {stats:?}");
    drop(mnt);
}
