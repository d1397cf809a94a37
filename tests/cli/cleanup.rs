//! `ossmount cleanup` against the in-process emulator: lists abandoned multipart uploads,
//! honours `--older-than` and `--dry-run`, and aborts them.

use std::process::Command;

use crate::common::emulator::Emu;
use ossmount::store::{ObjectStore, PutOptions};

const BIN: &str = env!("CARGO_BIN_EXE_ossmount");
const BUCKET: &str = "cleanup-bucket";

#[test]
fn cleanup_lists_and_aborts_uploads() {
    let emu = Emu::start(BUCKET, |c| c);
    let (rt, emulator) = (emu.runtime(), emu.emu());
    let dir = tempfile::tempdir().unwrap();
    let client = crate::common::emulator::client_for(emulator, BUCKET);
    rt.block_on(async {
        client
            .initiate_multipart_upload("logs/big.bin", &PutOptions::default())
            .await
            .unwrap();
        client
            .initiate_multipart_upload("other/x.bin", &PutOptions::default())
            .await
            .unwrap();
    });

    let cleanup = |extra: &[&str]| {
        let out = Command::new(BIN)
            .env_clear()
            .env("HOME", dir.path())
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .env("OSS_ACCESS_KEY_ID", "emulator-ak")
            .env("OSS_ACCESS_KEY_SECRET", "emulator-secret")
            .args(["cleanup", "--region", "cn-hangzhou", "--endpoint"])
            .arg(format!("http://{}", emulator.addr()))
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("panicked"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // Fresh uploads are not "abandoned" under the default 24 h threshold.
    let stdout = cleanup(&[&format!("{BUCKET}:logs/")]);
    assert!(
        stdout.contains("no abandoned multipart uploads"),
        "{stdout}"
    );

    let stdout = cleanup(&["--older-than", "0", "--dry-run", &format!("{BUCKET}:logs/")]);
    assert!(stdout.contains("would abort logs/big.bin"), "{stdout}");
    assert!(
        !stdout.contains("other/x.bin"),
        "prefix not honoured: {stdout}"
    );
    let pending = rt.block_on(client.list_multipart_uploads("")).unwrap();
    assert_eq!(pending.len(), 2, "dry run aborted something");

    let stdout = cleanup(&["--older-than", "0", &format!("{BUCKET}:logs/")]);
    assert!(stdout.contains("aborted 1 upload(s)"), "{stdout}");
    let pending = rt.block_on(client.list_multipart_uploads("")).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].key, "other/x.bin");
}
