//! Shared set-up for the `client_*` integration tests: an in-process emulator on a
//! loopback port and clients pointed at it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use ossmount::client::{ClientConfig, OssClient};
use ossmount::credentials::{CredentialsProvider, StaticProvider};
use ossmount_emulator::{EmulatorConfig, RunningEmulator, start};

pub(crate) const BUCKET: &str = "client-test";

pub(crate) struct TestEnv {
    pub emu: RunningEmulator,
    pub dir: tempfile::TempDir,
}

pub(crate) async fn start_emulator(tweak: impl FnOnce(&mut EmulatorConfig)) -> TestEnv {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = EmulatorConfig::new(dir.path().join("data"), BUCKET);
    tweak(&mut cfg);
    let emu = start(cfg).await.expect("emulator starts");
    TestEnv { emu, dir }
}

impl TestEnv {
    pub(crate) fn static_provider(&self) -> Arc<dyn CredentialsProvider> {
        Arc::new(StaticProvider {
            creds: self.emu.credentials(),
            source: "test".into(),
        })
    }

    /// Fast-retrying config with the emulator's static keys.
    pub(crate) fn config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new(
            self.emu.endpoint(),
            BUCKET,
            self.emu.region(),
            self.static_provider(),
        );
        cfg.retry_base_delay = Duration::from_millis(5);
        cfg.read_timeout = Duration::from_secs(5);
        cfg
    }

    pub(crate) fn client(&self) -> OssClient {
        OssClient::new(self.config()).expect("client")
    }

    pub(crate) fn client_with(&self, tweak: impl FnOnce(&mut ClientConfig)) -> OssClient {
        let mut cfg = self.config();
        tweak(&mut cfg);
        OssClient::new(cfg).expect("client")
    }
}

/// Deterministic test data.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed as u32) as u8
                ^ (i >> 8) as u8
        })
        .collect()
}
