//! The in-process emulator on a loopback port, and clients pointed at it.
//!
//! - [`Emu`]: the emulator on its own runtime (for synchronous tests that mount), plus a
//!   client with the emulator's static keys for looking at what the server really holds
//!   (bypassing the mount and its caches); [`Emu::runtime`] serves the test's own async
//!   calls and [`Emu::write_passwd_file`] the keys to mounts that read a passwd file.
//! - [`start_emulator`] / [`TestEnv`]: the emulator on the test's own runtime (async
//!   client tests), with fast-retrying clients.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ossmount::client::{ClientConfig, OssClient};
use ossmount::credentials::{CredentialsProvider, StaticProvider};
use ossmount::store::{MultipartUploadInfo, ObjectStore, PutOptions};
use ossmount_emulator::{EmulatorConfig, RunningEmulator, start};

/// Bucket of [`start_emulator`].
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

/// The emulator, its runtime and its data directory.
pub(crate) struct Emu {
    pub emu: Option<RunningEmulator>,
    pub client: Arc<OssClient>,
    pub bucket: String,
    pub dir: tempfile::TempDir,
    rt: Option<tokio::runtime::Runtime>,
}

impl Emu {
    /// Starts an emulator serving `bucket`; `tweak` adjusts the config (faults, metadata).
    pub(crate) fn start(bucket: &str, tweak: impl FnOnce(EmulatorConfig) -> EmulatorConfig) -> Emu {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = tweak(EmulatorConfig::new(dir.path().join("emu"), bucket));
        let emu = rt.block_on(start(cfg)).expect("emulator");
        let provider = Arc::new(StaticProvider {
            creds: emu.credentials(),
            source: "test".into(),
        });
        let mut ccfg = ClientConfig::new(emu.endpoint(), bucket, emu.region(), provider);
        ccfg.retry_base_delay = Duration::from_millis(5);
        ccfg.max_attempts = 10;
        let client = Arc::new(OssClient::new(ccfg).expect("client"));
        Emu {
            emu: Some(emu),
            client,
            bucket: bucket.to_string(),
            dir,
            rt: Some(rt),
        }
    }

    /// Stops the emulator (connections refused from now on) until [`Emu::restart`].
    pub(crate) fn stop(&mut self) {
        if let Some(e) = self.emu.take() {
            self.block_on(e.shutdown());
        }
    }

    /// Starts the emulator again on the same address and data directory.
    pub(crate) fn restart(&mut self, addr: std::net::SocketAddr) {
        let mut cfg = EmulatorConfig::new(self.dir.path().join("emu"), &self.bucket);
        cfg.listen = addr;
        let emu = self.block_on(start(cfg)).expect("restart emulator");
        self.emu = Some(emu);
    }

    pub(crate) fn emu(&self) -> &RunningEmulator {
        self.emu.as_ref().expect("emulator running")
    }

    pub(crate) fn endpoint(&self) -> String {
        self.emu().endpoint()
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime().block_on(f)
    }

    /// The runtime the emulator runs on, for the test's own async calls (gRPC, control
    /// socket) and for filesystems mounted in-process.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("runtime")
    }

    /// Writes the emulator's static keys to `path` as an ossfs passwd file
    /// (`ak:secret`, mode 0600), for `credentials_file=` / `passwd_file=` mounts.
    pub(crate) fn write_passwd_file(&self, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let creds = self.emu().credentials();
        std::fs::write(
            path,
            format!(
                "{}:{}\n",
                creds.access_key_id,
                creds.access_key_secret.expose()
            ),
        )
        .expect("write passwd file");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod passwd file");
    }

    /// The object's bytes as the server holds them (None when absent).
    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.block_on(async {
            let meta = self.client.head_object(key).await.ok()?;
            if meta.size == 0 {
                return Some(Vec::new());
            }
            let out = self.client.get_range(key, 0..meta.size, None).await.ok()?;
            Some(out.data.to_vec())
        })
    }

    pub(crate) fn put(&self, key: &str, data: Vec<u8>) {
        self.block_on(
            self.client
                .put_object(key, data.into(), &PutOptions::default()),
        )
        .expect("put");
    }

    /// Open multipart uploads in the whole bucket.
    pub(crate) fn uploads(&self) -> Vec<MultipartUploadInfo> {
        self.block_on(self.client.list_multipart_uploads(""))
            .expect("list uploads")
    }

    /// Directory holding the bucket's object files (for corrupting them behind the
    /// emulator's back).
    pub(crate) fn objects_dir(&self) -> PathBuf {
        self.dir
            .path()
            .join("emu")
            .join(&self.bucket)
            .join("objects")
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        drop(self.emu.take());
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Config of a client of `emulator`'s `bucket` with its static keys, path-style URLs and
/// the library's default retries (what the mount itself would use).
pub(crate) fn client_config(emulator: &RunningEmulator, bucket: &str) -> ClientConfig {
    let provider = Arc::new(StaticProvider {
        creds: emulator.credentials(),
        source: "test".into(),
    });
    let mut cfg = ClientConfig::new(emulator.endpoint(), bucket, emulator.region(), provider);
    cfg.url_style = ossmount::client::UrlStyle::Path;
    cfg
}

/// A client of `emulator`'s `bucket` ([`client_config`]).
pub(crate) fn client_for(emulator: &RunningEmulator, bucket: &str) -> OssClient {
    OssClient::new(client_config(emulator, bucket)).expect("client")
}
