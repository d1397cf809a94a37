//! Real-network behaviour against the in-process emulator: HTTPS with a private CA
//! (`--ca-cert`, `SSL_CERT_FILE`, refusal without either), and a request-rate-limited
//! emulator (503, EC 0004-00000302) that a workload survives without an error.
//!
//! Certificates are made here with rcgen (a CA and a server certificate for 127.0.0.1 and
//! localhost). Every mount is unmounted by [`MountGuard`], even when a test fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::mount::{MountGuard, is_mounted};
use ossmount::client::OssClient;
use ossmount::store::ObjectStore;
use ossmount_emulator::{EmulatorConfig, FaultUpdate, RunningEmulator, TlsFiles, start};

const BIN: &str = env!("CARGO_BIN_EXE_ossmount");
const BUCKET: &str = "net-bucket";

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A private CA and a server certificate for 127.0.0.1/localhost, as PEM files in `dir`.
fn make_pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ossmount test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    emulator: RunningEmulator,
    dir: tempfile::TempDir,
}

fn fixture(tls: bool, max_qps: u64) -> (Fixture, Option<Pki>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("i15-net-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::create_dir(dir.path().join("mnt")).unwrap();
    let pki = tls.then(|| make_pki(dir.path()));
    let mut cfg = EmulatorConfig::new(dir.path().join("data"), BUCKET);
    cfg.tls = pki.as_ref().map(|p| TlsFiles {
        cert: p.cert.clone(),
        key: p.key.clone(),
    });
    cfg.faults.max_qps = max_qps;
    let emulator = rt.block_on(start(cfg)).unwrap();
    (Fixture { rt, emulator, dir }, pki)
}

impl Fixture {
    fn mountpoint(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn ossmount(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("OSSMOUNT_ECS_METADATA_ENDPOINT", "http://127.0.0.1:1")
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .env("OSS_ACCESS_KEY_ID", "emulator-ak")
            .env("OSS_ACCESS_KEY_SECRET", "emulator-secret")
            .args(["--region", "cn-hangzhou", "--endpoint"])
            .arg(self.emulator.endpoint())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(extra)
            .arg(BUCKET)
            .arg(self.mountpoint());
        cmd
    }

    fn client(&self, ca: Option<&Path>) -> OssClient {
        let mut cfg = common::emulator::client_config(&self.emulator, BUCKET);
        cfg.ca_cert = ca.map(Path::to_path_buf);
        OssClient::new(cfg).unwrap()
    }

    /// Mounts with `cmd`, checks a file written by OSS reads back and a file written
    /// through the mount lands in OSS, then unmounts.
    fn mount_and_use(&self, mut cmd: Command, ca: &Path) {
        let mp = self.mountpoint();
        let _guard = MountGuard(mp.clone());
        let client = self.client(Some(ca));
        self.rt.block_on(async {
            client
                .put_object(
                    "over-tls.txt",
                    bytes::Bytes::from_static(b"sent over https").into(),
                    &Default::default(),
                )
                .await
                .unwrap();
        });
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(mp.join("over-tls.txt")).unwrap(),
            b"sent over https"
        );
        std::fs::write(mp.join("back.txt"), b"written through the mount").unwrap();
        let got = self.rt.block_on(async {
            client
                .get_range("back.txt", 0..25, None)
                .await
                .unwrap()
                .data
                .to_vec()
        });
        assert_eq!(got, b"written through the mount");
        assert!(Command::new("umount").arg(&mp).status().unwrap().success());
    }
}

#[test]
fn tls_mount_trusts_ca_cert_option() {
    let (f, pki) = fixture(true, 0);
    let pki = pki.unwrap();
    assert!(f.emulator.endpoint().starts_with("https://"));
    let cmd = f.ossmount(&["--ca-cert", pki.ca.to_str().unwrap()]);
    f.mount_and_use(cmd, &pki.ca);
    // The same as a mount option.
    let cmd = f.ossmount(&["-o", &format!("ca_cert={}", pki.ca.display())]);
    f.mount_and_use(cmd, &pki.ca);
}

#[test]
fn tls_mount_trusts_ssl_cert_file() {
    let (f, pki) = fixture(true, 0);
    let pki = pki.unwrap();
    let mut cmd = f.ossmount(&[]);
    cmd.env("SSL_CERT_FILE", &pki.ca);
    f.mount_and_use(cmd, &pki.ca);
}

#[test]
fn tls_mount_without_the_ca_is_refused_with_one_clear_line() {
    let (f, _pki) = fixture(true, 0);
    let mp = f.mountpoint();
    let _guard = MountGuard(mp.clone());
    // An empty SSL_CERT_DIR/FILE pair keeps the machine's own store out of the test.
    let empty = f.dir.path().join("empty-certs");
    std::fs::create_dir(&empty).unwrap();
    let start = std::time::Instant::now();
    let out = f
        .ossmount(&[])
        .env("SSL_CERT_DIR", &empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mounted without trusting the CA");
    assert!(!is_mounted(&mp));
    let line = stderr
        .lines()
        .find(|l| l.contains("TLS certificate"))
        .unwrap_or_else(|| panic!("no certificate error in: {stderr}"));
    assert!(line.contains("127.0.0.1"), "{line}");
    assert!(line.contains("CA this machine does not trust"), "{line}");
    assert!(line.contains("--ca-cert"), "{line}");
    // Not retried like a network hiccup.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(!stderr.contains("emulator-secret"));
}

#[test]
fn throttled_client_slows_down_and_every_request_succeeds() {
    let (f, _) = fixture(false, 0);
    let client = f.client(None);
    let n = 80;
    f.rt.block_on(async {
        for i in 0..n {
            client
                .put_object(
                    &format!("t/{i:03}"),
                    bytes::Bytes::from(vec![i as u8; 100]).into(),
                    &Default::default(),
                )
                .await
                .unwrap();
        }
    });
    f.emulator.set_faults(FaultUpdate {
        max_qps: Some(40),
        ..Default::default()
    });
    let max = client.inflight_limit().max();
    let lowest = Arc::new(std::sync::atomic::AtomicUsize::new(max));
    f.rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let c = client.clone();
            let lowest = lowest.clone();
            tasks.spawn(async move {
                let meta = c.head_object(&format!("t/{i:03}")).await?;
                lowest.fetch_min(
                    c.inflight_limit().limit(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                let got = c
                    .get_range(&format!("t/{i:03}"), 0..meta.size, None)
                    .await?;
                assert_eq!(&got.data[..], &vec![i as u8; 100][..]);
                Ok::<_, ossmount::store::StoreError>(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
    });
    let throttled = f
        .emulator
        .stats()
        .faults_injected
        .get("throttled")
        .copied()
        .unwrap_or(0);
    assert!(throttled > 0, "the QPS limit never bit");
    assert!(
        lowest.load(std::sync::atomic::Ordering::Relaxed) < max,
        "the in-flight budget was never cut"
    );
}

#[test]
fn throttled_mount_workload_finishes_without_errors() {
    let (f, _) = fixture(false, 0);
    let client = f.client(None);
    let files = 40;
    f.rt.block_on(async {
        for i in 0..files {
            client
                .put_object(
                    &format!("d/f{i:03}"),
                    bytes::Bytes::from(vec![b'a' + (i % 26) as u8; 4096]).into(),
                    &Default::default(),
                )
                .await
                .unwrap();
        }
    });
    f.emulator.set_faults(FaultUpdate {
        max_qps: Some(50),
        ..Default::default()
    });
    let mp = f.mountpoint();
    let _guard = MountGuard(mp.clone());
    let out = f.ossmount(&[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Four readers over all files in different orders, plus writes: well over 50 QPS.
    std::thread::scope(|s| {
        for t in 0..4usize {
            let mp = mp.clone();
            s.spawn(move || {
                for j in 0..files {
                    let i = (j * 7 + t * 13) % files;
                    let data = std::fs::read(mp.join(format!("d/f{i:03}")))
                        .unwrap_or_else(|e| panic!("reading d/f{i:03}: {e}"));
                    assert_eq!(data, vec![b'a' + (i % 26) as u8; 4096]);
                }
                std::fs::write(mp.join(format!("w{t}.txt")), format!("writer {t}"))
                    .unwrap_or_else(|e| panic!("writing w{t}.txt: {e}"));
            });
        }
    });
    assert_eq!(std::fs::read_dir(mp.join("d")).unwrap().count(), files);
    let throttled = f
        .emulator
        .stats()
        .faults_injected
        .get("throttled")
        .copied()
        .unwrap_or(0);
    assert!(throttled > 0, "the QPS limit never bit");
    assert!(Command::new("umount").arg(&mp).status().unwrap().success());
    for t in 0..4 {
        let got = f.rt.block_on(async {
            client
                .get_range(&format!("w{t}.txt"), 0..8, None)
                .await
                .unwrap()
                .data
                .to_vec()
        });
        assert_eq!(got, format!("writer {t}").as_bytes());
    }
}

#[test]
fn emulator_answers_over_the_qps_limit_like_oss_and_paces_connections() {
    let (f, _) = fixture(false, 0);
    let client = f.client(None);
    f.rt.block_on(async {
        client
            .put_object(
                "paced",
                bytes::Bytes::from(vec![5u8; 4_000_000]).into(),
                &Default::default(),
            )
            .await
            .unwrap();
    });
    // 20 MB/s per connection: 4 MB take at least ~0.15 s (one 64 KiB burst aside).
    f.emulator.set_faults(FaultUpdate {
        conn_mbytes_per_sec: Some(20),
        ..Default::default()
    });
    let start = std::time::Instant::now();
    let got =
        f.rt.block_on(client.get_range("paced", 0..4_000_000, None))
            .unwrap();
    assert_eq!(got.data.len(), 4_000_000);
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );

    // Over the QPS limit: 503, EC 0004-00000302 in the header and the XML body.
    f.emulator.set_faults(FaultUpdate {
        conn_mbytes_per_sec: Some(0),
        max_qps: Some(1),
        ..Default::default()
    });
    let url = format!("{}/{BUCKET}/paced", f.emulator.endpoint());
    let (status, ec, body) = f.rt.block_on(async {
        let http = reqwest::Client::new();
        let mut last = None;
        for _ in 0..3 {
            let r = http.get(&url).send().await.unwrap();
            let status = r.status().as_u16();
            let ec = r
                .headers()
                .get("x-oss-ec")
                .map(|v| v.to_str().unwrap().to_string());
            last = Some((status, ec, r.text().await.unwrap()));
            if status == 503 {
                break;
            }
        }
        last.unwrap()
    });
    assert_eq!(status, 503, "{body}");
    assert_eq!(ec.as_deref(), Some("0004-00000302"));
    assert!(body.contains("<Code>ServiceUnavailable</Code>"), "{body}");
    assert!(body.contains("<EC>0004-00000302</EC>"), "{body}");
    assert!(
        f.emulator.stats().faults_injected.get("throttled").copied() >= Some(1),
        "not counted"
    );
}
